"""Server-side push protection: `leakscan hook pre-receive`, run by a bare repository's
`hooks/pre-receive`, refuses a push that brings a secret before it lands.

Only what the push adds is scanned — every new blob once and every new commit message, found
with `git log --raw <new tips> --not --all` inside git's quarantine environment — through the
same detectors and decoders as everything else. Policy lives in `leakscan-hook.toml` next to the
hook's repository (`$GIT_DIR/leakscan-hook.toml`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .detectors import RuleSet, load_rules
from .model import Finding
from .scan import Scanner
from .sources.git import GitRepo, Pushed, open_repo, remove_stand_ins
from .textsafe import escape, scrub

CONFIG = "leakscan-hook.toml"
BYPASS_LOG = "leakscan-bypass.log"
MARKER = "# leakscan pre-receive hook"
BYPASS_OPTION = "leakscan.bypass="
_ZERO = re.compile(r"^0+$")
SHOWN = 50  # findings listed to the pusher; the count says how many more there are


@dataclass
class Policy:
    block: list[str] | None = None  # detector/provider ids; None: every specific (non-generic) detector
    verify: bool = False
    verify_budget: float = 2.0
    bypass: bool = True
    on_error: str = "reject"  # reject | allow: what a scan that fails or runs out of time does to the push
    timeout: float = 30.0
    store: str | None = None  # a leakscan store: findings recorded for `leakscan ui`, its triage applied
    block_unsafe_models: bool = True  # model files that run code when loaded (pickle imports, Keras Lambda)


def load_policy(git_dir: Path) -> Policy:
    path = git_dir / CONFIG
    if not path.exists():
        return Policy()
    import tomllib  # only when a policy file exists

    data = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = set(data) - {"block", "verify", "verify_budget", "bypass", "on_error", "timeout", "store", "block_unsafe_models"}
    if unknown:
        raise ValueError(f"{CONFIG}: unknown key(s) {', '.join(sorted(unknown))}")
    policy = Policy(**data)
    if policy.on_error not in ("allow", "reject"):
        raise ValueError(f"{CONFIG}: on_error must be allow or reject")
    if isinstance(policy.timeout, bool) or not isinstance(policy.timeout, (int, float)) or not policy.timeout > 0:
        raise ValueError(f"{CONFIG}: timeout must be a positive number of seconds")
    if policy.store is not None and not (isinstance(policy.store, str) and policy.store.strip()):
        raise ValueError(f"{CONFIG}: store must be the path of a leakscan store")
    if not isinstance(policy.block_unsafe_models, bool):
        raise ValueError(f"{CONFIG}: block_unsafe_models must be true or false")
    return policy


def read_updates(text: str) -> list[tuple[str, str, str]]:
    updates = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append((parts[0], parts[1], parts[2]))
    return updates


def push_options() -> list[str]:
    count = int(os.environ.get("GIT_PUSH_OPTION_COUNT", "0") or 0)
    return [os.environ.get(f"GIT_PUSH_OPTION_{i}", "") for i in range(count)]


def blocking(f: Finding, ruleset: RuleSet, policy: Policy) -> bool:
    if f.unsafe:
        return policy.block_unsafe_models
    if f.verification == "invalid":
        return False  # checked and dead: nothing to protect
    if policy.block is None:
        return not ruleset.by_id[f.detector].generic
    return f.detector in policy.block or f.provider in policy.block


def run_pre_receive(stdin_text: str, out=sys.stderr) -> int:
    """The hook's whole job; returns its exit status (0 accepts the push).

    The policy's `timeout`, counted from here, bounds everything after: rule loading, the scan,
    verification, the ref lookups and the verdict. Past it a watchdog thread decides the push as
    a failed scan and ends the process, so nothing the scan runs can catch, swallow or outlast
    the deadline (an exception raised into the scan could be caught and re-wrapped on the way).
    """
    started = time.monotonic()
    git_dir = Path(os.environ.get("GIT_DIR", ".")).resolve()
    try:
        policy = load_policy(git_dir)
    except (ValueError, OSError, TypeError) as exc:  # TOMLDecodeError is a ValueError
        print(f"leakscan: hook configuration error: {scrub(exc)}", file=out)
        return 1
    updates = [(old, new, ref) for old, new, ref in read_updates(stdin_text) if not _ZERO.match(new)]
    if not updates:
        return 0  # deletions only: nothing arrives
    bypasses = [o[len(BYPASS_OPTION) :] for o in push_options() if o.startswith(BYPASS_OPTION)]
    push = _Push(git_dir, policy, updates, bypasses)
    with _Watchdog(started + policy.timeout, push.timed_out, out) as watchdog:
        try:
            findings, ruleset, repo = _scan_push(git_dir, updates, policy)
            verdict = push.judge(findings, ruleset, repo)
        except Exception as exc:  # an internal error must not silently block or pass without a word
            verdict = push.failed(f"the secret scan failed ({scrub(f'{type(exc).__name__}: {exc}')})")
        if verdict.code:
            verdict.lines.append(f"leakscan: scanned in {time.monotonic() - started:.2f} s")
        return watchdog.settle(verdict)


@dataclass
class _Verdict:
    code: int  # the hook's exit status: 0 accepts the push
    lines: list[str]


@dataclass
class _Push:
    """What is decided about one push, and how it is told to the pusher. Everything shown that
    the pusher or the repository chose (paths, refs, names, reasons) is escaped: no terminal
    control sequence reaches the pusher, no newline forges a `leakscan:` line."""

    git_dir: Path
    policy: Policy
    updates: list[tuple[str, str, str]]
    bypasses: list[str]  # the values of every `-o leakscan.bypass=…`

    @property
    def reason(self) -> str | None:
        """The bypass reason: the first one given that says something."""
        return next((r for r in self.bypasses if r.strip()), None)

    def refs(self) -> str:
        return ", ".join(escape(ref) for _, _, ref in self.updates)

    def judge(self, findings: list[Finding], ruleset: RuleSet, repo: GitRepo) -> _Verdict:
        blockers: list[Finding] = []
        warnings: list[Finding] = []
        for f in findings:  # one pass: a push may bring tens of thousands of findings
            (blockers if blocking(f, ruleset, self.policy) else warnings).append(f)
        refs = _refs_of(repo, self.updates, findings) if findings else {}
        lines = [f"leakscan: warning: {_what(f)} ({escape(f.detector)}) in {_where(f, refs)}: {escape(f.redacted)}"
                 for f in warnings[:SHOWN]]  # fmt: skip
        lines += _more(warnings, "warning(s)" if any(f.unsafe for f in warnings) else "possible secret(s)")
        if not blockers:
            return _Verdict(0, lines)
        models = sum(f.unsafe for f in blockers)
        secrets = len(blockers) - models
        found = " and ".join(p for p in (f"{secrets} secret(s)" if secrets else "",
                                         f"{models} unsafe model file finding(s)" if models else "") if p)  # fmt: skip
        if self.policy.bypass and self.reason is not None:
            what = f"{found} pushed with a bypass ('{escape(self.reason)}')"
            return self._logged(lines, "bypass", what, findings=blockers)
        lines.append(f"leakscan: push rejected: {found} found in the pushed commits")
        for f in blockers[:SHOWN]:
            state = "" if f.verification == "unverified" or f.unsafe else f" [{escape(f.verification)}]"
            lines.append(f"  {_where(f, refs)}  {escape(f.detector)}  {escape(f.redacted)}{state}")
        lines += _more(blockers, "finding(s)" if models else "secret(s)")
        lines.append("How to fix:")
        if secrets:
            lines += ["  - remove the secret from the commits that add it (git rebase -i, or git commit --amend for the last one),",
                      "    revoke it with its provider, and push again;",
                      "  - or, for a false positive, add `leakscan:allow` on the line;"]  # fmt: skip
        if models:
            lines += ["  - a model file that runs code when loaded: remove it from the commits that add it, and publish",
                      "    the weights as safetensors;"]  # fmt: skip
        return _Verdict(1, lines + self._bypass_hint())

    def timed_out(self) -> _Verdict:
        return self.failed(f"the secret scan did not finish within {self.policy.timeout:g} s", split=True)

    def failed(self, what: str, *, split: bool = False) -> _Verdict:
        """The scan could not decide: refused, unless bypassed with a reason or the policy says
        `on_error = "allow"`; a push let through unscanned is logged either way."""
        if self.policy.bypass and self.reason is not None:
            return self._logged([], "bypass", f"{what}; pushed with a bypass ('{escape(self.reason)}')", error=what)
        if self.policy.on_error == "allow":
            return self._logged([], "error-allowed", f"warning: {what}; {self.refs()} accepted unscanned "
                                f'(on_error = "allow")', error=what)  # fmt: skip
        lines = [f"leakscan: push rejected: {what}; {self.refs()} not accepted", "How to push:"]
        if split:
            lines.append("  - push fewer commits at a time, oldest first (git push <remote> <commit>:<branch>);")
        lines.append("  - or ask the server's administrator about the hook (leakscan-hook.toml: timeout, on_error);")
        return _Verdict(1, lines + self._bypass_hint())

    def _bypass_hint(self) -> list[str]:
        if not self.policy.bypass:
            return []
        lines = ['  - or bypass, logged: git push -o leakscan.bypass="<reason>"']
        if self.bypasses and self.reason is None:
            lines.append("leakscan: the bypass was refused: it needs a reason (leakscan.bypass=<reason>)")
        return lines

    def _logged(self, lines: list[str], kind: str, what: str, *, error: str | None = None,
                findings: Sequence[Finding] = ()) -> _Verdict:  # fmt: skip
        """Accepted, once the bypass log holds it; refused when it cannot be written."""
        try:
            _log_bypass(self.git_dir, kind, self.updates, reason=self.reason, error=error, findings=findings)
        except OSError as exc:
            return _Verdict(1, [*lines, f"leakscan: push rejected: {what}, but the bypass log could not be "
                                        f"written ({scrub(exc)})"])  # fmt: skip
        return _Verdict(0, [*lines, f"leakscan: {what}; this was logged."])


def _more(findings: list[Finding], what: str) -> list[str]:
    return [f"  … and {len(findings) - SHOWN} more {what}"] if len(findings) > SHOWN else []


class _Watchdog:
    """Decides the push at `deadline` (monotonic) if the scan has not: writes `on_expiry()`'s
    verdict and ends the process with its status. `settle` gives the scan's own verdict, or the
    expiry's when it came late."""

    def __init__(self, deadline: float, on_expiry, out) -> None:
        self.deadline = deadline
        self._on_expiry = on_expiry
        self._out = out
        self._lock = threading.Lock()
        self._settled = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="leakscan-hook-deadline", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._settled.set()

    def _watch(self) -> None:
        if self._settled.wait(max(0.0, self.deadline - time.monotonic())):
            return
        with self._lock:  # held until the process ends: `settle` cannot speak after this
            if self._settled.is_set():
                return
            code = self._emit(self._on_expiry())
            remove_stand_ins()
            os._exit(code)

    def settle(self, verdict: _Verdict) -> int:
        with self._lock:
            self._settled.set()
            if time.monotonic() >= self.deadline:  # finished, but late: some of it may not have run
                verdict = self._on_expiry()
            return self._emit(verdict)

    def _emit(self, verdict: _Verdict) -> int:
        self._out.write("".join(f"{line}\n" for line in verdict.lines))
        self._out.flush()
        return verdict.code


