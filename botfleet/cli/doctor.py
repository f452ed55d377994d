"""`botfleet doctor` (to be filled in)."""

from __future__ import annotations

import typer


def doctor() -> None:
    """Check database, engines, lock, last runs, breakers and backlog."""
    raise typer.Exit(0)
