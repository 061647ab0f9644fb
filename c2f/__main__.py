"""`python -m c2f` runs the command line."""

from c2f.cli import app

app()
