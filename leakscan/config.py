"""A project's own configuration: `.leakscan.toml` at the scan root, `--config FILE`, or the file
named by `LEAKSCAN_CONFIG` (in that order of precedence: the flag, the variable, the root).

    [extend]
    use_default = true          # false: only the rules below (said loudly on stderr)

    [[rules]]                   # the format of a detectors/*.toml rule; added to the built-ins
    id = "acme-api-key"
    description = "ACME API key"
    keywords = ["acme_"]
    pattern = 'acme_[a-z0-9]{32}'

    [[allowlist]]               # or one [allowlist] table; every entry gives its reason
    reason = "test fixtures hold generated keys"
    paths = ["tests/fixtures/**"]        # globs (gitignore-like: `**`, a bare name matches anywhere)
    regexes = ['^AKIA[0-9A-Z]{12}EXAMPLE$']  # searched in the secret
    fingerprints = ["0123456789abcdef0123456789abcdef"]
    stopwords = ["dummy"]                # the secret contains one (any case)

    [options]                   # defaults for command-line options; the command line wins
    exclude_paths = ["vendor/**"]
    redact = true

Everything here is also the plumbing that gives `scan`, `repo`, `sweep` and `serve` the same
rules, suppressions and scope (`Settings.prepare`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

CONFIG_NAME = ".leakscan.toml"
CONFIG_ENV = "LEAKSCAN_CONFIG"
IGNORE_FILE = ".leakscanignore"
CUSTOM_PROVIDER = "custom"
_ALLOW_KINDS = ("paths", "regexes", "fingerprints", "stopwords")
_TOP_KEYS = {"extend", "rules", "allowlist", "options"}

# [options] key → (the command-line parameter it sets, its type)
OPTIONS: dict[str, tuple[str, type]] = {
    "format": ("fmt", str),
    "redact": ("redact", bool),
    "verify": ("no_verify", bool),  # inverted
    "verify_intrusive": ("verify_intrusive", bool),
    "only_verified": ("only_verified", bool),
    "fail_on": ("fail_on", str),
    "only": ("only", list),
    "exclude_paths": ("exclude_path", list),
    "max_target_mb": ("max_target_mb", int),
    "exit_code": ("exit_code", int),
    "include_deps": ("include_deps", bool),
    "decode": ("no_decode", bool),  # inverted
    "report_unused_ignores": ("report_unused_ignores", bool),
    "baseline": ("baseline", Path),
    "ignore_file": ("ignore_file", Path),
    "discussions": ("no_discussions", bool),  # inverted
}
_INVERTED = {"verify", "decode", "discussions"}


class ConfigError(ValueError):
    """A configuration file that cannot be used; one line for people."""


# ---- globs ------------------------------------------------------------------------------------


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A gitignore-like glob as a regex over '/'-separated paths: `*` and `?` stay within a
    path segment, `**` crosses them, a pattern without a '/' matches a name at any depth, and a
    pattern matching a directory matches everything below it."""
    pat = pattern.strip()
    anchored = "/" in pat.rstrip("/")
    pat = pat.strip("/")
    out, i = [], 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and "]" in pat[i + 2 :]:
            end = pat.index("]", i + 2)
            body = pat[i + 1 : end].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"{prefix}{''.join(out)}(?:/.*)?", re.DOTALL)


