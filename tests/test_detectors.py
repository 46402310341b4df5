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


def test_a_rule_set_loaded_again_comes_from_the_cache_and_any_change_to_a_file_is_a_miss(acme, monkeypatch, tmp_path):
    from leakscan.detectors import DetectorError

    monkeypatch.setenv("LEAKSCAN_CACHE_DIR", str(tmp_path / "cache"))
    first = load_rules([acme])
    cached = list((tmp_path / "cache").glob("rules-*.pickle"))
    assert len(cached) == 1
    again = load_rules([acme])
    # the same rules, their patterns compiled on first use
    assert [r.id for r in again.rules] == [r.id for r in first.rules] and again.digest == first.digest
    assert again.rules[0].compiled is None
    assert again.rules[0].regex.pattern == first.rules[0].regex.pattern
    # an edited file is parsed and validated afresh, not served from the cache
    text = (acme / "acme.toml").read_text()
    (acme / "acme.toml").write_text(text.replace('description = "', 'description = "Edited: ', 1))
    assert load_rules([acme]).rules[0].description.startswith("Edited: ")
    (acme / "acme.toml").write_text(text.replace("[[rules]]", "[[rules]]\nbogus = 1", 1))
    with pytest.raises(DetectorError, match="unknown key"):
        load_rules([acme])
    # a damaged cache file is a miss, not an error
    (acme / "acme.toml").write_text(text)
    cached[0].write_bytes(b"not a pickle")
    assert [r.id for r in load_rules([acme]).rules] == [r.id for r in first.rules]
