"""The matcher: bytes in, candidates out. Knows nothing of files, git or HTTP.

One multi-pattern pass selects where a rule may match:
  * Hyperscan compiles every rule's full pattern (in prefilter mode where it cannot take the exact
    one) and reports the *end* of each possible match. A match of rule R ending at e starts in
    [e - R.max_width, e - R.min_width]. Rules wider than WIDE_RULE (PEM blocks, JWTs) are in a
    second database by their keywords, found as below.
  * Without Hyperscan, a search for every rule keyword does the same job: every match of R
    contains one of R's keywords, so a keyword at [ks, ke) puts the match start in
    [ke - R.max_width, ks].
Each rule's own `regex` pattern then confirms on those start windows only, and the same checks
and filters decide what becomes a `Candidate`. Both engines therefore yield identical candidates;
a match must contain one of its rule's keywords in either case.

Streams are scanned in overlapping chunks: chunk i owns the matches that start before chunk i+1's
owned region begins, so nothing is lost at a boundary and nothing is reported twice.

The work on a chunk grows linearly with its length, whatever its content (an attacker chooses
it: a push that cannot be scanned in time must not get through). Every step is a sort and a
sweep or a lookup, none compares candidates pairwise:
  * start windows: at most one per byte per rule entry (Hyperscan reports a pattern's match end
    once; a keyword occurs once at a place); merged per rule by sorting;
  * confirmation: a rule's regex searches each merged window plus max_width + LOOKAROUND_MARGIN
    bytes after it, at most (max_width + margin) per window beyond the chunk itself, so the bytes
    searched are bounded by the chunk times a constant of the detector set (max_width ≤ 16 KiB);
  * checks and filters run once per match, on at most max_width bytes; a generic match that a
    specific rule already recognised is dropped first, by a binary search over the specific
    secrets' spans.
Nothing is capped (a cap would drop secrets past it); the time limits of the callers (the
hook's timeout) bound a whole scan.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .checks import CHECKS, FILTERS, shannon_entropy
from .detectors import MAX_WIDTH, Rule, RuleSet
from .lazyre import lazy_import
from .model import Candidate
from .paths import cache_root, write_cache_file

regex = lazy_import("regex")

try:  # Hyperscan ships as a binary wheel; where it can't load we fall back to `regex`.
    import hyperscan as _hs
except Exception:  # pragma: no cover - exercised by the forced-fallback tests instead
    _hs = None

WIDE_RULE = 512  # wider rules (PEM blocks) enter Hyperscan by their keywords: big bounded
# repeats cost Hyperscan seconds of compile time and buy nothing, the keywords being rare
LOOKAROUND_MARGIN = 64  # bytes a rule's lookbehind/lookahead may inspect outside its match
CHUNK_SIZE = 4 << 20
OVERLAP = MAX_WIDTH + 4 * LOOKAROUND_MARGIN

Hit = tuple[int, int]  # (rule index, offset)


class Matcher:
    def __init__(self, ruleset: RuleSet, engine: str | None = None) -> None:
        engine = engine or os.environ.get("LEAKSCAN_ENGINE", "auto")
        if engine not in ("auto", "hyperscan", "regex"):
            raise ValueError(f"unknown matcher engine {engine!r}")
        self.rules: tuple[Rule, ...] = ruleset.rules
        self.engine = "hyperscan" if engine != "regex" and _hs is not None else "regex"
        if engine == "hyperscan" and _hs is None:
            raise RuntimeError("the hyperscan engine was requested but hyperscan cannot be loaded")
        # How far before a changed span a new match may start: its own width (the narrow reach),
        # and for a specific rule, when a generic match reaches the span from further out, the
        # widest generic match it may have to cover too (the wide reach).
        widest_generic = max((r.max_width for r in self.rules if r.generic), default=0)
        self._reach = {False: [r.max_width + LOOKAROUND_MARGIN for r in self.rules],
                       True: [r.max_width + LOOKAROUND_MARGIN + (0 if r.generic else widest_generic) for r in self.rules]}  # fmt: skip
        self._generic = frozenset(r.id for r in self.rules if r.generic)
        # Two tiers, each its own Hyperscan database: rules up to WIDE_RULE bytes wide by their
        # full patterns, wider rules by their keywords. Around a changed span (`scan(changed=…)`)
        # each is searched only as far as its own rules reach.
        self._tiers = tuple(_Tier.of(self.rules, wide, self._reach) for wide in (False, True))
        if self.engine == "hyperscan":
            for name, tier in zip(("near", "far"), self._tiers):
                if tier.entries:
                    tier.db = _compile_hyperscan(lambda tier=tier: tier.expressions(self.rules), f"{ruleset.digest}-{name}")

    # -- compilation ---------------------------------------------------------------------------

    @functools.cached_property
    def _keyword_rules(self) -> dict[bytes, tuple[int, ...]]:
        """keyword (lower-case) → the rules that own it (the regex engine's search)."""
        table: dict[bytes, list[int]] = defaultdict(list)
        for idx, rule in enumerate(self.rules):
            for kw in rule.keywords_lower:
                table[kw].append(idx)
        return {kw: tuple(idxs) for kw, idxs in sorted(table.items())}

    # -- scanning ------------------------------------------------------------------------------

    def scan(self, data: bytes, *, base: int = 0, own: tuple[int, int] | None = None,
             changed: Sequence[tuple[int, int]] | None = None) -> list[Candidate]:  # fmt: skip
        """Candidates whose match starts in `own` (chunk-relative [from, until); default: the
        whole chunk), with offsets shifted by `base`, sorted by position then rule.

        `changed`: the spans [lo, hi) (sorted, apart) of a new version of a text outside which
        its bytes are an earlier version's, in runs as long as the gaps between them (see
        `versions`): only matches that reach into a span, or see one from their lookaround, are
        confirmed; any other match is one the earlier version holds, bytes and surroundings
        alike. Only the bytes such matches and their keywords can lie in are searched, when that
        is well short of the whole.

        A generic match is dropped where a specific rule recognises a secret (below), so the
        specific rules must be confirmed wherever a kept generic match lies. That is within
        their own width of the spans unless a generic match starts further out than the
        lookaround margin; only then (rarely) are they confirmed as far as the widest generic
        match reaches."""
        if not data:
            return []
        if changed is None:
            return self._scan(data, base, own, None, False)
        found = self._scan(data, base, own, changed, False)
        margin = LOOKAROUND_MARGIN
        for cand in found:
            if cand.rule_id in self._generic:
                start, end = cand.start - base, cand.end - base
                if not any(lo - margin <= start and end <= hi + margin for lo, hi in changed):
                    return self._scan(data, base, own, changed, True)
        return found

    def _scan(self, data: bytes, base: int, own: tuple[int, int] | None,
              changed: Sequence[tuple[int, int]] | None, wide: bool) -> list[Candidate]:  # fmt: skip
        first, limit = own or (0, len(data))
        reach = self._reach[wide]
        windows = self._start_windows(data, None if changed is None else self._regions(len(data), changed, wide))
        found: dict[tuple[int, int, int], Candidate] = {}
        specific: list[tuple[int, int]] = []  # secrets a specific rule recognised, kept or not
        covered: Callable[[int, int], bool] | None = None
        # Specific rules first: a generic rule never reports what a specific rule recognised (a
        # GitHub token is not a "generic API key", and neither is Stripe's documented example
        # that stripe.toml allows on purpose), so its matches there are dropped before their
        # checks and filters run — in a file of tokens, that is half the work.
        for idx in sorted(windows, key=lambda i: self.rules[i].generic):
            rule = self.rules[idx]
            if rule.generic and covered is None:
                covered = _span_index(specific)
            starts = _merge(windows[idx])
            if changed is not None:
                starts = _within(starts, [(lo - reach[idx], hi + LOOKAROUND_MARGIN - 1) for lo, hi in changed])
            for s0, s1 in starts:
                s0, s1 = max(s0, first), min(s1, limit - 1)
                if s0 >= limit:
                    break
                if s1 < s0:
                    continue
                for span, cand in _confirm(rule, data, s0, s1, base, covered if rule.generic else None):
                    if not rule.generic and span is not None:
                        specific.append(span)
                    if cand is not None:
                        found.setdefault((cand.match_start, cand.match_end, idx), cand)
        return [found[k] for k in sorted(found, key=lambda k: (k[0], k[1], self.rules[k[2]].id))]

    def _regions(self, n: int, changed: Sequence[tuple[int, int]], wide: bool) -> list[list[tuple[int, int]] | None]:
        """Per tier, the parts of n bytes where the keywords (or whole matches) of its rules
        that reach a changed span can lie; None where that is most of the whole."""
        out: list[list[tuple[int, int]] | None] = []
        margin = LOOKAROUND_MARGIN
        for tier in self._tiers:
            before, after = tier.reach[wide] + margin, tier.width + 2 * margin
            parts = _merge([(max(0, lo - before), min(n, hi + after)) for lo, hi in changed])
            out.append(None if sum(b - a for a, b in parts) >= n * 0.8 else parts)
        return out

    def _start_windows(self, data: bytes, regions: list[list[tuple[int, int]] | None] | None = None) -> dict[int, list[tuple[int, int]]]:
        """Where each rule's matches may start, from the keywords (or prefiltered patterns)
        found in data, or (per tier) in its `regions` of it."""
        windows: dict[int, list[tuple[int, int]]] = defaultdict(list)
        rules = self.rules
        if self.engine == "hyperscan":
            for t, tier in enumerate(self._tiers):
                parts = None if regions is None else regions[t]
                for a, b in parts if parts is not None else [(0, len(data))]:
                    tier.windows(rules, data, a, b, windows)
            return windows
        # ASCII lower-casing matches the byte patterns' case folding; find() runs at C speed
        if regions is None or any(parts is None for parts in regions):
            parts = [(0, len(data))]
        else:
            parts = _merge([span for tier_parts in regions for span in tier_parts])  # type: ignore[union-attr]
        for a, b in parts:
            lowered = data[a:b].lower()
            for kw, idxs in self._keyword_rules.items():
                ks = lowered.find(kw)
                while ks >= 0:
                    ke = ks + len(kw)
                    for idx in idxs:
                        windows[idx].append((max(0, a + ke - rules[idx].max_width), a + ks))
                    ks = lowered.find(kw, ks + 1)
        return windows

    def scan_stream(self, read: Callable[[int], bytes], chunk_size: int = CHUNK_SIZE) -> Iterator[tuple[bytes, int, list[Candidate]]]:
        """Scan a stream given by `read(n)` in overlapping chunks. Yields (chunk, chunk_offset,
        candidates) so the caller can locate lines without a second read."""
        feed = ChunkFeed(self, chunk_size)
        while data := read(chunk_size):
            for c in feed.feed(data):
                yield c.data, c.offset, c.candidates
        for c in feed.close():
            yield c.data, c.offset, c.candidates


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a stream as scanned: its bytes, where they sit, and the part it owns."""

    data: bytes
    offset: int  # of data[0] in the stream
    own: tuple[int, int]  # chunk-relative [from, until): match starts this chunk reports
    final: bool
    candidates: list[Candidate]


class ChunkFeed:
    """`Matcher.scan_stream` for bytes pushed in as they come (a layer decoded while its
    container streams past): `feed` returns the chunks it completed, `close` the last one.

    Chunk i owns match starts up to 2*margin past where chunk i+1 begins, chunk i+1 owns the
    rest: each side then sees every owned match whole, with margin for lookaround. Chunks start
    at fixed offsets (multiples of chunk_size - OVERLAP) however the bytes are pushed."""

    def __init__(self, matcher: Matcher, chunk_size: int = CHUNK_SIZE) -> None:
        if chunk_size <= 2 * OVERLAP:
            raise ValueError("chunk_size must exceed twice the overlap")
        self.matcher = matcher
        self.chunk_size = chunk_size
        self._buf = bytearray()
        self._offset = 0
        self._first = 0

    def feed(self, data: bytes) -> list[Chunk]:
        self._buf += data
        out = []
        size, handover = self.chunk_size, 2 * LOOKAROUND_MARGIN
        while len(self._buf) > size:  # a byte beyond the chunk: it is not the last
            out.append(self._scan(bytes(self._buf[:size]), (self._first, size - OVERLAP + handover), False))
            del self._buf[: size - OVERLAP]
            self._offset += size - OVERLAP
            self._first = handover
        return out

    def close(self) -> list[Chunk]:
        if not self._buf:
            return []
        data = bytes(self._buf)
        self._buf = bytearray()
        return [self._scan(data, (self._first, len(data)), True)]

    def _scan(self, data: bytes, own: tuple[int, int], final: bool) -> Chunk:
        return Chunk(data, self._offset, own, final, self.matcher.scan(data, base=self._offset, own=own))


_CACHE_FORMAT = 2  # bump when the layout of compiled entries changes


def bytes_reader(data: bytes) -> Callable[[int], bytes]:
    """read(n) over in-memory bytes, for scan_stream."""
    view = memoryview(data)
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        chunk = bytes(view[pos : pos + n])
        pos += len(chunk)
        return chunk

    return read


def file_reader(fh) -> Callable[[int], bytes]:
    """read(n) that returns n bytes unless at end of file (raw reads may return fewer)."""

    def read(n: int) -> bytes:
        buf = fh.read(n)
        if not buf or len(buf) == n:
            return buf or b""
        parts = [buf]
        got = len(buf)
        while got < n:
            more = fh.read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    return read


@dataclass(eq=False)
class _Tier:
    """Rules searched by one Hyperscan database, one entry per expression: (rule index, keyword
    length; 0 for the rule's full pattern), with the keyword itself (None for a pattern)."""

    entries: list[tuple[int, int]]
    keywords: list[bytes | None]
    width: int  # the widest rule's max_width
    reach: dict[bool, int]  # the furthest a rule's match may start before a changed span (narrow, wide)
    db: object = None

    @classmethod
    def of(cls, rules: tuple[Rule, ...], wide: bool, reach: dict[bool, list[int]]) -> _Tier:
        """The rules wider than WIDE_RULE (by their keywords), or the others (by their patterns);
        `reach`: each rule's narrow and wide reach (see `Matcher.scan`)."""
        entries: list[tuple[int, int]] = []
        keywords: list[bytes | None] = []
        mine: list[int] = []
        for idx, rule in enumerate(rules):
            if (rule.max_width > WIDE_RULE) != wide:
                continue
            mine.append(idx)
            for kw in rule.keywords_lower if wide else [None]:
                entries.append((idx, len(kw) if kw else 0))
                keywords.append(kw)
        width = max((rules[i].max_width for i in mine), default=0)
        return cls(entries, keywords, width, {w: max((reach[w][i] for i in mine), default=0) for w in (False, True)})

    def expressions(self, rules: tuple[Rule, ...]) -> list[tuple[bytes, int | None]]:
        """What Hyperscan compiles for each entry: the keyword (caseless), or the rule's pattern
        (flags decided when compiling)."""
        return [(regex.escape(kw, literal_spaces=True), _hs.HS_FLAG_CASELESS) if kw is not None
                else (rules[idx].pattern.encode(), None) for (idx, _), kw in zip(self.entries, self.keywords)]  # fmt: skip

    def windows(self, rules: tuple[Rule, ...], data: bytes, a: int, b: int, out: dict[int, list[tuple[int, int]]]) -> None:
        """Add the start windows of this tier's matches in data[a:b] to `out`."""
        if self.db is None:
            return
        ends: list[Hit] = []
        append = ends.append

        def on_match(entry: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
            append((entry, to + a))

        self.db.scan(data if a == 0 and b >= len(data) else data[a:b], match_event_handler=on_match)  # type: ignore[attr-defined]
        entries = self.entries
        for entry, end in ends:
            idx, kw_len = entries[entry]
            r = rules[idx]
            last = end - kw_len if kw_len else end - r.min_width
            out[idx].append((max(0, end - r.max_width), max(0, last)))


def _compile_hyperscan(expressions: Callable[[], list[tuple[bytes, int | None]]], key: str):
    """A block-mode database of `expressions()` (ids are their positions), or None if there are
    none; loaded from the cache when it was compiled before (the expressions are then not even
    built)."""
    cache = _hs_cache_path(key)
    if cache is not None:
        try:
            db = _hs.loadb(cache.read_bytes(), _hs.HS_MODE_BLOCK)
            db.scratch = _hs.Scratch(db)  # a loaded database comes without one
            return db
        except Exception:
            pass  # absent, stale or damaged: compile afresh
    listed = expressions()
    if not listed:
        return None
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    flags = [f if f is not None else _hs_flags_for(e) for e, f in listed]
    db.compile(expressions=[e for e, _ in listed], ids=list(range(len(listed))), elements=len(listed), flags=flags)
    if cache is not None:
        write_cache_file(cache, _hs.dumpb(db))
    return db


def _hs_cache_path(digest: str) -> Path | None:
    """Compiled databases are cached per detector set and Hyperscan version; compiling takes
    about a second, loading a millisecond."""
    if os.environ.get("LEAKSCAN_NO_CACHE"):
        return None
    base = cache_root()
    version = getattr(_hs, "__version__", "0")
    return Path(base) / f"hyperscan-{version}-f{_CACHE_FORMAT}-{digest}.db"


def _hs_flags_for(expr: bytes) -> int:
    """Exact mode when Hyperscan understands the pattern, prefilter mode (a superset) when not."""
    probe = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    try:
        probe.compile(expressions=[expr], ids=[0], elements=1, flags=[0])
        return 0
    except _hs.error:
        return _hs.HS_FLAG_PREFILTER


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    if not spans:
        return []
    spans.sort()
    out = [spans[0]]
    for s, e in spans[1:]:
        ls, le = out[-1]
        if s <= le + 1:
            if e > le:
                out[-1] = (ls, e)
        else:
            out.append((s, e))
    return out


def _within(windows: list[tuple[int, int]], allowed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `windows` (merged, inclusive [s0, s1]) inside `allowed` (sorted by start,
    inclusive, may overlap)."""
    allowed = _merge(allowed)
    out: list[tuple[int, int]] = []
    j = 0
    for s0, s1 in windows:
        while j < len(allowed) and allowed[j][1] < s0:
            j += 1
        k = j
        while k < len(allowed) and allowed[k][0] <= s1:
            a, b = max(s0, allowed[k][0]), min(s1, allowed[k][1])
            if a <= b:
                out.append((a, b))
            k += 1
    return out


def _span_index(spans: list[tuple[int, int]]) -> Callable[[int, int], bool]:
    """`overlaps(start, end)`: whether [start, end) overlaps one of `spans`, in O(log n).

    Spans sorted by start, with the furthest end reached by any span up to each one: the spans
    starting before `end` are a prefix, and one of them reaches past `start` iff its furthest
    end does. Pairwise comparison made a file of 85,000 tokens take minutes."""
    spans = sorted(spans)
    starts = [a for a, _ in spans]
    reach = list(itertools.accumulate((b for _, b in spans), max))

    def overlaps(start: int, end: int) -> bool:
        i = bisect.bisect_left(starts, end)
        return i > 0 and reach[i - 1] > start

    return overlaps


def _confirm(rule: Rule, data: bytes, s0: int, s1: int, base: int,
             covered: Callable[[int, int], bool] | None = None) -> Iterator[tuple[tuple[int, int] | None, Candidate | None]]:  # fmt: skip
    """Matches of `rule` that start in [s0, s1]: the secret's span when the rule recognises it as
    its kind (pattern, keyword and checks hold), and the candidate unless a filter says it is a
    placeholder or documented example. Matches whose secret's absolute span is `covered` are
    skipped. `pos`/`endpos` instead of slicing: lookbehind still sees the bytes before s0, and
    every such match ends well before `endpos`."""
    endpos = min(len(data), s1 + rule.max_width + LOOKAROUND_MARGIN)
    for m in rule.regex.finditer(data, s0, endpos):
        if m.start() > s1:
            break
        if m.end() - m.start() > rule.max_width:
            continue  # beyond a declared max_length: neither engine could promise to see it
        whole = m.group(0).lower()
        if not any(k in whole for k in rule.keywords_lower):
            continue
        group = "secret" if "secret" in m.re.groupindex else (1 if m.re.groups == 1 else 0)
        secret = m.group(group)
        start, end = m.span(group)
        span = (base + start, base + end)
        if not secret or (covered is not None and covered(*span)):
            continue
        if not all(CHECKS[name](secret) for name in rule.checks):
            continue
        if _unwanted(rule, secret):
            yield span, None
            continue
        groups = tuple((k, v) for k, v in m.groupdict().items() if k != "secret" and v) if rule.named_groups else ()
        yield span, Candidate(rule.id, span[0], span[1], secret, base + m.start(), base + m.end(), groups)


def _unwanted(rule: Rule, secret: bytes) -> bool:
    """Of the rule's kind, but a placeholder, a documented example or not random enough."""
    if rule.min_entropy is not None and shannon_entropy(secret) < rule.min_entropy:
        return True
    if any(FILTERS[name](secret) for name in rule.filters):
        return True
    return any(allowed.search(secret) for allowed in rule.allow_regexes)