def _scan_push(git_dir: Path, updates, policy: Policy):
    from .pipeline import run
    from .sources.history import HistoryOptions, git_sources

    ruleset = load_rules()
    scanner = Scanner(ruleset)
    repo = open_repo(git_dir)
    tips = tuple(sorted({new for _, new, _ in updates}))
    sources = git_sources(repo, options=HistoryOptions(rev_range=Pushed(tips), work_tree=False))
    if policy.store is None:
        findings = run(sources, scanner, jobs=1).findings
        if policy.verify and findings:
            _verify(ruleset, findings, policy.verify_budget)
        return findings, ruleset, repo
    from .pipeline import mark_revoked
    from .store import Store

    with Store(Path(policy.store).expanduser()) as store:
        findings = run(sources, scanner, store=store, jobs=1).findings  # false positives suppressed
        if policy.verify and findings:
            _verify(ruleset, findings, policy.verify_budget)
            mark_revoked(findings, store.triaged()["revoked"])
        if findings:
            store.record_findings(str(git_dir), findings, "hook")
    return findings, ruleset, repo


def _verify(ruleset: RuleSet, findings: list[Finding], budget: float) -> None:
    """Verification inside the push, within a short budget; what it cannot decide stays unverified."""
    import asyncio

    from .verify.engine import Verifier

    async def run() -> None:
        async with Verifier(ruleset, timeout=budget, max_attempts=1) as v:
            await asyncio.wait_for(v.verify(findings), budget)

    try:
        asyncio.run(run())
    except (asyncio.TimeoutError, OSError):
        pass


