"""The git history source, on real repositories built with git in temporary directories."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from leakscan.sources.git import (
    UNREACHABLE_PATH,
    GitBlob,
    GitSourceError,
    GitWarning,
    open_repo,
)

ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Alice",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_COMMITTER_NAME": "Alice",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
}


class Repo:
    """A scratch repository with a clock that moves one hour per commit."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.clock = 1_700_000_000
        subprocess.run(["git", "init", "-q", "-b", "main", *args, str(root)], check=True, env=ENV)

    def git(self, *args: str, env: dict | None = None, input: bytes | None = None) -> str:
        proc = subprocess.run(["git", "-C", str(self.root), *args], check=True, capture_output=True,
                              env={**ENV, **(env or {})}, input=input)  # fmt: skip
        return proc.stdout.decode().strip()

    def write(self, path: str, data: str | bytes) -> None:
        p = self.root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    def commit(self, message: str, files: dict[str, str | bytes] | None = None,
               remove: tuple[str, ...] = (), author: str = "Alice") -> str:  # fmt: skip
        for path, data in (files or {}).items():
            self.write(path, data)
        if remove:
            self.git("rm", "-q", *remove)
        self.git("add", "-A")
        self.clock += 3600
        date = f"@{self.clock} +0200"
        self.git("commit", "-q", "--allow-empty", "-m", message,
                 env={"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_DATE": date,
                      "GIT_COMMITTER_DATE": date})  # fmt: skip
        return self.git("rev-parse", "HEAD")

    def blob(self, data: str) -> str:
        return self.git("hash-object", "--stdin", input=data.encode())

    def loose(self, oid: str) -> Path:
        return self.root / ".git" / "objects" / oid[:2] / oid[2:]


def blobs_of(repo, **kw) -> tuple[list[GitBlob], list[GitWarning]]:
    blobs, warnings = [], []
    for item in repo.blobs(**kw):
        (warnings if isinstance(item, GitWarning) else blobs).append(item)
    return blobs, warnings


def contents_of(repo, **kw) -> tuple[dict[str, bytes], list[GitWarning]]:
    found, warnings = {}, []
    for item in repo.read_blobs(repo.blobs(**kw)):
        if isinstance(item, GitWarning):
            warnings.append(item)
        else:
            blob, read = item
            found[blob.oid] = read(-1)
    return found, warnings


@pytest.fixture
def repo(tmp_path) -> Repo:
    return Repo(tmp_path / "r")


# --- enumeration ---------------------------------------------------------------------------------


def test_blobs_from_every_kind_of_ref(repo):
    repo.commit("base", {"README": "hello\n", "app.py": "print(1)\n"})
    repo.git("checkout", "-q", "-b", "side")
    repo.commit("side", {"side.txt": "on a side branch\n"})
    repo.git("checkout", "-q", "main")
    repo.git("tag", "light", repo.commit("tagged", {"t.txt": "lightweight tag only\n"}))
    repo.git("tag", "-a", "-m", "annotated", "heavy", repo.commit("tagged2", {"t2.txt": "annotated tag\n"}))
    repo.git("reset", "-q", "--hard", "HEAD~2")
    repo.git("checkout", "-q", "--detach")
    pr = repo.commit("pr", {"pr.txt": "pull request head\n"})
    repo.git("update-ref", "refs/pr/1", pr)
    remote = repo.commit("remote", {"remote.txt": "remote branch\n"})
    repo.git("update-ref", "refs/remotes/origin/feature", remote)
    repo.git("checkout", "-q", "main")
    repo.git("notes", "add", "-m", "a note with a secret", pr)
    repo.write("app.py", "print('stashed change')\n")
    repo.write("untracked.txt", "stashed untracked\n")
    repo.git("stash", "push", "-q", "-u")

    blobs, warnings = blobs_of(open_repo(repo.root))
    assert warnings == []
    oids = [b.oid for b in blobs]
    assert len(oids) == len(set(oids))
    by_oid = {b.oid: b for b in blobs}
    expected = {
        "on a side branch\n": "side.txt",
        "lightweight tag only\n": "t.txt",
        "annotated tag\n": "t2.txt",
        "pull request head\n": "pr.txt",
        "remote branch\n": "remote.txt",
        "print('stashed change')\n": "app.py",
        "stashed untracked\n": "untracked.txt",
        "a note with a secret\n": pr,  # notes are stored under the annotated commit's id
    }
    for data, path in expected.items():
        blob = by_oid[repo.blob(data)]
        assert blob.path == path
        assert blob.size == len(data)
        assert blob.reachable


