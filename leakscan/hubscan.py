"""Scan a Hugging Face Hub repository: its whole git history (every ref, pull requests
included) through a cached bare mirror, and the text of its discussions and PR comments."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from .findings import dedupe
from .history import HistoryOptions, scan_repository
from .model import Finding, Skip
from .scan import ScanResult, Scanner, unsuppressed
from .sources.git import GitSourceError, open_repo
from .sources.hub import HubError, HubRepo, comments, mirror, repo_info
from .store import Store


def scan_hub_repo(repo: HubRepo, scanner: Scanner, *, store: Store | None = None, revision: str | None = None,
                  discussions: bool = True, max_bytes: int | None = None, jobs: int | None = None,
                  on_findings: Callable[[list[Finding]], None] | None = None) -> ScanResult:  # fmt: skip
    repo_info(repo, revision)  # a clear error for unknown, private or gated repos, before any git
    path = mirror(repo, max_bytes=max_bytes)
    try:
        git = open_repo(path)
        options = HistoryOptions(rev_range=revision) if revision else HistoryOptions()
        result = scan_repository(git, scanner, store=store, options=options, jobs=jobs, on_findings=on_findings)
    except GitSourceError as exc:
        raise HubError(f"{repo.label}: {exc}") from None
    for f in result.findings:
        f.repo = repo.label
        if f.commit and f.source == "history":
            f.url = f"{repo.web_url}/blob/{f.commit}/{quote(f.path)}"
        elif f.commit:
            f.url = f"{repo.web_url}/commit/{f.commit}"
    if discussions:
        found = []
        try:
            for comment in comments(repo):
                got = scanner.scan_bytes(comment.text.encode("utf-8", "surrogatepass"), comment.origin()).findings
                for f in got:
                    f.repo, f.discussion, f.url = repo.label, comment.num, f"{repo.web_url}/discussions/{comment.num}"
                found += got
        except Exception as exc:  # HTTP errors (OSErrors) and the client's connection errors
            # The history was scanned; missing discussions are reported, not fatal.
            detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            result.skipped.append(Skip("discussions", f"cannot read discussions: {detail}"))
        if on_findings and found:
            on_findings(unsuppressed(found, None))
        result.findings = dedupe(result.findings + found)
    return result
