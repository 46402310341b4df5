"""The `leakscan` command's entry point.

A push waits on the pre-receive hook, and the CLI framework (typer and rich) is a good part of
a start's imports: `leakscan hook pre-receive`, which takes no options, is run directly. Every
other command goes through `cli`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["hook", "pre-receive"]:
        from .hook import run_pre_receive

        return run_pre_receive(sys.stdin.read())
    from .cli import main as cli_main

    return cli_main(args)
