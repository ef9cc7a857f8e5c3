"""Command-line modules beyond the core ones in ``hubnode/cli.py`` (init, id, log, run,
peers, status, network, demo): one per area (audit, projections, directory, skills,
tenders, …), each with ``register(app)``."""
