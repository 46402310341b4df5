"""Where leakscan keeps its caches: LEAKSCAN_CACHE_DIR, else the user cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_root() -> Path:
    return Path(os.environ.get("LEAKSCAN_CACHE_DIR") or platformdirs.user_cache_dir("leakscan"))
