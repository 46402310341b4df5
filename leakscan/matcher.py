"""The matcher: bytes in, candidates out. Knows nothing of files, git or HTTP.

One multi-pattern pass selects where a rule may match:
  * Hyperscan compiles every rule's full pattern (in prefilter mode where it cannot take the exact
    one) and reports the *end* of each possible match. A match of rule R ending at e starts in
    [e - R.max_width, e - R.min_width].
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
import itertools
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import regex

from .checks import CHECKS, FILTERS, shannon_entropy
from .detectors import MAX_WIDTH, Rule, RuleSet
from .model import Candidate
from .paths import cache_root, write_cache_file

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
        # Hyperscan entries: (rule index, keyword length); keyword length 0 = the full pattern
        self._hs_entries: list[tuple[int, int]] = []
        self._hs_db = self._compile_hyperscan(ruleset.digest) if self.engine == "hyperscan" else None
        self._keyword_rules = self._compile_keywords()
        # how far before a changed span a new match may start (`scan(changed=…)`): its own width,
        # and for a specific rule the widest generic match it may have to cover too
        widest_generic = max((r.max_width for r in self.rules if r.generic), default=0)
        self._reach = [r.max_width + LOOKAROUND_MARGIN + (0 if r.generic else widest_generic) for r in self.rules]
        self._max_reach = max(self._reach, default=0)
        self._max_width = max((r.max_width for r in self.rules), default=0)

    # -- compilation ---------------------------------------------------------------------------

    def _compile_hyperscan(self, digest: str):
        expressions = []
        for idx, rule in enumerate(self.rules):
            if rule.max_width > WIDE_RULE:
                for kw in rule.keywords_lower:
                    self._hs_entries.append((idx, len(kw)))
                    expressions.append((regex.escape(kw, literal_spaces=True), _hs.HS_FLAG_CASELESS))
            else:
                self._hs_entries.append((idx, 0))
                expressions.append((rule.pattern.encode(), None))
        cache = _hs_cache_path(digest)
        if cache is not None:
            try:
                db = _hs.loadb(cache.read_bytes(), _hs.HS_MODE_BLOCK)
                db.scratch = _hs.Scratch(db)  # a loaded database comes without one
                return db
            except Exception:
                pass  # absent, stale or damaged: compile afresh
        db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        flags = [f if f is not None else _hs_flags_for(e) for e, f in expressions]
        db.compile(expressions=[e for e, _ in expressions], ids=list(range(len(expressions))),
                   elements=len(expressions), flags=flags)  # fmt: skip
        if cache is not None:
            write_cache_file(cache, _hs.dumpb(db))
        return db

    def _compile_keywords(self) -> dict[bytes, tuple[int, ...]]:
        """keyword (lower-case) → the rules that own it."""
        table: dict[bytes, list[int]] = defaultdict(list)
        for idx, rule in enumerate(self.rules):
            for kw in rule.keywords_lower:
                table[kw].append(idx)
        return {kw: tuple(idxs) for kw, idxs in sorted(table.items())}

    # -- scanning ------------------------------------------------------------------------------

    def scan(self, data: bytes, *, base: int = 0, own: tuple[int, int] | None = None,
             changed: tuple[int, int] | None = None) -> list[Candidate]:  # fmt: skip
        """Candidates whose match starts in `own` (chunk-relative [from, until); default: the
        whole chunk), with offsets shifted by `base`, sorted by position then rule.

        `changed`: [lo, hi) of a new version of a text whose bytes outside it are an earlier
        version's common start and common end (see `versions`): only matches that reach into
        it, or see it from their lookaround, are confirmed; any other match is one the earlier
        version holds, bytes and surroundings alike. Only the bytes such matches and their
        keywords can lie in are searched, when that is well short of the whole."""
        if not data:
            return []
        first, limit = own or (0, len(data))
        searched = (0, len(data))
        if changed is not None:
            lo, hi = changed
            limit = min(limit, hi + LOOKAROUND_MARGIN)
            a = max(0, lo - self._max_reach - LOOKAROUND_MARGIN)
            b = min(len(data), hi + self._max_width + 2 * LOOKAROUND_MARGIN)
            if b - a < len(data) * 0.8:
                searched = (a, b)
        windows = self._start_windows(data, *searched)
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
            start = first if changed is None else max(first, changed[0] - self._reach[idx])
            for s0, s1 in _merge(windows[idx]):
                s0, s1 = max(s0, start), min(s1, limit - 1)
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

    def _start_windows(self, data: bytes, a: int = 0, b: int | None = None) -> dict[int, list[tuple[int, int]]]:
        """Where each rule's matches may start, from the keywords (or prefiltered patterns)
        found in data[a:b]."""
        windows: dict[int, list[tuple[int, int]]] = defaultdict(list)
        rules = self.rules
        part = data if a == 0 and (b is None or b >= len(data)) else data[a:b]
        if self._hs_db is not None:
            ends: list[Hit] = []
            append = ends.append

            def on_match(idx: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
                append((idx, to + a))

            self._hs_db.scan(part, match_event_handler=on_match)
            entries = self._hs_entries
            for entry, end in ends:
                idx, kw_len = entries[entry]
                r = rules[idx]
                last = end - kw_len if kw_len else end - r.min_width
                windows[idx].append((max(0, end - r.max_width), max(0, last)))
        else:
            # ASCII lower-casing matches the byte patterns' case folding; find() runs at C speed
            lowered = part.lower()
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


_CACHE_FORMAT = 1  # bump when the layout of compiled entries changes


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
