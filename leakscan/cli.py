"""The `leakscan` command line.

Exit codes: 0 nothing found, 1 findings, 2 bad arguments or an unusable target (one line on
stderr, never a traceback).
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console

from . import __version__
from .decoders import Limits
from .detectors import DetectorError, RuleSet, load_rules
from .findings import Suppressions, SuppressionError, read_baseline, read_ignore_file
from .report import render
from .pipeline import ScanResult, run
from .scan import Scanner
from .sources.git import GitSourceError, open_repo
from .store import Store, StoreError
from .store.db import open_private
from .verify.engine import BackgroundVerifier
from .store import default_path as default_store_path

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
IGNORE_FILE = ".leakscanignore"

app = typer.Typer(
    name="leakscan",
    help="Find leaked tokens in files, git history and Hugging Face repos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
detectors_app = typer.Typer(help="List and check detector files.", no_args_is_help=True)
app.add_typer(detectors_app, name="detectors")
hook_app = typer.Typer(help="Push protection: a pre-receive hook for git servers.", no_args_is_help=True)
app.add_typer(hook_app, name="hook")
revoke_app = typer.Typer(help="The revocation outbox: deliver pending revocations, list them.", no_args_is_help=True)
app.add_typer(revoke_app, name="revoke")


class UserError(Exception):
    """An expected failure: printed as one line, exit code 2."""


class Format(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    sarif = "sarif"


class FailOn(str, Enum):
    any = "any"
    verified = "verified"


class Engine(str, Enum):
    auto = "auto"
    hyperscan = "hyperscan"
    regex = "regex"


RulesOpt = Annotated[Optional[list[Path]], typer.Option("--rules", help="Detector directory or file to use instead of the built-in ones (repeatable).")]
OnlyOpt = Annotated[Optional[list[str]], typer.Option("--only", help="Only these detectors (rule id or provider id; repeatable).")]
NoModelScanOpt = Annotated[bool, typer.Option("--no-model-scan", help="Do not report model files that run code when loaded (pickle imports, Keras Lambda layers).")]
PickleUnknownOpt = Annotated[bool, typer.Option("--pickle-unknown", help="Also report (low severity) model-file imports that are not on the allowlist.")]


def _load(rules: list[Path] | None, only: list[str] | None) -> RuleSet:
    try:
        for p in rules or []:
            if not p.exists():
                raise UserError(f"detector path not found: {p}")
        return load_rules(rules or None, only=set(only) if only else None)
    except DetectorError as exc:
        raise UserError(f"invalid detectors: {exc}") from None


def _summary(result: ScanResult) -> str:
    n = len(result.findings)
    files = len({f.path for f in result.findings})
    mb = result.stats.bytes / 1e6
    head = "no secrets found" if n == 0 else f"{n} finding{'s' * (n != 1)} in {files} file{'s' * (files != 1)}"
    extra = []
    if result.suppressed:
        extra.append(f"{result.suppressed} suppressed")
    if result.skipped:
        extra.append(f"{len(result.skipped)} skipped")
    tail = f" ({', '.join(extra)})" if extra else ""
    what = f"{result.stats.files} files"
    if result.stats.objects or result.stats.incremental:
        what = f"{result.stats.objects} git objects and {what}"
    if result.stats.incremental:
        what += " (history new since the last scan, and blobs that had findings)"
    return f"{head}{tail} — scanned {what}, {mb:.1f} MB in {result.stats.seconds:.2f} s"


def _emit(result: ScanResult, ruleset: RuleSet, fmt: Format | None, output: Path | None, redact: bool) -> int:
    chosen = fmt.value if fmt else "table"
    summary = _summary(result)
    if output:
        try:
            with open_private(output) as fh:  # it may hold raw secrets
                render(chosen, result.findings, fh, skipped=result.skipped, ruleset=ruleset,
                       redact=redact, summary=summary)  # fmt: skip
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
        print(summary, file=sys.stderr)
    else:
        render(chosen, result.findings, sys.stdout, skipped=result.skipped, ruleset=ruleset,
               redact=redact, summary=summary, color=sys.stdout.isatty())  # fmt: skip
        if chosen != "table":
            print(summary, file=sys.stderr)
    return EXIT_FINDINGS if result.findings else EXIT_CLEAN


@app.command()
def scan(
    path: Annotated[Path, typer.Argument(help="Directory or file to scan.")],
    fmt: Annotated[Optional[Format], typer.Option("--format", "-f", help="Output format (default: table).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report to this file.")] = None,
    redact: Annotated[bool, typer.Option("--redact", help="Leave raw secrets out of json/jsonl/sarif.")] = False,
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="Report only what is not in this earlier JSON report.")] = None,
    ignore_file: Annotated[Optional[Path], typer.Option("--ignore-file", help=f"Fingerprints to ignore (default: PATH/{IGNORE_FILE}).")] = None,
    rules: RulesOpt = None,
    only: OnlyOpt = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Worker processes (default: all cores, for scans over 16 MB).")] = None,
    engine: Annotated[Engine, typer.Option("--engine", help="Matcher engine.")] = Engine.auto,
    include_deps: Annotated[bool, typer.Option("--include-deps", help="Also scan virtualenvs and node_modules inside PATH.")] = False,
    no_history: Annotated[bool, typer.Option("--no-history", help="In a git repository, scan the work tree's files only.")] = False,
    all_objects: Annotated[bool, typer.Option("--all-objects", help="Also scan unreachable objects (force-pushed-away commits, dangling blobs).")] = False,
    since: Annotated[Optional[str], typer.Option("--since", metavar="REV", help="Only history reachable from some ref and not from REV.")] = None,
    rev_range: Annotated[Optional[str], typer.Option("--range", metavar="A..B", help="Only the history that A..B adds.")] = None,
    db: Annotated[Optional[Path], typer.Option("--db", help="The SQLite store (scan cache); default in the user cache dir.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor update the scan cache.")] = False,
    no_decode: Annotated[bool, typer.Option("--no-decode", help="Scan raw bytes only: no archives, notebooks, pickles or encodings.")] = False,
    max_decoded_mb: Annotated[int, typer.Option("--max-decoded-mb", min=1, help="Decoded bytes allowed per blob, in MiB.")] = Limits.max_decoded_bytes >> 20,
    max_depth: Annotated[int, typer.Option("--max-depth", min=1, max=20, help="Nesting depth of archives and formats.")] = Limits.max_depth,
    max_members: Annotated[int, typer.Option("--max-archive-members", min=1, help="Members read per archive.")] = Limits.max_members,
    max_ratio: Annotated[float, typer.Option("--max-ratio", min=1.0, help="Compression ratio beyond which a member is a bomb.")] = Limits.max_ratio,
    decode_timeout: Annotated[float, typer.Option("--decode-timeout", min=0.1, help="Seconds of decoding per blob.")] = Limits.max_seconds,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not ask providers whether secrets are live (also LEAKSCAN_NO_VERIFY=1).")] = False,
    verify_intrusive: Annotated[bool, typer.Option("--verify-intrusive", help="Also run costly or intrusive checks (paid calls, token exchanges).")] = False,
    only_verified: Annotated[bool, typer.Option("--only-verified", help="Report only secrets a provider confirmed as live.")] = False,
    fail_on: Annotated[FailOn, typer.Option("--fail-on", help="Exit 1 on any finding, or only on verified ones.")] = FailOn.any,
    verify_timeout: Annotated[float, typer.Option("--verify-timeout", min=0.1, help="Seconds per verification request.")] = 10.0,
    revoke_webhook: Annotated[Optional[list[str]], typer.Option("--revoke-webhook", metavar="URL", help="POST verified leaks here, signed with LEAKSCAN_REVOKE_SECRET (repeatable).")] = None,
    revoke_command: Annotated[Optional[list[str]], typer.Option("--revoke-command", metavar="CMD", help="Run CMD (no shell) with each verified leak as JSON on stdin (repeatable).")] = None,
    revoke_builtin: Annotated[Optional[list[str]], typer.Option("--revoke-builtin", metavar="PROVIDER", help="Use a provider's own revoke API: huggingface, github, slack, gitlab (repeatable).")] = None,
    revoke_plugin: Annotated[Optional[list[str]], typer.Option("--revoke-plugin", metavar="NAME", help="A revoker from the entry-point group leakscan.revokers (repeatable).")] = None,
    revoke_config: Annotated[Optional[Path], typer.Option("--revoke-config", help="A TOML file of [[callbacks]], each for all providers or some.")] = None,
    no_model_scan: NoModelScanOpt = False,
    pickle_unknown: PickleUnknownOpt = False,
) -> None:
    """Scan a directory, a file or a git repository (all of its history) for leaked credentials
    and for model files that run code when loaded."""
    if not path.exists():
        raise UserError(f"no such file or directory: {path}")
    ruleset = _load(rules, only)
    suppressions = Suppressions()
    try:
        default_ignore = (path if path.is_dir() else path.parent) / IGNORE_FILE
        if ignore_file is not None:
            suppressions.fingerprints = read_ignore_file(ignore_file)
        elif default_ignore.is_file():
            suppressions.fingerprints = read_ignore_file(default_ignore)
        if baseline is not None:
            suppressions.baseline = read_baseline(baseline)
    except SuppressionError as exc:
        raise UserError(str(exc)) from None
    limits = None if no_decode else Limits(
        max_decoded_bytes=max_decoded_mb << 20, max_depth=max_depth, max_members=max_members,
        max_ratio=max_ratio, max_seconds=decode_timeout,
    )  # fmt: skip
    try:
        scanner = Scanner(ruleset, engine.value, limits, model_scan=not no_model_scan, pickle_unknown=pickle_unknown)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    repo = None if no_history or path.is_file() else _open_repo(path)
    if repo is None and (since or rev_range or all_objects):
        raise UserError(f"--since, --range and --all-objects need a git repository: {path}")
    if since and rev_range:
        raise UserError("give either --since or --range, not both")
    verify = not no_verify and os.environ.get("LEAKSCAN_NO_VERIFY", "") in ("", "0")
    callbacks = _callbacks(revoke_webhook, revoke_command, revoke_builtin, revoke_plugin, revoke_config)
    if callbacks and (no_cache or not verify):
        raise UserError("revocation needs verification and the store (drop --no-verify/--no-cache)")
    with _store(db, no_cache) as store:
        verifier = _verifier(ruleset, store, verify_intrusive, verify_timeout) if verify else None
        try:
            if repo is None:
                from .sources.files import TreeSource

                sources = [TreeSource(path, include_deps=include_deps)]
            else:
                from .sources.history import HistoryOptions, git_sources

                options = HistoryOptions(all_objects=all_objects, since=since, rev_range=rev_range)
                sources = git_sources(repo, store=store, cache_key=scanner.cache_key, options=options,
                                      include_deps=include_deps)  # fmt: skip
            result = run(sources, scanner, store=store, jobs=jobs, suppressions=suppressions, verifier=verifier)
        except GitSourceError as exc:
            raise UserError(str(exc)) from None
        if callbacks and store is not None:
            _revoke(store, result.findings, callbacks, str(path.resolve()))
    if repo is not None:
        for skip in result.skipped:
            if skip.reason.startswith(("missing", "history", "corrupt")):
                print(f"leakscan: warning: {skip.path}: {skip.reason}", file=sys.stderr)
    raise typer.Exit(_report(result, ruleset, fmt, output, redact, only_verified, fail_on))


class HubType(str, Enum):
    model = "model"
    dataset = "dataset"
    space = "space"


@app.command()
def repo(
    target: Annotated[Optional[str], typer.Argument(help="user/model, datasets/user/name, spaces/user/name or a Hub URL.")] = None,
    repo_type: Annotated[Optional[HubType], typer.Option("--type", help="Repository type when TARGET has no prefix.")] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Scan this revision's tree and the history up to it.")] = None,
    author: Annotated[Optional[str], typer.Option("--author", help="Scan every model, dataset and Space of this user or organisation.")] = None,
    no_discussions: Annotated[bool, typer.Option("--no-discussions", help="Skip discussion and pull-request comments.")] = False,
    max_repo_size: Annotated[int, typer.Option("--max-repo-size", metavar="MB", min=1, help="Refuse repositories whose git data grows past this.")] = 10240,
    no_lfs: Annotated[bool, typer.Option("--no-lfs", help="Do not fetch the LFS content pointer files name.")] = False,
    max_lfs_mb: Annotated[int, typer.Option("--max-lfs-mb", metavar="MB", min=1, help="Fetch LFS objects whole up to this size (larger weights: their header only).")] = 64,
    fmt: Annotated[Optional[Format], typer.Option("--format", "-f", help="Output format (default: table).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report to this file.")] = None,
    redact: Annotated[bool, typer.Option("--redact", help="Leave raw secrets out of json/jsonl/sarif.")] = False,
    db: Annotated[Optional[Path], typer.Option("--db", help="The SQLite store (scan cache, verdicts).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor update the scan cache.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not ask providers whether secrets are live.")] = False,
    only_verified: Annotated[bool, typer.Option("--only-verified", help="Report only secrets a provider confirmed as live.")] = False,
    fail_on: Annotated[FailOn, typer.Option("--fail-on", help="Exit 1 on any finding, or only on verified ones.")] = FailOn.any,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Worker processes.")] = None,
    no_model_scan: NoModelScanOpt = False,
    pickle_unknown: PickleUnknownOpt = False,
) -> None:
    """Scan Hugging Face Hub repositories: every ref's history (pull requests included) and
    every discussion and PR comment."""
    from .sources.hub import HubError, hub_sources, list_owner_repos, parse_target

    if (target is None) == (author is None):
        raise UserError("give a repository (user/name) or --author NAME")
    ruleset = _load(None, None)
    scanner = Scanner(ruleset, model_scan=not no_model_scan, pickle_unknown=pickle_unknown)
    verify = not no_verify and os.environ.get("LEAKSCAN_NO_VERIFY", "") in ("", "0")
    try:
        targets = [parse_target(target, repo_type.value if repo_type else None)] if target else None
    except HubError as exc:
        raise UserError(str(exc)) from None
    combined = ScanResult()
    rows = []
    with _store(db, no_cache) as store:
        if targets is None:
            try:
                kinds = (repo_type.value,) if repo_type else ("model", "dataset", "space")
                targets = list(list_owner_repos(author, kinds))
            except Exception as exc:  # HTTP errors and the client's connection errors
                raise UserError(f"cannot list the repositories of {author}: {type(exc).__name__}") from None
            if not targets:
                raise UserError(f"{author} has no public repositories (or does not exist)")
        for hub_repo in _progress(targets, len(targets) > 1):
            try:
                sources = hub_sources(hub_repo, store=store, cache_key=scanner.cache_key, revision=revision,
                                      discussions=not no_discussions, max_bytes=max_repo_size << 20,
                                      lfs=_lfs_options(no_lfs, max_lfs_mb, sys.stderr.isatty()))  # fmt: skip
                # run() closes the verifier, whatever happens: none is started for a repository
                # whose mirror cannot be had
                result = run(sources, scanner, store=store, jobs=jobs,
                             verifier=_verifier(ruleset, store, False, 10.0) if verify else None)  # fmt: skip
            except (HubError, GitSourceError) as exc:
                if len(targets) == 1:
                    raise UserError(str(exc)) from None
                rows.append((hub_repo.label, "failed", str(exc)))
                continue
            rows.append((hub_repo.label, "scanned", f"{len(result.findings)} findings"))
            for skip in result.skipped:
                if skip.path == "discussions":
                    print(f"leakscan: warning: {hub_repo.label}: {skip.reason}", file=sys.stderr)
            combined.findings += result.findings
            combined.skipped += result.skipped
            combined.stats.objects += result.stats.objects
            combined.stats.files += result.stats.files
            combined.stats.bytes += result.stats.bytes
            combined.stats.seconds += result.stats.seconds
            combined.stats.incremental |= result.stats.incremental
    if len(targets) > 1:
        from rich.table import Table

        table = Table("repository", "status", "result", title=f"{author}: {len(targets)} repositories")
        for row in rows:
            table.add_row(*row, style="red" if row[1] == "failed" else None)
        Console(stderr=True).print(table)
    raise typer.Exit(_report(combined, ruleset, fmt, output, redact, only_verified, fail_on))


def _lfs_options(no_lfs: bool, max_lfs_mb: int, progress: bool):
    from .sources.lfs import LfsOptions

    return LfsOptions(enabled=not no_lfs, max_object_bytes=max_lfs_mb << 20, progress=progress)


def _progress(items: list, show: bool):
    if not show or not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import track

    yield from track(items, description="scanning repositories", console=Console(stderr=True), transient=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free port).")] = 8080,
    db: Annotated[Optional[Path], typer.Option("--db", help="The SQLite store holding the job queue and findings.")] = None,
    secret_env: Annotated[str, typer.Option("--secret-env", metavar="NAME", help="Variable holding the webhook secret.")] = "LEAKSCAN_WEBHOOK_SECRET",
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Scans running at once.")] = 2,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not ask providers whether secrets are live (also LEAKSCAN_NO_VERIFY=1).")] = False,
    notify: Annotated[Optional[str], typer.Option("--notify", metavar="URL", help="POST new findings (redacted) here.")] = None,
    max_body: Annotated[int, typer.Option("--max-body", metavar="BYTES", min=1024, help="Largest webhook body accepted.")] = 1 << 20,
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, help="Attempts before a failing job is parked.")] = 5,
    max_repo_size: Annotated[int, typer.Option("--max-repo-size", metavar="MB", min=1, help="Refuse repositories whose git data grows past this.")] = 10240,
    no_lfs: Annotated[bool, typer.Option("--no-lfs", help="Do not fetch the LFS content pointer files name.")] = False,
    max_lfs_mb: Annotated[int, typer.Option("--max-lfs-mb", metavar="MB", min=1, help="Fetch LFS objects whole up to this size (larger weights: their header only).")] = 64,
    revoke_webhook: Annotated[Optional[list[str]], typer.Option("--revoke-webhook", metavar="URL", help="POST verified leaks here, signed with LEAKSCAN_REVOKE_SECRET (repeatable).")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", metavar="JOBS", min=1, help="Answer 503 (Retry-After) while this many jobs wait.")] = 10_000,
    max_connections: Annotated[Optional[int], typer.Option("--max-connections", metavar="N", min=1, help="Open connections at most; past it the oldest idle one is closed (default: from the descriptor limit, 384 at 1024).")] = None,
    idle_timeout: Annotated[float, typer.Option("--idle-timeout", metavar="SECONDS", min=0.1, help="Close a connection that sends no whole request head this long after opening or after its last answer.")] = 15.0,
    body_timeout: Annotated[float, typer.Option("--body-timeout", metavar="SECONDS", min=0.1, help="Answer 408 to a body that takes longer to arrive.")] = 30.0,
) -> None:
    """Receive Hugging Face webhook deliveries (POST /webhooks/hub) and scan what was pushed."""
    from .serve import Config, run

    secret = os.environ.get(secret_env, "")
    if not secret.strip():
        raise UserError(f"set the webhook secret in {secret_env} (the Hub sends it as X-Webhook-Secret)"
                        + ("; it holds only white space" if secret else ""))
    if not secret.isascii():
        raise UserError(f"{secret_env}: the Hub only sends ASCII secrets")
    if notify and not notify.startswith(("https://", "http://")):
        raise UserError(f"--notify needs an http(s) URL: {notify}")
    verify, callbacks, path = _service_setup(no_verify, revoke_webhook, db)
    config = Config(db=path, secret=secret, host=host, port=port, workers=workers, verify=verify, notify=notify,
                    max_body=max_body, max_attempts=max_attempts, max_repo_bytes=max_repo_size << 20, callbacks=callbacks,
                    max_queue=max_queue, max_connections=max_connections or 0, idle_timeout=idle_timeout, body_timeout=body_timeout,
                    lfs=_lfs_options(no_lfs, max_lfs_mb, False))  # fmt: skip
    try:
        run(config)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


sweep_app = typer.Typer(help="Sweep the public Hub on a schedule: incremental, resumable, optionally on Ray.", no_args_is_help=True)
app.add_typer(sweep_app, name="sweep")


@sweep_app.command("run")
def sweep_run(
    db: Annotated[Optional[Path], typer.Option("--db", help="The SQLite store holding the sweep state (default in the user cache dir).")] = None,
    repo_type: Annotated[Optional[list[HubType]], typer.Option("--type", help="Repository types to sweep (repeatable; default: all).")] = None,
    author: Annotated[Optional[str], typer.Option("--author", help="Only this user's or organisation's repositories.")] = None,
    search: Annotated[Optional[str], typer.Option("--search", help="Only repositories whose name contains this.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="At most this many repositories of each type (most recently modified).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Append new findings here as JSONL (default: stdout).")] = None,
    redact: Annotated[bool, typer.Option("--redact", help="Leave raw secrets out of the JSONL.")] = False,
    every: Annotated[Optional[str], typer.Option("--every", metavar="DURATION", help="Run passes forever, this far apart (90s, 30m, 1h, 1d).")] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", min=1, max=1024, help="Repositories scanned at once.")] = 4,
    in_flight: Annotated[Optional[int], typer.Option("--in-flight", min=1, help="Scans submitted at once (default: 2 x workers).")] = None,
    use_ray: Annotated[bool, typer.Option("--ray", help="Run each repository scan as a Ray task (local Ray unless --ray-address).")] = False,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", metavar="ADDR", help="An existing Ray cluster (implies --ray).")] = None,
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, help="Attempts before a failing repository is parked.")] = 3,
    backoff: Annotated[float, typer.Option("--backoff", metavar="SECONDS", min=0.0, help="Wait before the first retry (doubled each time).")] = 5.0,
    no_discussions: Annotated[bool, typer.Option("--no-discussions", help="Skip discussion and pull-request comments.")] = False,
    max_repo_size: Annotated[int, typer.Option("--max-repo-size", metavar="MB", min=1, help="Refuse repositories whose git data grows past this.")] = 10240,
    no_lfs: Annotated[bool, typer.Option("--no-lfs", help="Do not fetch the LFS content pointer files name.")] = False,
    max_lfs_mb: Annotated[int, typer.Option("--max-lfs-mb", metavar="MB", min=1, help="Fetch LFS objects whole up to this size (larger weights: their header only).")] = 64,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not ask providers whether secrets are live (also LEAKSCAN_NO_VERIFY=1).")] = False,
    revoke_webhook: Annotated[Optional[list[str]], typer.Option("--revoke-webhook", metavar="URL", help="POST verified leaks here, signed with LEAKSCAN_REVOKE_SECRET (repeatable).")] = None,
) -> None:
    """One sweep pass over the Hub (or --every DURATION forever): list, skip what is unchanged,
    scan what changed, record findings once."""
    from .sweep import Options, SweepError, parse_every, sweep

    verify, callbacks, path = _service_setup(no_verify, revoke_webhook, db)
    kinds = tuple(dict.fromkeys(t.value for t in repo_type)) if repo_type else ("model", "dataset", "space")
    opts = Options(db=path, types=kinds, author=author, search=search, limit=limit, workers=workers, ray=use_ray,
                   ray_address=ray_address, in_flight=in_flight, max_attempts=max_attempts, backoff=backoff,
                   verify=verify, discussions=not no_discussions, max_repo_bytes=max_repo_size << 20,
                   lfs=_lfs_options(no_lfs, max_lfs_mb, False), output=output,
                   redact=redact, callbacks=callbacks, progress=_SweepBar if sys.stderr.isatty() else None)  # fmt: skip
    try:
        raise typer.Exit(sweep(opts, parse_every(every) if every else None, summary=_sweep_summary))
    except SweepError as exc:
        raise UserError(str(exc)) from None


@sweep_app.command("status")
def sweep_status(
    db: Annotated[Optional[Path], typer.Option("--db", help="The SQLite store holding the sweep state.")] = None,
    fmt: Annotated[Optional[Format], typer.Option("--format", "-f", help="table (default) or json.")] = None,
) -> None:
    """Counts by status, the last pass, the slowest and the failing repositories."""
    from .sweep import status

    path = db or default_store_path()
    if not path.exists():
        raise UserError(f"no sweep state at {path}")
    _sweep_status(status(path), fmt in (Format.json, Format.jsonl))


def _service_setup(no_verify: bool, revoke_webhook: list[str] | None, db: Path | None) -> tuple[bool, list[dict], Path]:
    """For long-running commands (serve, sweep): whether to verify, the revocation callbacks, and
    a store path checked usable before anything starts."""
    verify = not no_verify and os.environ.get("LEAKSCAN_NO_VERIFY", "") in ("", "0")
    callbacks = _callbacks(revoke_webhook, None, None, None, None)
    if callbacks and not verify:
        raise UserError("revocation needs verification (drop --no-verify)")
    path = db or default_store_path()
    with _store(path, False):
        pass  # creates the store, and reports an unusable one, up front
    return verify, callbacks, path


def _report(result: ScanResult, ruleset: RuleSet, fmt: Format | None, output: Path | None, redact: bool,
            only_verified: bool, fail_on: FailOn) -> int:  # fmt: skip
    """Render the report; the exit code follows --fail-on. An unsafe model file has nothing to
    verify and is certain: it is kept by --only-verified and fails --fail-on verified."""
    if only_verified:
        result.findings = [f for f in result.findings if f.verification == "verified" or f.unsafe]
    code = _emit(result, ruleset, fmt, output, redact)
    if fail_on is FailOn.verified and not any(f.verification == "verified" or f.unsafe for f in result.findings):
        code = EXIT_CLEAN
    return code


def _callbacks(webhooks, commands, builtins, plugins, config: Path | None) -> list[dict]:
    import shlex
    import tomllib

    from .revoke.deliver import BUILTIN, ConfigError, callbacks_from_config, callbacks_from_options

    from_config = []
    if config is not None:
        try:
            from_config = callbacks_from_config(tomllib.loads(config.read_text(encoding="utf-8")), config.name)
        except OSError as exc:
            raise UserError(f"cannot read {config}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, ConfigError) as exc:
            raise UserError(f"invalid revocation config: {exc}") from None

    for b in builtins or []:
        if b not in BUILTIN:
            raise UserError(f"no built-in revoker for {b!r} (known: {', '.join(BUILTIN)})")
    for u in webhooks or []:
        if not u.startswith(("https://", "http://")):
            raise UserError(f"--revoke-webhook needs an http(s) URL: {u}")
    try:
        argvs = [shlex.split(c) for c in commands or []]
    except ValueError as exc:
        raise UserError(f"--revoke-command: {exc}") from None
    return callbacks_from_options(webhooks or [], argvs, builtins or [], plugins or []) + from_config


def _revoke(store: Store, findings: list, callbacks: list[dict], repo: str) -> None:
    from .revoke.outbox import revoke

    r = revoke(store.path, findings, callbacks, repo)
    print(f"revocation: {r.new} new deliveries, {r.delivered} delivered, {r.pending} pending"
          + (f" (retry with: leakscan revoke flush --db {store.path})" if r.pending else ""), file=sys.stderr)  # fmt: skip


def _verifier(ruleset: RuleSet, store: Store | None, intrusive: bool, timeout: float) -> BackgroundVerifier:
    """Verification running alongside the scan, with a progress bar on a terminal."""
    bar = progress = None
    if sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(transient=True, console=Console(stderr=True))
        task = bar.add_task("verifying", total=None)
        bar.start()

        def show(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        progress = show

    verifier = BackgroundVerifier(ruleset, store_path=store.path if store else None, intrusive=intrusive,
                                  timeout=timeout, progress=progress)  # fmt: skip
    verifier.bar = bar
    return verifier


def _open_repo(path: Path):
    """A git repository at PATH (its top or a bare one), else None: then PATH is just files."""
    if not ((path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())):
        return None
    try:
        return open_repo(path)
    except GitSourceError as exc:
        if str(exc).startswith("not a git repository"):
            return None  # a stray or broken .git folder: scan the files, .git excluded
        raise UserError(str(exc)) from None


@contextmanager
def _store(db: Path | None, no_cache: bool):
    if no_cache:
        yield None
        return
    try:
        store = Store(db or default_store_path())
    except StoreError as exc:
        raise UserError(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


@detectors_app.command("list")
def detectors_list(rules: RulesOpt = None) -> None:
    """List the detectors: rule id, provider, description."""
    for r in _load(rules, None).rules:
        print(f"{r.id:40} {r.provider:18} {r.description}")


@detectors_app.command("check")
def detectors_check(rules: RulesOpt = None) -> None:
    """Validate detector files and run each rule's examples (as the test suite does)."""
    from .examples import example_problems
    from .matcher import Matcher

    ruleset = _load(rules, None)
    matcher = Matcher(ruleset)
    problems = [p for r in ruleset.rules for p in example_problems(r, matcher)]
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(ruleset)} rules, {len(problems)} problem{'s' * (len(problems) != 1)}")
    raise typer.Exit(EXIT_FINDINGS if problems else EXIT_CLEAN)


