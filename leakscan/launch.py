"""The `leakscan` command's entry point.

A push waits on the pre-receive hook, and the CLI framework (typer, which imports pydantic, and
rich) costs about a third of a second to import: `leakscan hook pre-receive`, which takes no
options, is run directly. Every other command goes through `cli`.
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
