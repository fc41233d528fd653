"""The embedded hub: a Hub-compatible server (`hubfs serve`) over git, an LFS store and SQLite."""
