"""Benchmarks: speed, size and accuracy measurements (scripts; results in BENCHMARKS.md)."""
