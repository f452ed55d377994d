"""The ``botfleet`` command line (Typer)."""
