"""Candidates become findings: identity (hash, fingerprint), redaction, dedupe, suppression."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .detectors import Rule
from .model import FINDING_TYPES, Candidate, Finding, Location, Place


def secret_text(secret: bytes) -> str:
    return secret.decode("utf-8", "backslashreplace")


def sha256_hex(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


def redact(secret: str) -> str:
    """Enough to recognise a secret (`hf_Ab…yz`), never enough to use it."""
    if secret.startswith("-----BEGIN"):
        return secret.split("-----", 3)[1].join(("-----", "-----")) + "…"
    if len(secret) >= 20:
        return f"{secret[:5]}…{secret[-2:]}"
    if len(secret) >= 10:
        return f"{secret[:2]}…{secret[-1:]}"
    return "…"


def fingerprint(detector: str, secret_sha256: str, path: str, container: str | None) -> str:
    """Stable across edits above the secret and across commits: no line, no commit."""
    key = "\0".join((detector, secret_sha256, path, container or ""))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def make_finding(rule: Rule, cand: Candidate, loc: Location, origin: Place) -> Finding:
    text = secret_text(cand.secret)
    digest = sha256_hex(cand.secret)
    return Finding(
        detector=rule.id, provider=rule.provider, description=rule.description, secret=text,
        secret_sha256=digest, redacted=redact(text), path=origin.path, line=loc.line,
        column=loc.column, commit=origin.commit, source=origin.source, container=origin.container,
        fingerprint=fingerprint(rule.id, digest, origin.path, origin.container), generic=rule.generic,
        groups={k: secret_text(v) for k, v in cand.groups}, author=origin.author, date=origin.date,
    )  # fmt: skip


# the detectors of unsafe model files: not in the detector files, as they match no text
UNSAFE_RULES = {
    "unsafe-pickle": "Pickle that imports or calls code run when it is loaded",
    "unsafe-pickle-unknown": "Pickle import not on the allowlist of what model files import",
    "unsafe-model": "Keras model layer that runs code when it is loaded",
    "unsafe-model-unknown": "Keras model config naming a module not on the allowlist",
}


def unsafe_finding(kind: str, severity: str, target: str, offset: int | None, origin: Place) -> Finding:
    """A model file that runs `target` when loaded (unsafe-pickle / unsafe-model)."""
    detector = kind if severity == "critical" else f"{kind}-unknown"
    digest = sha256_hex(f"{kind}\0{target}".encode())
    return Finding(
        detector=detector, provider="model-file", description=UNSAFE_RULES[detector], secret=target,
        secret_sha256=digest, redacted=target, path=origin.path, line=0, column=0, commit=origin.commit,
        source=origin.source, container=origin.container,
        fingerprint=fingerprint(detector, digest, origin.path, origin.container), author=origin.author,
        date=origin.date, kind=kind, severity=severity, offset=offset,
    )  # fmt: skip


def sort_key(f: Finding) -> tuple:
    return (f.path, f.container or "", f.commit or "", f.line, f.column, f.detector)


@dataclass
class Suppressions:
    """What the user told us not to report: ignore-file fingerprints, a baseline report and a
    config file's allowlist (`config.Allowlist`). Remembers which ignore entries were used."""

    fingerprints: set[str] = field(default_factory=set)
    baseline: set[str] = field(default_factory=set)
    allowlist: Any = None
    used: set[str] = field(default_factory=set)  # ignore-file fingerprints that matched a finding

    def suppressed(self, f: Finding) -> bool:
        # every kind is consulted, so each entry that matches is known to be in use
        ignored = f.fingerprint in self.fingerprints
        if ignored:
            self.used.add(f.fingerprint)
        allowed = self.allowlist is not None and self.allowlist.allows(f)
        return ignored or allowed or f.fingerprint in self.baseline


class SuppressionError(ValueError):
    pass


def read_ignore_file(path: Path) -> set[str]:
    """`.leakscanignore`: one fingerprint per line; `#` starts a comment."""
    out = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SuppressionError(f"cannot read ignore file {path}: {exc.strerror or exc}") from None
    for n, line in enumerate(lines, 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if len(entry) != 32 or any(ch not in "0123456789abcdef" for ch in entry):
            raise SuppressionError(f"{path}:{n}: not a leakscan fingerprint: {entry!r}")
        out.add(entry)
    return out


def read_baseline(path: Path) -> set[str]:
    """Fingerprints of an earlier `--format json` (or jsonl) report."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuppressionError(f"cannot read baseline {path}: {exc.strerror or exc}") from None
    try:
        items = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    except ValueError as exc:
        raise SuppressionError(f"baseline {path} is not a leakscan JSON report: {exc}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise SuppressionError(f"baseline {path} is not a leakscan JSON report")
    findings = [i for i in items if i.get("type", "finding") in FINDING_TYPES]
    if not all("fingerprint" in i for i in findings):
        raise SuppressionError(f"baseline {path} is not a leakscan JSON report (no fingerprints)")
    return {i["fingerprint"] for i in findings}


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """The same secret at the same place is reported once; a specific detector wins over a
    generic one."""
    best: dict[tuple, Finding] = {}
    for f in findings:
        key = (f.secret_sha256, f.path, f.container, f.commit, f.line)
        old = best.get(key)
        if old is None or (old.generic and not f.generic):
            best[key] = f
    return sorted(best.values(), key=sort_key)
