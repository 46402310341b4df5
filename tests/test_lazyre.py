"""Patterns and modules loaded on first use behave as the eager ones."""

from __future__ import annotations

import subprocess
import sys

from leakscan.lazyre import lazy, lazy_import, lazy_regex


def test_a_lazy_pattern_compiles_on_first_use_and_then_serves_the_compiled_methods():
    p = lazy(rb"a(b+)")
    assert "search" not in vars(p)
    assert p.search(b"xabbb").group(1) == b"bbb"
    assert "search" in vars(p) and p.pattern == rb"a(b+)" and p.groups == 1
    assert [m.span() for m in p.finditer(b"ab abb")] == [(0, 2), (3, 6)]
    v1 = lazy_regex(rb"(?V1)[_.]+|(?<=[a-z])(?=[A-Z])")  # inline flags stand for the flag arguments
    assert v1.split(b"camelCase_word") == [b"camel", b"Case", b"word"]
    back = lazy_regex(rb"(?r)[ \n]")
    assert back.search(b"a b c", 0, 4).start() == 3


def test_a_lazy_module_is_imported_on_first_use_only():
    probe = ("import sys\nfrom leakscan.lazyre import lazy_import\nm = lazy_import('colorsys')\n"
             "before = 'colorsys' in sys.modules\nprint(before, m.rgb_to_hsv(1, 0, 0), 'colorsys' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False (0.0, 1.0, 1) True"
    assert lazy_import("json").dumps([1]) == "[1]"
