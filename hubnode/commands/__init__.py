"""Command-line modules beyond the core ones in ``hubnode/cli.py``: one per view."""
