"""The Python API (`import leakscan`), in this process: typed findings from paths, repositories
and bytes, the same options as the command line, verification against a loopback stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

import leakscan
from helpers import GHP, HF, REPO, Repo, token
from standin import StandIn


def test_import_is_cheap_and_the_api_loads_on_first_use():
    code = ("import sys, leakscan; heavy = [m for m in ('leakscan.api', 'leakscan.pipeline', 'hyperscan', 'rich', "
            "'typer', 'aiohttp') if m in sys.modules]; print(heavy); leakscan.scan_bytes; print('leakscan.api' in sys.modules)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert proc.stdout == "[]\nTrue\n"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        leakscan.nope  # noqa: B018


def test_scan_path_gives_typed_findings_of_a_tree(tmp_path: Path):
    hf, ghp = token(HF, "api1"), token(GHP, "api2")
    (tmp_path / ".env").write_text(f"HF_TOKEN={hf}\n")
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "x.py").write_text(f"g = '{ghp}'\n")
    result = leakscan.scan_path(tmp_path)
    assert all(isinstance(f, leakscan.Finding) for f in result)
    assert [(f.path, f.line, f.column, f.detector, f.secret) for f in result] == [
        (".env", 1, 10, "huggingface-access-token", hf), ("vendor/x.py", 1, 6, "github-pat", ghp)
    ]  # fmt: skip
    narrowed = leakscan.scan_path(tmp_path, exclude_paths=["vendor/**"], only=["huggingface"])
    assert [f.path for f in narrowed] == [".env"]
    assert all(f.verification == "unverified" for f in result)  # nothing leaves the machine unless asked


def test_scan_path_of_a_repository_history_and_staged(tmp_path: Path):
    repo = Repo(tmp_path / "r")
    old, new = token(HF, "h1"), token(HF, "h2")
    c1 = repo.commit({"a.env": f"HF_TOKEN={old}\n"})
    repo.commit({"a.env": None})
    (repo.path / "b.env").write_text(f"HF_TOKEN={new}\n")
    repo.git("add", "b.env")
    history = leakscan.scan_path(repo.path)
    assert sorted((f.path, f.source, f.commit, f.secret) for f in history) == [
        ("a.env", "history", c1, old), ("b.env", "file", None, new)
    ]  # fmt: skip
    staged = leakscan.scan_path(repo.path, staged=True)
    assert [(f.path, f.source, f.secret) for f in staged] == [("b.env", "staged", new)]
    files = leakscan.scan_path(repo.path, history=False)
    assert [(f.path, f.source) for f in files] == [("b.env", "file")]


def test_scan_bytes_decodes_by_path_and_reads_a_config(tmp_path: Path):
    hf = token(HF, "nb")
    nb = json.dumps({"cells": [{"cell_type": "code", "source": [f"login('{hf}')"], "metadata": {}, "outputs": [],
                                "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})  # fmt: skip
    got = leakscan.scan_bytes(nb.encode(), path="demo.ipynb")
    assert [(f.path, f.container, f.source, f.secret) for f in got] == [("demo.ipynb", "cell 1", "bytes", hf)]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[[allowlist]]\nreason = "demo"\nstopwords = ["{hf[3:11]}"]\n')
    quiet = leakscan.scan_bytes(nb.encode(), path="demo.ipynb", config=cfg)
    assert quiet.findings == [] and quiet.suppressed == 1


def test_errors_are_scan_errors(tmp_path: Path):
    with pytest.raises(leakscan.ScanError, match="^no such file or directory: "):
        leakscan.scan_path(tmp_path / "missing")
    (tmp_path / ".leakscan.toml").write_text("[extend]\nuse_default = 'no'\n")
    with pytest.raises(leakscan.ScanError, match=r"^\.leakscan\.toml: \[extend\] takes one key"):
        leakscan.scan_path(tmp_path)
    with pytest.raises(leakscan.ScanError, match="^invalid detectors: unknown detector\\(s\\): no-such-detector$"):
        leakscan.scan_bytes(b"x", only=["no-such-detector"])
    with pytest.raises(leakscan.ScanError, match="^staged=True needs the top of a git work tree"):
        leakscan.scan_path(tmp_path, staged=True)


def test_verify_asks_the_provider(acme, monkeypatch):
    live, dead = token("acme_{b62:24}", "live"), token("acme_{b62:24}", "dead")

    async def provider(request, body):
        ok = request.headers.get("Authorization") == f"Bearer {live}"
        return web.json_response({"user": {"name": "ada"}}) if ok else web.Response(status=401)

    result = leakscan.scan_bytes(f"a = {live}\nb = {dead}\n".encode(), rules=[acme])
    with StandIn(provider) as s:
        monkeypatch.setenv("LEAKSCAN_ENDPOINT_ACME", s.url)
        verified = leakscan.verify_findings(result.findings, rules=[acme])
    assert [(f.secret, f.verification) for f in verified] == [(live, "verified"), (dead, "invalid")]
    assert len(s.requests) == 2
