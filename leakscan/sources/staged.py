"""Source: what is staged for the next commit — the index's blobs that HEAD's tree does not
already hold at the same path (every staged blob on a first commit). It reads the index, never
the work tree: a secret staged and then deleted from the file is still found, one edited in but
not staged is not. Blobs stream through the same hardened `git cat-file --batch` as history."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..model import Place, Skip
from .base import Blob, Opened, Source
from .git import MISSING, GitRepo
from .history import GitOpener, read_git_blobs

STAGED = "staged"
_FILE_MODES = ("100644", "100755")  # symlinks hold a path, gitlinks a commit: no content of ours


class StagedSource(Source):
    def __init__(self, repo: GitRepo, index_file: str | None = None) -> None:
        self.repo, self.index_file = repo, index_file
        self.opener = GitOpener(str(repo.git_dir), repo.trust_foreign_owner)
        self.lfs_store = repo.git_dir / "lfs" / "objects"

    def listing(self) -> Iterator[Blob | Skip]:
        head = self.repo.head_tree()
        places: dict[str, list[Place]] = {}
        for mode, oid, path in self.repo.index_entries(self.index_file):
            if mode in _FILE_MODES and head.get(path) != oid:
                places.setdefault(oid, []).append(Place(path, STAGED))
        sizes = self.repo.sizes(list(places))
        for oid, at in places.items():
            if oid not in sizes:
                yield Skip(at[0].path, MISSING)
            else:
                yield Blob(oid, sizes[oid], tuple(at), oid)

    def read(self, blobs: Sequence[Blob]) -> Iterator[Opened | Skip]:
        return read_git_blobs(self.repo, blobs)  # in this process: the repository is open here