@detectors_app.command("table")
def detectors_table(write: Annotated[bool, typer.Option("--write", help="Rewrite the table in detectors/README.md.")] = False) -> None:
    """Print the provider table of detectors/README.md (or rewrite it there)."""
    from .detectors import provider_table, replace_table
    from .revoke.deliver import BUILTIN

    table = provider_table(_load(None, None), set(BUILTIN))
    if not write:
        print(table)
        return
    readme = Path(__file__).resolve().parent.parent / "detectors" / "README.md"
    if not readme.is_file():
        raise UserError(f"no detectors/README.md next to this installation ({readme})")
    readme.write_text(replace_table(readme.read_text(encoding="utf-8"), table), encoding="utf-8")
    print(f"wrote {readme}")


@hook_app.command("pre-receive")
def hook_pre_receive() -> None:
    """Run by hooks/pre-receive: reads `<old> <new> <ref>` lines on stdin; exits non-zero to
    refuse a push that brings a secret."""
    from .hook import run_pre_receive

    raise typer.Exit(run_pre_receive(sys.stdin.read()))


@hook_app.command("install")
def hook_install(repo_dir: Annotated[Path, typer.Argument(metavar="REPO.git", help="The bare repository to protect.")]) -> None:
    """Install the pre-receive hook into a bare repository (idempotent; keeps an existing hook, chained)."""
    from .hook import CONFIG, install, server_hook_line

    try:
        path = install(repo_dir)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None
    print(f"installed {path}")
    print(f"policy (optional): {repo_dir}/{CONFIG}")
    print("GitLab/Gitea server hook: put an executable script in custom_hooks/pre-receive.d/ (GitLab) or in the")
    print(f"repository's Git Hooks settings (Gitea) that runs:  exec {server_hook_line()}")


