"""Offline filters on their own: placeholders are judged on the whole token."""

from __future__ import annotations

import random

import pytest

from leakscan.checks import filter_generic, filter_placeholder, filler_share
from leakscan.examples import ALPHABETS


def _random(rng: random.Random, alphabet: str, n: int) -> bytes:
    return "".join(rng.choice(ALPHABETS[alphabet]) for _ in range(n)).encode()


@pytest.mark.parametrize("key", [
    # random keys that happen to contain filler a template would use
    # (joined at run time: the repository itself must hold no token-shaped text)
    b"hf_" + b"Qm7xxxxZtRk2pWbVn8LcJd4HsYgFa1ENoUiK",
    b"sk_live_" + b"51Nq123456Vb7ZkPw9RtLmYh3JcXd8GfTeS",
    b"tvly-" + b"q8TestN2rVbK7pZwLm4YhJc9XdGfTeS1a",
    b"pcsk_" + b"3vQ7Z_fAkEm9RtLp2WbYh8JcXd4GsTnKqUe6VoBiNa5MzCrDyHwFgTjSlP1oQ0uIxE7kA9vLcZ3bRnYt",
    b"AKIA" + b"2345QF7ZPL2MWX3Q",
])
def test_a_random_key_containing_filler_is_still_a_key(key):
    assert not filter_placeholder(key)


@pytest.mark.parametrize("text", [
    b"hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",  # mostly filler
    b"sk_live_XXXXXXXXXXXXXXXXXXXXXXXX",
    b"sk-1234567890abcdef1234567890abcdef",  # counting runs
    b"sk-proj-0000000000000000000000000000",
    b"your_api_key_here_please",  # template words
    b"tvly-YOUR-API-KEY-GOES-HERE",
    b"fc-9876543210fedcba9876543210fedcba",
    b"AKIAIOSFODNN7EXAMPLE",  # a documented example value
    b"sk-ant-api03-REDACTED",
    b"<your-key>",  # templates and masks
    b"${PINECONE_API_KEY}",
    b"{{ secrets.HF_TOKEN }}",
    b"sk-proj-abc...xyz9",
    b"sk-****************wXyZ",
])
def test_placeholders_templates_and_documented_examples(text):
    assert filter_placeholder(text)


def test_filler_share_weighs_letters_and_digits_only():
    assert filler_share(b"xxxx-xxxx-Qw7Z") == pytest.approx(8 / 12)
    assert filler_share(b"----") == 1.0
    assert filler_share(b"Qw7ZpL2m") == 0.0


@pytest.mark.parametrize("alphabet,n", [("b62", 20), ("b62", 32), ("b62", 40), ("b64", 44), ("hex", 32),
                                        ("hex", 64), ("lower", 24), ("b64url", 43), ("HEX", 40)])  # fmt: skip
def test_random_keys_are_not_placeholders(alphabet, n):
    rng = random.Random(f"{alphabet}/{n}")
    flagged = [k for k in (_random(rng, alphabet, n) for _ in range(5000)) if filter_placeholder(k)]
    assert flagged == []


def test_the_generic_filter_still_takes_a_hint_anywhere():
    # a prefix-less value under an api_key name has no random body to weigh
    assert filter_generic(b"Qm7ZtRk2pWbVn8Lc_test_key")
    assert filter_generic(b"Qm7ZtRk2pWbVn8LcYourKey")
    assert not filter_generic(b"Qm7ZtRk2pWbVn8LcJd4HsYgF")
