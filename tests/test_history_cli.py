"""`leakscan scan` on git repositories: whole history, attribution, incremental cache, damage."""

from __future__ import annotations

import subprocess

import pytest

from helpers import GHP, HF, OPENAI, Repo, leakscan, token


def findings(run) -> list[tuple]:
    assert run.code in (0, 1), run.err
    return [(f["path"], f["source"], f["commit"], f["detector"], f["secret"], f.get("in_head")) for f in run.json]


@pytest.fixture
def history(tmp_path):
    """A repository whose secrets hide in every corner of its history."""
    r = Repo(tmp_path / "repo")
    t = {k: token(tpl, k) for k, tpl in [("removed", HF), ("branch", GHP), ("tag", OPENAI), ("pr", HF),
                                           ("msg", GHP), ("head", HF), ("stash", HF), ("tagmsg", GHP)]}  # fmt: skip
    c = {}
    c["base"] = r.commit({"README.md": "# model\n", "train.py": "print('hi')\n"}, "init")
    c["removed"] = r.commit({"config/.env": f"HF_TOKEN={t['removed']}\n"}, "add env")
    r.commit({"config/.env": None}, "oops, remove env")
    c["head"] = r.commit({"app.py": f"TOKEN = '{t['head']}'\n"}, "app")
    c["msg"] = r.commit({"notes.txt": "n\n"}, f"debug with {t['msg']}")
    r.git("checkout", "-q", "-b", "side")
    c["branch"] = r.commit({"side.py": f"gh = '{t['branch']}'\n"}, "side work")
    r.git("checkout", "-q", "main")
    r.git("checkout", "-q", "--detach")
    c["tag"] = r.commit({"release.py": f"key = \"{t['tag']}\"\n"}, "release")
    r.git("tag", "-a", "v1", "-m", f"release token {t['tagmsg']}")
    r.git("checkout", "-q", "--detach", "main")
    c["pr"] = r.commit({"pr.py": f"t = '{t['pr']}'\n"}, "pr change")
    r.git("update-ref", "refs/pr/1", "HEAD")
    r.git("checkout", "-q", "main")
    (r.path / "train.py").write_text(f"stashed = '{t['stash']}'\n")
    r.git("stash", "-q")
    return r, t, c


def test_every_corner_of_history_with_attribution(history, tmp_path):
    r, t, c = history
    run = leakscan("scan", r.path, "-f", "json", "--db", tmp_path / "s.db")
    got = findings(run)
    assert ("config/.env", "history", c["removed"], "huggingface-access-token", t["removed"], False) in got
    assert ("side.py", "history", c["branch"], "github-pat", t["branch"], False) in got
    assert ("release.py", "history", c["tag"], "openai-project-key", t["tag"], False) in got
    assert ("pr.py", "history", c["pr"], "huggingface-access-token", t["pr"], False) in got
    assert ("app.py", "history", c["head"], "huggingface-access-token", t["head"], True) in got
    assert ("(commit message)", "commit-message", c["msg"], "github-pat", t["msg"], False) in got
    assert [g for g in got if g[4] == t["stash"]][0][:2] == ("train.py", "history")
    assert [g[1] for g in got if g[4] == t["tagmsg"]] == ["commit-message"]
    assert len(got) == 8
    removed = next(f for f in run.json if f["secret"] == t["removed"])
    assert removed["author"] == "Ada" and removed["date"].startswith("2026-01-01T00:00:")


def test_output_is_deterministic_and_rescan_reports_everything(history, tmp_path):
    r, _, _ = history
    db = tmp_path / "s.db"
    first = leakscan("scan", r.path, "-f", "json", "--db", db)
    second = leakscan("scan", r.path, "-f", "json", "--db", db)
    third = leakscan("scan", r.path, "-f", "json", "--no-cache")
    assert first.json == second.json == third.json and len(first.json) == 8
    # only what had findings is read again: 6 blobs and the 2 commits whose messages hold secrets
    assert "scanned 8 git objects" in second.err


