"""A history's file versions: only what changed is searched for encoded text, and archive
members met before are not decoded again, with findings as exact as a whole decode."""

from __future__ import annotations

import base64
import io
import struct
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import GHP, HF, Repo, leakscan, token
from leakscan import versions
from leakscan.decoders import Limits, Seen, decode
from leakscan.matcher import bytes_reader
from leakscan.model import Place
from leakscan.pipeline import _shards
from leakscan.sources.base import Blob
from leakscan.versions import Version, Versions, changed_spans, file_order

CUTS = (b"\n", b" ", b'"', b"'", b"\t", b"\r")  # what no encoded run crosses
FILLER = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(60))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(("old", "new", "span"), [
    (b"a\nb\nc\n", b"a\nB\nc\n", (2, 4)),  # one line changed: that line
    (b"a\nb\nc\n", b"a\nb\nx\ny\nc\n", (4, 10)),  # lines inserted, and the line they end on
    (b"a\nb\nc\n", b"a\nc\n", (2, 4)),  # a line deleted: the line the cut joins
    (b"a\nb\n", b"a\nb\nc\n", (4, 6)),  # appended
    (b"xa\nb\n", b"z\na\nb\n", (0, 4)),  # "a" is a line of the new text only, not of the old
    (b"same start, other end", b"same start, new end", (12, 16)),  # one line: cut at spaces and quotes
    (b'{"a": "x", "b": "QUJD"}', b'{"a": "y", "b": "QUJD"}', (7, 9)),  # a JSON file of one line
])  # fmt: skip
def test_the_changed_span_is_cut_at_whitespace_or_quotes_around_every_difference(old, new, span):
    assert changed_spans(old, new) == (span,)
    lo, hi = span
    assert new[:lo] == old[:lo] and new[hi:] == old[len(old) - (len(new) - hi):]


def test_a_long_common_start_and_end_are_found_at_byte_precision():
    old = b"x" * 300_000 + b"\nold line\n" + b"y" * 500_000
    new = b"x" * 300_000 + b"\nnew line!\n" + b"y" * 500_000
    assert changed_spans(old, new) == ((300_001, 300_011),)


def _gaps_are_runs_of_old(old: bytes, new: bytes, spans) -> None:
    """What `changed_spans` promises: outside the spans, `new` is runs `old` holds too, each
    with the cut before it (or the start of both texts)."""
    edges = [0] + [x for span in spans for x in span] + [len(new)]
    for a, b in zip(edges[::2], edges[1::2]):
        assert a <= b
        if a == b:
            continue
        if a == 0:
            assert old.startswith(new[:b])
        elif b == len(new):
            assert old.endswith(new[a - 1 :]) and new[a - 1 : a] in CUTS
        else:
            assert new[a - 1 : b] in old and new[a - 1 : a] in CUTS and new[b - 1 : b] in CUTS


def test_edits_far_apart_are_separate_small_spans():
    """An entry added to a README's table of contents and to its body: two small spans, not
    the 200 KB between them."""
    toc = "".join(f"- [Section {i}](#section-{i})\n" for i in range(400))
    body = "".join(f"## Section {i}\n\n* [Book {i}](https://example.org/book/{i}) (PDF)\n\n" for i in range(3000))
    old = (toc + body).encode()
    new = old.replace(b"- [Section 7](#section-7)\n", b"- [Section 7](#section-7)\n- [Section 7b](#section-7b)\n")
    new = new.replace(b"* [Book 2500](", b"* [Book 2500b](https://example.org/2500b)\n* [Book 2500](")
    spans = changed_spans(old, new)
    assert len(spans) == 2 and sum(b - a for a, b in spans) < 200, spans
    assert b"7b" in new[spans[0][0] : spans[0][1]] and b"2500b" in new[spans[1][0] : spans[1][1]]
    _gaps_are_runs_of_old(old, new, spans)


