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
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import __version__
from .decoders import Limits
from .detectors import DetectorError, RuleSet, load_rules
from .pipeline import ScanResult, run
from .scan import Scanner
from .sources.git import GitSourceError, open_repo
from .store import Store, StoreError

if TYPE_CHECKING:
    from .verify.background import BackgroundVerifier
from .store.db import open_private
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
    html = "html"  # one self-contained page, always redacted


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


class LogFormat(str, Enum):
    text = "text"
    json = "json"


# Options every scanning surface (scan, repo, sweep, serve) shares; see leakscan/config.py.
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="Configuration file (default: $LEAKSCAN_CONFIG, else .leakscan.toml at the scan root).")]
ExcludeOpt = Annotated[Optional[list[str]], typer.Option("--exclude-path", metavar="GLOB", help="Do not scan paths matching this glob (repeatable; `**` crosses folders).")]
BaselineOpt = Annotated[Optional[Path], typer.Option("--baseline", help="Report only what is not in this earlier JSON report.")]
IgnoreOpt = Annotated[Optional[Path], typer.Option("--ignore-file", help="Fingerprints to ignore (default: .leakscanignore at the scan root).")]
UnusedOpt = Annotated[bool, typer.Option("--report-unused-ignores", help="Report allowlist, ignore-file and --exclude-path entries that matched nothing.")]
MaxTargetOpt = Annotated[Optional[float], typer.Option("--max-target-mb", metavar="MB", min=0.0, help="Skip (and report) files and blobs larger than this.")]
ExitCodeOpt = Annotated[int, typer.Option("--exit-code", metavar="N", min=0, max=255, help="Exit code when there are findings.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print the report and errors only.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Say more on stderr (the configuration and detectors in force).")]
LogFormatOpt = Annotated[LogFormat, typer.Option("--log-format", help="Messages on stderr as plain text or JSON lines.")]
# Declared once for the commands that share them (scan, repo, sweep run, serve).
FmtOpt = Annotated[Optional[Format], typer.Option("--format", "-f", help="Output format (default: table).")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report to this file.")]
RedactOpt = Annotated[bool, typer.Option("--redact", help="Leave raw secrets out of json/jsonl/sarif.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor update the scan cache.")]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Do not ask providers whether secrets are live (also LEAKSCAN_NO_VERIFY=1).")]
VerifyIntrusiveOpt = Annotated[bool, typer.Option("--verify-intrusive", help="Also run costly or intrusive checks (paid calls, token exchanges).")]
OnlyVerifiedOpt = Annotated[bool, typer.Option("--only-verified", help="Report only secrets a provider confirmed as live.")]
FailOnOpt = Annotated[FailOn, typer.Option("--fail-on", help="Exit 1 on any finding, or only on verified ones.")]
VerifyTimeoutOpt = Annotated[float, typer.Option("--verify-timeout", min=0.1, help="Seconds per verification request.")]
RevokeWebhookOpt = Annotated[Optional[list[str]], typer.Option("--revoke-webhook", metavar="URL", help="POST verified leaks here, signed with LEAKSCAN_REVOKE_SECRET (repeatable).")]
RevokeCommandOpt = Annotated[Optional[list[str]], typer.Option("--revoke-command", metavar="CMD", help="Run CMD (no shell) with each verified leak as JSON on stdin (repeatable).")]
RevokeBuiltinOpt = Annotated[Optional[list[str]], typer.Option("--revoke-builtin", metavar="PROVIDER", help="Use a provider's own revoke API: huggingface, github, slack, gitlab (repeatable).")]
RevokePluginOpt = Annotated[Optional[list[str]], typer.Option("--revoke-plugin", metavar="NAME", help="A revoker from the entry-point group leakscan.revokers (repeatable).")]
RevokeConfigOpt = Annotated[Optional[Path], typer.Option("--revoke-config", help="A TOML file of [[callbacks]], each for all providers or some.")]
NoDiscussionsOpt = Annotated[bool, typer.Option("--no-discussions", help="Skip discussion and pull-request comments.")]
MaxRepoSizeOpt = Annotated[int, typer.Option("--max-repo-size", metavar="MB", min=1, help="Refuse repositories whose git data grows past this.")]
NoLfsOpt = Annotated[bool, typer.Option("--no-lfs", help="Do not fetch the LFS content pointer files name.")]
MaxLfsMbOpt = Annotated[int, typer.Option("--max-lfs-mb", metavar="MB", min=1, help="Fetch LFS objects whole up to this size (larger weights: their header only).")]
PortOpt = Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free port).")]


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
    from .messages import quiet, say
    from .report import render  # rich: not for the hook, which reports in its own words

    chosen = fmt.value if fmt else "table"
    summary = _summary(result)
    if output:
        try:
            with open_private(output) as fh:  # it may hold raw secrets
                render(chosen, result.findings, fh, skipped=result.skipped, ruleset=ruleset,
                       redact=redact, summary=summary)  # fmt: skip
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
        say("info", summary)
    else:
        render(chosen, result.findings, sys.stdout, skipped=result.skipped, ruleset=ruleset,
               redact=redact, summary="" if quiet() else summary, color=sys.stdout.isatty())  # fmt: skip
        if chosen != "table":
            say("info", summary)
    return EXIT_FINDINGS if result.findings else EXIT_CLEAN