def test_rescan_after_one_commit_scans_only_the_new_blob(history, tmp_path):
    r, _, _ = history
    db = tmp_path / "s.db"
    leakscan("scan", r.path, "--db", db)
    new = token(HF, "new")
    sha = r.commit({"new.py": f"T = '{new}'\n", "other.txt": "clean\n"}, "new")
    run = leakscan("scan", r.path, "-f", "json", "--db", db)
    # 2 new blobs and the new commit's message, and the 6 blobs and 2 messages that had findings
    assert "scanned 11 git objects" in run.err
    assert ("new.py", "history", sha, "huggingface-access-token", new, True) in findings(run)
    assert len(run.json) == 9


def test_force_push_rewalks_and_drops_what_is_gone(history, tmp_path):
    r, t, _ = history
    db = tmp_path / "s.db"
    leakscan("scan", r.path, "--db", db)
    r.git("branch", "-D", "side")
    r.git("reflog", "expire", "--expire=now", "--all")
    run = leakscan("scan", r.path, "-f", "json", "--db", db)
    assert t["branch"] not in [f["secret"] for f in run.json]
    assert len(run.json) == 7


def test_no_history_all_objects_since_and_range(history, tmp_path):
    r, t, c = history
    only_files = leakscan("scan", r.path, "--no-history", "-f", "json")
    assert [(f["path"], f["source"]) for f in only_files.json] == [("app.py", "file")]

    dangling = token(HF, "dangling")
    r.git("hash-object", "-w", "--stdin", input=f"x = '{dangling}'\n")
    assert dangling not in leakscan("scan", r.path, "-f", "json", "--no-cache").out
    run = leakscan("scan", r.path, "-f", "json", "--no-cache", "--all-objects")
    assert [f["path"] for f in run.json if f["secret"] == dangling] == ["<unreachable>"]

    rng = leakscan("scan", r.path, "-f", "json", "--range", f"{c['removed']}..{c['msg']}")
    assert sorted((f["path"], f["secret"]) for f in rng.json) == sorted(
        [("app.py", t["head"]), ("(commit message)", t["msg"])])
    since = leakscan("scan", r.path, "-f", "json", "--since", "main")
    # the stash commit repeats the subject of main's tip, so t["msg"] is new there too
    assert {f["secret"] for f in since.json} == {t["branch"], t["tag"], t["pr"], t["stash"], t["msg"]}


def test_bare_repository(history, tmp_path):
    r, t, _ = history
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--mirror", str(r.path), str(bare)], check=True)
    run = leakscan("scan", bare, "-f", "json", "--no-cache")
    got = {f["secret"] for f in run.json}
    assert {t["removed"], t["branch"], t["tag"], t["pr"], t["head"], t["msg"]} <= got


def test_damaged_repository_warns_and_goes_on(tmp_path):
    r = Repo(tmp_path / "repo")
    good = token(HF, "good")
    r.commit({"a.py": f"t = '{good}'\n"}, "a")
    r.commit({"b.txt": "some text that will go missing\n"}, "b")
    oid = r.git("rev-parse", "HEAD:b.txt")
    (r.path / ".git" / "objects" / oid[:2] / oid[2:]).unlink()
    run = leakscan("scan", r.path, "-f", "json", "--no-cache")
    assert run.code == 1
    assert [f["secret"] for f in run.json] == [good]
    assert "leakscan: warning: b.txt: missing object" in run.err


def test_bad_revisions_are_one_line_errors(history):
    r, _, _ = history
    run = leakscan("scan", r.path, "--since", "no-such-rev")
    assert run.code == 2 and run.err.strip() == "leakscan: error: unknown revision: no-such-rev"
    run = leakscan("scan", r.path, "--since", "main", "--range", "a..b")
    assert run.code == 2 and run.err.strip() == "leakscan: error: give either --since or --range, not both"


