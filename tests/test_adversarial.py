"""Files built to make the scanner slow: every stage a big file passes through stays linear.

Scaling is asserted as a ratio of CPU times between a small and a 16 times larger input, with a
wide margin (linear: about 16; quadratic: 100 and more), never as an absolute speed.
"""

from __future__ import annotations

import base64
import random
import string
import time
from collections.abc import Callable

import pytest

from helpers import HF, leakscan, token
from leakscan.locate import locate_bytes
from leakscan.model import Finding, Place
from leakscan.scan import Scanner, _outer_only, _Secrets

SCALE = 16
MARGIN = 2.5  # a linear stage stays under SCALE * MARGIN even on a loaded machine


def hf_lines(n: int, rng: random.Random) -> bytes:
    return b"".join(f"HF_TOKEN={token(HF, rng.random())}\n".encode() for _ in range(n))


def plain_token(rng: random.Random) -> str:
    """An hf_ token no filter can take for a placeholder: no vowels (no words), no runs."""
    chars = [rng.choice("bcdfghkmnpqrstvwzBCDFGHKMNPQRSTVWZ")]
    while len(chars) < 34:
        c = rng.choice("bcdfghkmnpqrstvwzBCDFGHKMNPQRSTVWZ")
        if c.lower() != chars[-1].lower() and abs(ord(c.lower()) - ord(chars[-1].lower())) > 1:
            chars.append(c)
    return "hf_" + "".join(chars)


def generic_lines(n: int, rng: random.Random) -> bytes:
    chars = string.ascii_letters + string.digits
    return b"".join(f'api_key = "{"".join(rng.choice(chars) for _ in range(40))}"\n'.encode() for _ in range(n))


def cpu(work: Callable[[], object], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return max(best, 1e-3)


def assert_linear(make: Callable[[int], object], run: Callable[[object], object], n: int) -> None:
    small, big = make(n), make(n * SCALE)
    ratio = cpu(lambda: run(big)) / cpu(lambda: run(small), repeat=3)
    assert ratio < SCALE * MARGIN, f"{SCALE}x the input took {ratio:.0f}x the time"


# --- the matcher ---------------------------------------------------------------------------


def test_generic_matches_yield_to_specific_ones_exactly(matchers):
    """Overlap is decided by position, secret by secret: a generic match is dropped where a
    specific rule recognised the same bytes, kept where it did not."""
    rng = random.Random(1)
    hf = [token(HF, i) for i in range(3)]
    generic = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(40))
    data = (f'token = "{hf[0]}"\napi_key = "{generic}"\nsecret = "{hf[1]}"\nHF_TOKEN={hf[2]}\n').encode()
    for matcher in matchers.values():
        got = [(c.rule_id, c.secret.decode()) for c in matcher.scan(data)]
        assert got == [("huggingface-access-token", hf[0]), ("generic-api-key", generic),
                       ("huggingface-access-token", hf[1]), ("huggingface-access-token", hf[2])]  # fmt: skip


def test_engines_agree_on_thousands_of_tokens_and_assignments(matchers):
    rng = random.Random(2)
    lines = (hf_lines(3000, rng) + generic_lines(3000, rng)).splitlines(keepends=True)
    rng.shuffle(lines)
    data = b"".join(lines)
    results = {name: [(c.rule_id, c.start, c.end) for c in m.scan(data)] for name, m in matchers.items()}
    assert results["hyperscan"] == results["regex"]
    # and each line yields in the file what it yields alone
    alone, offset = [], 0
    for line in lines:
        alone += [(c.rule_id, offset + c.start, offset + c.end) for c in matchers["regex"].scan(line)]
        offset += len(line)
    assert results["regex"] == alone and len(alone) > 5900


@pytest.mark.parametrize("lines", [hf_lines, generic_lines])
def test_matching_a_file_of_tokens_is_linear(matchers, lines):
    rng = random.Random(3)
    assert_linear(lambda n: lines(n, rng), matchers["hyperscan"].scan, 1000)


def test_locating_tokens_on_one_long_line_is_linear(matchers):
    rng = random.Random(4)
    matcher = matchers["hyperscan"]
    # one line: each token's line start and column were found by looking back over all of it
    assert_linear(lambda n: b" ".join(token(HF, rng.random()).encode() for _ in range(n)) + "é".encode() * 3,
                  lambda data: locate_bytes(matcher, data), 800)  # fmt: skip


