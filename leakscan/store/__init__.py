"""The durable store: one SQLite database with versioned migrations (db.py), the scan cache
(cache.py), the jobs queue (jobs.py) and the findings long-running scanners record (findings.py)."""

from .cache import Store
from .db import StoreError, connect, default_path, transaction

__all__ = ["Store", "StoreError", "connect", "default_path", "transaction"]