def test_spans_keep_their_promise_on_random_edits_and_moves(rng):
    lines = [f"line {i} {'x' * rng.randint(0, 90)}\n".encode() for i in range(2000)]
    for _ in range(60):
        old = b"".join(rng.sample(lines, 600))
        new = bytearray(old)
        for _ in range(rng.randint(1, 8)):
            at, cut = rng.randrange(len(new)), rng.randint(0, 3000)
            piece = bytes(new[rng.randrange(len(new)) :][: rng.randint(0, 3000)]) if rng.random() < 0.5 else rng.choice(lines)
            new[at : at + cut] = piece  # a move, a copy or a new line over what was there
        new = bytes(new)
        spans = changed_spans(old, new)
        assert list(spans) == sorted(spans) and all(a <= b for a, b in spans)
        assert all(b1 < a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
        _gaps_are_runs_of_old(old, new, spans)


def _blob(key: str, path: str, date: str, size: int = 10, base: str | None = None) -> Blob:
    return Blob(key, size, (Place(path, "history", key, None, "Ada", date),), base=base)


def test_files_are_read_oldest_first_in_pieces_that_start_afresh(monkeypatch):
    monkeypatch.setattr(versions, "PIECE_BYTES", 25)
    blobs = [_blob("b3", "b.py", "2026-01-03T00:00:00+00:00", base="b2"),
             _blob("a2", "a.py", "2026-01-02T00:00:00+00:00", base="a1"),
             _blob("b2", "b.py", "2026-01-02T00:00:00+00:00", base="b1"),
             _blob("a1", "a.py", "2026-01-01T00:00:00+00:00"),
             _blob("b1", "b.py", "2026-01-01T00:00:00+00:00")]  # fmt: skip
    ordered = file_order(blobs)
    assert [(b.key, b.base) for b in ordered] == [("a1", None), ("a2", "a1"), ("b1", None), ("b2", "b1"), ("b3", None)]
    # shards start only where a piece does, however many are asked for
    for n in (2, 3, 5):
        assert all(shard[0].base is None for shard in _shards(ordered, n))
    flat = [_blob("x", "x", "2026-01-01T00:00:00+00:00"), _blob("y", "y", "2026-01-01T00:00:00+00:00")]
    assert file_order(flat) == flat  # not a history: the listing's order stands


def test_an_earlier_version_is_used_only_at_the_paths_it_was_scanned_at():
    kept = Versions()
    kept.keep(_blob("a1", "a.py", "d"), Version(b"x\n"))
    assert kept.before(_blob("a2", "a.py", "d", base="a1")).data == b"x\n"
    at_two = replace(_blob("a2", "a.py", "d", base="a1"), places=(Place("a.py"), Place("tests/a.py")))
    assert kept.before(at_two) is None  # a rule excluding a.py must not hide what tests/a.py shows
    assert kept.before(_blob("c1", "c.py", "d")) is None  # a new piece: nothing kept before it
    assert kept.before(_blob("a2", "a.py", "d", base="a1")) is None


def test_an_encoded_secret_is_reported_where_it_first_appeared_not_again_per_version(tmp_path):
    r = Repo(tmp_path / "repo")
    hf, ghp = token(HF, "v-hf"), token(GHP, "v-ghp")
    hf_line = f'BLOB = "{b64("HF_TOKEN=" + hf)}"\n'
    c1 = r.commit({"app.py": FILLER + hf_line + FILLER}, "v1")
    # lines inserted above it (one of them a new encoded secret) shift its offset
    gh_line = f'OTHER = "{b64("GITHUB_TOKEN=" + ghp)}"\n'
    v2_text = "import os\n" + gh_line + FILLER + hf_line + FILLER
    c2 = r.commit({"app.py": v2_text}, "v2")
    r.commit({"app.py": FILLER}, "v3: both removed")
    for jobs in ("1", "2"):
        run = leakscan("scan", "--no-verify", "--no-cache", "-j", jobs, "-f", "json", r.path)
        assert run.code == 1, run.err
        got = sorted((f["commit"], f["detector"], f["secret"], f["container"], f["line"]) for f in run.json)
        v1 = (FILLER + hf_line).encode().index(b"BLOB = ") + 8
        v2 = v2_text.encode().index(b"OTHER = ") + 9
        # before: the same secret again at v2, as base64@{v1 + the inserted bytes}
        assert got == sorted([(c1, "huggingface-access-token", hf, f"base64@{v1}", 1),
                              (c2, "github-pat", ghp, f"base64@{v2}", 1)]), jobs  # fmt: skip


def test_a_raw_secret_its_encoded_copy_shows_stays_reported_once_in_later_versions(tmp_path):
    """The raw secret's line is kept while a line near it changes: its encoded copy (in a line
    that did not change) is not searched again, yet still stands for it."""
    r = Repo(tmp_path / "repo")
    hf = token(HF, "v-raw")
    text = "x = 1\nurl = 'https://h.example/?t=%s'\ntoken = '%s'\n" % ("".join(f"%{b:02X}" for b in f"HF_TOKEN={hf}".encode()), hf)
    c1 = r.commit({"cfg.py": text}, "v1")
    r.commit({"cfg.py": text + "y = 2\n"}, "v2")
    r.commit({"cfg.py": "x = 1\n"}, "v3")
    run = leakscan("scan", "--no-verify", "--no-cache", "-f", "json", r.path)
    assert [(f["commit"], f["container"]) for f in run.json] == [(c1, "percent@13")], run.out


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in members.items():
            z.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), text, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def test_a_member_met_again_is_decoded_as_before_and_reported_at_each_archive(tmp_path):
    hf = token(HF, "v-zip")
    r = Repo(tmp_path / "repo")
    shared = {"cfg/.env": f"HF_TOKEN={hf}\n", "data/x.txt": f"blob {b64('HF_TOKEN=' + hf)}\n"}
    for name, extra in (("a.zip", "one"), ("b.zip", "two")):
        (r.path / name).write_bytes(_zip({**shared, "readme.txt": extra}))
        r.git("add", name)
    r.git("commit", "-q", "-m", "fixtures")
    run = leakscan("scan", "--no-verify", "--no-cache", "-j", "1", "-f", "json", r.path)
    got = sorted((f["path"], f["container"]) for f in run.json)
    assert got == [("a.zip", "cfg/.env"), ("a.zip", "data/x.txt!base64@5"),
                   ("b.zip", "cfg/.env"), ("b.zip", "data/x.txt!base64@5")], run.out  # fmt: skip


