"""Source: Hugging Face Hub repositories — a bare clone of every ref (pull requests included)
kept in a cache and fetched incrementally, plus the text of every discussion and PR comment.

The Hub's address and credentials come from huggingface_hub's own settings (HF_ENDPOINT,
HF_TOKEN or the stored login). The remote is untrusted: git runs with hooks, submodules and
credential prompts off, only http(s), a time limit and a size limit; git never downloads LFS
content (the LFS source does, bounded: `leakscan.sources.lfs`).
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from ..model import Finding, Place, Skip
from ..paths import cache_root
from ..textsafe import reason
from .base import Annotated, Blob, Source, bytes_opener
from .hubapi import api, endpoint, http_status, hub_token
from .lfs import LfsOptions

TYPES = ("model", "dataset", "space", "bucket")
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/", "bucket": "buckets/"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
FETCH_TIMEOUT = 1800.0


class HubError(Exception):
    """An unusable target: one line for the user."""


@dataclass(frozen=True)
class HubRepo:
    repo_type: str
    repo_id: str
    endpoint: str

    @property
    def web_url(self) -> str:
        return f"{self.endpoint}/{_PREFIX[self.repo_type]}{self.repo_id}"

    @property
    def label(self) -> str:
        return f"{_PREFIX[self.repo_type]}{self.repo_id}"

    def annotate(self, findings: list[Finding]) -> None:
        """The repository's name on every finding, and a link to where a person can see it."""
        for f in findings:
            f.repo = self.label
            if f.discussion is not None:
                f.url = f"{self.web_url}/discussions/{f.discussion}"
            elif f.commit and f.source == "history":
                f.url = f"{self.web_url}/blob/{f.commit}/{quote(f.path)}"
            elif f.commit:
                f.url = f"{self.web_url}/commit/{f.commit}"
            elif f.source == "space-variable":
                f.url = self.web_url
            elif f.source == "bucket":
                f.url = f"{self.web_url}/resolve/{quote(f.path)}"


def hub_sources(repo: HubRepo, *, store=None, cache_key: str = "", revision: str | None = None,
                discussions: bool = True, max_bytes: int | None = None, lfs: LfsOptions | None = None) -> list[Source]:  # fmt: skip
    """Everything the repository has published: every ref's history through a cached bare
    mirror (fetched now), the LFS content its pointers name, a Space's variables, and its
    discussions (read as the pipeline lists them); a storage bucket's files."""
    from .git import GitSourceError, open_repo
    from .history import BlobHistory, HistoryOptions, git_sources
    from .lfs import lfs_source
    from .space import SpaceVariables

    repo_info(repo, revision)  # a clear error for unknown, private or gated repos, before any git
    lfs = LfsOptions() if lfs is None else lfs
    if repo.repo_type == "bucket":
        from .bucket import bucket_source

        return [Annotated(bucket_source(repo, lfs), repo.annotate)] if lfs.enabled else []
    path = mirror(repo, max_bytes=max_bytes)
    try:
        git = open_repo(path)
        options = HistoryOptions(rev_range=revision, work_tree=False) if revision else HistoryOptions(work_tree=False)
        history = git_sources(git, store=store, cache_key=cache_key, options=options)
        sources = [Annotated(s, repo.annotate) for s in history]
    except GitSourceError as exc:
        raise HubError(f"{repo.label}: {exc}") from None
    if lfs.enabled:
        blobs = next(s for s in history if isinstance(s, BlobHistory))
        sources.append(Annotated(lfs_source(blobs, repo, lfs), repo.annotate))
    if repo.repo_type == "space":
        sources.append(Annotated(SpaceVariables(repo), repo.annotate))
    if discussions:
        sources.append(Annotated(DiscussionSource(repo), repo.annotate))
    return sources


class DiscussionSource(Source):
    """The text of every discussion and pull-request comment, earlier versions of edited ones
    included. Comments that cannot be read are a skip: the history was still scanned."""

    def __init__(self, repo: HubRepo) -> None:
        self.repo = repo
        self.opener = bytes_opener

    def listing(self) -> Iterator[Blob | Skip]:
        try:
            for comment in comments(self.repo):
                data = comment.text.encode("utf-8", "surrogatepass")
                yield Blob(None, len(data), (comment.origin(),), data)
        except Exception as exc:  # HTTP errors (OSErrors) and the client's connection errors
            yield Skip("discussions", f"cannot read discussions: {reason(exc)}")

    def finish(self, findings: list[Finding], scanned: list[tuple[str, int]]) -> list[Finding]:
        for f in findings:
            f.discussion = int(f.path.rsplit("/", 1)[1])
        return findings


