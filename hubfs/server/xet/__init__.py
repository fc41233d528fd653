"""Xet: Hugging Face's content-addressed storage protocol (CAS routes, wire formats, xorb store) for the embedded hub."""
