"""Detectors are data: one TOML file per provider under `detectors/`.

This module reads and validates those files into `Rule` objects. A malformed file stops
start-up with `DetectorError("<file>: rule <id>: <reason>")`. The file format is documented in
detectors/README.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import re as _stdlib_re  # only to compute pattern widths; matching uses `regex`
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from . import __version__
from .checks import CHECKS, FILTERS
from .lazyre import lazy_import, lazy_regex
from .paths import cache_root
from .verify.spec import SpecError, VerifySpec, parse_spec

regex = lazy_import("regex")

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "detectors"
PACKAGED_DIR = Path(__file__).resolve().parent / "_detectors"

DEFAULT_CONTEXT_WITHIN = 64
MAX_WIDTH = 16384  # widest match a rule may have; bounds the streaming overlap
_ID = lazy_regex(r"^[a-z0-9][a-z0-9-]*$")
_RULE_KEYS = {
    "id", "description", "keywords", "pattern", "entropy", "checks", "filters", "context",
    "allow", "max_length", "generic", "exclude_paths", "examples", "verify", "revoke", "severity",
}  # fmt: skip
_FILE_KEYS = {"name", "rules", "verify", "revoke"}


class DetectorError(ValueError):
    pass


@dataclass(frozen=True)
class Examples:
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Rule:
    id: str
    provider: str
    provider_name: str
    description: str
    keywords: tuple[str, ...]
    pattern: str  # the full pattern as matched (context prefix included), `regex` syntax
    min_width: int
    max_width: int
    min_entropy: float | None = None
    checks: tuple[str, ...] = ()
    filters: tuple[str, ...] = ("placeholder",)
    allow: tuple[str, ...] = ()
    generic: bool = False
    exclude_paths: tuple[str, ...] = ()
    severity: str = "high"
    examples: Examples = field(default_factory=Examples)
    verify: VerifySpec | None = None
    revoke: dict[str, Any] | None = None
    source_file: str = ""
    compiled: regex.Pattern | None = field(default=None, repr=False)

    @property
    def regex(self) -> regex.Pattern:
        """The pattern compiled for matching bytes: when the file is loaded, or, for a rule set
        loaded from the cache (validated when it was written), on first use: compiling every
        pattern took most of a second, and a scan confirms with few of them."""
        if self.compiled is None:
            object.__setattr__(self, "compiled", regex.compile(self.pattern.encode()))
        return self.compiled

    @cached_property
    def named_groups(self) -> bool:
        """Named groups besides `secret` (handed to verification)."""
        return any(name != "secret" for name in self.regex.groupindex)

    @cached_property
    def allow_regexes(self) -> tuple[regex.Pattern, ...]:
        return tuple(regex.compile(a.encode()) for a in self.allow)

    @cached_property
    def exclude_path_regexes(self) -> tuple[regex.Pattern, ...]:
        return tuple(regex.compile(p) for p in self.exclude_paths)

    @cached_property
    def keywords_lower(self) -> tuple[bytes, ...]:
        return tuple(k.lower().encode() for k in self.keywords)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]

    @cached_property
    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}

    @cached_property
    def digest(self) -> str:
        """Identifies this detector set; a scan cache keyed on it is invalidated by any change."""
        h = hashlib.sha256()
        for r in self.rules:
            h.update(repr((r.id, r.pattern, r.keywords, r.min_entropy, r.checks, r.filters,
                           r.allow, r.generic)).encode())  # fmt: skip
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.rules)


def pattern_width(pattern: str, declared_max: int | None, where: str) -> tuple[int, int]:
    """(min, max) length of what the pattern can match. Derived from the pattern with the
    stdlib parser when it understands it; otherwise, or when unbounded, `max_length` must say."""
    try:
        lo, hi = _stdlib_re._parser.parse(pattern).getwidth()  # type: ignore[attr-defined]
    except Exception:
        lo, hi = 1, None
    if hi is not None and hi >= _stdlib_re._constants.MAXREPEAT:  # type: ignore[attr-defined]
        hi = None
    if declared_max is not None:
        hi = declared_max if hi is None else min(hi, declared_max)
    if hi is None:
        raise DetectorError(f"{where}: pattern has no upper bound on its length; set max_length")
    if hi > MAX_WIDTH:
        raise DetectorError(f"{where}: pattern may match {hi} bytes; at most {MAX_WIDTH}")
    return lo, hi


def _str_list(value: Any, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DetectorError(f"{where}: {key} must be a list of non-empty strings")
    return tuple(value)


def _build_rule(raw: dict[str, Any], provider: str, provider_name: str, file_defaults: dict,
                source: str) -> Rule:  # fmt: skip
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID.match(rid):
        raise DetectorError(f"{source}: rule {rid!r}: id must be lower-case letters, digits, '-'")
    where = f"{source}: rule {rid}"
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise DetectorError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("description", "pattern"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise DetectorError(f"{where}: {key} is required")
    body = raw["pattern"]
    context = raw.get("context")
    keywords = _str_list(raw["keywords"], where, "keywords") if "keywords" in raw else ()
    if context is not None:
        if not isinstance(context, dict) or "keywords" not in context:
            raise DetectorError(f"{where}: context must be a table with keywords")
        ctx_words = _str_list(context["keywords"], where, "context.keywords")
        within = context.get("within", DEFAULT_CONTEXT_WITHIN)
        if not isinstance(within, int) or not 0 <= within <= 1024:
            raise DetectorError(f"{where}: context.within must be an integer 0..1024")
        secret_part = body if "(?P<secret>" in body else f"(?P<secret>{body})"
        alternation = "|".join(regex.escape(w) for w in ctx_words)
        full = f"(?i:{alternation})[\\s\\S]{{0,{within}}}?{secret_part}"
        keywords = keywords or ctx_words
    else:
        full = body
    try:
        compiled = regex.compile(full.encode())
    except (regex.error, UnicodeEncodeError) as exc:
        raise DetectorError(f"{where}: pattern does not compile: {exc}") from None
    if compiled.groups > 1 and "secret" not in compiled.groupindex:
        raise DetectorError(f"{where}: several groups; name the secret one (?P<secret>...)")
    if not keywords:
        raise DetectorError(f"{where}: keywords are required (the prefilter needs them)")

    lo, hi = pattern_width(full, raw.get("max_length"), where)
    for k in keywords:
        if len(k) > hi:
            raise DetectorError(f"{where}: keyword {k!r} is longer than any match")

    checks = _str_list(raw.get("checks", []), where, "checks") if raw.get("checks") else ()
    for c in checks:
        if c not in CHECKS:
            raise DetectorError(f"{where}: unknown check {c!r} (known: {', '.join(CHECKS)})")
    generic = bool(raw.get("generic", False))
    filters = raw.get("filters", ["generic"] if generic else ["placeholder"])
    filters = _str_list(filters, where, "filters") if filters else ()
    for f in filters:
        if f not in FILTERS:
            raise DetectorError(f"{where}: unknown filter {f!r} (known: {', '.join(FILTERS)})")
    entropy = raw.get("entropy")
    if entropy is not None and (not isinstance(entropy, (int, float)) or not 0 <= entropy <= 8):
        raise DetectorError(f"{where}: entropy must be a number of bits per byte, 0..8")
    allow = _str_list(raw.get("allow", []), where, "allow") if raw.get("allow") else ()
    for a in allow:
        try:
            regex.compile(a)
        except regex.error as exc:
            raise DetectorError(f"{where}: allow pattern {a!r} does not compile: {exc}") from None
    excl = _str_list(raw["exclude_paths"], where, "exclude_paths") if raw.get("exclude_paths") else ()
    ex = raw.get("examples", {})
    if not isinstance(ex, dict):
        raise DetectorError(f"{where}: examples must be a table with positive/negative lists")
    examples = Examples(
        positive=_str_list(ex["positive"], where, "examples.positive") if ex.get("positive") else (),
        negative=_str_list(ex["negative"], where, "examples.negative") if ex.get("negative") else (),
    )
    severity = raw.get("severity", "high")
    if severity not in ("low", "medium", "high", "critical"):
        raise DetectorError(f"{where}: severity must be low, medium, high or critical")
    verify = raw.get("verify", file_defaults.get("verify"))
    revoke = raw.get("revoke", file_defaults.get("revoke"))
    for key, value in (("verify", verify), ("revoke", revoke)):
        if value is not None and not isinstance(value, dict):
            raise DetectorError(f"{where}: {key} must be a table")
    try:
        verify_spec = parse_spec(verify, where) if verify is not None else None
    except SpecError as exc:
        raise DetectorError(str(exc)) from None
    return Rule(
        id=rid, provider=provider, provider_name=provider_name, description=raw["description"],
        keywords=keywords, pattern=full, min_width=lo, max_width=hi,
        min_entropy=float(entropy) if entropy is not None else None, checks=checks,
        filters=filters, allow=allow, generic=generic, exclude_paths=excl, severity=severity,
        examples=examples, verify=verify_spec, revoke=revoke, source_file=source, compiled=compiled,
    )  # fmt: skip


def load_file(path: Path) -> list[Rule]:
    import tomllib  # detector files are parsed only when the validated set is not cached

    source = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DetectorError(f"{source}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DetectorError(f"{source}: not valid TOML: {exc}") from None
    provider = path.stem
    if not _ID.match(provider):
        raise DetectorError(f"{source}: file name must be the provider id (lower-case, digits, '-')")
    return rules_from_data(data, provider, source)


def rules_from_data(data: dict[str, Any], provider: str, source: str) -> list[Rule]:
    """The rules of one detector file's parsed TOML (also a config file's `[[rules]]`)."""
    unknown = set(data) - _FILE_KEYS
    if unknown:
        raise DetectorError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    rules = data.get("rules")
    if not isinstance(rules, list) or not rules:
        raise DetectorError(f"{source}: needs at least one [[rules]] table")
    name = data.get("name", provider)
    defaults = {k: data[k] for k in ("verify", "revoke") if k in data}
    out = []
    for raw in rules:
        if not isinstance(raw, dict):
            raise DetectorError(f"{source}: each [[rules]] entry must be a table")
        out.append(_build_rule(raw, provider, name, defaults, source))
    return out


def default_dirs() -> list[Path]:
    """The shipped detectors: the repo's `detectors/` in a checkout, the packaged copy otherwise."""
    return [BUILTIN_DIR] if BUILTIN_DIR.is_dir() else [PACKAGED_DIR]