def parse_target(target: str, repo_type: str | None = None) -> HubRepo:
    """`user/model`, `datasets/user/name`, `spaces/user/name`, `buckets/user/name`, or a Hub URL."""
    base = endpoint()
    text = target.strip()
    if "://" in text:
        parts = urlsplit(text)
        base = f"{parts.scheme}://{parts.netloc}"
        text = parts.path.strip("/")
        for cut in ("/tree/", "/blob/", "/resolve/", "/discussions", "/commit/"):
            text = text.split(cut, 1)[0]
    pieces = [p for p in text.split("/") if p]
    kind = repo_type
    if pieces and pieces[0] in ("datasets", "spaces", "models", "buckets"):
        prefix_kind = {"datasets": "dataset", "spaces": "space", "models": "model", "buckets": "bucket"}[pieces.pop(0)]
        if kind and kind != prefix_kind:
            raise HubError(f"--type {kind} contradicts {target!r}")
        kind = prefix_kind
    if len(pieces) != 2 or not all(_NAME.match(p) for p in pieces):
        raise HubError(f"not a Hub repository: {target!r} (expected user/name, datasets/user/name, spaces/user/name, buckets/user/name or a URL)")
    return HubRepo(kind or "model", "/".join(pieces), base)


def repo_info(repo: HubRepo, revision: str | None = None):
    """The repository's metadata through huggingface_hub; HubError with the reason if unusable."""
    from huggingface_hub.utils import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if repo.repo_type == "bucket" and revision:
        raise HubError(f"{repo.label}: a bucket has no revisions")
    try:
        if repo.repo_type == "bucket":
            return api(repo.endpoint).bucket_info(repo.repo_id)
        return api(repo.endpoint).repo_info(repo.repo_id, repo_type=repo.repo_type, revision=revision)
    except GatedRepoError:
        raise HubError(f"{repo.label}: gated repository; accept its terms and log in (HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise HubError(f"{repo.label}: repository not found (or private: set HF_TOKEN or log in)") from None
    except RevisionNotFoundError:
        raise HubError(f"{repo.label}: revision not found: {revision}") from None
    except HfHubHTTPError as exc:
        if repo.repo_type == "bucket" and http_status(exc) in ("HTTP 401", "HTTP 404"):
            raise HubError(f"{repo.label}: bucket not found (or private: set HF_TOKEN or log in)") from None
        raise HubError(f"{repo.label}: the Hub answered {http_status(exc)}") from None
    except Exception as exc:  # the HTTP client's connection errors (httpx) are not OSErrors
        raise HubError(f"{repo.label}: cannot reach {repo.endpoint}: {type(exc).__name__}") from None


def cache_dir() -> Path:
    return Path(os.environ.get("LEAKSCAN_HUB_CACHE") or cache_root() / "hub")


def mirror(repo: HubRepo, *, cache: Path | None = None, max_bytes: int | None = None,
           timeout: float = FETCH_TIMEOUT) -> Path:  # fmt: skip
    """A bare clone holding every ref of the repository (branches, tags, refs/pr/*, refs/convert/*),
    created or fetched incrementally in the cache. LFS content is never downloaded: only pointers."""
    host = urlsplit(repo.endpoint).netloc.replace(":", "_")
    path = (cache or cache_dir()) / host / f"{repo.repo_type}s" / repo.repo_id
    with _updating(path):
        fresh = not _is_git_dir(path)
        if fresh:
            _create_bare(path)
        url = f"{repo.web_url}"
        try:
            _fetch(path, url, max_bytes, timeout)
        except HubError:
            if fresh:
                shutil.rmtree(path, ignore_errors=True)
            raise
        _follow_head(path, url)
    return path


@contextmanager
def _updating(path: Path) -> Iterator[None]:
    """Hold the mirror's update lock (an advisory lock beside it, which the kernel drops with its
    holder): one leakscan process fetches into a mirror at a time. Holding it, any git lock file
    left in the mirror is stale, left by a run killed mid-fetch (a sweep pass stopped by a
    deploy), and git would refuse every later fetch on it ("cannot lock ref …: File exists"),
    failing the repository until it is parked: such files are removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.leakscan-lock", "wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        if path.is_dir():
            for stale in itertools.chain(path.glob("*.lock"), (path / "refs").rglob("*.lock"),
                                         (path / "objects" / "info").rglob("*.lock")):  # fmt: skip
                stale.unlink(missing_ok=True)
        yield


def _is_git_dir(path: Path) -> bool:
    """What git itself asks of a directory before treating it as a repository."""
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def _create_bare(path: Path) -> None:
    """`git init --bare` beside the mirror, then renamed into place: a run killed half-way through
    leaves no directory git would call "not a git repository" on every later fetch. Whatever
    stands at `path` without being a repository is such a leftover, and is removed."""
    shutil.rmtree(path, ignore_errors=True)
    building = path.with_name(f".{path.name}.leakscan-new")
    shutil.rmtree(building, ignore_errors=True)
    made = _git(["init", "--quiet", "--bare", str(building)], None, timeout=60)
    if made.returncode != 0:
        raise HubError(f"cannot create a mirror in {path.parent}: {made.stderr.decode(errors='replace').strip()}")
    os.rename(building, path)


def _follow_head(path: Path, url: str) -> None:
    """Point the mirror's HEAD at the remote's default branch (a fetch of refs/* leaves `git
    init`'s own default), so that `in_head` means the tip people see on the Hub. Asked once,
    and again only when the branch HEAD names is gone."""
    if _git(["--git-dir", str(path), "rev-parse", "--verify", "--quiet", "HEAD"], None, timeout=60).returncode == 0:
        return
    try:
        out = _git(["ls-remote", "--symref", "--", url, "HEAD"], None, timeout=60)
    except subprocess.TimeoutExpired:
        return
    m = re.match(rb"ref: (refs/heads/[^\t\n]+)\tHEAD", out.stdout)
    if out.returncode == 0 and m:
        _git(["--git-dir", str(path), "symbolic-ref", "HEAD", m.group(1).decode("utf-8", "replace")], None, timeout=60)


def _safe_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_LFS_SKIP_SMUDGE="1", GIT_CONFIG_NOSYSTEM="1", GIT_ASKPASS="/bin/false",
               SSH_ASKPASS="/bin/false")  # fmt: skip
    token = hub_token()
    if token:  # through the environment, never argv: other users can read process lists
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader", GIT_CONFIG_VALUE_0=f"Authorization: Bearer {token}")
    return env


_SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "protocol.allow=never", "-c", "protocol.https.allow=always",
         "-c", "protocol.http.allow=always", "-c", "submodule.recurse=false", "-c", "fetch.recurseSubmodules=false",
         "-c", "credential.helper=", "-c", "core.fsmonitor=false", "-c", "transfer.fsckObjects=false",
         "-c", "http.followRedirects=false", "-c", "lfs.fetchexclude=*"]  # fmt: skip


def _git(args: list[str], cwd: Path | None, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *_SAFE, *args], cwd=cwd, env=_safe_env(), capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def _fetch(path: Path, url: str, max_bytes: int | None, timeout: float) -> None:
    """`git fetch --prune URL '+refs/*:refs/*'`, watched: killed past `timeout` or when the
    object store grows beyond `max_bytes`."""
    cmd = ["git", *_SAFE, "--git-dir", str(path), "fetch", "--quiet", "--prune", "--no-tags", "--no-write-fetch-head",
           "--", url, "+refs/*:refs/*"]  # fmt: skip
    err_path = path / "leakscan-fetch.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, env=_safe_env(), stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        started = time.monotonic()
        while proc.poll() is None:
            time.sleep(0.05)
            if time.monotonic() - started > timeout:
                proc.kill()
                raise HubError(f"fetching {url} took longer than {timeout:.0f} s")
            if max_bytes is not None and _size(path / "objects") > max_bytes:
                proc.kill()
                proc.wait()
                raise HubError(f"{url} is larger than --max-repo-size ({max_bytes >> 20} MiB)")
    message = err_path.read_text(errors="replace").strip().splitlines()
    err_path.unlink(missing_ok=True)
    if proc.returncode != 0:
        last = next((m for m in reversed(message) if m.strip()), "git fetch failed")
        raise HubError(f"cannot fetch {url}: {last.removeprefix('fatal: ')}")


def _size(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


@dataclass(frozen=True)
class Comment:
    num: int
    is_pr: bool
    event_id: str
    text: str
    edited: bool  # an earlier version of an edited comment

    def origin(self) -> Place:
        kind = "pull request" if self.is_pr else "discussion"
        label = f"{self.event_id} (earlier version)" if self.edited else self.event_id
        return Place(f"discussions/{self.num}", "discussion", None, f"{kind} comment {label}")


def comments(repo: HubRepo) -> Iterator[Comment]:
    """The text of every comment of every discussion and pull request, all pages, including
    earlier versions of edited comments (an edited-away secret is still public there)."""
    hf = api(repo.endpoint)
    for d in hf.get_repo_discussions(repo.repo_id, repo_type=repo.repo_type):
        details = hf.get_discussion_details(repo.repo_id, d.num, repo_type=repo.repo_type)
        if details.title:
            yield Comment(d.num, d.is_pull_request, "title", details.title, False)
        for event in details.events:
            if getattr(event, "type", None) != "comment":
                continue
            yield Comment(d.num, d.is_pull_request, event.id, event.content or "", False)
            try:
                history = event.edit_history
            except (KeyError, TypeError):
                history = []
            for i, old in enumerate(history or []):
                raw = old.get("raw") if isinstance(old, dict) else None
                if raw and raw != event.content:
                    yield Comment(d.num, d.is_pull_request, f"{event.id}#{i}", raw, True)


def list_owner_repos(owner: str, types: tuple[str, ...] = TYPES) -> Iterator[HubRepo]:
    """Every model, dataset, Space and storage bucket of a user or organisation: all pages (the
    client follows the Link headers; no 1,000-repo cap)."""
    base = endpoint()
    hf = api(base)
    listers = {"model": hf.list_models, "dataset": hf.list_datasets, "space": hf.list_spaces,
               "bucket": lambda author: hf.list_buckets(author)}  # fmt: skip
    from huggingface_hub.utils import HfHubHTTPError

    for kind in types:
        try:
            for info in listers[kind](author=owner):
                yield HubRepo(kind, info.id, base)
        except HfHubHTTPError as exc:
            if kind != "bucket" or http_status(exc) != "HTTP 404":
                raise
            # a Hub without storage buckets (an older or self-hosted one): its repositories still count
