"""Encoded text in blobs too big to hold whole (over 4 MiB) is decoded as it streams past.

The blobs here are 9 MiB, so that they cross the real chunk boundaries: raw chunks of 4 MiB
overlapping by OVERLAP, and the chunks of the decoded streams nested in them.
"""

from __future__ import annotations

import base64
import gzip
import random
from urllib.parse import quote

import pytest

from helpers import HF, leakscan, token
from leakscan.decoders import Limits
from leakscan.decoders.encoded import run_end
from leakscan.matcher import CHUNK_SIZE, OVERLAP
from leakscan.model import Place, Skip
from leakscan.scan import Scanner

STEP = CHUNK_SIZE - OVERLAP  # where each raw chunk after the first begins


@pytest.fixture(scope="module")
def scanner():
    from leakscan.detectors import load_rules

    return Scanner(load_rules(), "hyperscan")


def filler(n: int, rng: random.Random) -> bytearray:
    out = bytearray()
    while len(out) < n:
        out += f"line {rng.randint(0, 10**9)} of ordinary text, nothing to see\n".encode()
    return out[:n]


def plant(text: bytearray, positions: list[int], rng: random.Random) -> dict[str, int]:
    """Puts a token line at each position of `text`; returns token → its offset."""
    placed = {}
    for pos, nxt in zip(sorted(positions), sorted(positions)[1:] + [len(text)]):
        tok = token(HF, rng.random())
        line = f"\nHF_TOKEN={tok}\n".encode()
        assert pos + len(line) <= nxt, "plants must not overlap"
        text[pos : pos + len(line)] = line
        placed[tok] = pos + len("\nHF_TOKEN=")
    return placed


def where(text: bytes, offset: int) -> tuple[int, int]:
    line_start = text.rfind(b"\n", 0, offset) + 1
    return text.count(b"\n", 0, offset) + 1, len(text[line_start:offset].decode("utf-8", "replace")) + 1


def located(found) -> list[tuple[str, str | None, int, int]]:
    return sorted((f.secret, f.container, f.line, f.column) for f in found)