def test_older_stash_entries_need_reflogs(repo):
    repo.commit("base", {"a.txt": "one\n"})
    repo.write("a.txt", "first stash\n")
    repo.git("stash", "push", "-q")
    repo.write("a.txt", "second stash\n")
    repo.git("stash", "push", "-q")
    r = open_repo(repo.root)
    plain = {b.oid for b in blobs_of(r)[0]}
    with_logs = {b.oid for b in blobs_of(r, reflogs=True)[0]}
    first = repo.blob("first stash\n")
    assert repo.blob("second stash\n") in plain and first not in plain
    assert first in with_logs


def test_blob_in_many_commits_listed_once_and_deleted_file_kept(repo):
    repo.commit("c0", {"config.yml": "token: same\n", "gone.txt": "deleted later\n"})
    for i in range(5):
        repo.commit(f"c{i + 1}", {"counter": f"{i}\n"})
    repo.commit("move", {"copy/config.yml": "token: same\n"})
    repo.commit("delete", remove=("gone.txt",))
    blobs, _ = blobs_of(open_repo(repo.root))
    oids = [b.oid for b in blobs]
    assert len(oids) == len(set(oids))
    assert oids.count(repo.blob("token: same\n")) == 1
    assert repo.blob("deleted later\n") in oids
    assert not (repo.root / "gone.txt").exists()


def test_dangling_blob_only_with_all_objects(repo):
    repo.commit("c", {"a": "reachable\n"})
    dangling = repo.git("hash-object", "-w", "--stdin", input=b"dangling secret\n")
    r = open_repo(repo.root)
    assert dangling not in {b.oid for b in blobs_of(r)[0]}
    blobs, _ = blobs_of(r, all_objects=True)
    extra = [b for b in blobs if b.oid == dangling]
    assert len(extra) == 1 and extra[0].path == UNREACHABLE_PATH and not extra[0].reachable
    assert [b.oid for b in blobs].count(repo.blob("reachable\n")) == 1
    found, warnings = contents_of(r, all_objects=True)
    assert found[dangling] == b"dangling secret\n" and warnings == []


def test_range_returns_only_new_blobs(repo):
    a = repo.commit("a", {"old.txt": "old\n", "keep.txt": "kept\n"})
    repo.commit("b1", {"new1.txt": "new one\n"})
    b = repo.commit("b2", {"new2.txt": "new two\n", "old.txt": "old changed\n"})
    r = open_repo(repo.root)
    news = {b.oid for b in blobs_of(r, rev_range=f"{a}..{b}")[0]}
    assert news == {repo.blob("new one\n"), repo.blob("new two\n"), repo.blob("old changed\n")}
    assert {b.oid for b in blobs_of(r, since=a)[0]} == news
    assert {b.oid for b in blobs_of(r, rev_range="main~1..main")[0]} == {
        repo.blob("new two\n"), repo.blob("old changed\n")}  # fmt: skip
    msgs = [m.message for m in r.messages(rev_range=f"{a}..{b}")]
    assert msgs == [b"b2\n", b"b1\n"]
    for bad in ("nope..main", "--all", "a...b"):
        with pytest.raises(GitSourceError):
            list(r.blobs(rev_range=bad))


# --- reading -------------------------------------------------------------------------------------


def test_big_blob_streams_in_pieces_and_unread_tails_are_skipped(repo):
    big = os.urandom(6 << 20).hex().encode()  # 12 MB
    repo.commit("big", {"big.bin": big, "small1.txt": "first small\n", "small2.txt": "second small\n"})
    r = open_repo(repo.root)
    seen = {}
    for item in r.read_blobs(r.blobs()):
        assert not isinstance(item, GitWarning)
        blob, read = item
        if blob.path == "big.bin":
            h, pieces = hashlib.sha256(), 0
            assert blob.size == len(big)
            while chunk := read(1 << 20):
                assert len(chunk) <= 1 << 20
                h.update(chunk)
                pieces += 1
            assert pieces == 12 and h.hexdigest() == hashlib.sha256(big).hexdigest()
        elif blob.path == "small1.txt":
            assert read(5) == b"first"  # the rest is skipped by the iterator
        seen[blob.path] = read
    assert set(seen) == {"big.bin", "small1.txt", "small2.txt"}
    with pytest.raises(ValueError):
        seen["small1.txt"](1)  # a reader is dead once the iterator moved on

    # Reading only the head of the big blob leaves the stream in step for the next one.
    got = {}
    for blob, read in r.read_blobs(r.blobs()):
        got[blob.path] = read(10)
    assert got == {"big.bin": big[:10], "small1.txt": b"first smal", "small2.txt": b"second sma"}


