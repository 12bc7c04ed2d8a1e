"""`python -m lab.bench`: run the benchmark."""

from lab.bench.cli import app

app()
