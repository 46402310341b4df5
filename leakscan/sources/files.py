"""Source: the files of a directory tree (a work tree; git history is its own source).

Never follows a symlink (a link's target inside the tree is scanned under its own path; one
leaving the tree is reported as skipped), never enters `.git`, and reports what it cannot read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..matcher import file_reader
from ..model import Place, Skip
from .base import Blob, Source

SKIP_DIRS = frozenset({".git", ".hg", ".svn"})
# Third-party code installed into the tree, not the project's own: a virtualenv (it holds a
# pyvenv.cfg) or node_modules. `--include-deps` scans them too.
DEPENDENCY_DIRS = frozenset({"node_modules"})


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str  # relative to the scan root, '/'-separated
    abspath: str
    size: int


def walk(root: Path, *, include_deps: bool = False) -> Iterator[FileEntry | Skip]:
    """Every regular file below `root`, in a stable (sorted) order."""
    root = root.resolve()
    if root.is_file():
        st = root.stat()
        yield FileEntry(root.name, str(root), st.st_size)
        return
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield Skip(_rel(root, directory), f"unreadable directory: {exc.strerror or exc}")
            continue
        subdirs = []
        for entry in entries:
            rel = _rel(root, Path(entry.path))
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                yield Skip(rel, f"unreadable: {exc.strerror or exc}")
                continue
            if stat.S_ISLNK(st.st_mode):
                if not _inside(root, entry.path):
                    yield Skip(rel, "symlink points outside the scanned tree")
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.name in SKIP_DIRS:
                    continue
                if not include_deps and (entry.name in DEPENDENCY_DIRS or os.path.exists(os.path.join(entry.path, "pyvenv.cfg"))):
                    continue
                subdirs.append(Path(entry.path))
            elif stat.S_ISREG(st.st_mode):
                yield FileEntry(rel, entry.path, st.st_size)
            else:
                yield Skip(rel, "not a regular file")
        stack.extend(reversed(subdirs))


def _rel(root: Path, path: Path) -> str:
    rel = os.path.relpath(path, root)
    return "." if rel == "." else rel.replace(os.sep, "/")


def _inside(root: Path, link: str) -> bool:
    try:
        target = Path(os.path.realpath(link))
    except OSError:
        return False
    return target == root or root in target.parents


class TreeSource(Source):
    """The files below a directory (or one file), each its own blob at its own path. `keep`
    narrows the listing (a work tree: only files whose content is not HEAD's)."""

    def __init__(self, root: Path, *, include_deps: bool = False,
                 keep: Callable[[FileEntry], bool] | None = None) -> None:  # fmt: skip
        self.root, self.include_deps, self.keep = root, include_deps, keep
        self.opener = open_files

    def listing(self) -> Iterator[Blob | Skip]:
        for entry in walk(self.root, include_deps=self.include_deps):
            if isinstance(entry, Skip):
                yield entry
            elif self.keep is None or self.keep(entry):
                yield Blob(None, entry.size, (Place(entry.path),), entry.abspath)


def open_files(blobs: Sequence[Blob]) -> Iterator[tuple[Blob, Callable[[int], bytes]] | Skip]:
    """Each file open while its reader is in use; an unreadable one becomes a Skip."""
    for blob in blobs:
        try:
            fh = open(blob.ref, "rb", buffering=0)
        except OSError as exc:
            yield Skip(blob.places[0].path, f"unreadable: {exc.strerror or exc}")
            continue
        with fh:
            yield blob, file_reader(fh)
