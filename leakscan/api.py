"""The Python API, for programs that embed the scanner (`import leakscan`).

    import leakscan

    result = leakscan.scan_path("path/to/repo")         # a folder, a file or a git repository
    for finding in result:                               # typed `leakscan.Finding`s
        print(finding.detector, finding.path, finding.line, finding.redacted)
    leakscan.scan_bytes(b"token = ...", path="config.py")
    leakscan.scan_repo("user/model")                     # a Hugging Face Hub repository
    leakscan.verify_findings(result.findings)            # ask the providers: verified/invalid/…

Every function takes the options the command line has (`config`, `rules`, `only`,
`exclude_paths`, `ignore_file`, `baseline`, `max_target_mb`, `decode`), reads `.leakscan.toml` at
the scan root like `leakscan scan`, and raises `leakscan.ScanError` (one line for people) for an
unusable target or configuration. Unlike the command line, nothing is verified unless `verify=True`
(no network by default) and no scan cache is used unless `store` names a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .model import Finding, Skip
from .pipeline import ScanResult

__all__ = ["Finding", "ScanError", "ScanResult", "Skip", "scan_bytes", "scan_path", "scan_repo", "verify_findings"]


class ScanError(Exception):
    """The target, configuration or detectors cannot be used; the message is for people."""


@dataclass
class _Common:
    config: str | Path | None = None
    rules: Sequence[str | Path] = ()
    only: Sequence[str] = ()
    exclude_paths: Sequence[str] = ()
    ignore_file: str | Path | None = None
    baseline: str | Path | None = None
    max_target_mb: float | None = None
    decode: bool = True

    def prepare(self, root: Path | None):
        from .config import ConfigError, Settings, load, locate, prepare

        opt = lambda p: Path(p) if p is not None else None  # noqa: E731
        try:
            cfg = load(locate(root, opt(self.config)))
            only = [*self.only, *cfg.options.get("only", [])]
            exclude = [*self.exclude_paths, *cfg.options.get("exclude_paths", [])]
            settings = Settings(root=root, config=opt(self.config), rules=[Path(r) for r in self.rules], only=only,
                                exclude_paths=exclude, ignore_file=opt(self.ignore_file), baseline=opt(self.baseline),
                                max_target_mb=self.max_target_mb)  # fmt: skip
            return prepare(settings, cfg)
        except ConfigError as exc:
            raise ScanError(str(exc)) from None

    def scanner(self, ruleset):
        from .decoders import Limits
        from .scan import Scanner

        return Scanner(ruleset, None, Limits() if self.decode else None)


def _run(sources_of, common: _Common, root: Path | None, *, verify: bool, store, jobs: int | None) -> ScanResult:
    from .pipeline import run
    from .sources.git import GitSourceError

    prepared = common.prepare(root)
    scanner = common.scanner(prepared.ruleset)
    db = None
    if store is not None:
        from .store import Store, StoreError

        try:
            db = Store(Path(store))
        except StoreError as exc:
            raise ScanError(str(exc)) from None
    try:
        verifier = None
        if verify:
            from .verify.background import BackgroundVerifier

            verifier = BackgroundVerifier(prepared.ruleset, store_path=db.path if db else None)
        return run(sources_of(scanner, db, prepared.scope), scanner, store=db, jobs=jobs, suppressions=prepared.suppressions,
                   verifier=verifier, scope=prepared.scope)  # fmt: skip
    except GitSourceError as exc:
        raise ScanError(str(exc)) from None
    finally:
        if db is not None:
            db.close()


def scan_path(path: str | Path, *, history: bool = True, staged: bool = False, include_deps: bool = False,
              verify: bool = False, store: str | Path | None = None, jobs: int | None = 1,
              **options) -> ScanResult:  # fmt: skip
    """A folder or file; a git repository's whole history unless `history=False`; with
    `staged=True`, only what is staged for the next commit."""
    from .sources.git import GitSourceError, open_repo

    p = Path(path)
    if not p.exists():
        raise ScanError(f"no such file or directory: {path}")
    common = _Common(**options)
    repo = None
    if (staged or history) and p.is_dir() and ((p / ".git").exists() or (p / "HEAD").is_file()):
        try:
            repo = open_repo(p)
        except GitSourceError as exc:
            if staged or not str(exc).startswith("not a git repository"):
                raise ScanError(str(exc)) from None
    if staged and repo is None:
        raise ScanError(f"staged=True needs the top of a git work tree: {path}")

    def sources(scanner, db, scope):
        if staged:
            from .sources.staged import StagedSource

            return [StagedSource(repo)]
        if repo is None:
            from .sources.files import TreeSource

            return [TreeSource(p, include_deps=include_deps)]
        from .sources.history import git_sources

        return git_sources(repo, store=db, cache_key=scope.history_key(scanner.cache_key), include_deps=include_deps)

    return _run(sources, common, p, verify=verify, store=store, jobs=jobs)


def scan_bytes(data: bytes, *, path: str = "<bytes>", verify: bool = False, **options) -> ScanResult:
    """Bytes in memory, reported at `path` (whose extension picks the decoder: `x.ipynb`, `a.zip`)."""
    from .model import Place
    from .sources.base import Blob, Source, bytes_opener

    class _Bytes(Source):
        opener = staticmethod(bytes_opener)

        def listing(self):
            yield Blob(None, len(data), (Place(path, "bytes"),), bytes(data))

    common = _Common(**options)
    return _run(lambda scanner, db, scope: [_Bytes()], common, None, verify=verify, store=None, jobs=1)


def scan_repo(target: str, *, repo_type: str | None = None, revision: str | None = None, discussions: bool = True,
              lfs: bool = True, verify: bool = False, store: str | Path | None = None,
              **options) -> ScanResult:  # fmt: skip
    """A Hugging Face Hub repository (`user/model`, `datasets/user/name`, `spaces/user/app` or a
    URL), every ref's history and its discussions, as `leakscan repo` does (HF_ENDPOINT, HF_TOKEN)."""
    from .sources.hub import HubError, hub_sources, parse_target
    from .sources.lfs import LfsOptions

    common = _Common(**options)
    try:
        hub_repo = parse_target(target, repo_type)
    except HubError as exc:
        raise ScanError(str(exc)) from None

    def sources(scanner, db, scope):
        try:
            return hub_sources(hub_repo, store=db, cache_key=scope.history_key(scanner.cache_key), revision=revision,
                               discussions=discussions, lfs=LfsOptions(enabled=lfs))  # fmt: skip
        except HubError as exc:
            raise ScanError(str(exc)) from None

    return _run(sources, common, None, verify=verify, store=store, jobs=1)


def verify_findings(findings: Sequence[Finding], *, intrusive: bool = False, timeout: float = 10.0,
           rules: Sequence[str | Path] = ()) -> list[Finding]:  # fmt: skip
    """Ask each provider whether these secrets are live; sets `verification` (verified, invalid,
    unknown…) in place and returns the findings. Requests go through leakscan's guarded client."""
    import asyncio

    from .detectors import DetectorError, load_rules
    from .verify.engine import Verifier

    try:
        ruleset = load_rules([Path(r) for r in rules] or None)
    except DetectorError as exc:
        raise ScanError(f"invalid detectors: {exc}") from None

    async def main() -> None:
        async with Verifier(ruleset, intrusive=intrusive, timeout=timeout) as v:
            await v.verify(findings)

    asyncio.run(main())
    return list(findings)

