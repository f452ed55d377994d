"""botfleet: run fleets of containerised bots and keep them clean."""

__version__ = "0.1.0"
