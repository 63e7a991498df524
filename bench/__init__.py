"""Benchmarks: `python -m bench run --customers 10000 100000` (see bench/README.md)."""
