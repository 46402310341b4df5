"""Verification alongside a scan, in a thread of its own.

Apart from the engine (aiohttp, a tenth of a second to import) so that a scan that finds
nothing, the usual case for the pre-receive hook, neither imports it nor starts the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable

from ..detectors import RuleSet
from ..model import Finding


class BackgroundVerifier:
    """Verification alongside the scan: findings are submitted as the scan produces them and
    checked on an event loop in a thread of their own; `close()` waits for the last verdict.
    The thread opens its own store connection (SQLite connections stay in their thread)."""

    def __init__(self, ruleset: RuleSet, *, store_path=None, **options) -> None:
        self._ruleset = ruleset
        self._store_path = store_path
        self._options = options
        self._queue: queue.SimpleQueue[list[Finding] | None] = queue.SimpleQueue()
        self.requests = 0
        self.error: BaseException | None = None
        self.bar = None  # a progress display the caller may attach
        self._thread: threading.Thread | None = None

    def submit(self, findings: Iterable[Finding]) -> None:
        batch = list(findings)
        if batch:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="leakscan-verify", daemon=True)
                self._thread.start()
            self._queue.put(batch)

    def close(self) -> None:
        """Wait for the last verdict, then take the progress display down. Idempotent."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _run(self) -> None:
        import asyncio

        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by close()
            self.error = exc

    async def _main(self) -> None:
        import asyncio

        from ..store import Store
        from .engine import Verifier

        store = Store(self._store_path) if self._store_path else None
        loop = asyncio.get_running_loop()
        try:
            async with Verifier(self._ruleset, store=store, **self._options) as verifier:
                pending = []
                while True:
                    batch = await loop.run_in_executor(None, self._queue.get)
                    if batch is None:
                        break
                    pending.append(asyncio.ensure_future(verifier.verify(batch)))
                await asyncio.gather(*pending)
                self.requests = verifier.requests
        finally:
            if store is not None:
                store.close()