@app.command()
def scan(
    ctx: typer.Context,
    path: Annotated[Optional[Path], typer.Argument(help="Directory, file or git repository; - for standard input (default with --staged: the repository here).")] = None,
    fmt: FmtOpt = None,
    output: OutputOpt = None,
    redact: RedactOpt = False,
    baseline: BaselineOpt = None,
    ignore_file: IgnoreOpt = None,
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
    no_cache: NoCacheOpt = False,
    no_decode: Annotated[bool, typer.Option("--no-decode", help="Scan raw bytes only: no archives, notebooks, pickles or encodings.")] = False,
    max_decoded_mb: Annotated[int, typer.Option("--max-decoded-mb", min=1, help="Decoded bytes allowed per blob, in MiB.")] = Limits.max_decoded_bytes >> 20,
    max_depth: Annotated[int, typer.Option("--max-depth", min=1, max=20, help="Nesting depth of archives and formats.")] = Limits.max_depth,
    max_members: Annotated[int, typer.Option("--max-archive-members", min=1, help="Members read per archive.")] = Limits.max_members,
    max_ratio: Annotated[float, typer.Option("--max-ratio", min=1.0, help="Compression ratio beyond which a member is a bomb.")] = Limits.max_ratio,
    decode_timeout: Annotated[float, typer.Option("--decode-timeout", min=0.1, help="Seconds of decoding per blob.")] = Limits.max_seconds,
    no_verify: NoVerifyOpt = False,
    verify_intrusive: VerifyIntrusiveOpt = False,
    only_verified: OnlyVerifiedOpt = False,
    fail_on: FailOnOpt = FailOn.any,
    verify_timeout: VerifyTimeoutOpt = 10.0,
    revoke_webhook: RevokeWebhookOpt = None,
    revoke_command: RevokeCommandOpt = None,
    revoke_builtin: RevokeBuiltinOpt = None,
    revoke_plugin: RevokePluginOpt = None,
    revoke_config: RevokeConfigOpt = None,
    staged: Annotated[bool, typer.Option("--staged", help="Only what is staged for commit (the index, not the work tree): the pre-commit hook.")] = False,
    config: ConfigOpt = None,
    exclude_path: ExcludeOpt = None,
    report_unused_ignores: UnusedOpt = False,
    max_target_mb: MaxTargetOpt = None,
    exit_code: ExitCodeOpt = EXIT_FINDINGS,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    log_format: LogFormatOpt = LogFormat.text,
    no_model_scan: NoModelScanOpt = False,
    pickle_unknown: PickleUnknownOpt = False,
) -> None:
    """Scan a directory, a file, a git repository (all of its history), what is staged
    (--staged) or standard input (-) for leaked credentials and for model files that run code
    when loaded."""
    from .messages import configure, say

    configure(quiet=quiet, verbose=verbose, json_lines=log_format is LogFormat.json)
    stdin = path is not None and str(path) == "-"
    if staged and (stdin or no_history or since or rev_range or all_objects):
        raise UserError("--staged scans the index only: no PATH '-', --no-history, --since, --range or --all-objects")
    if path is None:
        if not staged:
            raise UserError("Missing argument 'PATH' (a directory, file or repository; - for standard input; or --staged)")
        path = Path(".")
    if not stdin and not path.exists():
        raise UserError(f"no such file or directory: {path}")
    if stdin and (since or rev_range or all_objects):
        raise UserError("--since, --range and --all-objects need a git repository, not standard input")
    repo = _staged_repo(path) if staged else None
    root = Path(".") if stdin else repo.path if repo is not None else path  # stdin: the configuration here
    cfg = _config(root, config)
    o = _apply_options(ctx, cfg, fmt=fmt, redact=redact, no_verify=no_verify, verify_intrusive=verify_intrusive,
                       only_verified=only_verified, fail_on=fail_on, only=only, exclude_path=exclude_path,
                       max_target_mb=max_target_mb, exit_code=exit_code, include_deps=include_deps,
                       no_decode=no_decode, report_unused_ignores=report_unused_ignores, baseline=baseline,
                       ignore_file=ignore_file)  # fmt: skip
    fmt, redact, only_verified, fail_on = o["fmt"], o["redact"], o["only_verified"], o["fail_on"]
    no_verify, verify_intrusive, include_deps, no_decode = o["no_verify"], o["verify_intrusive"], o["include_deps"], o["no_decode"]
    prepared = _prepare(cfg, root, config, rules, o)
    ruleset, suppressions = prepared.ruleset, prepared.suppressions
    limits = None if no_decode else Limits(
        max_decoded_bytes=max_decoded_mb << 20, max_depth=max_depth, max_members=max_members,
        max_ratio=max_ratio, max_seconds=decode_timeout,
    )  # fmt: skip
    try:
        scanner = Scanner(ruleset, engine.value, limits, model_scan=not no_model_scan, pickle_unknown=pickle_unknown)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    if not staged:
        repo = None if stdin or no_history or path.is_file() else _open_repo(path)
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
            if stdin:
                from .sources.stdin import StdinSource

                sources = [StdinSource(max_bytes=prepared.scope.max_bytes)]
            elif staged:
                from .sources.staged import StagedSource

                index = os.environ.get("GIT_INDEX_FILE")  # `git commit -a` prepares its own index
                sources = [StagedSource(repo, str(Path(index).resolve()) if index else None)]
            elif repo is None:
                from .sources.files import TreeSource

                sources = [TreeSource(path, include_deps=include_deps)]
            else:
                from .sources.history import HistoryOptions, git_sources

                options = HistoryOptions(all_objects=all_objects, since=since, rev_range=rev_range)
                sources = git_sources(repo, store=store, cache_key=prepared.scope.history_key(scanner.cache_key), options=options,
                                      include_deps=include_deps)  # fmt: skip
            result = run(sources, scanner, store=store, jobs=jobs, suppressions=suppressions, verifier=verifier,
                         scope=prepared.scope)  # fmt: skip
        except GitSourceError as exc:
            raise UserError(str(exc)) from None
        if callbacks and store is not None:
            _revoke(store, result.findings, callbacks, "<stdin>" if stdin else str(path.resolve()))
        if db is not None and store is not None:  # for `leakscan ui --db`
            store.record_findings("<stdin>" if stdin else str(path.resolve()), result.findings, "scan")
    if repo is not None and not staged:
        for skip in result.skipped:
            if skip.reason.startswith(("missing", "history", "corrupt")):
                say("warning", f"{skip.path}: {skip.reason}")
    if o["report_unused_ignores"]:
        for line in prepared.unused():
            say("warning", f"unused: {line}", always=True)
    code = _report(result, ruleset, fmt, output, redact, only_verified, fail_on)
    raise typer.Exit(o["exit_code"] if code == EXIT_FINDINGS else code)