def test_closing_early_ends_git(repo):
    repo.commit("c", {f"f{i}.txt": f"file {i}\n" for i in range(300)})
    r = open_repo(repo.root)
    it = r.read_blobs(r.blobs())
    next(it)
    started = time.monotonic()
    it.close()
    assert time.monotonic() - started < 5


def test_commit_and_tag_messages(repo):
    c1 = repo.commit("first: password=hunter2", {"a": "1\n"})
    repo.git("checkout", "-q", "-b", "side")
    c2 = repo.commit("side message\n\nwith a body", {"b": "2\n"}, author="Bob")
    repo.git("checkout", "-q", "main")
    repo.git("tag", "-a", "-m", "release notes token", "v1", c1)
    msgs = list(open_repo(repo.root).messages())
    assert not any(isinstance(m, GitWarning) for m in msgs)
    by = {m.oid: m for m in msgs}
    assert by[c1].message == b"first: password=hunter2\n" and by[c1].kind == "commit"
    assert by[c2].message == b"side message\n\nwith a body\n"
    assert by[c2].author == "Bob" and by[c2].date == repo.git("log", "-1", "--format=%aI", c2)
    tags = [m for m in msgs if m.kind == "tag"]
    assert [t.message for t in tags] == [b"release notes token\n"]
    assert by[c1].origin().source == "commit-message" and by[c1].origin().commit == c1


# --- attribution and HEAD -------------------------------------------------------------------------


def test_attribution_and_head(repo):
    secret = "aws_secret = AKIA...\n"
    repo.commit("unrelated", {"x.txt": "x\n"}, author="Carol")
    first = repo.commit("add secret", {"conf/app.ini": secret}, author="Mallory")
    repo.commit("remove it", remove=("conf/app.ini",))
    again = repo.commit("re-add elsewhere", {"other.ini": secret}, author="Dave")
    repo.commit("re-add same path", {"conf/app.ini": secret}, author="Eve")
    r = open_repo(repo.root)
    oid = repo.blob(secret)
    att = r.attribution(oid, "conf/app.ini")
    assert (att.commit, att.author, att.path) == (first, "Mallory", "conf/app.ini")
    assert att.date == repo.git("log", "-1", "--format=%aI", first) == "2023-11-15T02:13:20+02:00"
    assert r.attribution(oid, "other.ini").commit == again
    assert r.attribution(oid, "never/there") is None
    both = r.attribute([(oid, "conf/app.ini"), (oid, "other.ini")])
    assert {k: v.commit for k, v in both.items()} == {
        (oid, "conf/app.ini"): first, (oid, "other.ini"): again}  # fmt: skip

    assert r.in_head("conf/app.ini", oid) and r.in_head("other.ini", oid)
    repo.commit("remove again", remove=("conf/app.ini", "other.ini"))
    r = open_repo(repo.root)
    assert not r.in_head("conf/app.ini", oid)
    assert oid not in r.head_blobs() and repo.blob("x\n") in r.head_blobs()


def test_attribution_on_a_side_branch_merged_and_deleted(repo):
    repo.commit("base", {"a": "a\n"})
    repo.git("checkout", "-q", "-b", "side")
    side = repo.commit("side adds", {"s.key": "side secret\n"}, author="Sid")
    repo.commit("side removes", remove=("s.key",))
    repo.git("checkout", "-q", "main")
    repo.commit("main moves", {"b": "b\n"})
    repo.git("merge", "-q", "--no-edit", "side", env={"GIT_AUTHOR_DATE": "@1800000000 +0000",
                                                     "GIT_COMMITTER_DATE": "@1800000000 +0000"})  # fmt: skip
    repo.git("branch", "-D", "side")
    att = open_repo(repo.root).attribution(repo.blob("side secret\n"), "s.key")
    assert att is not None and (att.commit, att.author) == (side, "Sid")


