"""`leakscan repo` against a Hub stand-in: real git smart HTTP (git http-backend) and the REST
paths huggingface_hub calls, on 127.0.0.1."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from urllib.parse import urlsplit

import pytest

from helpers import GHP, HF, OPENAI, leakscan, token
from hubstand import HubStandIn

TOKEN = "hf_standin_token_for_tests"


@pytest.fixture
def hub(tmp_path):
    with HubStandIn(root=tmp_path / "hub", tokens={TOKEN}) as h:
        yield h


def env(hub, tmp_path, **extra) -> dict:
    return {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "LEAKSCAN_HUB_CACHE": str(tmp_path / "mirrors"), "HF_TOKEN": "", **extra}  # fmt: skip


def notebook(output: str) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "source": ["!env"], "metadata": {}, "execution_count": 1,
         "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}]}]})  # fmt: skip


def torch_args(hub_token: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("args/data.pkl", pickle.dumps({"output_dir": "out", "hub_token": hub_token}, protocol=2))
    return buf.getvalue()


def test_a_model_with_history_pr_refs_containers_and_discussions(hub, tmp_path):
    t = {k: token(tpl, k) for k, tpl in [("removed", HF), ("pr", GHP), ("nb", HF), ("args", HF), ("comment", OPENAI),
                                           ("edited", HF), ("title", GHP)]}  # fmt: skip
    hub.add_repo("model", "alice/bert-leaky")
    removed_at = hub.commit("model", "alice/bert-leaky", {"train.py": f"login(token='{t['removed']}')\n",
                                                          "README.md": "HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"})  # fmt: skip
    hub.commit("model", "alice/bert-leaky", {"train.py": "login()\n"}, message="remove token")
    hub.commit("model", "alice/bert-leaky", {"explore.ipynb": notebook(f"HF_TOKEN={t['nb']}\n"),
                                             "training_args.bin": torch_args(t["args"])}, message="artefacts")  # fmt: skip
    pr_at = hub.commit("model", "alice/bert-leaky", {"ci.yml": f"token: {t['pr']}\n"}, ref="refs/pr/1", message="PR")
    num = hub.add_discussion("model", "alice/bert-leaky", f"leaked {t['title']}", [f"use OPENAI_API_KEY={t['comment']}"],
                             edited_history=[f"oops HF_TOKEN={t['edited']}"])  # fmt: skip
    run = leakscan("repo", "alice/bert-leaky", "-f", "json", "--no-verify", "--no-cache", env=env(hub, tmp_path))
    assert run.code == 1, run.err
    got = {(f["source"], f["path"], f["container"], f["secret"]) for f in run.json}
    assert got == {
        ("history", "train.py", None, t["removed"]),
        ("history", "ci.yml", None, t["pr"]),
        ("history", "explore.ipynb", "cell 1 output 1", t["nb"]),
        ("history", "training_args.bin", "args/data.pkl", t["args"]),
        ("discussion", f"discussions/{num}", "discussion comment title", t["title"]),
        (*next((("discussion", f"discussions/{num}", f["container"]) for f in run.json if f["secret"] == t["comment"])), t["comment"]),
        (*next((("discussion", f"discussions/{num}", f["container"]) for f in run.json if f["secret"] == t["edited"])), t["edited"]),
    }
    by = {f["secret"]: f for f in run.json}
    assert by[t["removed"]]["commit"] == removed_at and by[t["removed"]]["in_head"] is False
    assert by[t["removed"]]["url"] == f"{hub.url}/alice/bert-leaky/blob/{removed_at}/train.py"
    assert by[t["pr"]]["commit"] == pr_at
    assert by[t["comment"]]["url"] == f"{hub.url}/alice/bert-leaky/discussions/{num}"
    assert "earlier version" in by[t["edited"]]["container"]
    assert all(f["repo"] == "alice/bert-leaky" for f in run.json)


def test_dataset_space_and_url_targets_and_incremental_rescans(hub, tmp_path):
    d, s = token(HF, "ds"), token(GHP, "sp")
    hub.add_repo("dataset", "bob/corpus")
    hub.commit("dataset", "bob/corpus", {"data/config.yaml": f"hf: {d}\n"})
    hub.add_repo("space", "bob/demo")
    hub.commit("space", "bob/demo", {"app.py": f"GH = '{s}'\n"})
    e = env(hub, tmp_path)
    assert [f["secret"] for f in leakscan("repo", "datasets/bob/corpus", "-f", "json", "--no-verify", "--no-cache", env=e).json] == [d]
    assert [f["secret"] for f in leakscan("repo", "bob/corpus", "--type", "dataset", "-f", "json", "--no-verify", "--no-cache", env=e).json] == [d]
    db = tmp_path / "store.sqlite3"
    first = leakscan("repo", f"{hub.url}/spaces/bob/demo", "-f", "json", "--no-verify", "--db", db, env=e)
    assert [f["secret"] for f in first.json] == [s]
    hub.commit("space", "bob/demo", {"README.md": "# demo\n"})
    again = leakscan("repo", "spaces/bob/demo", "-f", "json", "--no-verify", "--db", db, env=e)
    assert [f["secret"] for f in again.json] == [s]
    assert "history new since the last scan" in again.err and "scanned 3 git objects" in again.err  # README.md, its commit's message, app.py


def test_errors_are_one_line_exit_2(hub, tmp_path):
    hub.add_repo("model", "carol/private", private=True)
    hub.commit("model", "carol/private", {"a.py": f"t='{token(HF, 'priv')}'\n"})
    e = env(hub, tmp_path)
    for args, message in [
        (["nobody/nothing"], "leakscan: error: nobody/nothing: repository not found"),
        (["carol/private"], "leakscan: error: carol/private: repository not found (or private: set HF_TOKEN or log in)"),
        (["not a repo"], "leakscan: error: not a Hub repository"),
    ]:
        run = leakscan("repo", *args, "--no-verify", env=e)
        assert run.code == 2 and run.err.startswith(message), run.err
        assert len(run.err.strip().splitlines()) == 1
    unreachable = leakscan("repo", "carol/private", "--no-verify", env={**e, "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert unreachable.code == 2 and unreachable.err.startswith("leakscan: error: carol/private: cannot reach")
    ok = leakscan("repo", "carol/private", "-f", "json", "--no-verify", "--no-cache", env={**e, "HF_TOKEN": TOKEN})
    assert ok.code == 1 and len(ok.json) == 1


def test_owner_sweep_all_pages_and_a_failing_repo(hub, tmp_path):
    secrets = {}
    for i in range(5):  # more than a page (the stand-in pages by 2)
        hub.add_repo("model", f"org/m{i}")
        secrets[f"org/m{i}"] = token(HF, f"m{i}")
        hub.commit("model", f"org/m{i}", {"k.py": f"T='{secrets[f'org/m{i}']}'\n"})
    hub.add_repo("dataset", "org/d")
    hub.commit("dataset", "org/d", {"x.txt": "clean\n"})
    hub.add_repo("space", "org/s")
    secrets["spaces/org/s"] = token(GHP, "s")
    hub.commit("space", "org/s", {"app.py": f"G='{secrets['spaces/org/s']}'\n"})
    hub.fail_next("/api/models/org/m3", 403)
    run = leakscan("repo", "--author", "org", "-f", "json", "--no-verify", "--no-cache", env=env(hub, tmp_path))
    assert run.code == 1, run.err
    assert {f["repo"] for f in run.json} == {"org/m0", "org/m1", "org/m2", "org/m4", "spaces/org/s"}
    assert {f["secret"] for f in run.json} == {v for k, v in secrets.items() if k != "org/m3"}
    assert "org/m3" in run.err and "failed" in run.err and "7 repositories" in run.err


def test_max_repo_size_stops_the_fetch(hub, tmp_path):
    import os as _os

    hub.add_repo("model", "big/weights")
    hub.commit("model", "big/weights", {"blob.bin": _os.urandom(3 << 20)})
    run = leakscan("repo", "big/weights", "--no-verify", "--no-cache", "--max-repo-size", "1", env=env(hub, tmp_path))
    assert run.code == 2 and "is larger than --max-repo-size (1 MiB)" in run.err, run.err
    assert not (tmp_path / "mirrors").exists() or not any((tmp_path / "mirrors").rglob("HEAD"))


def test_discussions_that_cannot_be_read_are_a_warning_not_a_failure(hub, tmp_path):
    secret = token(HF, "disc")
    hub.add_repo("model", "dave/m")
    hub.commit("model", "dave/m", {"a.py": f"T='{secret}'\n"})
    hub.fail_next("/api/models/dave/m/discussions", 403)
    run = leakscan("repo", "dave/m", "-f", "json", "--no-verify", "--no-cache", env=env(hub, tmp_path))
    assert run.code == 1 and [f["secret"] for f in run.json] == [secret]
    assert "leakscan: warning: dave/m: cannot read discussions" in run.err


def test_a_repo_that_disappears_mid_sweep_is_reported_and_the_others_go_on(hub, tmp_path):
    secrets = {}
    for name in ("a", "b", "c"):
        hub.add_repo("model", f"gone/{name}")
        secrets[name] = token(HF, f"gone-{name}")
        hub.commit("model", f"gone/{name}", {"k.py": f"T='{secrets[name]}'\n"})
    hub.fail_next("/gone/b/info/refs", 404)  # listed and described, then gone when git asks
    run = leakscan("repo", "--author", "gone", "-f", "json", "--no-verify", "--no-cache", env=env(hub, tmp_path))
    assert run.code == 1, run.err
    assert sorted(f["secret"] for f in run.json) == sorted([secrets["a"], secrets["c"]])
    assert "gone/b" in run.err and "failed" in run.err and "cannot fetch" in run.err
    single = leakscan("repo", "gone/b", "--no-verify", "--no-cache", env=env(hub, tmp_path))
    assert single.code == 1  # back again: scanned


def test_a_mirror_left_locked_by_a_killed_run_is_fetched_again(hub, tmp_path):
    """A run killed mid-fetch leaves git's lock files in the mirror; git would refuse every
    later fetch ("cannot lock ref"), and a sweep would park the repository for good."""
    first, second = token(HF, "before-kill"), token(GHP, "after-kill")
    hub.add_repo("model", "erin/m")
    hub.commit("model", "erin/m", {"a.py": f"T = '{first}'\n"})
    e = env(hub, tmp_path)
    assert [f["secret"] for f in leakscan("repo", "erin/m", "-f", "json", "--no-verify", "--no-cache", env=e).json] == [first]
    mirror = next((tmp_path / "mirrors").glob("*/models/erin/m"))
    heads = [p for p in (mirror / "refs" / "heads").iterdir() if not p.name.endswith(".lock")]
    for ref in heads:
        (ref.parent / f"{ref.name}.lock").write_text("")  # what a killed `git fetch` leaves
    (mirror / "packed-refs.lock").write_text("")
    hub.commit("model", "erin/m", {"b.py": f"G = '{second}'\n"})
    again = leakscan("repo", "erin/m", "-f", "json", "--no-verify", "--no-cache", env=e)
    assert again.code == 1, again.err
    assert sorted(f["secret"] for f in again.json) == sorted([first, second])
    assert not list(mirror.rglob("*.lock"))


@pytest.mark.parametrize("left", ["HEAD only", "no HEAD"])
def test_a_mirror_a_killed_run_left_half_made_is_made_again(hub, tmp_path, left):
    """A run killed inside `git init`, or while removing a failed first fetch, leaves a directory
    that is not a repository; git would answer "not a git repository" on every later fetch."""
    secret = token(HF, "half-made")
    hub.add_repo("model", "erin/h")
    hub.commit("model", "erin/h", {"a.py": f"T = '{secret}'\n"})
    e = env(hub, tmp_path)
    host = urlsplit(hub.url).netloc.replace(":", "_")
    mirror = tmp_path / "mirrors" / host / "models" / "erin" / "h"
    mirror.mkdir(parents=True)
    if left == "HEAD only":
        (mirror / "HEAD").write_text("ref: refs/heads/main\n")
    else:
        (mirror / "objects" / "pack").mkdir(parents=True)
    run = leakscan("repo", "erin/h", "-f", "json", "--no-verify", "--no-cache", env=e)
    assert run.code == 1, run.err
    assert [f["secret"] for f in run.json] == [secret]
    assert not list(mirror.parent.glob(".h.leakscan-new"))
