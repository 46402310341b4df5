"""Clean corpora stay clean: the Python standard library and 5 MB of random data give no finding
with every shipped detector (the regression net for new rules' precision)."""

from __future__ import annotations

import base64
import os
import random
import shutil
import sysconfig
import uuid
from pathlib import Path

from helpers import leakscan


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _stdlib_ignore(directory: str, names: list[str]) -> list[str]:
    # Third-party packages installed next to the stdlib are not the stdlib; CPython's own test
    # suite ships real (throwaway) private keys for its TLS tests, which are rightly reported.
    if os.path.basename(directory) == "test" and "certdata" in names:
        return ["certdata"]
    return [n for n in names if n in ("site-packages", "dist-packages")]


def test_the_standard_library_gives_no_finding(tmp_path):
    corpus = tmp_path / "stdlib"
    shutil.copytree(sysconfig.get_paths()["stdlib"], corpus, copy_function=_link_or_copy,
                    ignore=_stdlib_ignore, symlinks=True)  # fmt: skip
    assert sum(1 for _ in corpus.rglob("*.py")) > 500
    run = leakscan("scan", corpus, "--no-verify", "--no-cache", "-f", "json", timeout=300)
    assert run.code == 0, run.err
    assert run.json == []


def _random_corpus(root: Path, size: int = 5 * 2**20) -> None:
    """Five kinds of noise, one file each and in pieces of a few kB: raw bytes, base64 (wrapped
    and in one long line), hex, and UUIDs in assignments — what model repos and caches are full of."""
    rng = random.Random(16)
    share = size // 5
    (root / "noise.bin").write_bytes(rng.randbytes(share))
    wrapped = base64.encodebytes(rng.randbytes(share * 3 // 4))
    (root / "noise.b64").write_bytes(wrapped)
    (root / "blob.txt").write_bytes(b"\n".join(b"data: " + base64.b64encode(rng.randbytes(3000))
                                               for _ in range(share // 4000)))  # fmt: skip
    (root / "digests.txt").write_text("\n".join(f"{rng.randbytes(32).hex()}  file{i}.bin" for i in range(share // 80)))
    (root / "ids.py").write_text("\n".join(f"run_id_{i} = \"{uuid.UUID(int=rng.getrandbits(128), version=4)}\""
                                           for i in range(share // 52)))  # fmt: skip


def test_random_bytes_base64_hex_and_uuids_give_no_finding(tmp_path):
    _random_corpus(tmp_path)
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) > 5_000_000
    run = leakscan("scan", tmp_path, "--no-verify", "--no-cache", "-f", "json", timeout=300)
    assert run.code == 0, run.err
    assert run.json == []
