"""Revocation: verified leaks → a durable outbox → callbacks, exactly once."""
