"""The matcher on its own: bytes in, candidates out; streaming; both engines agree."""

from __future__ import annotations

import random

import pytest

from leakscan.examples import expand
from leakscan.locate import locate_bytes, locate_stream
from leakscan.matcher import OVERLAP, bytes_reader

from helpers import GHP, HF, token

CHUNK = 2 * OVERLAP + 4096  # the smallest chunk size, so boundaries are many and close


def test_scan_returns_exact_offsets_and_secret(matchers):
    hf = token(HF, 1)
    data = b"x = 1\nHF_TOKEN='" + hf.encode() + b"'\n"
    for matcher in matchers.values():
        # the generic assignment rule matches the same secret too, and yields to the specific one
        (cand,) = matcher.scan(data)
        assert cand.secret == hf.encode()
        assert data[cand.start : cand.end] == hf.encode()


@pytest.mark.parametrize("engine", ["hyperscan", "regex"])
def test_tokens_straddling_every_chunk_boundary_are_found_once(matchers, engine):
    matcher = matchers[engine]
    rng = random.Random(7)
    filler = b"".join(rng.choice([b"lorem ", b"ipsum ", b"dolor\n", b"sit "]) for _ in range(60000))
    tokens = []
    data = bytearray()
    # place tokens so that some start/end exactly at, just before and just after boundaries
    step = CHUNK - OVERLAP
    targets = sorted({b + d for b in range(step, 6 * step, step) for d in (-40, -37, -20, -1, 0, 1, 64, 127, 128, 129, 300)})
    for t in targets:
        if t < len(data):
            continue
        need = t - len(data)
        data += (filler * 3)[: need - 1] + b" "
        tok = token(HF, t).encode()
        tokens.append((len(data), tok))
        data += tok
        data += b"\n"
    data += filler[:5000]
    got = list(locate_stream(matcher, bytes_reader(bytes(data)), chunk_size=CHUNK))
    assert [(c.start, c.secret) for c, _ in got] == tokens
    for cand, loc in got:
        assert loc.line == bytes(data[: cand.start]).count(b"\n") + 1
        line_start = bytes(data).rfind(b"\n", 0, cand.start) + 1
        assert loc.column == cand.start - line_start + 1


def test_a_multiline_key_across_a_boundary(matchers):
    pem, _ = expand("{pem:RSA}", random.Random(3))
    lead = b"a" * (CHUNK - 700) + b"\n"
    data = lead + pem.encode() + b"\n"
    for matcher in matchers.values():
        got = list(locate_stream(matcher, bytes_reader(data), chunk_size=CHUNK))
        assert [(c.rule_id, c.secret.decode()) for c, _ in got] == [("private-key", pem)]
        assert got[0][1].line == 2


def test_engines_agree_on_a_mixed_corpus(matchers, ruleset):
    rng = random.Random(11)
    parts = []
    for rule in ruleset.rules:
        for template in rule.examples.positive + rule.examples.negative:
            parts.append(expand(template, rng)[0])
    rng.shuffle(parts)
    noise = bytes(rng.randrange(256) for _ in range(20000))
    data = noise + "\n".join(parts).encode() + noise
    results = {name: [(c.rule_id, c.start, c.end) for c in m.scan(data)] for name, m in matchers.items()}
    assert results["hyperscan"] == results["regex"]
    assert len(results["regex"]) >= len([r for r in ruleset.rules for _ in r.examples.positive])


def test_column_counts_characters_and_invalid_utf8_is_harmless(matchers):
    hf = token(HF, 2).encode()
    data = b"\xff\xfe bad bytes\n" + "naïve café = ".encode() + hf + b"\n"
    for matcher in matchers.values():
        ((cand, loc),) = locate_bytes(matcher, data)
        assert (loc.line, loc.column) == (2, len("naïve café = ") + 1)


def test_binary_bytes_around_a_token(matchers):
    ghp = token(GHP, 4).encode()
    data = bytes(range(256)) * 10 + b"\x00" + ghp + b"\x00" + bytes(range(256))
    for matcher in matchers.values():
        assert [c.secret for c in matcher.scan(data)] == [ghp]


def test_checksum_rejects_a_token_with_a_wrong_checksum(matchers):
    ghp = token(GHP, 5)
    broken = ghp[:-1] + ("A" if ghp[-1] != "A" else "B")
    for matcher in matchers.values():
        assert matcher.scan(f"t={broken}\n".encode()) == []


def test_allow_marker_on_the_line(matchers):
    hf = token(HF, 6)
    data = f"a = '{hf}'  # leakscan:allow\nb = '{token(HF, 7)}'\n".encode()
    for matcher in matchers.values():
        assert [loc.allowed for _, loc in locate_bytes(matcher, data)] == [True, False]


def test_empty_and_tiny_inputs(matchers):
    for matcher in matchers.values():
        assert matcher.scan(b"") == []
        assert matcher.scan(b"hf_") == []


def test_a_specific_rule_s_placeholder_is_not_reported_by_a_generic_rule(matchers):
    data = b'token = "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"\napi_key = "AKIAIOSFODNN7EXAMPLE"\n'
    for matcher in matchers.values():
        assert matcher.scan(data) == []
