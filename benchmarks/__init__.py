"""Benchmarks (pytest-benchmark): `make bench`; helpers in benchmarks/support.py."""
