"""Benchmarks: scripts anyone can run; results are written to bench/results/."""
