"""Benchmarks: `python -m benchmarks` runs them all and rewrites their sections of BENCHMARKS.md."""