def load_rules(dirs: list[Path] | None = None, *, only: set[str] | None = None, extra: Sequence[Rule] = (),
               defaults: bool = True) -> RuleSet:  # fmt: skip
    """The detectors of `dirs` (default: the built-in ones; none when `defaults` is false and no
    dirs are given) plus `extra` rules (a config file's), narrowed to `only`. The validated
    detector files are cached (`_ruleset_cache_path`); `extra` rules never are."""
    files: list[tuple[str, os.stat_result | None]] = []  # with their stats, where listing gave them
    for d in dirs or (default_dirs() if defaults else []):
        found = _detector_files(d)
        if found == []:
            raise DetectorError(f"{d}: no detector files (*.toml)")
        files += found if found is not None else [(str(d), None)]  # a file named on its own
    cache = _ruleset_cache_path(files) if files else None
    cached = _load_cached(cache) if cache is not None else None
    rules: list[Rule] = list(cached) if cached is not None else []
    if cached is None:
        seen: dict[str, str] = {}
        for name, _ in files:
            f = Path(name)
            for rule in load_file(f):
                if rule.id in seen:
                    raise DetectorError(f"{f.name}: rule {rule.id}: id already used in {seen[rule.id]}")
                seen[rule.id] = f.name
                rules.append(rule)
        if cache is not None:
            _store_cached(cache, rules)
    known = {r.id: r.source_file for r in rules}
    for rule in extra:
        if rule.id in known:
            raise DetectorError(f"{rule.source_file}: rule {rule.id}: id already used in {known[rule.id]}")
        known[rule.id] = rule.source_file
        rules.append(rule)
    if only:
        missing = only - {r.id for r in rules} - {r.provider for r in rules}
        if missing:
            raise DetectorError(f"unknown detector(s): {', '.join(sorted(missing))}")
        rules = [r for r in rules if r.id in only or r.provider in only]
    return RuleSet(tuple(rules))


