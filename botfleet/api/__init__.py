"""HTTP layer: a thin skin over the domain modules."""
