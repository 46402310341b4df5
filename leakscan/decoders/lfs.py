"""Git LFS pointer files: recognised so that their object id is not mistaken for a secret."""

from __future__ import annotations

import re

MAX_POINTER = 1024  # git-lfs itself never writes pointers bigger than this
_POINTER = re.compile(
    rb"version https://(?:git-lfs\.github\.com/spec/v1|hawser\.github\.com/spec/v1)\n"
    rb"(?:[a-z0-9.-]+ [^\n]*\n)*?"
    rb"oid sha256:(?P<oid>[0-9a-f]{64})\n"
    rb"(?:[a-z0-9.-]+ [^\n]*\n)*?"
    rb"size [0-9]+\n?(?:[a-z0-9.-]+ [^\n]*\n?)*\Z"
)


def _match(data: bytes) -> re.Match[bytes] | None:
    if len(data) > MAX_POINTER or not data.startswith(b"version https://"):
        return None
    return _POINTER.match(data.replace(b"\r\n", b"\n"))


def is_lfs_pointer(data: bytes) -> bool:
    """A git LFS pointer file (`version https://git-lfs.github.com/spec/v1`, `oid sha256:…`, `size …`)."""
    return _match(data) is not None


def lfs_oid(data: bytes) -> str | None:
    """The 64-hex-digit sha256 object id of an LFS pointer, or None for anything else."""
    m = _match(data)
    return m.group("oid").decode() if m else None
