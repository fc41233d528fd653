"""Buckets on the embedded hub: the Hub's non-versioned, Xet-backed file stores (``hf buckets``), as far as
``huggingface_hub`` needs them to ship a local script to a job (``hf jobs uv run script.py``).

:mod:`store` (the ``buckets`` tables), :mod:`tokens` (CAS tokens scoped to one bucket), :mod:`routes`
(create, info, tree, batch, resolve, the Xet token routes and the bucket CAS), :mod:`files` (a
bucket folder written out for a job's volume).
"""
