"""``python -m pipelines.cli``: what the supervisor, the benchmarks and the tests start."""
from pipelines.cli import main

main()
