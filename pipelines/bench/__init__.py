"""Benchmarks (``vigie bench``, ``make bench``): measured on this machine against the embedded
broker, never asserted in tests. Results go to bench/results.json and docs/benchmarks.md."""