class HubType(str, Enum):
    model = "model"
    dataset = "dataset"
    space = "space"
    bucket = "bucket"  # a storage bucket: `repo` only (a sweep follows git repositories' shas)


@app.command()
def repo(
    ctx: typer.Context,
    target: Annotated[Optional[str], typer.Argument(help="user/model, datasets/user/name, spaces/user/name, buckets/user/name or a Hub URL.")] = None,
    repo_type: Annotated[Optional[HubType], typer.Option("--type", help="Repository type when TARGET has no prefix.")] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Scan this revision's tree and the history up to it.")] = None,
    author: Annotated[Optional[str], typer.Option("--author", help="Scan every model, dataset, Space and storage bucket of this user or organisation.")] = None,
    no_discussions: NoDiscussionsOpt = False,
    max_repo_size: MaxRepoSizeOpt = 10240,
    no_lfs: NoLfsOpt = False,
    max_lfs_mb: MaxLfsMbOpt = 64,
    fmt: FmtOpt = None,
    output: OutputOpt = None,
    redact: RedactOpt = False,
    db: Annotated[Optional[Path], typer.Option("--db", help="The SQLite store (scan cache, verdicts).")] = None,
    no_cache: NoCacheOpt = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not ask providers whether secrets are live.")] = False,
    only_verified: OnlyVerifiedOpt = False,
    fail_on: FailOnOpt = FailOn.any,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Worker processes.")] = None,
    baseline: BaselineOpt = None,
    ignore_file: IgnoreOpt = None,
    config: ConfigOpt = None,
    rules: RulesOpt = None,
    only: OnlyOpt = None,
    exclude_path: ExcludeOpt = None,
    verify_intrusive: VerifyIntrusiveOpt = False,
    verify_timeout: VerifyTimeoutOpt = 10.0,
    revoke_webhook: RevokeWebhookOpt = None,
    revoke_command: RevokeCommandOpt = None,
    revoke_builtin: RevokeBuiltinOpt = None,
    revoke_plugin: RevokePluginOpt = None,
    revoke_config: RevokeConfigOpt = None,
    report_unused_ignores: UnusedOpt = False,
    max_target_mb: MaxTargetOpt = None,
    exit_code: ExitCodeOpt = EXIT_FINDINGS,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    log_format: LogFormatOpt = LogFormat.text,
    no_model_scan: NoModelScanOpt = False,
    pickle_unknown: PickleUnknownOpt = False,
) -> None:
    """Scan Hugging Face Hub repositories: every ref's history (pull requests included), the LFS
    content it names, every discussion and PR comment, Space variables; and storage buckets."""
    from .messages import configure, say
    from .sources.hub import TYPES, HubError, hub_sources, list_owner_repos, parse_target

    configure(quiet=quiet, verbose=verbose, json_lines=log_format is LogFormat.json)
    if (target is None) == (author is None):
        raise UserError("give a repository (user/name) or --author NAME")
    # no local scan root: the configuration comes from --config or LEAKSCAN_CONFIG
    cfg = _config(None, config)
    o = _apply_options(ctx, cfg, fmt=fmt, redact=redact, no_verify=no_verify, verify_intrusive=verify_intrusive,
                       only_verified=only_verified, fail_on=fail_on, only=only, exclude_path=exclude_path,
                       max_target_mb=max_target_mb, exit_code=exit_code, no_discussions=no_discussions,
                       report_unused_ignores=report_unused_ignores, baseline=baseline, ignore_file=ignore_file)  # fmt: skip
    fmt, redact, only_verified, fail_on = o["fmt"], o["redact"], o["only_verified"], o["fail_on"]
    no_verify, verify_intrusive, no_discussions = o["no_verify"], o["verify_intrusive"], o["no_discussions"]
    prepared = _prepare(cfg, None, config, rules, o)
    ruleset = prepared.ruleset
    scanner = Scanner(ruleset, model_scan=not no_model_scan, pickle_unknown=pickle_unknown)
    verify = not no_verify and os.environ.get("LEAKSCAN_NO_VERIFY", "") in ("", "0")
    callbacks = _callbacks(revoke_webhook, revoke_command, revoke_builtin, revoke_plugin, revoke_config)
    if callbacks and (no_cache or not verify):
        raise UserError("revocation needs verification and the store (drop --no-verify/--no-cache)")
    try:
        targets = [parse_target(target, repo_type.value if repo_type else None)] if target else None
    except HubError as exc:
        raise UserError(str(exc)) from None
    combined = ScanResult()
    rows = []
    with _store(db, no_cache) as store:
        if targets is None:
            try:
                targets = list(list_owner_repos(author, (repo_type.value,) if repo_type else TYPES))
            except Exception as exc:  # HTTP errors and the client's connection errors
                raise UserError(f"cannot list the repositories of {author}: {type(exc).__name__}") from None
            if not targets:
                raise UserError(f"{author} has no public repositories (or does not exist)")
        for hub_repo in _progress(targets, len(targets) > 1):
            try:
                sources = hub_sources(hub_repo, store=store, cache_key=prepared.scope.history_key(scanner.cache_key), revision=revision,
                                      discussions=not no_discussions, max_bytes=max_repo_size << 20,
                                      lfs=_lfs_options(no_lfs, max_lfs_mb, sys.stderr.isatty()))  # fmt: skip
                # run() closes the verifier, whatever happens: none is started for a repository
                # whose mirror cannot be had
                result = run(sources, scanner, store=store, jobs=jobs, suppressions=prepared.suppressions,
                             verifier=_verifier(ruleset, store, verify_intrusive, verify_timeout) if verify else None,
                             scope=prepared.scope)  # fmt: skip
            except (HubError, GitSourceError) as exc:
                if len(targets) == 1:
                    raise UserError(str(exc)) from None
                rows.append((hub_repo.label, "failed", str(exc)))
                continue
            if callbacks and store is not None:
                _revoke(store, result.findings, callbacks, hub_repo.web_url)
            rows.append((hub_repo.label, "scanned", f"{len(result.findings)} findings"))
            if db is not None and store is not None:  # for `leakscan ui --db`
                store.record_findings(hub_repo.label, result.findings, "repo")
            for skip in result.skipped:
                if skip.path == "discussions":
                    say("warning", f"{hub_repo.label}: {skip.reason}")
            combined.findings += result.findings
            combined.skipped += result.skipped
            combined.stats.objects += result.stats.objects
            combined.stats.files += result.stats.files
            combined.stats.bytes += result.stats.bytes
            combined.stats.seconds += result.stats.seconds
            combined.stats.incremental |= result.stats.incremental
    if len(targets) > 1:
        from rich.console import Console
        from rich.table import Table

        table = Table("repository", "status", "result", title=f"{author}: {len(targets)} repositories")
        for row in rows:
            table.add_row(*row, style="red" if row[1] == "failed" else None)
        Console(stderr=True).print(table)
    if o["report_unused_ignores"]:
        for line in prepared.unused():
            say("warning", f"unused: {line}", always=True)
    code = _report(combined, ruleset, fmt, output, redact, only_verified, fail_on)
    raise typer.Exit(o["exit_code"] if code == EXIT_FINDINGS else code)


