"""`python -m hub.bench`: run the benchmark."""

from hub.bench.cli import app

app()
