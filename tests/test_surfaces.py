"""The same scan options on every surface (issue 18): a config file's rules and allowlist,
--exclude-path, --only and the ignore file change `repo`, `sweep run` and `serve` exactly as they
change `scan`, against the Hub stand-in on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import GHP, HF, leakscan, token
from hubstand import HubStandIn
from test_integrations import CUSTOM_RULE, acme_key
from test_serve import Service, push


@pytest.fixture
def hub(tmp_path):
    with HubStandIn(root=tmp_path / "hub") as h:
        yield h


def env(hub, tmp_path) -> dict:
    return {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "LEAKSCAN_HUB_CACHE": str(tmp_path / "mirrors"), "HF_TOKEN": "", "LEAKSCAN_NO_VERIFY": "1"}  # fmt: skip


@pytest.fixture
def planted(hub, tmp_path):
    """One model: a custom-rule key, an HF token in an excluded folder, a GitHub token under an
    allowlisted path, and an HF token that stays reported; and the config saying so."""
    acme, hidden, allowed, kept = acme_key("hub"), token(HF, "hub-x"), token(GHP, "hub-a"), token(HF, "hub-k")
    hub.add_repo("model", "alice/m")
    head = hub.commit("model", "alice/m", {"app.py": f"ACME = '{acme}'\nHF = '{kept}'\n",
                                           "vendor/lib.py": f"t = '{hidden}'\n", "tests/keys.py": f"g = '{allowed}'\n"})  # fmt: skip
    cfg = tmp_path / "leakscan.toml"
    cfg.write_text(CUSTOM_RULE + '\n[[allowlist]]\nreason = "fixtures"\npaths = ["tests/**"]\n'
                   '\n[options]\nexclude_paths = ["vendor/**"]\n')  # fmt: skip
    return cfg, head, {"acme": acme, "kept": kept}


def test_repo_takes_config_exclusions_only_and_exit_code(hub, tmp_path, planted):
    cfg, head, toks = planted
    run = leakscan("repo", "alice/m", "--no-discussions", "--no-cache", "-f", "json", "--config", cfg,
                   "--report-unused-ignores", env=env(hub, tmp_path))  # fmt: skip
    assert run.code == 1, run.err
    assert sorted((f["path"], f["detector"], f["secret"]) for f in run.json) == [
        ("app.py", "acme-internal-key", toks["acme"]), ("app.py", "huggingface-access-token", toks["kept"])
    ]  # fmt: skip
    assert "unused" not in run.err
    only = leakscan("repo", "alice/m", "--no-discussions", "--no-cache", "-f", "json", "--only", "huggingface",
                    "--exit-code", "4", "-q", env={**env(hub, tmp_path), "LEAKSCAN_CONFIG": str(cfg)})  # fmt: skip
    assert only.code == 4 and only.err == ""
    assert [f["secret"] for f in only.json] == [toks["kept"]]


def test_sweep_takes_config_and_exclusions(hub, tmp_path, planted):
    cfg, head, toks = planted
    out = tmp_path / "found.jsonl"
    run = leakscan("sweep", "run", "--db", tmp_path / "s.sqlite3", "-o", out, "--no-verify", "--workers", "1",
                   "--no-discussions", "--config", cfg, env=env(hub, tmp_path))  # fmt: skip
    assert run.code == 1, run.err
    got = sorted((f["path"], f["detector"]) for f in map(json.loads, out.read_text().splitlines()))
    assert got == [("app.py", "acme-internal-key"), ("app.py", "huggingface-access-token")]


def test_serve_takes_config_and_exclusions(hub, tmp_path, planted):
    cfg, head, toks = planted
    svc = Service(hub, tmp_path, "--config", str(cfg), "--exclude-path", "app.py").start()
    try:
        code, body = svc.post(push("alice/m", head))
        assert code == 202
        assert svc.wait(body["job"])[0] == "done"
        assert svc.query("SELECT path, detector FROM repo_findings") == []  # app.py excluded, the rest too
    finally:
        svc.stop()
    (tmp_path / "second").mkdir()  # a fresh store: the same delivery would be a duplicate in the first
    svc = Service(hub, tmp_path / "second", "--config", str(cfg)).start()
    try:
        code, body = svc.post(push("alice/m", head))
        assert svc.wait(body["job"])[0] == "done"
        assert sorted(svc.query("SELECT path, detector FROM repo_findings")) == [
            ("app.py", "acme-internal-key"), ("app.py", "huggingface-access-token")
        ]  # fmt: skip
    finally:
        svc.stop()


def test_a_bad_config_stops_serve_and_sweep_at_start(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[allowlist]\npaths = ['x']\n")
    for args in (["serve", "--port", "0"], ["sweep", "run", "--db", str(tmp_path / "s.sqlite3")]):
        run = leakscan(*args, "--config", bad, env={"LEAKSCAN_WEBHOOK_SECRET": "s"})
        assert (run.code, run.err) == (2, 'leakscan: error: bad.toml: allowlist 1: give the reason (reason = "…")\n')