def _lfs_options(no_lfs: bool, max_lfs_mb: int, progress: bool):
    from .sources.lfs import LfsOptions

    return LfsOptions(enabled=not no_lfs, max_object_bytes=max_lfs_mb << 20, progress=progress)


def _progress(items: list, show: bool):
    if not show or not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    yield from track(items, description="scanning repositories", console=Console(stderr=True), transient=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: PortOpt = 8080,
    db: Annotated[Optional[Path], typer.Option("--db", help="The SQLite store holding the job queue and findings.")] = None,
    secret_env: Annotated[str, typer.Option("--secret-env", metavar="NAME", help="Variable holding the webhook secret.")] = "LEAKSCAN_WEBHOOK_SECRET",
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Scans running at once.")] = 2,
    no_verify: NoVerifyOpt = False,
    notify: Annotated[Optional[str], typer.Option("--notify", metavar="URL", help="POST new findings (redacted) here.")] = None,
    max_body: Annotated[int, typer.Option("--max-body", metavar="BYTES", min=1024, help="Largest webhook body accepted.")] = 1 << 20,
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, help="Attempts before a failing job is parked.")] = 5,
    max_repo_size: MaxRepoSizeOpt = 10240,
    no_lfs: NoLfsOpt = False,
    max_lfs_mb: MaxLfsMbOpt = 64,
    revoke_webhook: RevokeWebhookOpt = None,
    max_queue: Annotated[int, typer.Option("--max-queue", metavar="JOBS", min=1, help="Answer 503 (Retry-After) while this many jobs wait.")] = 10_000,
    max_connections: Annotated[Optional[int], typer.Option("--max-connections", metavar="N", min=1, help="Open connections at most; past it the oldest idle one is closed (default: from the descriptor limit, 384 at 1024).")] = None,
    idle_timeout: Annotated[float, typer.Option("--idle-timeout", metavar="SECONDS", min=0.1, help="Close a connection that sends no whole request head this long after opening or after its last answer.")] = 15.0,
    body_timeout: Annotated[float, typer.Option("--body-timeout", metavar="SECONDS", min=0.1, help="Answer 408 to a body that takes longer to arrive.")] = 30.0,
    config: ConfigOpt = None,
    rules: RulesOpt = None,
    only: OnlyOpt = None,
    exclude_path: ExcludeOpt = None,
    ignore_file: IgnoreOpt = None,
    baseline: BaselineOpt = None,
    max_target_mb: MaxTargetOpt = None,
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
    _, prepared = _service_settings(config, rules, only, exclude_path, ignore_file, baseline, max_target_mb)
    verify, callbacks, path = _service_setup(no_verify, revoke_webhook, db)
    config = Config(db=path, secret=secret, prepared=prepared, host=host, port=port, workers=workers, verify=verify, notify=notify,
                    max_body=max_body, max_attempts=max_attempts, max_repo_bytes=max_repo_size << 20, callbacks=callbacks,
                    max_queue=max_queue, max_connections=max_connections or 0, idle_timeout=idle_timeout, body_timeout=body_timeout,
                    lfs=_lfs_options(no_lfs, max_lfs_mb, False))  # fmt: skip
    try:
        run(config)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@app.command()
