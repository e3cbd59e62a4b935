"""Kernels behind the model's ops: which run (select.py), and the native CPU ones (native.py)."""