_RULESET_FORMAT = 2  # bump when what a cached rule set holds changes shape


def _detector_files(d: Path) -> list[tuple[str, os.stat_result]] | None:
    """The paths of the `*.toml` files of directory `d` by name, each with its stat (one
    `scandir`, and strings: every start lists them, and globbing them through pathlib, or
    making a Path of each, took longer than loading the cached rules); None when `d` is not a
    directory."""
    try:
        with os.scandir(d) as it:
            found = sorted((e.name, e.stat()) for e in it if e.name.endswith(".toml"))
    except NotADirectoryError:
        return None
    except OSError as exc:
        if not d.is_dir():
            return None
        raise DetectorError(f"{d}: cannot list detector files: {exc.strerror}") from None
    return [(os.path.join(d, name), st) for name, st in found]


def _ruleset_cache_path(files: list[tuple[str, os.stat_result | None]]) -> Path | None:
    """Where the rule set built from `files` (with their stats, where known) is cached: keyed by
    their names, sizes and modification times (as Python keys its bytecode), those of the code
    that validates them, and the Python version, so that any change is a miss. Statting the
    files takes a millisecond, reading them all six; parsing and validating them took most of a
    second."""
    if os.environ.get("LEAKSCAN_NO_CACHE"):
        return None
    h = hashlib.sha256(f"{__version__}\0{sys.version}\0{_RULESET_FORMAT}".encode())
    here = os.path.dirname(__file__)
    code = [(os.path.join(here, *name), None) for name in (("detectors.py",), ("checks.py",), ("verify", "spec.py"))]
    try:
        for f, st in (*code, *files):
            st = st or os.stat(f)
            h.update(f"\0{f}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    except OSError:
        return None  # load_file reports an unreadable file
    return cache_root() / f"rules-{h.hexdigest()[:32]}.pickle"


def _load_cached(path: Path) -> list[Rule] | None:
    # The cache dir is the user's own, like the compiled Hyperscan database beside it; nothing
    # from a scanned repository is ever unpickled. A damaged or foreign file is a miss.
    try:
        rules = pickle.loads(path.read_bytes())
    except Exception:
        return None
    if not isinstance(rules, list) or not all(isinstance(r, Rule) for r in rules):
        return None
    return rules


def _store_cached(path: Path, rules: list[Rule]) -> None:
    from .paths import write_cache_file

    # patterns are stored as text: a pickled compiled pattern is compiled again on loading
    bare = [dataclasses.replace(r, compiled=None) for r in rules]
    write_cache_file(path, pickle.dumps(bare, protocol=pickle.HIGHEST_PROTOCOL))


TABLE_BEGIN = "<!-- provider-table:begin (generated by `leakscan detectors table --write`; do not edit) -->"
TABLE_END = "<!-- provider-table:end -->"


def provider_table(ruleset: RuleSet, revocable: frozenset[str] | set[str]) -> str:
    """The Markdown table of providers in detectors/README.md: what each file brings."""
    by_provider: dict[str, list[Rule]] = {}
    for rule in ruleset.rules:
        by_provider.setdefault(rule.provider, []).append(rule)
    rows = ["| provider | file | rules | offline check | verifiable | revocable |", "|---|---|---|---|---|---|"]
    for provider, rules in sorted(by_provider.items()):
        checks = sorted({c for r in rules for c in r.checks})
        verifiable = sum(r.verify is not None for r in rules)
        rows.append(f"| {rules[0].provider_name} | `{provider}.toml` | {', '.join(f'`{r.id}`' for r in rules)} | "
                    f"{', '.join(checks) or '—'} | {f'{verifiable}/{len(rules)}' if verifiable else '—'} | "
                    f"{'built-in' if provider in revocable else '—'} |")  # fmt: skip
    verifiable_providers = sum(any(r.verify is not None for r in rules) for rules in by_provider.values())
    summary = (f"{len(by_provider)} providers and formats, {len(ruleset.rules)} rules, "
               f"{verifiable_providers} providers verifiable.")  # fmt: skip
    return "\n".join([TABLE_BEGIN, summary, "", *rows, TABLE_END])


def replace_table(readme: str, table: str) -> str:
    """`readme` with its generated table replaced (appended when it has none yet)."""
    if TABLE_BEGIN in readme and TABLE_END in readme:
        head, rest = readme.split(TABLE_BEGIN, 1)
        return head + table + rest.split(TABLE_END, 1)[1]
    return readme.rstrip("\n") + "\n\n## Providers\n\n" + table + "\n"