def _items(out) -> list[tuple]:
    return [(type(i).__name__, getattr(i, "container", None) or getattr(i, "name", None), getattr(i, "data", None),
             getattr(i, "reason", None)) for i in out]  # fmt: skip


def test_a_remembered_member_decodes_to_what_a_fresh_decode_gives_within_the_same_budget():
    inner = _zip({"deep/.env": "K=v\n", "enc.txt": f"v = {b64('a secret line of text here')}\n"})
    first = _zip({"nested.zip": inner, "note.txt": "hello\n"})
    second = _zip({"nested.zip": inner, "other.txt": "bye\n"})
    seen = Seen()
    list(decode("first.zip", first, seen=seen))
    remembered = _items(decode("second.zip", second, seen=seen))
    assert remembered == _items(decode("second.zip", second)) and len(remembered) >= 5
    tight = Limits(max_decoded_bytes=len(inner) + 10)
    assert _items(decode("second.zip", second, tight, seen=seen)) == _items(decode("second.zip", second, tight))
    assert any(i[0] == "Skip" and "decoded-size limit" in i[3] for i in _items(decode("second.zip", second, tight, seen=seen)))


def test_a_member_with_a_problem_is_reported_again_in_every_archive(tmp_path):
    good = _zip({"a.txt": "x" * 1000})
    # the member claims more bytes than its stream holds: truncated wherever it is met
    cut = bytearray(good)
    for at, field in ((cut.index(b"PK\x03\x04"), 18), (cut.index(b"PK\x01\x02"), 20)):
        size = struct.unpack_from("<I", cut, at + field)[0]
        struct.pack_into("<I", cut, at + field, size - 3)
    seen = Seen()
    first = _items(decode("a.zip", bytes(cut), seen=seen))
    again = _items(decode("b.zip", bytes(cut), seen=seen))
    assert [i for i in first if i[0] == "Skip"] and [i[3] for i in again if i[0] == "Skip"] == [i[3] for i in first if i[0] == "Skip"]


def _secrets(got) -> set[tuple[str, str]]:
    return {(f.detector, f.secret) for f in got.findings}


@pytest.mark.parametrize("engine", ["hyperscan", "regex"])
def test_a_version_scanned_against_the_one_before_finds_what_a_whole_scan_finds(ruleset, rng, engine):
    """Random edits of a text holding raw and encoded secrets, some edits cutting into a secret
    or its surroundings: the earlier version's findings plus the new version's (scanned against
    it) are those of both scanned whole."""
    from leakscan.scan import Scanner

    scanner = Scanner(ruleset, engine)
    words = ["def f(x):\n", "    return x\n", "token = ", "'", '"', " ", "\n", "# note\n", "password = ", "=", ","]
    pieces = [lambda: token(HF, rng.random()), lambda: token(GHP, rng.random()),
              lambda: b64("HF_TOKEN=" + token(HF, rng.random())), lambda: rng.choice(words) * rng.randint(1, 200)]  # fmt: skip
    wide = [lambda: token("{pem:RSA}", rng.random()), lambda: "\nJWT=" + token("{jwt}", rng.random())]
    place = Place("app.py", "history")
    for n in [60] * 15 + [2000] * 4:  # long texts: only the bytes near the change are searched
        old = "".join(rng.choice(pieces)() for _ in range(n)).encode()
        first = scanner.scan_blob(bytes_reader(old), [place])
        found = _secrets(first)
        for _ in range(3):  # a chain: each version is scanned against the one before
            new = bytearray(old)
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(len(new))
                cut = rng.randint(0, 40)
                text = rng.choice(pieces + wide)().encode()
                new[at : at + cut] = text if rng.random() < 0.3 else text[: rng.randint(0, 80)]
            new = bytes(new)
            against = scanner.scan_blob(bytes_reader(new), [place], before=first.version)
            whole = scanner.scan_blob(bytes_reader(new), [place])
            assert found | _secrets(against) == found | _secrets(whole)
            assert _secrets(against) <= _secrets(whole)
            found |= _secrets(against)
            old, first = new, against


