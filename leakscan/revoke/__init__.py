"""Revocation: verified leaks → a durable outbox (`outbox.py`) → callbacks (`deliver.py`),
exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model import Finding
from .deliver import flush
from .outbox import Outbox


@dataclass
class Revocation:
    new: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)


def revoke(path: Path | str, findings: list[Finding], callbacks: list[dict[str, Any]], repo: str | None, *,
           force: bool = False) -> Revocation:  # fmt: skip
    """The one step every surface runs after a scan: queue revocations for the verified findings
    (durably, before any delivery), then one flush of what is due."""
    import asyncio

    with Outbox(path, force=force) as outbox:
        new = outbox.enqueue(findings, callbacks, repo) if findings and callbacks else 0
        report = asyncio.run(flush(outbox))
        outbox.wipe()  # also what a process killed between a delivery and its wipe left behind
        return Revocation(new, report.delivered, report.failed, outbox.pending(), report.errors)
