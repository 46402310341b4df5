"""`leakscan ui` as the tests run it: a real subprocess on 127.0.0.1, asked over real HTTP; and
findings recorded through the store module as every surface records them."""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from leakscan.findings import fingerprint, redact, sha256_hex
from leakscan.model import Finding


class Ui:
    """`leakscan ui --db DB --port 0 …` until stop(); its URL from the line it prints."""

    def __init__(self, db, *args: str, env: dict | None = None, host: str | None = None) -> None:
        cmd = [sys.executable, "-m", "leakscan", "ui", "--db", str(db), "--port", "0", *args]
        if host:
            cmd += ["--host", host]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})  # fmt: skip
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        got = re.search(r"http://\S+/", line)
        if not got:
            self.stop()
            raise AssertionError(f"leakscan ui did not start: {line!r} {self.proc.stderr.read()!r}")
        self.printed = line
        self.url = got.group(0)
        port = urlsplit(self.url).port
        self.base = f"http://127.0.0.1:{port}"  # what a client on this machine dials, whatever the bind

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def __enter__(self) -> Ui:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self.proc.stdout.close()
        self.proc.stderr.close()


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def json(self):
        return json.loads(self.body)


def request(base: str, method: str, path: str, body: bytes | str | dict | None = None,
            headers: dict | None = None) -> Answer:  # fmt: skip
    """One request, no redirect followed."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    hdrs = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=body.encode() if isinstance(body, str) else body, headers=hdrs)
        r = conn.getresponse()
        return Answer(r.status, r.headers, r.read())
    finally:
        conn.close()


def csrf_of(html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', html).group(1)


def row_fingerprints(html: str) -> list[str]:
    return re.findall(r'<tr data-fingerprint="([0-9a-f]+)">', html)


@dataclass
class Made:
    """A finding made at test time, as a scan reports it (the raw secret with it)."""

    secret: str
    kwargs: dict = field(default_factory=dict)


def finding(secret: str, *, detector: str = "huggingface-access-token", provider: str = "huggingface",
            path: str = "config.py", commit: str = "c" * 40, source: str = "history", url: str | None = None,
            verification: str = "unverified", repo: str | None = None) -> Finding:  # fmt: skip
    digest = sha256_hex(secret.encode())
    return Finding(detector=detector, provider=provider, description="", secret=secret, secret_sha256=digest,
                   redacted=redact(secret), path=path, line=1, column=1, commit=commit, source=source, container=None,
                   fingerprint=fingerprint(detector, digest, path, None), verification=verification, url=url, repo=repo)  # fmt: skip
