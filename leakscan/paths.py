"""Where leakscan keeps its caches: LEAKSCAN_CACHE_DIR, else the user cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_root() -> Path:
    return Path(os.environ.get("LEAKSCAN_CACHE_DIR") or platformdirs.user_cache_dir("leakscan"))


def write_cache_file(path: Path, data: bytes) -> None:
    """Atomically, or not at all: a cache we cannot write is only a missed speed-up."""
    import tempfile  # written rarely, read on every start

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        pass
