"""Benchmarks: run each script directly, e.g. `.venv/bin/python bench/send_throughput.py` (see README.md)."""
