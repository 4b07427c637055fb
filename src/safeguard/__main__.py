"""``python -m safeguard`` runs the CLI."""

from safeguard.cli.main import run

run()
