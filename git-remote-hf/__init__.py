"""git-remote-hf: ``git clone hf://ns/name`` and ``git push`` against the Hub or a Hub-compatible server.

git runs ``git-remote-hf <remote> <url>`` for ``hf://`` URLs (and ``hf::https://...``); the helper speaks
git's remote-helper protocol (``fetch``/``push``) and moves packs verbatim through dulwich over
:mod:`hubfs.client`'s transport. ``git-remote-hf filter-process`` is the LFS filter it installs in clones
(during a clone, it hands its session to a filter the helper started in advance: :mod:`.filter_handoff`).
"""
