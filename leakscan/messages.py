"""What leakscan tells people on stderr, one line per message: plain text, or JSON objects with
`--log-format json`; `-q` keeps errors only, `-v` adds detail. Reports (stdout, `-o`) are not
messages. Callers escape what comes from scanned content (`textsafe.escape`)."""

from __future__ import annotations

import json
import sys
import time

LEVELS = {"error": 0, "warning": 1, "info": 2, "debug": 3}
_state = {"level": LEVELS["info"], "json": False}


def configure(*, quiet: bool = False, verbose: bool = False, json_lines: bool = False) -> None:
    _state["level"] = LEVELS["error"] if quiet else LEVELS["debug"] if verbose else LEVELS["info"]
    _state["json"] = json_lines


def quiet() -> bool:
    return _state["level"] < LEVELS["info"]


def say(level: str, text: str, *, always: bool = False) -> None:
    """One message at `level`; `always`: shown even with -q (what must not go unnoticed)."""
    if LEVELS[level] > _state["level"] and not always:
        return
    if _state["json"]:
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": level,
                           "message": text})  # fmt: skip
    elif level == "info":
        line = text
    else:
        line = f"leakscan: {level}: {text}" if level != "debug" else f"leakscan: {text}"
    print(line, file=sys.stderr, flush=True)
