"""The small typed records that flow through the pipeline.

sources → (Blob) → decoders → matcher → (Candidate) → findings → (Finding) → report/store
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


@dataclass(frozen=True, slots=True)
class Origin:
    """What a scanned byte stream is: a file in a tree, a blob at a commit, a comment…"""

    path: str
    source: str = "file"  # file | history | commit-message | discussion | …
    commit: str | None = None
    container: str | None = None  # path inside an archive or notebook


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
    extra: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)  # for verification; not reported

    def to_dict(self, *, redact: bool = False) -> dict[str, Any]:
        data = {
            "type": "finding",
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
        data.update(self.extra)
        return data
