"""safetensors: 8-byte little-endian header length, JSON header; `__metadata__` as `key = value`."""

from __future__ import annotations

import json
from collections.abc import Iterator

from .base import Child, Context, Problem

MAX_HEADER = 100 << 20


def sniff_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    n = int.from_bytes(data[:8], "little")
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def safetensors_metadata(data: bytes, name: str, ctx: Context) -> Iterator[Child | Problem]:
    if len(data) < 8:
        yield Problem("truncated safetensors file: no header length")
        return True
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER or n > len(data) - 8:
        yield Problem(f"absurd safetensors header length {n} (file is {len(data)} bytes, limit {MAX_HEADER})")
        return True
    try:
        header = json.loads(data[8 : 8 + n])
    except RecursionError:
        yield Problem("broken safetensors header: JSON nested too deeply")
        return True
    except (ValueError, UnicodeDecodeError) as exc:
        yield Problem(f"broken safetensors header: {exc}")
        return True
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if isinstance(meta, dict) and meta:
        lines = [f"{k} = {v if isinstance(v, str) else json.dumps(v)}" for k, v in list(meta.items())[: ctx.limits.max_members]]
        yield Child("__metadata__", "\n".join(lines).encode("utf-8", "backslashreplace") + b"\n",
                    "safetensors-metadata")  # fmt: skip
    return True