def test_columns_on_a_long_line_count_characters(matchers):
    toks = [token(HF, i).encode() for i in range(3)]
    data = "é€ ".encode() + toks[0] + " 𝄞 ".encode() + toks[1] + b" \xff\xe2\x82 \xc3 " + toks[2] + b"\n"
    text = data.decode("utf-8", "replace")
    for matcher in matchers.values():
        got = [(loc.line, loc.column) for _, loc in locate_bytes(matcher, data)]
        assert got == [(1, text.index(t.decode()) + 1) for t in toks]


# --- de-duplication of layered findings --------------------------------------------------------


def finding(secret: str, generic: bool) -> Finding:
    return Finding("generic-api-key" if generic else "huggingface-access-token", "p", "d", secret, secret, "r",
                   "f", 1, 1, None, "file", None, secret, generic=generic)  # fmt: skip


def test_a_generic_finding_that_encodes_a_layered_secret_is_dropped():
    rng = random.Random(5)
    inner = [token(HF, rng.random()) for _ in range(50)]
    layered = [finding(t, False) for t in inner]
    encodes = [base64.b64encode(f"x={t};".encode()).decode() for t in inner[::7]]
    hexed = [f"HF {t}".encode().hex() for t in inner[1::9]]
    other = [base64.b64encode(f"x={token(HF, rng.random())};".encode()).decode() for _ in range(5)]
    found = [finding(s, True) for s in encodes + hexed + other] + [finding(inner[3], False)]
    # a specific finding of a layered secret goes (the layer reports it), a generic one only if
    # it is the encoding of one
    assert [f.secret for f in _outer_only(found, layered)] == other


def test_secret_index_agrees_with_substring_search():
    rng = random.Random(6)
    alphabet = "ab"
    secrets = {"".join(rng.choice(alphabet) for _ in range(rng.randint(3, 9))).encode() for _ in range(40)}
    index = _Secrets(secrets)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet + "c") for _ in range(rng.randint(0, 30))).encode()
        assert index.found_in(text) == any(s in text for s in secrets), text


def test_dropping_encoded_generic_findings_is_linear():
    rng = random.Random(7)

    def make(n: int) -> tuple[list[Finding], list[Finding]]:
        inner = [token(HF, rng.random()) for _ in range(n)]
        noise = [base64.b64encode(rng.randbytes(60)).decode() for _ in range(n)]
        return [finding(s, True) for s in noise], [finding(t, False) for t in inner]

    assert_linear(make, lambda pair: _outer_only(*pair), 1000)


def test_encoded_assignments_are_reported_in_their_layer_only(ruleset):
    """`api_key = "<base64 of a token line>"`, a thousand times: the token is reported in its
    base64 layer, never again as a generic key (which its base64 text also is)."""
    rng = random.Random(8)
    scanner = Scanner(ruleset, "hyperscan")
    toks = [token(HF, rng.random()) for _ in range(1000)]
    lines = [b'api_key = "' + base64.b64encode(f"HF_TOKEN={t}\n".encode()) + b'"\n' for t in toks]
    data = b"".join(lines)
    got = scanner.scan_bytes(data, Place("enc.env"))
    offsets = [data.index(line) + len(b'api_key = "') for line in lines]
    assert sorted((f.container, f.secret, f.detector) for f in got.findings) == sorted(
        (f"base64@{o}", t, "huggingface-access-token") for o, t in zip(offsets, toks))


# --- the encoded-text finder ----------------------------------------------------------------


def test_runs_joined_by_underscores_are_found_in_linear_time():
    from leakscan.decoders.encoded import alphabet_runs

    def make(n: int) -> bytes:
        return b"x " + b"ab_" * n + b"A1b2C3d4E5f6G7h8I9j0K1l2" + b" y"

    data = make(1000)
    assert list(alphabet_runs(data)) == [(2, len(data) - 2)]
    assert_linear(make, lambda d: list(alphabet_runs(d)), 20000)


# --- end to end ---------------------------------------------------------------------------


def test_85000_tokens_scan_in_bounded_time(tmp_path):
    """The push-protection bypass of issue 15: this file took 200 s, past any hook's timeout."""
    rng = random.Random(9)
    toks = [plain_token(rng) for _ in range(85_000)]
    path = tmp_path / "tokens.env"
    path.write_text("".join(f"HF_TOKEN={t}\n" for t in toks))
    started = time.monotonic()
    run = leakscan("scan", path, "--no-verify", "-f", "jsonl", timeout=600)
    elapsed = time.monotonic() - started
    assert run.code == 1
    assert [(f["detector"], f["secret"], f["line"]) for f in run.json] == [
        ("huggingface-access-token", t, n) for n, t in enumerate(toks, 1)]
    # generous: a loaded machine scans it in about 30 s, the quadratic matcher took 200 s idle
    assert elapsed < 120, elapsed
