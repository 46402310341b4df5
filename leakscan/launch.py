"""The `leakscan` command's entry point.

A push waits on the pre-receive hook, and the CLI framework (typer and rich) is a good part of
a start's imports: `leakscan hook pre-receive`, which takes no options, is run directly. Every
other command goes through `cli`.

Python's cyclic garbage collector is kept out of the way of what lives until the process ends:
it is off while the command's modules are imported (about twenty collections, which found
little), what the imports made is then frozen (never traversed again), and so is everything
left when the process exits, so that the interpreter's exit does not traverse it all once more
to free memory the operating system takes back anyway. Together about 35 ms of a push through
the hook, a sixth of its time (measured in `benchmarks/bench_hook.py`). Only the first command
a process runs does this: a caller that runs several has its later garbage collected as usual.
"""

from __future__ import annotations

import atexit
import gc
import sys
from collections.abc import Callable

_started = False


def main(argv: list[str] | None = None) -> int:
    global _started
    args = sys.argv[1:] if argv is None else argv
    if _started:
        return _loaded(args)()
    _started = True
    atexit.register(gc.freeze)  # runs before the interpreter's last collections
    gc.disable()
    try:
        command = _loaded(args)
    finally:
        gc.freeze()
        gc.enable()
    return command()


def _loaded(args: list[str]) -> Callable[[], int]:
    """The command `args` name, its modules imported."""
    if args == ["hook", "pre-receive"]:
        from .hook import run_pre_receive

        return lambda: run_pre_receive(sys.stdin.read())
    from .cli import main as cli_main

    return lambda: cli_main(args)
