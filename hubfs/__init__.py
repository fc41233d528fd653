"""hubfs: Hub repositories as files, git remotes and GPU-ready weights, plus an embedded Hub."""

__version__ = "0.1.0"
