"""The cleanup service: policies, plans, execution, the lock and the scheduler."""
