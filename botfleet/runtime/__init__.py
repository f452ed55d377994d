"""Container runtime: the engine Protocol, the Docker Engine adapter and the fleet of engines."""
