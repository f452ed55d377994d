"""What tests share, one module per concern, so that no test writes its own copy:

- ``wait``: the one way to wait for a condition (a deadline, a message, the last value seen).
"""