DbOpt = Annotated[Optional[Path], typer.Option("--db", help="The SQLite store (default in the user cache dir).")]


@revoke_app.command("flush")
def revoke_flush(db: DbOpt = None) -> None:
    """Deliver what is pending now, backoff or not (after a receiver was down, or leakscan was
    killed). Each flush that cannot deliver counts an attempt; after 5 a delivery is parked and
    its token wiped."""
    from .revoke.outbox import revoke

    r = revoke(db or default_store_path(), [], [], None, force=True)
    for error in sorted(set(r.errors)):
        print(f"leakscan: delivery failed: {error}", file=sys.stderr)
    print(f"{r.delivered} delivered, {r.failed} failed, {r.pending} pending")
    raise typer.Exit(EXIT_FINDINGS if r.pending else EXIT_CLEAN)


@revoke_app.command("list")
def revoke_list(db: DbOpt = None, fmt: Annotated[Optional[Format], typer.Option("--format", "-f")] = None) -> None:
    """Pending, parked and delivered revocations, redacted."""

    from rich.table import Table

    from .revoke.outbox import Outbox

    with Outbox(db or default_store_path()) as outbox:
        rows = outbox.rows()
    if fmt in (Format.json, Format.jsonl):
        print(json.dumps(rows, indent=2 if fmt is Format.json else None))
        return
    table = Table("id", "type", "secret", "where", "callback", "state", "attempts", "last error")
    for r in rows:
        cb = json.loads(r["callback"])
        target = cb.get("url") or cb.get("provider") or cb.get("name") or " ".join(cb.get("argv", []))
        table.add_row(r["id"][:12], r["type"], r["redacted"], r["url"], f"{cb['type']}:{target}", r["state"],
                      str(r["attempts"]), r["last_error"] or "")  # fmt: skip
    Console().print(table)


