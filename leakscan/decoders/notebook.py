"""Jupyter notebooks: each cell's source and each output's text, JSON-unescaped."""

from __future__ import annotations

import json
from collections.abc import Iterator

from .base import Child, Context, Problem

MAX_NOTEBOOK_BYTES = 64 << 20  # bigger notebooks are not parsed (their raw bytes are still scanned)


def sniff_notebook(data: bytes) -> bool:
    head = data[:65536].lstrip()
    return head.startswith(b"{") and b'"cells"' in head and b'"nbformat"' in data


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return ""


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "backslashreplace")  # lone surrogates from \udXXX escapes


def _output_text(out: dict) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        return _text(out.get("text"))
    if kind == "error":
        tb = out.get("traceback")
        lines = [t for t in tb if isinstance(t, str)] if isinstance(tb, list) else []
        head = f"{_text(out.get('ename'))}: {_text(out.get('evalue'))}"
        return "\n".join([head, *lines]) if lines or head != ": " else ""
    data = out.get("data")
    if isinstance(data, dict):
        return _text(data.get("text/plain"))
    return _text(out.get("text"))  # nbformat 3 pyout


def notebook_cells(data: bytes, name: str, ctx: Context) -> Iterator[Child | Problem]:
    """Cells as `cell N` and outputs as `cell N output M` (both 1-based)."""
    named = name.lower().endswith(".ipynb")
    if len(data) > MAX_NOTEBOOK_BYTES:
        yield Problem(f"notebook too large to parse ({len(data)} bytes > {MAX_NOTEBOOK_BYTES})")
        return False
    try:
        nb = json.loads(data)
    except RecursionError:
        yield Problem("broken notebook: JSON nested too deeply")
        return False
    except (ValueError, UnicodeDecodeError) as exc:
        if named:
            yield Problem(f"broken notebook: invalid JSON ({exc})")
        return False
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if cells is None and isinstance(nb, dict) and isinstance(nb.get("worksheets"), list):  # nbformat 3
        cells = [c for ws in nb["worksheets"] if isinstance(ws, dict) for c in ws.get("cells") or []]
    if not isinstance(cells, list):
        if named:
            yield Problem("broken notebook: no list of cells")
        return False
    limit = ctx.limits.max_members
    for i, cell in enumerate(cells, 1):
        ctx.tick()
        if i > limit:
            yield Problem(f"member limit ({limit}) exceeded: {len(cells)} cells")
            break
        if not isinstance(cell, dict):
            continue
        source = _text(cell.get("source", cell.get("input")))
        if source:
            yield Child(f"cell {i}", _encode(source), "notebook-cell")
        outputs = cell.get("outputs")
        if not isinstance(outputs, list):
            continue
        for j, out in enumerate(outputs[:limit], 1):
            text = _output_text(out) if isinstance(out, dict) else ""
            if text:
                yield Child(f"cell {i} output {j}", _encode(text), "notebook-output")
    return True
