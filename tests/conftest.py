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


@pytest.fixture(autouse=True)
def _huggingface_hub_own_client():
    """`leakscan.sources.hubapi.api` routes huggingface_hub's HTTP through leakscan's guard for the
    rest of the process, as in the CLI; tests that check the Hub stand-in with huggingface_hub's
    own client get that client back after each test."""
    import sys

    yield
    hub = sys.modules.get("leakscan.sources.hubapi")
    if hub is not None and hub._guarded_for is not None:
        from huggingface_hub import set_client_factory
        from huggingface_hub.utils._http import default_client_factory

        set_client_factory(default_client_factory)
        hub._guarded_for = None