def test_a_secret_completed_by_an_edit_is_found_in_that_version(tmp_path):
    r = Repo(tmp_path / "repo")
    hf = token(HF, "completed")
    filler = "x = 1\n" * 5000  # far more than any rule's reach on both sides
    r.commit({"cfg.py": filler + f"TOKEN = '{hf[:9]}'\n" + filler}, "half a token")
    c2 = r.commit({"cfg.py": filler + f"TOKEN = '{hf}'\n" + filler}, "the whole token")
    r.commit({"cfg.py": filler}, "removed")
    run = leakscan("scan", "--no-verify", "--no-cache", "-f", "json", r.path)
    assert [(f["commit"], f["secret"], f["line"]) for f in run.json] == [(c2, hf, 5001)], run.out


@pytest.mark.parametrize("engine", ["hyperscan", "regex"])
def test_a_match_that_starts_before_the_change_and_reaches_into_it_is_found(ruleset, engine, rng):
    """The changed span starts at the new value; the generic rule's match starts at the
    variable's name, before it."""
    from leakscan.scan import Scanner

    scanner = Scanner(ruleset, engine)
    value = token("{b62:18}", rng.random()) + "7Qx9"
    filler = "x = 1\n" * 3000
    old = (filler + 'db_password = "hunter2"\n' + filler).encode()
    new = (filler + f'db_password = "{value}"\n' + filler).encode()
    place = Place("app.py", "history")
    first = scanner.scan_blob(bytes_reader(old), [place])
    assert _secrets(first) == set()
    against = scanner.scan_blob(bytes_reader(new), [place], before=first.version)
    assert _secrets(against) == {("generic-password", value)}


GENERIC_AND_SPECIFIC = """
name = "Test"

[[rules]]
id = "test-long-generic"
description = "a generic rule whose matches run long"
generic = true
keywords = ["blob:"]
pattern = '''blob:(?P<secret>[a-z0-9 ]{40,400})'''
examples.positive = ['blob:{hex:60}']
examples.negative = ['blob:short']

[[rules]]
id = "test-specific"
description = "a specific token, found inside the generic rule's matches"
keywords = ["spcx"]
pattern = '''spcx[a-z0-9]{16}'''
examples.positive = ['spcx{hex:16}']
examples.negative = ['spcx']
"""


@pytest.mark.parametrize("engine", ["hyperscan", "regex"])
def test_a_generic_match_reaching_a_change_from_afar_still_yields_to_a_specific_rule(tmp_path, engine, rng):
    """The change is at the end of a 300-byte generic match whose start a specific rule
    recognises, further from the change than that rule's own width: the specific rules are then
    confirmed as far as the generic match reaches, and the generic match is dropped as in a
    whole scan."""
    from leakscan.detectors import load_rules
    from leakscan.matcher import Matcher

    (tmp_path / "test.toml").write_text(GENERIC_AND_SPECIFIC)
    matcher = Matcher(load_rules([tmp_path], defaults=False), engine)
    run = "spcx" + token("{hex:16}", rng.random()) + " " + " ".join(token("{hex:7}", rng.random()) for _ in range(35))
    filler = b"x = 1\n" * 400
    old = filler + f"blob:{run}\n".encode() + filler
    new = filler + f"blob:{run[:-7]}deadbee\n".encode() + filler
    spans = changed_spans(old, new)
    assert spans[0][0] - (len(filler) + 5) > 250  # the change is far from where the match starts
    whole = [(c.rule_id, c.secret) for c in matcher.scan(new)]
    against = [(c.rule_id, c.secret) for c in matcher.scan(new, changed=spans)]
    assert whole == [("test-specific", run[:20].encode())]  # the generic match yields to it
    assert against == whole