class Globs:
    """Path globs that remember which of them matched something (for unused-entry reports)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(dict.fromkeys(p for p in patterns if p.strip()))
        self._compiled = [(p, glob_regex(p)) for p in self.patterns]
        self.used: set[str] = set()

    def match(self, path: str) -> str | None:
        for pattern, rx in self._compiled:
            if rx.fullmatch(path):
                self.used.add(pattern)
                return pattern
        return None

    def __bool__(self) -> bool:
        return bool(self.patterns)


# ---- the allowlist ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowEntry:
    reason: str
    where: str  # "<file>: allowlist 2", for messages
    paths: tuple[str, ...] = ()
    regexes: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()
    stopwords: tuple[str, ...] = ()

    @cached_property
    def _paths(self) -> list[tuple[str, re.Pattern[str]]]:
        return [(p, glob_regex(p)) for p in self.paths]

    @cached_property
    def _regexes(self) -> list[tuple[str, re.Pattern[str]]]:
        return [(r, re.compile(r)) for r in self.regexes]

    def hits(self, finding) -> Iterator[tuple[str, str]]:
        """(kind, value) of each item of this entry that matches the finding."""
        for p, rx in self._paths:
            if rx.fullmatch(finding.path):
                yield "paths", p
        for r, rx in self._regexes:
            if rx.search(finding.secret):
                yield "regexes", r
        if finding.fingerprint in self.fingerprints:
            yield "fingerprints", finding.fingerprint
        low = finding.secret.lower()
        for w in self.stopwords:
            if w.lower() in low:
                yield "stopwords", w


class Allowlist:
    """A config file's allowlist entries; remembers which items suppressed a finding."""

    def __init__(self, entries: Sequence[AllowEntry] = ()) -> None:
        self.entries = tuple(entries)
        self.used: set[tuple[int, str, str]] = set()

    def allows(self, finding) -> bool:
        hit = False
        for n, entry in enumerate(self.entries):
            for kind, value in entry.hits(finding):
                self.used.add((n, kind, value))
                hit = True
        return hit

    def unused(self) -> list[str]:
        out = []
        for n, entry in enumerate(self.entries):
            for kind in _ALLOW_KINDS:
                for value in getattr(entry, kind):
                    if (n, kind, value) not in self.used:
                        out.append(f"{entry.where} ({entry.reason}): {kind[:-1]} {value!r} matched no finding")
        return out

    def __bool__(self) -> bool:
        return bool(self.entries)


# ---- the file ---------------------------------------------------------------------------------


@dataclass
class Config:
    path: Path | None = None
    rules: tuple = ()  # detectors.Rule
    use_default: bool = True
    allowlist: Allowlist = field(default_factory=Allowlist)
    options: dict[str, Any] = field(default_factory=dict)