# --- repository shapes and damage ----------------------------------------------------------------


def test_bare_repository(repo, tmp_path):
    repo.commit("c", {"a.txt": "in a bare clone\n"})
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.root), str(bare)], check=True, env=ENV)
    r = open_repo(bare)
    assert r.bare and r.git_dir == bare.resolve()
    found, warnings = contents_of(r)
    assert found == {repo.blob("in a bare clone\n"): b"in a bare clone\n"} and warnings == []
    assert r.in_head("a.txt", repo.blob("in a bare clone\n"))


def test_sha256_repository(tmp_path):
    repo = Repo(tmp_path / "s", "--object-format=sha256")
    repo.commit("c", {"a.txt": "sha256 world\n"})
    r = open_repo(repo.root)
    found, warnings = contents_of(r)
    oid = repo.blob("sha256 world\n")
    assert len(oid) == 64 and found == {oid: b"sha256 world\n"} and warnings == []
    assert r.attribution(oid, "a.txt") is not None


def test_not_a_repository(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitSourceError, match=r"^not a git repository: .*plain$"):
        open_repo(tmp_path / "plain")
    with pytest.raises(GitSourceError, match="no such directory"):
        open_repo(tmp_path / "missing")
    repo = Repo(tmp_path / "r")
    (repo.root / "sub").mkdir()
    with pytest.raises(GitSourceError, match="not a git repository"):
        open_repo(repo.root / "sub")  # inside a repository is not a repository


def test_missing_object_is_a_warning(repo):
    repo.commit("c", {"a.txt": "alpha\n", "b.txt": "bravo\n", "c.txt": "charlie\n"})
    r = open_repo(repo.root)
    before = blobs_of(r)[0]
    gone = repo.blob("bravo\n")
    repo.loose(gone).unlink()
    found, warnings = contents_of(r)
    assert found == {repo.blob("alpha\n"): b"alpha\n", repo.blob("charlie\n"): b"charlie\n"}
    assert [w.oid for w in warnings] == [gone] and "missing" in warnings[0].reason
    # a blob listed before the object vanished (the race, or a caller's own list)
    items = list(r.read_blobs(before))
    assert [i.oid for i in items if isinstance(i, GitWarning)] == [gone]
    assert len([i for i in items if not isinstance(i, GitWarning)]) == 2