def _refs_of(repo: GitRepo, updates, findings: list[Finding]) -> dict[str, str]:
    """commit → the pushed ref that brings it."""
    wanted = {f.commit for f in findings if f.commit}
    out: dict[str, str] = {}
    for _, new, ref in updates:
        for line in repo.new_commits(new):
            if line in wanted and line not in out:
                out[line] = ref
        if new in wanted:
            out.setdefault(new, ref)
    return out


def _what(f: Finding) -> str:
    return "unsafe model file" if f.unsafe else "possible secret"


def _where(f: Finding, refs: dict[str, str]) -> str:
    ref = refs.get(f.commit or "", "?")
    place = f.path + (f"!{f.container}" if f.container else "")
    at = (f"@{f.offset}" if f.offset is not None else "") if f.unsafe else f":{f.line}"
    return escape(f"{ref} {(f.commit or '')[:12]} {place}{at}")


def _log_bypass(git_dir: Path, kind: str, updates, *, reason: str | None, error: str | None,
                findings: Sequence[Finding]) -> None:  # fmt: skip
    """One JSON line per push let through: kind "bypass" (a reason was given) or "error-allowed"
    (the scan failed or ran out of time, and the policy lets such pushes through)."""
    who = {k: v for k, v in os.environ.items() if k in ("GL_USERNAME", "GL_ID", "GITHUB_USER_LOGIN", "REMOTE_USER", "USER")}
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kind": kind, "reason": reason,
             "error": error, "who": who, "refs": [ref for _, _, ref in updates],
             "findings": [{"detector": f.detector, "path": f.path, "commit": f.commit, "redacted": f.redacted,
                           "secret_sha256": f.secret_sha256} for f in findings]}  # fmt: skip
    with open(git_dir / BYPASS_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def install(repo_dir: Path) -> str:
    """Write `hooks/pre-receive` into a bare repository (idempotent; an existing foreign hook is
    kept and chained after ours) and let clients send push options (for the bypass)."""
    # GitPython opens and validates the repository and edits its config file in-process: the
    # natural tool for administering a repository we own (scans use hardened plumbing instead).
    import git

    try:
        repo = git.Repo(repo_dir, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ValueError(f"not a git repository: {repo_dir}") from None
    git_dir = Path(repo.git_dir)
    hooks = git_dir / "hooks"
    hooks.mkdir(exist_ok=True)
    hook = hooks / "pre-receive"
    chained = hooks / "pre-receive.chained"
    if hook.exists() and MARKER not in hook.read_text(errors="replace") and not chained.exists():
        hook.rename(chained)
    python = shlex.quote(sys.executable)
    hook.write_text(f"""#!/bin/sh
{MARKER} (installed by `leakscan hook install`; rerunning it rewrites this file)
input=$(cat)
printf '%s\\n' "$input" | {python} -m leakscan hook pre-receive || exit $?
if [ -x "$GIT_DIR/hooks/pre-receive.chained" ]; then
    printf '%s\\n' "$input" | "$GIT_DIR/hooks/pre-receive.chained" || exit $?
fi
exit 0
""")
    hook.chmod(0o755)
    with repo.config_writer() as config:
        config.set_value("receive", "advertisePushOptions", "true")
    repo.close()
    return str(hook)


def server_hook_line() -> str:
    return f"{shlex.quote(sys.executable)} -m leakscan hook pre-receive"