def _version(value: bool) -> None:
    if value:
        print(f"leakscan {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False) -> None:
    pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = app(args=args or ["--help"], standalone_mode=False, prog_name="leakscan")
    except (UserError, StoreError) as exc:
        print(f"leakscan: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (typer.Exit, click.exceptions.Exit) as exc:
        return exc.exit_code
    except (typer.Abort, click.exceptions.Abort, KeyboardInterrupt):
        print("leakscan: interrupted", file=sys.stderr)
        return 130
    except (typer.TyperException, click.ClickException) as exc:
        # Usage errors: one line, not click's boxed usage text. (Typer vendors its own click.)
        print(f"leakscan: error: {exc.format_message()}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_CLEAN
    return rv if isinstance(rv, int) else EXIT_CLEAN



# ---- sweep display (the sweep itself renders nothing) ----


class _SweepBar:
    """repos done/total, findings, rate — on a terminal only."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.started = time.monotonic()
        self.progress = Progress(TextColumn("sweeping"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), console=Console(stderr=True), transient=True)  # fmt: skip
        self.task = self.progress.add_task("sweep", total=total, info="")
        self.progress.start()

    def advance(self, report) -> None:
        done = report.scanned + report.failed
        rate = done / max(1e-6, time.monotonic() - self.started) * 60
        self.progress.update(self.task, completed=done, info=f"{report.findings} findings, {rate:.0f} repos/min")

    def stop(self) -> None:
        self.progress.stop()


def _sweep_summary(report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    rate = report.scanned / report.seconds * 60 if report.seconds else 0.0
    table = Table("listed", "unchanged", "scanned", "parked", "findings", "new", "seconds", "repos/min",
                  title=f"sweep pass {report.pass_id}")  # fmt: skip
    table.add_row(str(report.listed), str(report.unchanged), str(report.scanned), str(report.parked),
                  str(report.findings), str(report.new_findings), f"{report.seconds:.1f}", f"{rate:.0f}")  # fmt: skip
    console.print(table)
    failing = [r for r in report.rows if r[1] != "scanned"]
    if failing:
        t = Table("repository", "status", "error", title="failing repositories")
        for row in failing:
            t.add_row(*row, style="red")
        console.print(t)
    for w in report.warnings:
        print(f"leakscan: warning: {w}", file=sys.stderr)


def _sweep_status(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    c = info["counts"]
    console.print(f"repositories: {sum(c.values())} — " + ", ".join(f"{v} {k}" for k, v in c.items())
                  + f"; {info['findings']} findings recorded; {info['passes']} passes")  # fmt: skip
    last = info["last_pass"]
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["started_at"]))
        state = "finished" if last["finished_at"] else "unfinished (killed or running)"
        took = f" in {last['finished_at'] - last['started_at']:.1f} s" if last["finished_at"] else ""
        console.print(f"last pass {last['id']}: started {when}, {state}{took}: {last['listed']} listed, "
                      f"{last['scanned']} scanned, {last['unchanged']} unchanged, {last['parked']} parked, "
                      f"{last['new_findings']} new findings")  # fmt: skip
    if info["slowest"]:
        t = Table("repository", "seconds", "findings", title="slowest repositories")
        for r in info["slowest"]:
            t.add_row(r["repo"], f"{r['seconds']:.2f}", str(r["findings"]))
        console.print(t)
    if info["failing"]:
        t = Table("repository", "status", "attempts", "last error", title="failing repositories")
        for r in info["failing"]:
            t.add_row(r["repo"], r["status"], str(r["attempts"]), r["error"] or "", style="red")
        console.print(t)


if __name__ == "__main__":
    sys.exit(main())