def locate(root: Path | None, explicit: Path | None = None) -> Path | None:
    """The configuration in force: `--config`, else $LEAKSCAN_CONFIG, else `.leakscan.toml` at
    the scan root (a file's folder)."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file not found: {explicit}")
        return explicit
    env = os.environ.get(CONFIG_ENV, "")
    if env:
        if not Path(env).is_file():
            raise ConfigError(f"{CONFIG_ENV} names no file: {env}")
        return Path(env)
    if root is None:
        return None
    folder = root if root.is_dir() else root.parent
    found = folder / CONFIG_NAME
    return found if found.is_file() else None


def load(path: Path | None) -> Config:
    if path is None:
        return Config()
    import tomllib  # only when there is a configuration file

    name = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_TOP_KEYS))})")
    extend = data.get("extend", {})
    if not isinstance(extend, dict) or set(extend) - {"use_default"} or not isinstance(extend.get("use_default", True), bool):
        raise ConfigError(f"{name}: [extend] takes one key, use_default = true|false")
    rules = ()
    if "rules" in data:
        from .detectors import DetectorError, rules_from_data

        if not isinstance(data["rules"], list):
            raise ConfigError(f"{name}: rules must be [[rules]] tables")
        try:
            rules = tuple(rules_from_data({"name": "custom rules", "rules": data["rules"]}, CUSTOM_PROVIDER, name))
        except DetectorError as exc:
            raise ConfigError(str(exc)) from None
    return Config(path=path, rules=rules, use_default=extend.get("use_default", True),
                  allowlist=_allowlist(data.get("allowlist", []), name, path.parent),
                  options=_options(data.get("options", {}), name, path.parent))  # fmt: skip


def _allowlist(raw: Any, name: str, base: Path) -> Allowlist:
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise ConfigError(f"{name}: allowlist must be an [allowlist] table or [[allowlist]] tables")
    entries = []
    for n, e in enumerate(raw, 1):
        where = f"{name}: allowlist {n}"
        unknown = set(e) - {"reason", *_ALLOW_KINDS}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if not isinstance(e.get("reason"), str) or not e["reason"].strip():
            raise ConfigError(f"{where}: give the reason (reason = \"…\")")
        items: dict[str, tuple[str, ...]] = {}
        for kind in _ALLOW_KINDS:
            values = e.get(kind, [])
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
                raise ConfigError(f"{where}: {kind} must be a list of non-empty strings")
            items[kind] = tuple(values)
        for r in items["regexes"]:
            try:
                re.compile(r)
            except re.error as exc:
                raise ConfigError(f"{where}: regex {r!r} does not compile: {exc}") from None
        for fp in items["fingerprints"]:
            if not re.fullmatch(r"[0-9a-f]{32}", fp):
                raise ConfigError(f"{where}: not a leakscan fingerprint: {fp!r}")
        if not any(items.values()):
            raise ConfigError(f"{where}: lists nothing to allow (paths, regexes, fingerprints, stopwords)")
        entries.append(AllowEntry(e["reason"].strip(), where, **items))
    return Allowlist(entries)


def _options(raw: Any, name: str, base: Path) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: [options] must be a table")
    out = {}
    for key, value in raw.items():
        if key not in OPTIONS:
            raise ConfigError(f"{name}: unknown option {key!r} (known: {', '.join(sorted(OPTIONS))})")
        kind = OPTIONS[key][1]
        ok = (isinstance(value, list) and all(isinstance(v, str) for v in value)) if kind is list else \
            isinstance(value, str) if kind is Path else isinstance(value, kind) and not (kind is int and isinstance(value, bool))  # fmt: skip
        if not ok:
            raise ConfigError(f"{name}: option {key} must be {'a list of strings' if kind is list else 'a path' if kind is Path else f'a {kind.__name__}'}")
        if kind is Path:
            value = base / value  # relative to the config file
        out[key] = (not value) if key in _INVERTED else value
    return out


def apply_options(ctx, config: Config, values: dict[str, Any]) -> dict[str, Any]:
    """`values` (command-line parameter → value) with the config's [options] filled in where
    the command line (or an environment variable) gave nothing; lists from both are joined."""
    out = dict(values)
    for key, value in config.options.items():
        param = OPTIONS[key][0]
        if param not in out:
            continue  # an option this command does not have
        if isinstance(value, list):
            out[param] = list(dict.fromkeys([*value, *(out[param] or [])]))
        elif ctx is None:  # no parser to ask: a value given is the command line's
            out[param] = value if out[param] is None else out[param]
        elif getattr(ctx.get_parameter_source(param), "name", None) not in ("COMMANDLINE", "ENVIRONMENT"):
            # (compared by name: typer may vendor its own click)
            out[param] = value
    return out


# ---- everything a surface needs to scan the same way ------------------------------------------


@dataclass
class Scope:
    """What is not scanned at all: places under --exclude-path globs, blobs over --max-target-mb
    (reported as skipped)."""

    exclude: Globs = field(default_factory=lambda: Globs(()))
    max_bytes: int | None = None

    def narrow(self, blob):
        """The blob with its excluded places dropped (None: none left), or a Skip."""
        from dataclasses import replace

        from .model import Skip

        places = blob.places
        if self.exclude:
            places = tuple(p for p in places if self.exclude.match(p.path) is None)
            if not places:
                return None
        if self.max_bytes is not None and blob.size > self.max_bytes:
            return Skip(places[0].path, f"larger than {self.max_bytes / (1 << 20):g} MiB (--max-target-mb): not scanned")
        return blob if places is blob.places else replace(blob, places=places)

    def history_key(self, cache_key: str) -> str:
        """The key under which a repository's history walk is remembered: a scan that left
        paths or large blobs out must not count as having covered them (the next, unscoped scan
        would skip that history). Which objects are clean stays shared: it does not depend on
        where a blob sits."""
        if not self.exclude and self.max_bytes is None:
            return cache_key
        import hashlib

        return hashlib.sha256(repr((cache_key, self.exclude.patterns, self.max_bytes)).encode()).hexdigest()[:32]


@dataclass
class Settings:
    """The options every scanning surface shares, as given; `prepare` turns them into the rules,
    suppressions and scope of a scan."""

    root: Path | None = None  # where `.leakscan.toml` and `.leakscanignore` are looked for
    config: Path | None = None
    rules: Sequence[Path] = ()
    only: Sequence[str] = ()
    exclude_paths: Sequence[str] = ()
    ignore_file: Path | None = None
    baseline: Path | None = None
    max_target_mb: float | None = None


@dataclass
class Prepared:
    config: Config
    ruleset: Any  # detectors.RuleSet
    suppressions: Any  # findings.Suppressions
    scope: Scope
    notes: list[str] = field(default_factory=list)  # what people must be told (replaced rules)
    ignore_name: str = IGNORE_FILE

    def unused(self) -> list[str]:
        """Allowlist, ignore-file and exclude entries that matched nothing in this scan."""
        s = self.suppressions
        out = [f"{self.ignore_name}: fingerprint {fp} matched no finding" for fp in sorted(s.fingerprints - s.used)]
        out += s.allowlist.unused() if s.allowlist is not None else []
        out += [f"--exclude-path {p!r} matched no path" for p in self.scope.exclude.patterns if p not in self.scope.exclude.used]
        return out


def prepare(settings: Settings, config: Config | None = None) -> Prepared:
    """Rules, suppressions and scope for `settings` (ConfigError for people). `config`: an
    already loaded one (the command line applied its [options] first)."""
    from .detectors import DetectorError, load_rules
    from .findings import SuppressionError, Suppressions, read_baseline, read_ignore_file

    if config is None:
        config = load(locate(settings.root, settings.config))
    for p in settings.rules:
        if not p.exists():
            raise ConfigError(f"detector path not found: {p}")
    notes = []
    if not config.use_default:
        notes.append(f"{config.path}: [extend] use_default = false: the built-in detectors are OFF; "
                     f"only the {len(config.rules)} rule(s) of this file{' and --rules' if settings.rules else ''} are used")  # fmt: skip
    try:
        ruleset = load_rules(list(settings.rules) or None, only=set(settings.only) or None, extra=config.rules,
                             defaults=config.use_default)  # fmt: skip
    except DetectorError as exc:
        raise ConfigError(f"invalid detectors: {exc}") from None
    if not len(ruleset):
        raise ConfigError("no detectors left to run (use_default = false and no rules)")
    suppressions = Suppressions(allowlist=config.allowlist or None)
    ignore_name = IGNORE_FILE
    try:
        if settings.ignore_file is not None:
            suppressions.fingerprints = read_ignore_file(settings.ignore_file)
            ignore_name = str(settings.ignore_file)
        elif settings.root is not None:
            default = (settings.root if settings.root.is_dir() else settings.root.parent) / IGNORE_FILE
            if default.is_file():
                suppressions.fingerprints = read_ignore_file(default)
        if settings.baseline is not None:
            suppressions.baseline = read_baseline(settings.baseline)
    except SuppressionError as exc:
        raise ConfigError(str(exc)) from None
    max_bytes = int(settings.max_target_mb * (1 << 20)) if settings.max_target_mb else None
    scope = Scope(Globs(settings.exclude_paths), max_bytes)
    return Prepared(config, ruleset, suppressions, scope, notes, ignore_name)