def test_tokens_in_a_9_mib_base64_run_are_found_once_at_every_boundary(scanner):
    rng = random.Random(1)
    prefix = b'blob = "'
    # decoded offset d sits at raw offset len(prefix) + d * 4 / 3
    raw_to_dec = lambda r: (r - len(prefix)) * 3 // 4  # noqa: E731
    text = filler(7 << 20, rng)
    positions = [0, 5000, raw_to_dec(STEP) - 20, raw_to_dec(STEP + 128) - 30, raw_to_dec(CHUNK_SIZE) - 25,
                 raw_to_dec(CHUNK_SIZE) + 30, CHUNK_SIZE - 30, STEP - 20, raw_to_dec(2 * STEP) - 24,
                 len(text) - 60]  # fmt: skip
    placed = plant(text, positions, rng)
    blob = prefix + base64.b64encode(bytes(text)) + b'"\n'
    assert len(blob) > 9 << 20
    got = scanner.scan_bytes(blob, Place("big.py"))
    assert got.skipped == []
    assert located(got.findings) == sorted((t, f"base64@{len(prefix)}", *where(bytes(text), o)) for t, o in placed.items())


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_tokens_in_a_9_mib_utf16_blob_are_found_once_at_every_boundary(scanner, encoding):
    rng = random.Random(2)
    bom = b"\xff\xfe" if encoding == "utf-16-le" else b""
    # a character outside the BMP, 4 bytes of UTF-16, split by the end of the second raw chunk;
    # the characters before it are ASCII, so character and byte offsets agree up to it
    split = (STEP + CHUNK_SIZE - 2 - len(bom)) // 2
    after = token(HF, "after the emoji")
    text = filler(split, rng) + f"😀 {after}\n".encode() + filler(600_000, rng)
    placed = plant(text, [10, STEP // 2 - 20, CHUNK_SIZE // 2 - 30, CHUNK_SIZE - 40, split - 70, len(text) - 70], rng)
    placed[after] = split + len("😀 ".encode())
    blob = bom + bytes(text).decode().encode(encoding)
    assert len(blob) > 9 << 20 and blob[STEP + CHUNK_SIZE - 2 : STEP + CHUNK_SIZE + 2].decode(encoding) == "😀"
    got = scanner.scan_bytes(blob, Place("big.txt"))
    assert got.skipped == []
    assert located(got.findings) == sorted((t, "utf16", *where(bytes(text), o)) for t, o in placed.items())


def mixed_corpus(size: int, rng: random.Random) -> bytes:
    """Text with every kind of encoded token, short and long, at random places."""
    parts, total = [], 0
    while total < size:
        tok = token(HF, rng.random())
        kind = rng.randrange(8)
        if kind == 0:
            part = b'a = "' + base64.b64encode(f"HF_TOKEN={tok}\n".encode()) + b'"\n'
        elif kind == 1:
            part = b'h = "' + f"token: {tok} ok".encode().hex().encode() + b'"\n'
        elif kind == 2:
            part = f'url = "https://x.org/?q={quote(f"a {tok} b", safe="")}"\n'.encode()
        elif kind == 3:
            part = ('"' + "".join(f"\\u{ord(c):04x}" for c in f"tok {tok} z") + '"\n').encode()
        elif kind == 4:
            inner = bytes(filler(rng.randint(2_000, 200_000), rng)) + f"HF_TOKEN={tok}\n".encode()
            part = b"big = '" + base64.b64encode(inner) + b"'\n"
        elif kind == 5:
            part = f"HF_TOKEN={tok}\n".encode()
        else:
            part = bytes(filler(rng.randint(10, 20_000), rng))
        parts.append(part)
        total += len(part)
    return b"".join(parts)


@pytest.mark.parametrize("seed", [3, 4])
def test_a_streamed_blob_yields_what_the_same_blob_decoded_whole_yields(scanner, seed):
    """Every finding, container, line and column, none twice: windows are invisible."""
    data = mixed_corpus(9_500_000, random.Random(seed))
    whole = scanner._scan_whole(data, Place("mix.txt"), None)
    streamed = scanner.scan_bytes(data, Place("mix.txt"))
    assert streamed.skipped == whole.skipped == []
    assert located(streamed.findings) == located(whole.findings)
    assert {f.container.split("@")[0] for f in streamed.findings if f.container} == {"base64", "hex", "percent", "unicode-escape"}
    # and runs that a window's end cut were among them
    starts = {int(f.container[len("base64@"):]) for f in streamed.findings if (f.container or "").startswith("base64@")}
    ends = {CHUNK_SIZE + k * STEP for k in range(len(data) // STEP)}
    assert any(s < e < run_end(data, s) for s in starts for e in ends)


def test_escaped_spans_across_a_window_start_are_decoded_once(scanner):
    """A \\u span decoded by the first window, whose tail the second window finds again from
    its first ASCII escape, and a percent span likewise: each is one layer."""
    rng = random.Random(10)
    tok, tok2 = token(HF, "u-escaped"), token(HF, "percent")
    # non-ASCII escapes only up to well past where the second window starts, then the token
    u_span = "\\u0041" + "\\u00e9" * 80 + "".join(f"\\u{ord(c):04x}" for c in f" HF_TOKEN={tok} ")
    pct_span = quote("w " * 150 + f"HF_TOKEN={tok2} end", safe="")
    text = filler(9 << 20, rng)
    text[STEP - 100 : STEP - 100 + len(u_span) + 2] = f'"{u_span}"'.encode()
    at = 2 * STEP - 200
    text[at : at + len(pct_span) + 10] = f'u = "?q={pct_span}"'.encode()
    data = bytes(text)
    whole = scanner._scan_whole(data, Place("esc.txt"), None)
    streamed = scanner.scan_bytes(data, Place("esc.txt"))
    assert located(streamed.findings) == located(whole.findings)
    assert [(f.secret, f.container) for f in streamed.findings] == [
        (tok, f"unicode-escape@{STEP - 99}"), (tok2, f"percent@{at + 5}")]


def test_a_long_hex_run_is_streamed(scanner):
    rng = random.Random(5)
    text = filler(5 << 20, rng)
    placed = plant(text, [100, (CHUNK_SIZE - 3) // 2 - 20, len(text) - 80], rng)
    blob = b"x = " + bytes(text).hex().encode() + b"\n"
    got = scanner.scan_bytes(blob, Place("hex.txt"))
    assert located(got.findings) == sorted((t, "hex@4", *where(bytes(text), o)) for t, o in placed.items())


def test_limits_apply_per_window_and_are_reported_once(ruleset):
    rng = random.Random(6)
    text = filler(7 << 20, rng)
    placed = plant(text, [10], rng)
    blob = base64.b64encode(bytes(text)) + b"\nHF_TOKEN=" + (tok := token(HF, "raw")).encode() + b"\n"
    got = Scanner(ruleset, "hyperscan", Limits(max_decoded_bytes=1 << 20)).scan_bytes(blob, Place("b.txt"))
    assert got.skipped == [Skip("b.txt", "decoded-size limit (1 MiB) reached", None)]
    # the raw bytes are still scanned whole; the run is not decoded past the limit
    assert located(got.findings) == [(tok, None, 2, 10)]
    # within the limit, the same blob is decoded window by window
    got = Scanner(ruleset, "hyperscan", Limits(max_decoded_bytes=4 << 20)).scan_bytes(blob, Place("b.txt"))
    assert got.skipped == [] and sorted(f.secret for f in got.findings) == sorted([tok, *placed])


def test_a_gzip_stream_in_a_long_run_is_reported_not_decoded(scanner):
    rng = random.Random(7)
    packed = gzip.compress(rng.randbytes(6 << 20), compresslevel=1)
    blob = b"z = " + base64.b64encode(packed) + b"\n"
    got = scanner.scan_bytes(blob, Place("z.txt"))
    assert [(s.container, s.reason) for s in got.skipped] == [
        ("base64@4", "too large to decode: gzip data in encoded text over 4 MiB; scanned as raw bytes")]
    assert got.findings == []


def test_nested_encodings_in_a_stream_are_named_by_their_chain(scanner):
    rng = random.Random(8)
    tok = token(HF, "nested")
    inner = b"creds = " + base64.b64encode(f"HF_TOKEN={tok}\n".encode()) + b"\n"
    text = filler(6 << 20, rng)
    text[3_000_000 : 3_000_000 + len(inner)] = inner
    blob = b"q = " + base64.b64encode(bytes(text)) + b"\n"
    got = scanner.scan_bytes(blob, Place("n.txt"))
    assert [(f.secret, f.container) for f in got.findings] == [(tok, f"base64@4!base64@{3_000_000 + 8}")]


def test_scan_cli_finds_a_token_deep_in_a_big_base64_file(tmp_path):
    rng = random.Random(9)
    text = filler(6 << 20, rng)
    placed = plant(text, [CHUNK_SIZE - 100], rng)
    (tmp_path / "blob.txt").write_bytes(base64.b64encode(bytes(text)))
    run = leakscan("scan", tmp_path, "-f", "json", "--no-verify")
    assert run.code == 1
    ((tok, offset),) = placed.items()
    assert [(f["secret"], f["path"], f["container"], f["line"]) for f in run.json] == [
        (tok, "blob.txt", "base64@0", where(bytes(text), offset)[0])]


def test_a_streamed_image_has_its_raw_bytes_matched_and_its_encoded_text_search_skipped(scanner):
    plain, hidden = token(HF, "plain"), token(HF, "hidden")
    encoded = base64.b64encode(f"hf_token: {hidden}\n".encode())
    data = b"GIF89a" + f"comment {plain} ".encode() + encoded + b" " + random.Random(3).randbytes(6 << 20)
    got = scanner.scan_bytes(data, Place(path="art/big.gif"))
    assert [(f.secret, f.container) for f in got.findings] == [(plain, None)]
    assert got.skipped == [Skip("art/big.gif", "gif image: raw bytes scanned, not searched for encoded text "
                                               "(a format with no text layer)", None)]
    # the same bytes without the image signature are searched as they stream past
    other = b"GIF" + data[6:]
    got = scanner.scan_bytes(other, Place(path="art/big.bin"))
    assert sorted((f.secret, f.container) for f in got.findings) == sorted(
        [(plain, None), (hidden, f"base64@{other.index(encoded)}")])
