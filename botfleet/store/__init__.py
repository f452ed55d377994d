"""Persistence: models, engine/session factory, migrations."""
