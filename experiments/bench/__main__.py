"""``python -m experiments.bench <suite>``: see ``experiments.bench.cli``."""

from experiments.bench.cli import main

main()
