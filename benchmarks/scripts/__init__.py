"""One-off measurement scripts (run from a source checkout: python -m benchmarks.scripts.NAME); not installed."""
