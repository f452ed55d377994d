"""What tests share, one module per concern, so that no test writes its own copy:

- ``wait``: the one way to wait for a condition (a deadline, a message, the last value seen);
- ``store``: the test's own window on the database (seed rows, read them back, check invariants);
- ``containers``: containers made straight on the Docker Engine, and the engine read directly;
- ``cleanup``: a cleanup service on the test's store, a hand-moved clock, report shorthands;
- ``figures``: the reliability scenarios' size (``make soak``) and the figures they publish.
"""
