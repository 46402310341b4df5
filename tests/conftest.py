from __future__ import annotations

import random

import pytest

from leakscan.detectors import load_rules
from leakscan.matcher import Matcher


@pytest.fixture(scope="session")
def ruleset():
    return load_rules()


@pytest.fixture(scope="session")
def matchers(ruleset):
    """Both engines; tests that take this assert they agree."""
    return {"hyperscan": Matcher(ruleset, "hyperscan"), "regex": Matcher(ruleset, "regex")}


@pytest.fixture
def rng(request):
    # Generated at test time, reproducible per test.
    return random.Random(request.node.nodeid)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the Hyperscan database cache of test runs (and their subprocesses) out of the
    user's cache dir."""
    import os

    os.environ["LEAKSCAN_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session", autouse=True)
def _no_network_verification():
    """Tests never reach the internet: verification is off unless a test turns it on with its
    own loopback stand-ins (LEAKSCAN_ENDPOINT_<PROVIDER>) and LEAKSCAN_NO_VERIFY=0."""
    import os

    os.environ["LEAKSCAN_NO_VERIFY"] = "1"


@pytest.fixture
def acme(tmp_path):
    """A rules directory holding only the made-up, verifiable `acme` detector."""
    from helpers import ACME

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "acme.toml").write_text(ACME)
    return rules