def ui(
    db: Annotated[Path, typer.Option("--db", help="The SQLite store whose findings to show.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on; off loopback it needs LEAKSCAN_UI_TOKEN.")] = "127.0.0.1",
    port: PortOpt = 8000,
) -> None:
    """The findings page: list, filter and triage what scans and sweeps recorded, in a browser."""
    from .ui.server import TOKEN_ENV, Config, UiError, serve

    token = os.environ.get(TOKEN_ENV, "").strip() or None
    try:
        serve(Config(db=db, host=host, port=port, token=token),
              ready=lambda url: print(f"leakscan ui: {url}" + (" (token required)" if token else ""), flush=True))  # fmt: skip
    except UiError as exc:
        raise UserError(str(exc)) from None
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
    no_discussions: NoDiscussionsOpt = False,
    max_repo_size: MaxRepoSizeOpt = 10240,
    no_lfs: NoLfsOpt = False,
    max_lfs_mb: MaxLfsMbOpt = 64,
    no_verify: NoVerifyOpt = False,
    revoke_webhook: RevokeWebhookOpt = None,
    config: ConfigOpt = None,
    rules: RulesOpt = None,
    only: OnlyOpt = None,
    exclude_path: ExcludeOpt = None,
    ignore_file: IgnoreOpt = None,
    baseline: BaselineOpt = None,
    max_target_mb: MaxTargetOpt = None,
) -> None:
    """One sweep pass over the Hub (or --every DURATION forever): list, skip what is unchanged,
    scan what changed, record findings once."""
    from .sweep import Options, SweepError, parse_every, sweep

    settings, _ = _service_settings(config, rules, only, exclude_path, ignore_file, baseline, max_target_mb)
    verify, callbacks, path = _service_setup(no_verify, revoke_webhook, db)
    kinds = tuple(dict.fromkeys(t.value for t in repo_type)) if repo_type else ("model", "dataset", "space")
    if "bucket" in kinds:
        raise UserError("a sweep follows git repositories by their commit; scan buckets with `leakscan repo buckets/NS/NAME` "
                        "or `leakscan repo --author NS`")  # fmt: skip
    opts = Options(db=path, types=kinds, author=author, search=search, limit=limit, workers=workers, ray=use_ray,
                   ray_address=ray_address, in_flight=in_flight, max_attempts=max_attempts, backoff=backoff,
                   verify=verify, discussions=not no_discussions, max_repo_bytes=max_repo_size << 20,
                   lfs=_lfs_options(no_lfs, max_lfs_mb, False), output=output,
                   redact=redact, callbacks=callbacks, progress=_SweepBar if sys.stderr.isatty() else None,
                   settings=settings)  # fmt: skip
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


