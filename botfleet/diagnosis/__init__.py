"""``botfleet doctor``: what it gathers (:mod:`.gather`) and how it judges it (:mod:`.judges`)."""
