"""Source: the files of a directory tree (a work tree; git history is its own source).

Never follows a symlink (a link's target inside the tree is scanned under its own path; one
leaving the tree is reported as skipped), never enters `.git`, and reports what it cannot read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..model import Skip

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