def _service_settings(config, rules, only, exclude_path, ignore_file, baseline, max_target_mb):
    """The shared scan options of a long-running command (serve, sweep), checked now, as
    (Settings for worker processes to prepare again, what they prepare to); (None, None) when
    none is given. No local scan root: --config or LEAKSCAN_CONFIG."""
    o = dict(only=only, exclude_path=exclude_path, ignore_file=ignore_file, baseline=baseline, max_target_mb=max_target_mb)
    cfg = _config(None, config)
    if cfg.path is None and not rules and not any(o.values()):
        return None, None  # the built-in detectors, loaded where they are used
    o = _apply_options(None, cfg, **o)
    from .config import Settings

    settings = Settings(root=None, config=cfg.path, rules=tuple(rules or ()), only=tuple(o["only"] or ()),
                        exclude_paths=tuple(o["exclude_path"] or ()), ignore_file=o["ignore_file"],
                        baseline=o["baseline"], max_target_mb=o["max_target_mb"])  # fmt: skip
    return settings, _prepare(cfg, None, config, rules, o)  # an unusable configuration stops the command now


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
    if not (webhooks or commands or builtins or plugins or config):
        return []  # without importing the delivery code (aiohttp): most scans revoke nothing
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
    from .revoke import revoke

    r = revoke(store.path, findings, callbacks, repo)
    print(f"revocation: {r.new} new deliveries, {r.delivered} delivered, {r.pending} pending"
          + (f" (retry with: leakscan revoke flush --db {store.path})" if r.pending else ""), file=sys.stderr)  # fmt: skip


