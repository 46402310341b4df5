"""Shared test helpers: run the real CLI in a subprocess, make tokens at test time."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from leakscan.examples import expand

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)


def leakscan(*args: str | os.PathLike, cwd: Path | None = None, env: dict | None = None,
             input: str | None = None, timeout: float = 120) -> Run:  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "leakscan", *map(str, args)], cwd=cwd, capture_output=True,
        text=True, env={**os.environ, **(env or {})}, input=input, timeout=timeout,
    )  # fmt: skip
    return Run(proc.returncode, proc.stdout, proc.stderr)


def token(template: str, seed: object = None) -> str:
    """A credential-shaped string made now, e.g. token('hf_{alpha:34}')."""
    return expand(template, random.Random(seed))[1]


HF = "hf_{alpha:34}"
GHP = "{crc-token:ghp:30}"
OPENAI = "sk-proj-{b64url:74}T3BlbkFJ{b64url:74}"
