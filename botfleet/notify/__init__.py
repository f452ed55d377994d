"""Webhook notifications (NOTIFY_WEBHOOK_URLS): CloudEvents, signed the Standard Webhooks way,
written to a durable outbox in the transaction of what they report, delivered at least once by
one sender across replicas. See docs/notifications.md."""