def _verifier(ruleset: RuleSet, store: Store | None, intrusive: bool, timeout: float) -> BackgroundVerifier:
    """Verification running alongside the scan, with a progress bar on a terminal."""
    bar = progress = None
    from .verify.background import BackgroundVerifier

    if sys.stderr.isatty():
        from rich.console import Console
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


def _staged_repo(path: Path):
    """The repository holding `path` (pre-commit runs hooks at its top; a person may not)."""
    for p in [path.resolve(), *path.resolve().parents]:
        if (p / ".git").exists():
            try:
                return open_repo(p)
            except GitSourceError as exc:
                raise UserError(str(exc)) from None
    raise UserError(f"--staged needs a git work tree: {path} is not in one")


def _config(root: Path | None, explicit: Path | None):
    from .config import ConfigError, load, locate

    try:
        return load(locate(root, explicit))
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def _apply_options(ctx: typer.Context, cfg, **values):
    """The command line's values, with the config file's [options] where the command line gave none."""
    from .config import apply_options

    o = apply_options(ctx, cfg, values)
    try:
        if isinstance(o.get("fmt"), str):
            o["fmt"] = Format(o["fmt"])
        if isinstance(o.get("fail_on"), str):
            o["fail_on"] = FailOn(o["fail_on"])
    except ValueError as exc:
        raise UserError(f"{cfg.path}: {exc}") from None
    return o


