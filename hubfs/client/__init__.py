"""The one Hub client of hubfs: HTTP transport, API calls, downloads, uploads and the local cache."""

from hubfs.client.api import HubClient

__all__ = ["HubClient"]
