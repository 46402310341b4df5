"""Every rule in detectors/ against its own generated positives and realistic negatives, on both
matcher engines."""

from __future__ import annotations

import random

import pytest

from leakscan.detectors import load_rules
from leakscan.examples import expand

RULES = load_rules().rules
POSITIVES = [(r.id, i, t) for r in RULES for i, t in enumerate(r.examples.positive)]
NEGATIVES = [(r.id, i, t) for r in RULES for i, t in enumerate(r.examples.negative)]


def test_every_rule_has_positive_and_negative_examples():
    missing = [r.id for r in RULES if not r.examples.positive or not r.examples.negative]
    assert missing == []


@pytest.mark.parametrize("rule_id,index,template", POSITIVES, ids=[f"{r}-{i}" for r, i, _ in POSITIVES])
def test_positive_example_is_found(matchers, rule_id, index, template):
    for seed in range(3):
        text, secret = expand(template, random.Random(f"{rule_id}/{index}/{seed}"))
        data = b"prefix line\n" + text.encode() + b"\nsuffix line\n"
        for engine, matcher in matchers.items():
            got = [c.secret.decode() for c in matcher.scan(data) if c.rule_id == rule_id]
            assert got == [secret], f"{engine} on {text!r}"


@pytest.mark.parametrize("rule_id,index,template", NEGATIVES, ids=[f"{r}-{i}" for r, i, _ in NEGATIVES])
def test_negative_example_is_not_reported_by_any_rule(matchers, rule_id, index, template):
    text, _ = expand(template, random.Random(f"{rule_id}/neg/{index}"))
    data = b"prefix line\n" + text.encode() + b"\nsuffix line\n"
    for engine, matcher in matchers.items():
        got = [(c.rule_id, c.secret) for c in matcher.scan(data)]
        assert got == [], f"{engine} on {text!r}"
