"""Source: the history of a git repository (a work tree's files are `sources.files`).

What it gives the scanner:
  * every unique blob reachable from any ref (`git rev-list --objects --all` semantics: branches,
    tags, remotes, refs/pr/*, notes, stash, plus HEAD), each once with the first path it was seen
    at and its size; optionally dangling blobs too, or only the blobs new in a range;
  * their contents, streamed through ONE `git cat-file --batch` process per pass: a writer thread
    feeds object ids while the caller reads each blob through a bounded `read(n)`;
  * `introductions`: the same listing and its attribution from one `git log --raw` walk;
  * commit and annotated-tag messages;
  * attribution (the oldest commit that put a blob at a path) and what HEAD still holds.

The repository is treated as hostile. Git runs with argument lists only, plumbing commands only,
never `--filters`/`--textconv`/external diff, with hooks, fsmonitor, transports, signature
checking and the system config switched off, and with replace refs ignored (so a `refs/replace`
entry cannot hide what an object really holds). Nor does git read the repository's own config,
its grafts, its `.gitmodules` or a `shallow` entry whose parents are present (see `_Shadow`): no
value in them can stop a scan or hide history. A missing or corrupt object, or a ref pointing at
nothing, becomes a `GitWarning` and the walk goes on.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import queue
import re
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO

from ..lazyre import lazy
from ..model import Place, Skip

UNREACHABLE_PATH = "<unreachable>"
CHUNK = 1 << 20  # what skipping an unread blob tail reads at a time
PIPE_BYTES = 1 << 20  # how far git may write ahead of the reader

# `-c` settings given to every git command. Command-line config outranks the repository's own.
SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.pager=cat",
    "core.quotePath=false",
    "protocol.allow=never",
    "credential.helper=",
    "log.showSignature=false",  # would run gpg.program, which the repository may set
    "log.showRoot=true",
    "log.follow=false",
    "diff.external=",
    "diff.renames=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "submodule.recurse=false",
    "i18n.logOutputEncoding=UTF-8",
    "advice.graftFileDeprecated=false",
)
# For every `git log`: else a diff that meets a gitlink reads `.gitmodules` and dies on a value git
# refuses there (`update = !cmd`), which made a repository unscannable. A gitlink holds no blob.
_NO_SUBMODULES = "--ignore-submodules=all"
# Inherited variables that would point git somewhere else than the repository we opened. The
# object-directory variables are kept on purpose: inside a pre-receive hook they are how git
# sees the quarantined objects of the push.
_DROP_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_NAMESPACE",
             "GIT_PREFIX", "GIT_EXTERNAL_DIFF", "GIT_PAGER", "GIT_SSH", "GIT_SSH_COMMAND",
             "GIT_ASKPASS", "GIT_EDITOR", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
             "GIT_TRACE", "GIT_TRACE2", "GIT_TRACE2_EVENT", "GIT_TRACE2_PERF")  # fmt: skip
_FORMAT = "%(objectname) %(objecttype) %(objectsize) %(rest)"  # rest: the path rev-list printed
MISSING = "missing or unreadable object (partial clone or damaged repository)"


class GitSourceError(Exception):
    """The path is not a usable git repository, or git itself failed in a way we cannot skip."""


@dataclass(frozen=True, slots=True)
class GitBlob:
    """One unique blob: its id, the first path it was seen at, its size in bytes."""

    oid: str
    path: str  # UNREACHABLE_PATH for a dangling blob, whose path nothing records
    size: int
    reachable: bool = True

    def origin(self, commit: str | None = None) -> Place:
        return Place(self.path, source="history", commit=commit)


@dataclass(frozen=True, slots=True)
class GitWarning:
    """Something in the repository that could not be read; reported, never fatal."""

    subject: str  # a path, a ref name or an object id
    reason: str
    oid: str | None = None

    def to_skip(self) -> Skip:
        return Skip(self.subject, self.reason)


@dataclass(frozen=True, slots=True)
class GitMessage:
    """The message of one commit or annotated tag, raw bytes as stored."""

    oid: str
    kind: str  # "commit" | "tag"
    message: bytes
    author: str  # author of a commit, tagger of a tag; "" if the header has none
    date: str  # that person's date, ISO 8601 with offset; "" if unknown

    def origin(self) -> Place:
        return Place(f"<{self.kind} message>", source="commit-message", commit=self.oid)


@dataclass(frozen=True, slots=True)
class Attribution:
    """The oldest commit (by commit date) that put blob `oid` at `path`."""

    oid: str
    path: str
    commit: str
    author: str
    date: str  # author date, ISO 8601 with offset
    base: str | None = None  # the blob the commit's (first) parent held at `path`, if any


class BlobReader:
    """read(n) over one object's content: n bytes unless fewer are left, b"" at the end.

    Valid only until the iterator that produced it moves on; whatever was not read is skipped
    then. `truncated` turns true when git stopped before the end (a corrupt object).
    """

    __slots__ = ("_out", "remaining", "size", "truncated", "_closed")

    def __init__(self, out: IO[bytes], size: int) -> None:
        self._out = out
        self.size = size
        self.remaining = size
        self.truncated = False
        self._closed = False

    def __call__(self, n: int = -1) -> bytes:
        if self._closed:
            raise ValueError("blob reader used after its iterator moved on")
        if n < 0 or n > self.remaining:
            n = self.remaining
        if n == 0 or self.truncated:
            return b""
        data = self._out.read(n)
        if len(data) < n:
            self.truncated = True
        self.remaining -= len(data)
        return data

    read = __call__

    def readall(self) -> bytes:
        return self(-1)

    def _finish(self) -> bool:
        """Skip the unread tail and the trailing LF; False if the stream ended early."""
        while self.remaining and not self.truncated:
            self(min(self.remaining, CHUNK))
        self._closed = True
        if self.truncated:
            return False
        return self._out.read(1) == b"\n"


# --- process plumbing ---------------------------------------------------------------------------


class _Procs:
    """The git processes of one streaming pass, so that an abandoned pass can kill them all."""

    def __init__(self) -> None:
        self._procs: list[tuple[subprocess.Popen, IO[bytes]]] = []
        self._children: list[_Procs] = []
        self._lock = threading.Lock()

    def child(self) -> _Procs:
        """A group of its own (ended by its owner) that ending this group ends too."""
        sub = _Procs()
        with self._lock:
            self._children.append(sub)
        return sub

    def add(self, proc: subprocess.Popen, err: IO[bytes]) -> None:
        with self._lock:
            self._procs.append((proc, err))

    def kill(self) -> None:
        with self._lock:
            procs, self._procs = self._procs, []
            children, self._children = self._children, []
        for sub in children:
            sub.kill()
        for proc, err in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for f in (proc.stdin, proc.stdout, err):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass


def _widen_pipe(pipe: IO[bytes] | None) -> None:
    """Let git write up to 1 MiB ahead: a history is gigabytes through this pipe, and at the
    default 64 KiB every few blobs cost both processes a wake-up."""
    if pipe is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size for this user: the default serves


def _split_stream(stream: IO[bytes], sep: bytes) -> Iterator[bytes]:
    """Tokens of a stream separated by `sep`, read in 1 MiB pieces."""
    rest = b""
    while chunk := stream.read(1 << 20):
        parts = (rest + chunk).split(sep)
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _first_line(err: bytes) -> str:
    for line in err.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line:
            return line.removeprefix("fatal: ").removeprefix("error: ")
    return "git failed"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _git_env(shadow: _Shadow | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    # GIT_GRAFT_FILE: `info/grafts` rewrites parents, so a graft would hide history behind it.
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_NO_REPLACE_OBJECTS="1",
               GIT_OPTIONAL_LOCKS="0", GIT_LITERAL_PATHSPECS="1", GIT_PROTOCOL_FROM_USER="0",
               GIT_NO_LAZY_FETCH="1", GIT_ADVICE="0", LC_ALL="C", LANGUAGE="C",
               GIT_GRAFT_FILE=os.devnull)  # fmt: skip
    if shadow is not None:
        env["GIT_COMMON_DIR"] = str(shadow.path)
        # Inside a pre-receive hook it is already set: the push's quarantine.
        env.setdefault("GIT_OBJECT_DIRECTORY", str(shadow.real / "objects"))
    return env


# Everything of a common git directory that a scan reads, but its config, info/ and shallow list.
_LINKED = ("HEAD", "refs", "packed-refs", "logs", "worktrees")
_OID = lazy(r"[0-9a-f]{40}|[0-9a-f]{64}")


class _Shadow:
    """A stand-in for the repository's common directory, given to git as GIT_COMMON_DIR: links
    to its refs, reflogs and worktrees, plus a config of our own. Git then never reads the
    repository's config, which `-c` cannot neutralise: git parses every value of a key it knows
    (core.*, diff.*, log.*, color.*) as it reads the file, so `core.bigFileThreshold = garbage` or
    `log.date = bogus` kills a command before a command-line value could outrank it. Nor
    `info/grafts`, nor (see `GitRepo._trim_shallow`) a `shallow` list that hides present history.
    Removed when the repository object goes."""

    def __init__(self, git_dir: Path) -> None:
        marker = git_dir / "commondir"  # a linked worktree's git dir names the shared one
        self.real = (git_dir / _read_small(marker).strip()).resolve() if marker.is_file() else git_dir
        self._tmp = tempfile.TemporaryDirectory(prefix="leakscan-git-")
        _STAND_INS.add(self)
        self.path = Path(self._tmp.name) / "common"
        (self.path / "info").mkdir(parents=True)
        for name in _LINKED:  # dangling when absent, which git reads as absent
            os.symlink(self.real / name, self.path / name)
        os.symlink(self.real / "info" / "exclude", self.path / "info" / "exclude")
        self.object_format = self._object_format()
        version = 1 if self.object_format != "sha1" else 0
        ext = f"[extensions]\n\tobjectformat = {self.object_format}\n" if version else ""
        (self.path / "config").write_text(f"[core]\n\trepositoryformatversion = {version}\n{ext}")

    def _object_format(self) -> str:
        """The only setting of the repository's config that a scan needs."""
        cmd = ["git", "config", "--file", str(self.real / "config"), "--null", "--get-regexp", r"^extensions\."]
        env = {**_git_env(), "GIT_CEILING_DIRECTORIES": str(Path(self._tmp.name).parent)}
        proc = subprocess.run(cmd, cwd=self._tmp.name, env=env, stdin=subprocess.DEVNULL, capture_output=True)
        if proc.returncode not in (0, 1):  # a config git cannot parse at all: look for the key itself
            try:
                raw = _read_small(self.real / "config", 1 << 20)
            except OSError:  # not even a file
                return "sha1"
            return "sha256" if re.search(r"(?im)^\s*objectformat\s*=\s*\"?sha256", raw) else "sha1"
        ext = dict(item.partition("\n")[::2] for item in proc.stdout.decode("utf-8", "replace").split("\0") if item)
        if "extensions.refstorage" in ext:  # refs this git cannot read: the scan would see none
            raise GitSourceError(f"unsupported repository format: refstorage = {ext['extensions.refstorage']}")
        return "sha256" if ext.get("extensions.objectformat", "").lower() == "sha256" else "sha1"


