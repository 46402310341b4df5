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
    def report(self) -> list[dict]:
        """Everything in a json/jsonl report: findings and skipped entries."""
        text = self.out.strip()
        return json.loads(text) if text.startswith("[") else [json.loads(l) for l in text.splitlines()]

    @property
    def json(self) -> list[dict]:
        """The findings of a json/jsonl report."""
        return [i for i in self.report if i["type"] == "finding"]

    @property
    def skipped(self) -> list[dict]:
        return [i for i in self.report if i["type"] == "skipped"]


class Repo:
    def __init__(self, path: Path, bare: bool = False) -> None:
        self.path = path
        self.n = 0
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main", *(["--bare"] if bare else []), ".")

    def git(self, *args: str, input: str | None = None) -> str:
        self.n += 1
        stamp = f"2026-01-01T00:{self.n // 60:02d}:{self.n % 60:02d}+00:00"
        env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.org",
               "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.org",
               "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}  # fmt: skip
        return subprocess.run(["git", *args], cwd=self.path, env=env, check=True, capture_output=True,
                              text=True, input=input).stdout.strip()  # fmt: skip

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        for name, text in files.items():
            p = self.path / name
            if text is None:
                self.git("rm", "-q", name)
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            self.git("add", name)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


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


# A made-up provider with a verification spec, for the verification and revocation tests.
ACME = """name = "Acme"
[[rules]]
id = "acme-key"
description = "Acme API key"
keywords = ["acme_"]
pattern = '''\\b(?P<secret>acme_[A-Za-z0-9]{24})\\b'''
examples.positive = ['acme_{b62:24}']
examples.negative = ['acme_x']
[rules.verify]
url = "https://api.acme.example/v1/me"
headers = { Authorization = "Bearer {secret}" }
valid = { status = [200], json = { "user.name" = "*" } }
restricted = { status = [403] }
invalid = { status = [401] }
identity = { name = "user.name", scopes = "scopes" }
"""

HF = "hf_{alpha:34}"
GHP = "{crc-token:ghp:30}"
OPENAI = "sk-proj-{b64url:74}T3BlbkFJ{b64url:74}"