def _prepare(cfg, root: Path | None, config: Path | None, rules: list[Path] | None, o: dict):
    """Rules, suppressions and scope, the same way for every surface."""
    from .config import ConfigError, Settings, prepare
    from .messages import say

    settings = Settings(root=root, config=config, rules=rules or (), only=o.get("only") or (),
                        exclude_paths=o.get("exclude_path") or (), ignore_file=o.get("ignore_file"),
                        baseline=o.get("baseline"), max_target_mb=o.get("max_target_mb"))  # fmt: skip
    try:
        prepared = prepare(settings, cfg)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    for note in prepared.notes:
        say("warning", note, always=True)
    if cfg.path is not None:
        say("debug", f"configuration: {cfg.path}")
    say("debug", f"{len(prepared.ruleset)} detectors"
        + (f", {len(cfg.rules)} from the configuration" if cfg.rules else ""))  # fmt: skip
    return prepared


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


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema (draft 2020-12) of the json and jsonl reports."""
    from .schema import report_schema

    print(json.dumps(report_schema(), indent=2, ensure_ascii=False))


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
    from .revoke import revoke

    r = revoke(db or default_store_path(), [], [], None, force=True)
    for error in sorted(set(r.errors)):
        print(f"leakscan: delivery failed: {error}", file=sys.stderr)
    print(f"{r.delivered} delivered, {r.failed} failed, {r.pending} pending")
    raise typer.Exit(EXIT_FINDINGS if r.pending else EXIT_CLEAN)


@revoke_app.command("list")
def revoke_list(db: DbOpt = None, fmt: Annotated[Optional[Format], typer.Option("--format", "-f")] = None) -> None:
    """Pending, parked and delivered revocations, redacted."""

    from rich.console import Console
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
    command, prog, rest = _command_for(args or ["--help"])
    try:
        rv = command(args=rest, standalone_mode=False, prog_name=prog)
    except (UserError, StoreError) as exc:
        from .messages import say

        say("error", str(exc))
        return EXIT_ERROR
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("leakscan: interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:
        # Usage errors: one line, not click's boxed usage text. (Typer vendors its own click, whose
        # exceptions are all TyperExceptions.)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"leakscan: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_CLEAN
    return rv if isinstance(rv, int) else EXIT_CLEAN


def _command_for(args: list[str]) -> tuple[typer.Typer, str, list[str]]:
    """The app that runs `args`, its program name, and the arguments left for it: for `leakscan
    CMD …` or `leakscan GROUP CMD …`, an app of that one command. Typer builds the click command
    of every command in a group before it runs one (inspecting each signature and evaluating its
    annotations), a tenth of a second of every run; one command alone is built alone. Help and
    errors read the same, with the program name `leakscan CMD`."""
    app_, prog, i = app, "leakscan", 0
    while i < len(args):
        groups = {g.name: g.typer_instance for g in app_.registered_groups}
        if args[i] in groups and groups[args[i]].registered_callback is None:
            app_, prog, i = groups[args[i]], f"{prog} {args[i]}", i + 1
            continue
        for info in app_.registered_commands:
            if args[i] == (info.name or info.callback.__name__.replace("_", "-")):  # type: ignore[union-attr]
                solo = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
                solo.registered_commands = [info]
                return solo, f"{prog} {args[i]}", args[i + 1 :]
        break
    return app_, prog, args[i:]


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