_STAND_INS: weakref.WeakSet[_Shadow] = weakref.WeakSet()


def remove_stand_ins() -> None:
    """Remove every stand-in directory of this process now: for a process about to end through
    `os._exit` (the hook's deadline), which runs no finalizer."""
    for shadow in list(_STAND_INS):
        shadow._tmp.cleanup()


def _read_small(path: Path, limit: int = 4096) -> str:
    with open(path, "rb") as fh:
        return fh.read(limit).decode("utf-8", "surrogateescape")


def _locate(p: Path) -> Path | None:
    """The git directory of the work tree or bare repository at `p`, as git's discovery finds it
    there: `.git`, the directory a `.git` file names, or `p` itself. Git checks what it finds."""
    dotgit = p / ".git"
    if dotgit.is_file():
        text = _read_small(dotgit).strip()
        if not text.startswith("gitdir:"):
            return None
        found = p / text.removeprefix("gitdir:").strip()
    else:
        found = dotgit if dotgit.is_dir() else p
    return found.resolve() if (found / "HEAD").is_file() else None


def _git_base(trust_foreign_owner: bool) -> list[str]:
    cmd = ["git", "--no-pager", "--no-replace-objects"]
    for item in SAFE_CONFIG:
        cmd += ["-c", item]
    if trust_foreign_owner:
        cmd += ["-c", "safe.directory=*"]
    return cmd