def test_corrupt_object_is_a_warning_and_reading_goes_on(repo):
    big = os.urandom(20_000).hex()
    repo.commit("c", {"a.txt": "alpha\n", "b.txt": big, "c.txt": "charlie\n", "d.txt": "delta\n"})
    r = open_repo(repo.root)
    listed = blobs_of(r)[0]
    bad = repo.loose(repo.blob(big))
    data = bad.read_bytes()
    bad.chmod(0o644)
    bad.write_bytes(data[: len(data) // 2])  # the header still reads; the content breaks off
    seen, warnings = [], []
    for item in (lambda g: g.read_blobs(g.blobs()))(open_repo(repo.root)):
        if isinstance(item, GitWarning):
            warnings.append(item)
        else:
            blob, read = item
            seen.append((blob.path, read(-1) if blob.path != "b.txt" else b""))
    assert seen == [("a.txt", b"alpha\n"), ("b.txt", b""), ("c.txt", b"charlie\n"), ("d.txt", b"delta\n")]
    assert [(w.subject, w.oid) for w in warnings] == [("b.txt", repo.blob(big))]
    assert "corrupt" in warnings[0].reason
    # The same through read_blobs over a list made before the damage (its own restart path).
    items = list(r.read_blobs(listed))
    assert [i.oid for i in items if isinstance(i, GitWarning)] == [repo.blob(big)]
    assert [i[0].path for i in items if not isinstance(i, GitWarning)] == ["a.txt", "b.txt", "c.txt", "d.txt"]

    # Cut so short that not even the header reads: git calls it missing at listing time.
    bad.write_bytes(data[:8])
    found, warnings = contents_of(open_repo(repo.root))
    assert set(found) == {repo.blob(t) for t in ("alpha\n", "charlie\n", "delta\n")}
    assert [w.oid for w in warnings] == [repo.blob(big)]


def test_broken_refs_are_warnings(repo):
    repo.commit("c", {"a.txt": "fine\n"})
    repo.git("checkout", "-q", "-b", "lost")
    lost = repo.commit("lost", {"l.txt": "on a broken branch\n"})
    repo.git("checkout", "-q", "main")
    repo.loose(lost).unlink()  # the branch tip's commit is gone
    (repo.root / ".git/refs/heads/dangling").write_text("0123456789" * 4 + "\n")
    r = open_repo(repo.root)
    blobs, warnings = blobs_of(r)
    assert {b.oid for b in blobs} == {repo.blob("fine\n")}
    subjects = {w.subject for w in warnings}
    assert {"refs/heads/lost", "refs/heads/dangling"} <= subjects
    msgs = list(r.messages())
    assert [m.message for m in msgs if not isinstance(m, GitWarning)] == [b"c\n"]


# --- hostile repositories ------------------------------------------------------------------------


def test_hooks_filters_and_config_programs_never_run(repo, tmp_path):
    marker = tmp_path / "pwned"
    trap = tmp_path / "trap.sh"
    trap.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {marker}\ncat\n")
    trap.chmod(0o755)
    repo.commit("c", {"a.txt": "content\n", ".gitattributes": "* filter=x diff=x\n"})
    # A commit carrying a signature header: `git log` with log.showSignature runs gpg.program.
    raw = repo.git("cat-file", "commit", "HEAD").encode()
    head, _, msg = raw.partition(b"\n\n")
    sig = b"gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAAB\n -----END PGP SIGNATURE-----"
    signed = repo.git("hash-object", "-t", "commit", "-w", "--stdin",
                      input=head + b"\n" + sig + b"\n\n" + msg + b"\n")  # fmt: skip
    repo.git("update-ref", "refs/heads/main", signed)
    hooks = repo.root / ".git" / "hooks"
    for name in ("post-checkout", "pre-commit", "post-index-change", "reference-transaction",
                 "pre-auto-gc", "fsmonitor-watchman"):  # fmt: skip
        (hooks / name).write_text(trap.read_text())
        (hooks / name).chmod(0o755)
    for key, value in {"filter.x.smudge": str(trap), "filter.x.clean": str(trap),
                       "filter.x.process": str(trap), "filter.x.required": "true",
                       "diff.x.textconv": str(trap), "diff.external": str(trap),
                       "core.fsmonitor": str(trap), "core.pager": str(trap),
                       "log.showSignature": "true", "gpg.program": str(trap),
                       "core.sshCommand": str(trap), "core.alternateRefsCommand": str(trap),
                       "credential.helper": f"!{trap}", "gc.auto": "1"}.items():  # fmt: skip
        repo.git("config", key, value)

    r = open_repo(repo.root)
    found, warnings = contents_of(r, all_objects=True)
    assert found[repo.blob("content\n")] == b"content\n" and warnings == []
    assert list(r.messages())
    oid = repo.blob("content\n")
    assert r.attribution(oid, "a.txt").commit == signed
    assert r.in_head("a.txt", oid)
    assert not marker.exists()

    # The traps are live: ordinary git commands spring them.
    subprocess.run(["git", "-C", str(repo.root), "log", "-1"], env=ENV, capture_output=True)
    subprocess.run(["git", "-C", str(repo.root), "checkout", "-q", "HEAD~0", "--", "a.txt"], env=ENV,
                   capture_output=True)  # fmt: skip
    assert marker.exists()


def test_introductions_give_every_blob_with_its_oldest_commit(tmp_path):
    """One log walk enumerates and attributes: side branches, merges, deleted files."""
    import subprocess

    from leakscan.sources.git import open_repo

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=A", "-c", "user.email=a@e.org", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip

    git("init", "-q", "-b", "main")
    (tmp_path / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    first = git("rev-parse", "HEAD")
    git("checkout", "-q", "-b", "side")
    (tmp_path / "b.txt").write_text("side\n")
    git("add", "b.txt")
    git("commit", "-q", "-m", "side")
    side = git("rev-parse", "HEAD")
    git("checkout", "-q", "main")
    git("rm", "-q", "a.txt")
    git("commit", "-q", "-m", "rm")
    git("merge", "-q", "--no-ff", "-m", "merge", "side")
    intro = open_repo(tmp_path).introductions()
    by_path = {a.path: a.commit for atts in intro.values() for a in atts}
    assert by_path == {"a.txt": first, "b.txt": side}
    assert set(intro) == {git("rev-parse", f"{first}:a.txt"), git("rev-parse", f"{side}:b.txt")}
