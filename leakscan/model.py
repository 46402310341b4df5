"""The small typed records that flow through the pipeline.

sources → (Blob) → decoders → matcher → (Candidate) → findings → (Finding) → report/store
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Candidate:
    """A confirmed pattern match inside one byte stream; knows nothing of files or git."""

    rule_id: str
    start: int  # absolute byte offset of the secret in the stream
    end: int
    secret: bytes
    match_start: int  # the whole match, context included
    match_end: int
    groups: tuple[tuple[str, bytes], ...] = ()  # other named groups (an AWS key id, a host)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a candidate sits in human terms; computed by the scanner from the bytes."""

    line: int
    column: int
    offset: int
    allowed: bool  # the line carries an inline `leakscan:allow`


def pickled_by_fields(self) -> tuple:
    """`__reduce__` for a small dataclass whose fields all go to its constructor: pickled as
    those arguments. Half the time of the slot state dataclasses pickle (a history's listing
    crosses a process boundary: tens of thousands of blobs and places)."""
    return type(self), tuple([getattr(self, name) for name in self.__match_args__])


@dataclass(frozen=True, slots=True)
class Place:
    """One place a scanned byte stream appears at: a file in a tree, a blob at a path introduced
    by a commit, a commit message, a comment… A blob may appear at many; it is read and matched
    once, and each place decides what its path rules allow."""

    path: str
    source: str = "file"  # file | history | commit-message | discussion | stdin | staged | …
    commit: str | None = None  # the commit that introduced it there (history), or the message's
    container: str | None = None  # path inside an archive or notebook, or a comment's label
    author: str | None = None
    date: str | None = None  # ISO 8601 with offset

    def age(self) -> tuple[float, str, str]:
        """Sort key, oldest first; places without a date (unattributed), or with one that does
        not parse, last."""
        return (_instant(self.date), self.commit or "", self.path)

    __reduce__ = pickled_by_fields


def _instant(date: str | None) -> float:
    """Seconds since the epoch (a history's blobs are put in order by it: a number is a third of
    the cost of a UTC date string)."""
    if not date:
        return math.inf
    try:
        return datetime.fromisoformat(date).timestamp()
    except ValueError:
        return math.inf


@dataclass(frozen=True, slots=True)
class Skip:
    """Something that could not be scanned, and why; reported, never fatal."""

    path: str
    reason: str
    container: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": "skipped", **asdict(self)}


@dataclass(slots=True)
class Finding:
    """A leaked secret, or (`kind` unsafe-pickle / unsafe-model) a model file that runs code when
    loaded: then `secret` and `redacted` hold what it imports or which layer, never verified or
    revoked, `line`/`column` are 0 and `offset` says where in the pickle stream."""

    detector: str
    provider: str
    description: str
    secret: str
    secret_sha256: str
    redacted: str
    path: str
    line: int
    column: int
    commit: str | None
    source: str
    container: str | None
    fingerprint: str
    verification: str = "unverified"
    generic: bool = False
    groups: dict[str, str] = field(default_factory=dict)  # for verification; not reported
    # history: who put it there, when, in which blob, and whether the tip still holds it
    author: str | None = None
    date: str | None = None
    blob: str | None = None
    in_head: bool | None = None
    also_at: tuple[str, ...] = ()  # other places the same content holds it ("path@commit")
    # Hub
    repo: str | None = None
    url: str | None = None
    discussion: int | None = None
    # verification
    verification_reason: str | None = None
    identity: dict[str, Any] | None = None
    restricted: bool = False
    # unsafe model files
    kind: str = "secret"  # secret | unsafe-pickle | unsafe-model
    severity: str | None = None  # critical | low (unsafe model files)
    offset: int | None = None  # of the pickle opcode that imports or calls it

    @property
    def unsafe(self) -> bool:
        return self.kind != "secret"

    def place(self) -> Place:
        return Place(self.path, self.source, self.commit, self.container, self.author, self.date)

    def to_dict(self, *, redact: bool = False) -> dict[str, Any]:
        """The one serialized form: reports, JSONL, notifications and the store all use it.
        Optional fields appear when they apply."""
        data: dict[str, Any] = {
            "type": "finding" if self.kind == "secret" else self.kind,
            "detector": self.detector,
            "provider": self.provider,
            "description": self.description,
            "secret": None if redact else self.secret,
            "secret_sha256": self.secret_sha256,
            "redacted": self.redacted,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "commit": self.commit,
            "source": self.source,
            "container": self.container,
            "verification": self.verification,
            "fingerprint": self.fingerprint,
        }
        if self.kind != "secret":  # what the model file runs; nothing secret about it
            data["secret"] = None
            data["target"] = self.secret
        for key in _OPTIONAL:
            value = getattr(self, key)
            if value is not None and value != () and not (key == "restricted" and not value):
                data[key] = list(value) if isinstance(value, tuple) else value
        return data


_OPTIONAL = ("author", "date", "blob", "in_head", "also_at", "repo", "url", "discussion", "verification_reason",
             "identity", "restricted", "severity", "offset")  # fmt: skip
FINDING_TYPES = ("finding", "unsafe-pickle", "unsafe-model")  # the JSON `type` of every kind of finding
