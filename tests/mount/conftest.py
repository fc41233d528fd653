"""Fixtures of the mount tests: ``mounter`` (real kernel mounts, always undone; see mounting.py)."""

from mounting import mounter

__all__ = ["mounter"]