def open_repo(path: str | os.PathLike, *, trust_foreign_owner: bool = False) -> GitRepo:
    """The repository at `path`: a work tree's top directory or a (bare) git directory.

    A directory *inside* a repository does not count: the scan would silently cover a
    different, bigger tree. `trust_foreign_owner` accepts a repository owned by another user
    (git's `safe.directory`), which the command set used here makes safe to read.
    """
    p = Path(path)
    if not p.is_dir():
        raise GitSourceError(f"not a git repository: {path} (no such directory)")
    p = p.resolve()
    git_dir = _locate(p)
    if git_dir is None:
        raise GitSourceError(f"not a git repository: {path}")
    try:
        repo = GitRepo(path=p, git_dir=git_dir, bare=git_dir == p, object_format="sha1",
                       trust_foreign_owner=trust_foreign_owner)  # fmt: skip
    except OSError as exc:
        raise GitSourceError(f"not a git repository: {path} ({exc.strerror or exc})") from None
    # Git's own discovery decides, under the stand-in config: is it a repository, and one whose
    # owner we may read (safe.directory)?
    env = {**repo._env, "GIT_CEILING_DIRECTORIES": str(p.parent)}  # look at `path`, never its parents
    cmd = [*_git_base(trust_foreign_owner), "rev-parse", "--absolute-git-dir", "--show-object-format"]
    try:
        proc = subprocess.run(cmd, cwd=p, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    except OSError as exc:
        raise GitSourceError(f"cannot run git: {exc.strerror or exc}") from None
    lines = proc.stdout.decode("utf-8", "surrogateescape").splitlines()
    if proc.returncode != 0 or len(lines) != 2 or Path(lines[0]) != git_dir:
        if "dubious ownership" in _first_line(proc.stderr):
            raise GitSourceError(f"git refuses {path}: owned by another user (safe.directory)")
        raise GitSourceError(f"not a git repository: {path}")
    repo.object_format = lines[1]
    repo._trim_shallow()
    return repo


@dataclass(frozen=True)
class Pushed:
    """A `rev_range` for a pre-receive hook: objects reachable from these new tips and from no
    existing ref (which, during pre-receive, still hold their pre-push values)."""

    tips: tuple[str, ...]

    def __post_init__(self) -> None:
        for tip in self.tips:
            if not _OID.fullmatch(tip):
                raise GitSourceError(f"not an object id: {tip!r}")


@dataclass(frozen=True, slots=True)
class _Walk:
    """What `git rev-list` walks: command-line arguments plus lines for `--stdin`."""

    args: tuple[str, ...]
    stdin: tuple[str, ...] = ()


class GitRepo:
    """An opened repository. Every method runs git fresh; nothing is kept between calls except
    HEAD's tree (cached by `head_tree`)."""

    def __init__(self, *, path: Path, git_dir: Path, bare: bool, object_format: str,
                 trust_foreign_owner: bool = False) -> None:  # fmt: skip
        self.path = path
        self.git_dir = git_dir
        self.bare = bare
        self.object_format = object_format
        self.trust_foreign_owner = trust_foreign_owner
        self._base = [*_git_base(trust_foreign_owner), f"--git-dir={git_dir}"]
        self._shadow = _Shadow(git_dir)
        self._env = _git_env(self._shadow)
        self._head: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"GitRepo({str(self.path)!r}, bare={self.bare})"

    # -- running git --

    def _popen(self, args: list[str], procs: _Procs, *, stdin=subprocess.DEVNULL,
               stdout=subprocess.PIPE) -> tuple[subprocess.Popen, IO[bytes]]:  # fmt: skip
        err = tempfile.TemporaryFile()  # a file, not a pipe: a chatty git can never block on it
        proc = subprocess.Popen([*self._base, *args], stdin=stdin, stdout=stdout, stderr=err,
                                env=self._env, cwd=self.git_dir)  # fmt: skip
        procs.add(proc, err)
        if stdout is subprocess.PIPE:
            _widen_pipe(proc.stdout)
        return proc, err

    def _run(self, args: list[str], input: bytes | None = None) -> tuple[int, bytes, bytes]:
        proc = subprocess.run([*self._base, *args], input=input, capture_output=True,
                              env=self._env, cwd=self.git_dir,
                              stdin=None if input is not None else subprocess.DEVNULL)  # fmt: skip
        return proc.returncode, proc.stdout, proc.stderr

    @staticmethod
    def _stderr(err: IO[bytes]) -> str:
        err.seek(0)
        return _first_line(err.read())

    def _trim_shallow(self) -> None:
        """Hand git the repository's `shallow` list minus the commits whose parents are all
        present. A shallow clone's boundary stays (its parents are missing: walking past it would
        fail); a listed commit with its history at hand would only hide that history."""
        listed = self._shadow.real / "shallow"
        if not listed.is_file():
            return
        oids = [o for o in _read_small(listed, 1 << 26).split() if _OID.fullmatch(o)]
        _, out, _ = self._run(["rev-list", "--no-walk=unsorted", "--parents", "--ignore-missing", "--stdin"],
                              input="".join(f"{o}\n" for o in oids).encode())  # fmt: skip
        parents = {line.split()[0]: line.split()[1:] for line in out.decode().splitlines() if line}
        present = set(self.existing(sorted({q for qs in parents.values() for q in qs})))
        keep = [o for o in oids if o not in parents or not present.issuperset(parents[o])]
        if keep:
            (self._shadow.path / "shallow").write_text("".join(f"{o}\n" for o in keep))

    # -- what to walk --

    def resolve(self, rev: str) -> str:
        """The full commit id that `rev` names; GitSourceError if it names none."""
        if not rev or rev.startswith("-"):
            raise GitSourceError(f"not a revision: {rev!r}")
        code, out, _ = self._run(["rev-parse", "--verify", "--quiet", "--end-of-options",
                                  f"{rev}^{{commit}}"])  # fmt: skip
        if code != 0:
            raise GitSourceError(f"unknown revision: {rev}")
        return out.decode().strip()

    def _walk(self, rev_range: str | None, since: str | Sequence[str] | None, reflogs: bool) -> _Walk:
        if isinstance(rev_range, Pushed):  # what a push brings: its new tips, not what any ref has
            return _Walk((*rev_range.tips, "--not", "--all"))
        if rev_range and since:
            raise GitSourceError("give either rev_range or since, not both")
        if isinstance(since, str):  # everything reachable from any ref but not from `since`
            return _Walk(("--all", *(("--reflog",) if reflogs else ())), (f"^{self.resolve(since)}",))
        if since is not None:  # … nor from any of these objects (a previous scan's ref tips)
            negatives = tuple(f"^{oid}" for oid in self.existing(since))
            return _Walk(("--all", *(("--reflog",) if reflogs else ())), negatives)
        if rev_range:
            if "..." in rev_range:
                raise GitSourceError(f"symmetric ranges are not supported: {rev_range}")
            if ".." in rev_range:
                old, new = rev_range.split("..", 1)
                if not old:
                    raise GitSourceError(f"range without a start: {rev_range}")
                return _Walk((), (self.resolve(new or "HEAD"), f"^{self.resolve(old)}"))
            return _Walk((), (self.resolve(rev_range),))
        return _Walk(("--all", *(("--reflog",) if reflogs else ())))

    def _walks_cleanly(self, walk: _Walk) -> tuple[bool, str]:
        code, _, err = self._run(["rev-list", "--missing=print", *walk.args, "--stdin"],
                                 input="".join(f"{s}\n" for s in walk.stdin).encode())  # fmt: skip
        return code == 0, _first_line(err)

    def _plan(self, walk: _Walk) -> tuple[_Walk, list[GitWarning]]:
        """`walk` itself when git can walk its commits; else the same walk minus the tips whose
        history is broken (a ref naming a missing object, a missing commit), each warned about."""
        ok, why = self._walks_cleanly(walk)
        if ok:
            return walk, []
        warnings = [GitWarning("<refs>", f"history walk failed ({why}); retrying ref by ref")]
        negatives = [s for s in walk.stdin if s.startswith("^")]
        tips = [(s, s) for s in walk.stdin if not s.startswith("^")]
        if "--all" in walk.args:
            tips += self._refs()
            if "--reflog" in walk.args:
                warnings.append(GitWarning("<reflogs>", "reflog entries skipped after the failure"))
        good: list[str] = []
        bad: dict[str, str] = {}
        for name, oid in tips:
            if oid in good:
                continue
            if oid not in bad:
                ok, why = self._walks_cleanly(_Walk((), (oid, *negatives, *(f"^{g}" for g in good))))
                if ok:
                    good.append(oid)
                    continue
                bad[oid] = why
            warnings.append(GitWarning(name, f"history unreadable, skipped: {bad[oid]}", oid))
        return _Walk((), (*good, *negatives)), warnings

    def is_ancestor(self, old: str, new: str) -> bool:
        """Whether commit `old` is in `new`'s history (both full ids)."""
        Pushed((old, new))  # validates the ids
        code, _, _ = self._run(["merge-base", "--is-ancestor", old, new])
        return code == 0

    def merge_base(self, a: str, b: str) -> str | None:
        Pushed((a, b))
        code, out, _ = self._run(["merge-base", a, b])
        return out.decode().strip() or None if code == 0 else None

    def ref_tips(self) -> list[str]:
        """The object ids of every ref and HEAD: what a scan of all refs has covered."""
        return sorted({oid for _, oid in self._refs()})

    def existing(self, oids: Sequence[str]) -> list[str]:
        """Those of `oids` (hex object ids) that the object store still has."""
        wanted = [o for o in oids if _OID.fullmatch(o)]
        if not wanted:
            return []
        code, out, _ = self._run(["cat-file", "--batch-check=%(objectname)"],
                                 input="".join(f"{o}\n" for o in wanted).encode())  # fmt: skip
        present = {line.strip() for line in out.decode().splitlines() if not line.endswith("missing")}
        return [o for o in wanted if o in present]

    def _refs(self) -> list[tuple[str, str]]:
        """(name, oid) of every ref and of HEAD, without looking at the objects they name."""
        code, out, err = self._run(["for-each-ref", "--format=%(objectname) %(refname)"])
        if code != 0:
            raise GitSourceError(f"cannot list refs: {_first_line(err)}")
        refs = []
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            oid, _, name = line.partition(" ")
            refs.append((name, oid))
        code, out, _ = self._run(["rev-parse", "--verify", "--quiet", "HEAD"])
        if code == 0:
            refs.append(("HEAD", out.decode().strip()))
        return refs

    # -- blobs --

    def blobs(self, *, all_objects: bool = False, rev_range: str | None = None,
              since: str | Sequence[str] | None = None, reflogs: bool = False,
              _procs: _Procs | None = None) -> Iterator[GitBlob | GitWarning]:  # fmt: skip
        """Every unique blob reachable from all refs, once each, with the first path it was seen
        at and its size; streamed, in `git rev-list` order.

        all_objects: also dangling blobs (every blob in the object store), path UNREACHABLE_PATH.
        rev_range: "A..B" → only blobs reachable from B and not from A ("B" alone: from B).
        since: only blobs reachable from some ref and not from this revision.
        reflogs: also walk reflog entries (older stash entries, amended-away commits).
        """
        procs = _procs.child() if _procs else _Procs()
        walk, warnings = self._plan(self._walk(rev_range, since, reflogs))
        yield from warnings
        seen: set[bytes] | None = set() if all_objects else None
        try:
            yield from self._reachable(walk, procs, seen)
            if all_objects and rev_range is None and since is None:
                yield from self._dangling(procs, seen)
        finally:
            procs.kill()

    def _reachable(self, walk: _Walk, procs: _Procs,
                   seen: set[bytes] | None) -> Iterator[GitBlob | GitWarning]:  # fmt: skip
        rev_list, rl_err = self._popen(["rev-list", "--objects", "--missing=print",
                                        "--filter=object:type=blob", *walk.args, "--stdin"],
                                       procs, stdin=subprocess.PIPE)  # fmt: skip
        check, ck_err = self._popen(["cat-file", f"--batch-check={_FORMAT}", "--buffer"], procs,
                                    stdin=rev_list.stdout)  # fmt: skip
        rev_list.stdout.close()  # cat-file holds the read end now
        rev_list.stdin.write("".join(f"{s}\n" for s in walk.stdin).encode())
        rev_list.stdin.close()
        for line in check.stdout:
            line = line.rstrip(b"\n")
            head, _, rest = line.partition(b" ")
            if rest == b"missing" or rest.startswith(b"missing "):
                oid = head.lstrip(b"?").decode()
                yield GitWarning(oid, MISSING, oid)
                continue
            if head.startswith(b"?"):  # `rev-list --missing=print` marks, present after all?
                continue
            typ, _, rest = rest.partition(b" ")
            if typ != b"blob":
                continue
            size, _, path = rest.partition(b" ")
            if seen is not None:
                seen.add(bytes.fromhex(head.decode()))
            yield GitBlob(head.decode(), _text(path), int(size))
        code = rev_list.wait()
        check.wait()
        if code != 0:
            yield GitWarning("<history>", f"history walk stopped early: {self._stderr(rl_err)}")
        if check.returncode not in (0, -9):
            yield GitWarning("<history>", f"object listing failed: {self._stderr(ck_err)}")

    def _dangling(self, procs: _Procs, seen: set[bytes]) -> Iterator[GitBlob | GitWarning]:
        proc, err = self._popen(["cat-file", "--batch-all-objects", "--buffer",
                                 "--batch-check=%(objectname) %(objecttype) %(objectsize)"],
                                procs)  # fmt: skip
        for line in proc.stdout:
            parts = line.split()
            if len(parts) != 3 or parts[1] != b"blob":
                continue
            oid = parts[0].decode()
            if bytes.fromhex(oid) in seen:
                continue
            yield GitBlob(oid, UNREACHABLE_PATH, int(parts[2]), reachable=False)
        if proc.wait() != 0:
            yield GitWarning("<objects>", f"listing all objects failed: {self._stderr(err)}")

    def read_blobs(self, items: Iterable[GitBlob | GitWarning], *,
                   _procs: _Procs | None = None,
                   ) -> Iterator[tuple[GitBlob, BlobReader] | GitWarning]:  # fmt: skip
        """Each blob of `items` with a reader over its content, in order; warnings pass through,
        and a blob git cannot produce (missing, corrupt) becomes a warning instead.

        One `git cat-file --batch` serves the whole pass (a new one only after a corrupt object
        kills it). Read as much of each blob as wanted before asking for the next item; the
        rest is skipped. Stopping early (closing the iterator) ends every process of the pass.
        """
        procs = _procs or _Procs()
        source = iter(items)
        carry: list = []
        try:
            while True:
                carry = yield from self._batch_pass(itertools.chain(carry, source), procs)
                if not carry:
                    return
        finally:
            procs.kill()

    def _batch_pass(self, feed: Iterator, procs: _Procs):
        """One cat-file process; returns the items it took but could not answer (it died)."""
        proc, err = self._popen(["cat-file", "--batch", "--buffer"], procs, stdin=subprocess.PIPE)
        answers: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()
        writer = threading.Thread(target=_feed, args=(proc.stdin, feed, answers, stop),
                                  name="git-cat-file-feed", daemon=True)  # fmt: skip
        writer.start()
        out = proc.stdout
        leftover: list = []
        finished = False
        try:
            while True:
                item = answers.get()
                if item is _END:
                    finished = True
                    break
                if isinstance(item, _Failure):
                    raise item.exc
                if not isinstance(item, _ANSWERED):
                    yield item
                    continue
                header = out.readline()
                if not header:
                    yield GitWarning(item.path, f"unreadable object: {self._stderr(err)}", item.oid)
                    leftover = _drain(answers, stop, proc)
                    finished = True
                    break
                parts = header.split()
                if len(parts) == 2 and parts[1] in (b"missing", b"ambiguous"):
                    yield GitWarning(item.path, f"{parts[1].decode()} object", item.oid)
                    continue
                reader = BlobReader(out, int(parts[2]))
                expected = b"blob" if isinstance(item, GitBlob) else item.path.encode()
                if parts[1] == expected:
                    yield item, reader
                else:
                    yield GitWarning(item.path, f"not a {expected.decode()} but a {_text(parts[1])}",
                                     item.oid)  # fmt: skip
                if not reader._finish():
                    yield GitWarning(item.path, f"corrupt object, content cut short: "
                                     f"{self._stderr(err)}", item.oid)  # fmt: skip
                    leftover = _drain(answers, stop, proc)
                    finished = True
                    break
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if not finished:  # abandoned: end the source's processes too, so the writer returns
                procs.kill()
            writer.join()
            out.close()
            err.close()
        return leftover

    # -- messages --

    def messages(self, *, rev_range: str | None = None, since: str | Sequence[str] | None = None,
                 reflogs: bool = False) -> Iterator[GitMessage | GitWarning]:  # fmt: skip
        """The message of every commit reachable from all refs (or in the range), then of every
        annotated tag; streamed."""
        procs = _Procs()
        walk, warnings = self._plan(self._walk(rev_range, since, reflogs))
        yield from warnings
        all_tags = rev_range is None and not isinstance(since, str)  # tags are few: always all
        items = itertools.chain(self._commit_ids(walk, procs), self._tag_ids() if all_tags else ())
        yield from self._read_messages(items, procs)

    def messages_of(self, oids: Sequence[str]) -> Iterator[GitMessage | GitWarning]:
        """The messages of these commits and annotated tags, by id."""
        kinds = dict(self._object_types(self.existing(oids)))
        items = [_Obj(oid, kind) for oid, kind in kinds.items() if kind in ("commit", "tag")]
        yield from self._read_messages(items, _Procs())

    def _read_messages(self, items: Iterable[_Obj], procs: _Procs) -> Iterator[GitMessage | GitWarning]:
        try:
            for item in self.read_blobs(items, _procs=procs):
                if isinstance(item, GitWarning):
                    yield item
                    continue
                obj, read = item
                yield _parse_message(obj.oid, obj.path, read(-1))
        finally:
            procs.kill()

    def _object_types(self, oids: Sequence[str]) -> Iterator[tuple[str, str]]:
        if not oids:
            return
        code, out, _ = self._run(["cat-file", "--batch-check=%(objectname) %(objecttype)"],
                                 input="".join(f"{o}\n" for o in oids).encode())  # fmt: skip
        for line in out.decode().splitlines():
            oid, _, kind = line.partition(" ")
            if kind and kind != "missing":
                yield oid, kind

    def new_commits(self, tip: str) -> list[str]:
        """Commits reachable from `tip` and from no ref (in a pre-receive hook: what a pushed ref
        brings)."""
        Pushed((tip,))  # validates the id
        code, out, _ = self._run(["rev-list", tip, "--not", "--all"])
        return out.decode().split() if code == 0 else []

    def unreachable_from_refs(self, oids: Sequence[str]) -> list[str]:
        """Objects among (or behind) `oids` that no current ref reaches: empty when every one of
        them is still part of the history (nothing was force-pushed away or deleted)."""
        present = self.existing(oids)
        if not present:
            return []
        code, out, err = self._run(["rev-list", "--objects", "--max-count=1", *present, "--not", "--all"])
        if code != 0:
            return present
        return [line.split(" ", 1)[0] for line in out.decode().splitlines() if line]

    def _commit_ids(self, walk: _Walk, procs: _Procs) -> Iterator[_Obj]:
        proc, err = self._popen(["rev-list", *walk.args, "--stdin"], procs, stdin=subprocess.PIPE)
        proc.stdin.write("".join(f"{s}\n" for s in walk.stdin).encode())
        proc.stdin.close()
        for line in proc.stdout:
            yield _Obj(line.strip().decode(), "commit")
        if proc.wait() not in (0, -9):
            raise GitSourceError(f"listing commits failed: {self._stderr(err)}")

    def _tag_ids(self) -> Iterator[_Obj]:
        code, out, _ = self._run(["for-each-ref", "--format=%(objectname) %(objecttype)", "refs/tags"])
        seen = set()
        for line in out.decode().splitlines() if code == 0 else ():
            oid, _, typ = line.partition(" ")
            if typ == "tag" and oid not in seen:
                seen.add(oid)
                yield _Obj(oid, "tag")

    # -- attribution and HEAD --

    def attribute(self, pairs: Iterable[tuple[str, str]], *,
                  reflogs: bool = False) -> dict[tuple[str, str], Attribution]:  # fmt: skip
        """For each (blob oid, path): the oldest commit (by commit date) reachable from any ref
        whose change put that blob at that path. Pairs nobody introduced are left out.

        One `git log --all --raw --find-object=…` walk per 1,000 blob ids; blobs that only a
        merge introduced (an "evil merge") are found by a second walk that diffs merges.
        """
        wanted: dict[str, set[str]] = {}
        for oid, path in pairs:
            wanted.setdefault(oid, set()).add(path)
        found: dict[tuple[str, str], tuple[int, Attribution]] = {}
        for merges in (False, True):
            todo = sorted(oid for oid, paths in wanted.items()
                          if any((oid, p) not in found for p in paths))  # fmt: skip
            for i in range(0, len(todo), 1000):
                self._log_objects(todo[i : i + 1000], wanted, found, merges, reflogs)
        return {key: att for key, (_, att) in found.items()}

    def introductions(self, *, rev_range: str | None = None, since: str | Sequence[str] | None = None,
                      ) -> dict[str, list[Attribution]]:  # fmt: skip
        """Every blob the walked history ever put at a path, with every path it was put at and
        the oldest commit that put it there (oldest first): enumeration and attribution in ONE
        `git log --raw` walk (diffs of merges against their first parent, so a blob that only a
        merge resolution holds is found too). Dict order is walk order, newest first.
        GitSourceError when git cannot walk the history cleanly (the caller then falls back to
        `blobs` and `attribute`, which survive damage)."""
        walk = self._walk(rev_range, since, False)
        args = ["log", *walk.args, "--stdin", "-z", "--raw", "--no-abbrev", "--no-renames",
                "--no-ext-diff", "--no-textconv", "--no-color", "--root", "--no-show-signature",
                "--encoding=UTF-8", "--full-history", "--diff-merges=first-parent", _NO_SUBMODULES,
                "--format=%x01%H%x00%ct%x00%an%x00%aI"]  # fmt: skip
        procs = _Procs()
        # Kept as bytes and tuples while walking (a big history has a million entries); decoded
        # and made Attributions once per (blob, path) at the end.
        found: dict[bytes, dict[bytes, tuple]] = {}
        try:
            proc, err = self._popen(args, procs, stdin=subprocess.PIPE)
            proc.stdin.write("".join(f"{s}\n" for s in walk.stdin).encode())
            proc.stdin.close()
            commit: tuple | None = None
            ct = 0
            tokens = _split_stream(proc.stdout, b"\0")
            for tok in tokens:
                if tok[:1] == b"\n":
                    tok = tok.lstrip(b"\n")
                first = tok[:1]
                if first == b":" and commit is not None:
                    path = next(tokens, b"")
                    # ":<old mode> <new mode> <old id> <new id> <status>"
                    meta = tok.split(b" ")
                    if len(meta) < 5 or meta[4][:1] == b"D" or meta[1] == b"160000":
                        continue  # deletions and submodule links introduce no blob
                    at = found.get(meta[3])
                    if at is None:
                        at = found[meta[3]] = {}
                    old = at.get(path)
                    if old is None or ct <= old[0]:  # newer first: ties go to the older
                        at[path] = (ct, commit, meta[2] if meta[4][:1] == b"M" else None)
                elif first == b"\x01":
                    ct = int(next(tokens, b"0") or 0)
                    commit = (tok[1:].decode(), next(tokens, b""), next(tokens, b""))
            if proc.wait() != 0:
                raise GitSourceError(f"history walk failed: {self._stderr(err)}")
        finally:
            procs.kill()
        people: dict[bytes, str] = {}
        out: dict[str, list[Attribution]] = {}
        for oid, at in found.items():
            key = oid.decode()
            atts = []
            for path, (_, (sha, author, date), base) in sorted(at.items(), key=lambda x: (x[1][0], x[1][1][0], x[0])):
                name = people.get(author)
                if name is None:
                    name = people[author] = _text(author)
                atts.append(Attribution(key, _text(path), sha, name, date.decode(), base and base.decode()))
            out[key] = atts
        return out

    def sizes(self, oids: Sequence[str]) -> dict[str, int]:
        """Object sizes by id; missing objects are absent."""
        if not oids:
            return {}
        code, out, _ = self._run(["cat-file", "--batch-check=%(objectname) %(objectsize)"],
                                 input="".join(f"{o}\n" for o in oids).encode())  # fmt: skip
        sizes = {}
        for line in out.decode().splitlines():
            oid, _, size = line.partition(" ")
            if size.isdigit():
                sizes[oid] = int(size)
        return sizes

    def attribution(self, oid: str, path: str) -> Attribution | None:
        """`attribute` for one pair."""
        return self.attribute([(oid, path)]).get((oid, path))

    def _log_objects(self, oids: list[str], wanted: dict[str, set[str]],
                     found: dict[tuple[str, str], tuple[int, Attribution]], merges: bool,
                     reflogs: bool) -> None:  # fmt: skip
        args = ["log", "--all", *(("--reflog",) if reflogs else ()), "-z", "--raw", "--no-abbrev",
                "--no-renames", "--no-ext-diff", "--no-textconv", "--no-color", "--root",
                "--no-show-signature", "--encoding=UTF-8", "--full-history", _NO_SUBMODULES,
                "--diff-merges=separate" if merges else "--diff-merges=off",
                "--format=%x01%H%x00%ct%x00%an%x00%aI", *(f"--find-object={o}" for o in oids)]  # fmt: skip
        code, out, err = self._run(args)
        if code != 0 and not out:
            raise GitSourceError(f"attribution walk failed: {_first_line(err)}")
        tokens = iter(out.split(b"\0"))
        commit = None
        for tok in tokens:
            stripped = tok.lstrip(b"\n")
            if stripped.startswith(b"\x01"):
                sha = stripped[1:].decode()
                ct = int(next(tokens, b"0") or 0)
                author = _text(next(tokens, b""))
                date = next(tokens, b"").decode()
                commit = (sha, ct, author, date)
            elif stripped.startswith(b":") and commit is not None:
                meta = stripped[1:].split()
                path = _text(next(tokens, b""))
                if len(meta) < 5 or meta[4][:1] == b"D":
                    continue
                new = meta[3].decode()
                if path not in wanted.get(new, ()):
                    continue
                sha, ct, author, date = commit
                key = (new, path)
                old = found.get(key)
                if old is None or ct <= old[0]:  # log lists newer first: ties go to the older
                    found[key] = (ct, Attribution(new, path, sha, author, date))

    def head_tree(self, rev: str = "HEAD") -> dict[str, str]:
        """path → blob oid of every file in `rev`'s tree (HEAD: the checked-out or default
        branch tip); empty when there is no such commit (an empty repository)."""
        if rev == "HEAD" and self._head is not None:
            return self._head
        tree: dict[str, str] = {}
        code, out, _ = (1, b"", b"") if rev.startswith("-") else self._run(
            ["ls-tree", "-r", "-z", "--full-tree", "--end-of-options", f"{rev}^{{tree}}"])  # fmt: skip
        if code == 0:
            for entry in out.split(b"\0"):
                meta, _, path = entry.partition(b"\t")
                parts = meta.split()
                if len(parts) == 3 and parts[1] == b"blob":
                    tree[_text(path)] = parts[2].decode()
        if rev == "HEAD":
            self._head = tree
        return tree

    def worktree_files(self) -> list[str]:
        """Paths (relative, '/'-separated) of the work tree's files that git would consider:
        tracked ones and untracked ones that are not ignored. `ls-files` reads the index and the
        ignore rules only; it runs no filter, hook or fsmonitor."""
        if self.bare:
            return []
        code, out, err = self._run(["-C", str(self.path), f"--work-tree={self.path}", "ls-files", "-z", "--full-name", "--cached", "--others",
                                    "--exclude-standard", "--deduplicate"])  # fmt: skip
        if code != 0:
            raise GitSourceError(f"cannot list the work tree: {_first_line(err)}")
        return sorted({_text(p) for p in out.split(b"\0") if p})

    def index_entries(self, index_file: str | None = None) -> Iterator[tuple[str, str, str]]:
        """(mode, blob oid, path) of every entry of the index (`index_file`: another index, such
        as the one `git commit -a` prepares and names in GIT_INDEX_FILE); conflicted paths once
        per stage. `ls-files` reads the index only: no filter, hook or fsmonitor runs."""
        if self.bare:
            return
        env = dict(self._env)
        if index_file:
            env["GIT_INDEX_FILE"] = index_file
        proc = subprocess.run([*self._base, "-C", str(self.path), f"--work-tree={self.path}", "ls-files", "-z", "--stage",
                               "--full-name"], capture_output=True, env=env, cwd=self.git_dir,
                              stdin=subprocess.DEVNULL)  # fmt: skip
        if proc.returncode != 0:
            raise GitSourceError(f"cannot read the index: {_first_line(proc.stderr)}")
        for entry in proc.stdout.split(b"\0"):
            meta, _, path = entry.partition(b"\t")
            parts = meta.split()
            if len(parts) == 3:
                yield parts[0].decode(), parts[1].decode(), _text(path)

    def head_blobs(self, rev: str = "HEAD") -> frozenset[str]:
        """The set of blob oids in HEAD's tree: is a secret's blob still present at the tip?"""
        return frozenset(self.head_tree(rev).values())

    def in_head(self, path: str, oid: str) -> bool:
        """Whether HEAD's tree still has blob `oid` at `path`."""
        return self.head_tree().get(path) == oid


# --- helpers for the batch reader ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Obj:
    """A commit or tag to read through the batch reader (duck-types GitBlob's oid/path)."""

    oid: str
    path: str  # the kind, "commit" | "tag"


_END = object()
@dataclass(frozen=True, slots=True)
class _Failure:
    exc: BaseException


def _feed(stdin: IO[bytes], feed: Iterator, answers: queue.SimpleQueue, stop: threading.Event) -> None:
    """Writer thread: every item goes to `answers` (in order) before its id goes to git, so the
    reader always knows which answer comes next and which items git never answered."""
    try:
        for item in feed:
            answers.put(item)
            if stop.is_set():
                break
            oid = getattr(item, "oid", None)
            if isinstance(item, (GitBlob, _Obj)) and oid:
                stdin.write(oid.encode() + b"\n")
    except (BrokenPipeError, OSError, ValueError):
        pass  # git is gone; the reader notices and recovers
    except BaseException as exc:  # the source failed: hand the error to the reader
        answers.put(_Failure(exc))
    finally:
        try:
            stdin.close()
        except (BrokenPipeError, OSError):
            pass
        answers.put(_END)


def _drain(answers: queue.SimpleQueue, stop: threading.Event, proc: subprocess.Popen) -> list:
    """After git died: stop the writer and collect the items it handed over but git never
    answered, so a fresh process can take them."""
    stop.set()
    if proc.poll() is None:
        proc.kill()
    left = []
    while True:
        item = answers.get()
        if item is _END:
            return left
        if isinstance(item, _Failure):
            raise item.exc
        left.append(item)


# GitBlob is the main item type; commit/tag ids ride the same reader.
_ANSWERED = (GitBlob, _Obj)


def _parse_message(oid: str, kind: str, raw: bytes) -> GitMessage:
    header, _, message = raw.partition(b"\n\n")
    who = b"author " if kind == "commit" else b"tagger "
    author = date = ""
    for line in header.split(b"\n"):
        if line.startswith(who):
            author, date = _person(line[len(who) :])
            break
    return GitMessage(oid, kind, message, author, date)


_PERSON = lazy(rb"(.*?) <[^>]*> (\d+) ([+-])(\d\d)(\d\d)\s*\Z")


def _person(value: bytes) -> tuple[str, str]:
    m = _PERSON.match(value)
    if not m:
        return _text(value), ""
    name, ts, sign, hh, mm = m.groups()
    offset = timedelta(hours=int(hh), minutes=int(mm)) * (-1 if sign == b"-" else 1)
    try:
        when = datetime.fromtimestamp(int(ts), timezone(offset))
    except (OverflowError, ValueError, OSError):
        return _text(name), ""
    return _text(name), when.isoformat()


__all__ = [
    "Attribution",
    "BlobReader",
    "GitBlob",
    "GitMessage",
    "GitRepo",
    "GitSourceError",
    "GitWarning",
    "UNREACHABLE_PATH",
    "open_repo",
    "remove_stand_ins",
]
