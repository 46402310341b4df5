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
import signal
import sys
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .detectors import RuleSet, load_rules
from .model import Finding
from .scan import Scanner
from .sources.git import GitRepo, Pushed, open_repo

CONFIG = "leakscan-hook.toml"
BYPASS_LOG = "leakscan-bypass.log"
MARKER = "# leakscan pre-receive hook"
BYPASS_OPTION = "leakscan.bypass="
_ZERO = re.compile(r"^0+$")


@dataclass
class Policy:
    block: list[str] | None = None  # detector/provider ids; None: every specific (non-generic) detector
    verify: bool = False
    verify_budget: float = 2.0
    bypass: bool = True
    on_error: str = "allow"  # allow | reject
    timeout: float = 30.0


def load_policy(git_dir: Path) -> Policy:
    path = git_dir / CONFIG
    if not path.exists():
        return Policy()
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = set(data) - {"block", "verify", "verify_budget", "bypass", "on_error", "timeout"}
    if unknown:
        raise ValueError(f"{CONFIG}: unknown key(s) {', '.join(sorted(unknown))}")
    policy = Policy(**data)
    if policy.on_error not in ("allow", "reject"):
        raise ValueError(f"{CONFIG}: on_error must be allow or reject")
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
    if f.verification == "invalid":
        return False  # checked and dead: nothing to protect
    if policy.block is None:
        return not ruleset.by_id[f.detector].generic
    return f.detector in policy.block or f.provider in policy.block


def run_pre_receive(stdin_text: str, out=sys.stderr) -> int:
    """The hook's whole job; returns its exit status (0 accepts the push)."""
    started = time.monotonic()
    git_dir = Path(os.environ.get("GIT_DIR", ".")).resolve()
    try:
        policy = load_policy(git_dir)
    except (ValueError, OSError, TypeError, tomllib.TOMLDecodeError) as exc:
        print(f"leakscan: hook configuration error: {exc}", file=out)
        return 1
    updates = [(old, new, ref) for old, new, ref in read_updates(stdin_text) if not _ZERO.match(new)]
    if not updates:
        return 0  # deletions only: nothing arrives
    try:
        with _time_limit(policy.timeout):
            findings, ruleset, repo = _scan_push(git_dir, updates, policy)
    except Exception as exc:  # an internal error must not silently block or pass without a word
        if policy.on_error == "reject":
            print(f"leakscan: push rejected: the secret scan failed ({type(exc).__name__}: {exc})", file=out)
            return 1
        print(f"leakscan: warning: the secret scan failed and the push was allowed ({type(exc).__name__}: {exc})", file=out)
        return 0
    blockers = [f for f in findings if blocking(f, ruleset, policy)]
    warnings = [f for f in findings if f not in blockers]
    refs = _refs_of(repo, updates, findings) if findings else {}
    for f in warnings:
        print(f"leakscan: warning: possible secret ({f.detector}) in {_where(f, refs)}: {f.redacted}", file=out)
    if not blockers:
        return 0
    reason = next((o[len(BYPASS_OPTION):] for o in push_options() if o.startswith(BYPASS_OPTION)), None)
    if reason is not None and policy.bypass:
        _log_bypass(git_dir, updates, blockers, reason)
        print(f"leakscan: {len(blockers)} secret(s) pushed with a bypass ({reason!r}); this was logged.", file=out)
        return 0
    print(f"leakscan: push rejected: {len(blockers)} secret(s) found in the pushed commits", file=out)
    for f in blockers:
        state = "" if f.verification == "unverified" else f" [{f.verification}]"
        print(f"  {_where(f, refs)}  {f.detector}  {f.redacted}{state}", file=out)
    print("How to fix:", file=out)
    print("  - remove the secret from the commits that add it (git rebase -i, or git commit --amend for the last one),", file=out)
    print("    revoke it with its provider, and push again;", file=out)
    print("  - or, for a false positive, add `leakscan:allow` on the line;", file=out)
    if policy.bypass:
        print('  - or bypass, logged: git push -o leakscan.bypass="<reason>"', file=out)
    print(f"leakscan: scanned in {time.monotonic() - started:.2f} s", file=out)
    return 1


@contextmanager
def _time_limit(seconds: float):
    """The scan's own budget (the policy's `timeout`): past it, on_error decides."""

    def expired(signum, frame):
        raise TimeoutError(f"took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _scan_push(git_dir: Path, updates, policy: Policy):
    from .pipeline import run
    from .sources.history import HistoryOptions, git_sources

    ruleset = load_rules()
    scanner = Scanner(ruleset)
    repo = open_repo(git_dir)
    tips = tuple(sorted({new for _, new, _ in updates}))
    sources = git_sources(repo, options=HistoryOptions(rev_range=Pushed(tips), work_tree=False))
    findings = run(sources, scanner, jobs=1).findings
    if policy.verify and findings:
        _verify(ruleset, findings, policy.verify_budget)
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


def _where(f: Finding, refs: dict[str, str]) -> str:
    ref = refs.get(f.commit or "", "?")
    place = f.path + (f"!{f.container}" if f.container else "")
    return f"{ref} {(f.commit or '')[:12]} {place}:{f.line}"


def _log_bypass(git_dir: Path, updates, findings: list[Finding], reason: str) -> None:
    who = {k: v for k, v in os.environ.items() if k in ("GL_USERNAME", "GL_ID", "GITHUB_USER_LOGIN", "REMOTE_USER", "USER")}
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reason": reason, "who": who,
             "refs": [ref for _, _, ref in updates],
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