def test_a_secret_kept_across_revisions_is_one_finding_at_its_first_commit(tmp_path):
    r = Repo(tmp_path / "repo")
    secret = token(GHP, "rev")
    first = r.commit({"settings.py": f"GH = '{secret}'\nVERSION = 1\n"}, "v1")
    for v in range(2, 6):
        r.commit({"settings.py": f"GH = '{secret}'\nVERSION = {v}\n"}, f"v{v}")
    r.commit({"copy.py": f"GH = '{secret}'\n"}, "copied elsewhere")
    run = leakscan("scan", r.path, "-f", "json", "--no-cache")
    assert [(f["path"], f["commit"], f["in_head"]) for f in run.json] == [
        ("copy.py", r.git("rev-parse", "HEAD"), True),
        ("settings.py", first, True),
    ]


def test_worker_processes_give_identical_output(history, tmp_path):
    r, _, _ = history
    for n in range(30):  # enough blobs for every worker to have some
        r.commit({f"pkg/m{n}.py": f"x = {n}\n" * 50}, f"m{n}")
    one = leakscan("scan", r.path, "-f", "json", "--no-cache", "-j", "1")
    two = leakscan("scan", r.path, "-f", "json", "--no-cache", "-j", "2")
    three = leakscan("scan", r.path, "-f", "json", "--no-cache", "-j", "3")
    assert one.json == two.json == three.json and len(one.json) == 8


def test_work_tree_files_git_would_push_but_not_ignored_ones(tmp_path):
    r = Repo(tmp_path / "repo")
    r.commit({".gitignore": "secrets/\n", "app.py": "print(1)\n"}, "init")
    untracked, ignored, edited = token(HF, "u"), token(HF, "i"), token(HF, "e")
    (r.path / "notes.txt").write_text(f"token {untracked}\n")
    (r.path / "secrets").mkdir()
    (r.path / "secrets" / "prod.env").write_text(f"HF_TOKEN={ignored}\n")
    (r.path / "app.py").write_text(f"print(1)\nT = '{edited}'\n")
    run = leakscan("scan", r.path, "-f", "json", "--no-cache")
    assert [(f["path"], f["source"], f["secret"]) for f in run.json] == [
        ("app.py", "file", edited), ("notes.txt", "file", untracked)]
    # --no-history is a plain folder scan: ignored files too
    assert ignored in leakscan("scan", r.path, "-f", "json", "--no-history").out


def _generic_secret(seed: str) -> str:
    import random

    rng = random.Random(seed)
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789") for _ in range(40))


def test_a_blob_is_reported_at_the_path_its_rules_allow(tmp_path):
    """The same bytes first as tokenizer.json (a path the generic rules skip), then as
    config/service.json: the secret is reported at the second path, with the commit that put it
    there — in a full scan and in an incremental one that first saw only the excluded path."""
    r = Repo(tmp_path / "repo")
    secret = _generic_secret("provenance")
    body = '{"api_key": "%s"}\n' % secret
    r.commit({"tokenizer.json": body}, "tokenizer")
    db = tmp_path / "s.db"
    first = leakscan("scan", r.path, "-f", "json", "--db", db)
    assert first.code == 0 and first.json == []
    second_commit = r.commit({"config/service.json": body}, "service config")
    for run in (leakscan("scan", r.path, "-f", "json", "--db", db), leakscan("scan", r.path, "-f", "json", "--no-cache")):
        assert [(f["path"], f["commit"], f["detector"], f["secret"], f.get("also_at")) for f in run.json] == [
            ("config/service.json", second_commit, "generic-api-key", secret, None)]
        assert run.code == 1


def test_a_blob_at_several_allowed_paths_is_one_finding_with_also_at(tmp_path):
    r = Repo(tmp_path / "repo")
    tok = token(HF, "also")
    first = r.commit({"a/.env": f"HF_TOKEN={tok}\n"}, "a")
    second = r.commit({"b/.env": f"HF_TOKEN={tok}\n"}, "b")
    run = leakscan("scan", r.path, "-f", "json", "--no-cache")
    assert [(f["path"], f["commit"], f["also_at"], f["in_head"]) for f in run.json] == [
        ("a/.env", first, [f"b/.env@{second}"], True)]
    worktree = leakscan("scan", r.path, "-f", "json", "--no-history")
    assert sorted(f["path"] for f in worktree.json) == ["a/.env", "b/.env"]
