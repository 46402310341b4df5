"""Every rule in detectors/ against its own generated positives and realistic negatives, on both
matcher engines."""

from __future__ import annotations

import pytest

from leakscan.detectors import load_rules
from leakscan.examples import example_problems

RULES = load_rules().rules


def test_at_least_sixty_detectors_over_many_providers():
    assert len(RULES) >= 60
    assert len({r.provider for r in RULES}) >= 40


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
@pytest.mark.parametrize("engine", ["hyperscan", "regex"])
def test_rule_examples(matchers, rule, engine):
    assert example_problems(rule, matchers[engine]) == []
