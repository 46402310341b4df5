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


def test_the_provider_table_in_detectors_readme_is_generated_from_the_files():
    from pathlib import Path

    from leakscan.detectors import TABLE_BEGIN, TABLE_END, provider_table
    from leakscan.revoke.deliver import BUILTIN

    readme = (Path(__file__).parent.parent / "detectors" / "README.md").read_text(encoding="utf-8")
    shipped = TABLE_BEGIN + readme.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0] + TABLE_END
    assert shipped == provider_table(load_rules(), set(BUILTIN)), "run: leakscan detectors table --write"
