"""meshcore benchmark harness: `python -m benchmarks SCENARIO --json PATH`."""
