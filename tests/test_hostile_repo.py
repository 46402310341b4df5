"""Repositories made to be unscannable or to hide their history: a `.gitmodules` git refuses, bad
values in `.git/config`, grafts, a forged `shallow` list. The scan reports every secret anyway,
with the commit that added it, and runs nothing the repository names."""

from __future__ import annotations

import gc
import subprocess

import pytest

from helpers import HF, Repo, leakscan, token
from leakscan.sources.git import open_repo


def scan(path) -> tuple[int, list[tuple], str]:
    run = leakscan("scan", path, "-f", "json", "--no-cache")
    got = [(f["path"], f["source"], f["commit"], f["detector"], f["secret"], f["in_head"]) for f in run.json]
    return run.code, got, run.err


@pytest.fixture
def env_repo(tmp_path):
    """A repository whose HEAD holds a `.env` with a token."""
    r = Repo(tmp_path / "repo")
    secret = token(HF, "env")
    sha = r.commit({".env": f"HF_TOKEN={secret}\n", "README.md": "# app\n"}, "init")
    return r, secret, sha


def test_a_clone_with_a_hostile_gitmodules_still_reports_its_env_token(tmp_path):
    src = Repo(tmp_path / "src")
    marker = tmp_path / "pwned"
    secret = token(HF, "gitmodules")
    src.git("update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},sub")  # a gitlink
    sha = src.commit({".env": f"HF_TOKEN={secret}\n",
                      ".gitmodules": f'[submodule "sub"]\n\tpath = sub\n\turl = ./x\n\tupdate = !touch {marker}\n'})  # fmt: skip
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(src.path), str(clone)], check=True, capture_output=True)
    for path in (clone, src.path):
        code, got, err = scan(path)
        assert (code, got) == (1, [(".env", "history", sha, "huggingface-access-token", secret, True)]), err
    assert not marker.exists()


BAD_CONFIG = [
    "[core]\n\tbigFileThreshold = garbage\n",
    "[diff]\n\tsubmodule = bogus\n",
    "[core]\n\tabbrev = nonsense\n",
    "[log]\n\tdate = bogus\n",
    "[diff]\n\talgorithm = bogus\n",
    "[i18n]\n\tcommitEncoding = no-such-encoding\n\tlogOutputEncoding = no-such-encoding\n",
    "[core]\n\trepositoryformatversion = 0\n",
    "[core]\n\trepositoryformatversion = garbage\n",
    "[core]\n\tbare = maybe\n\tworktree = /nonexistent\n",
    "[color]\n\tui = bogus\n[log]\n\tmailmap = bogus\n\tshowSignature = bogus\n",
    "[diff]\n\torderFile = /nonexistent\n\tcontext = many\n\tignoreSubmodules = bogus\n",
    "[extensions]\n\tunknownExtension = 1\n",
    "[core\n",  # not even config syntax
]


@pytest.mark.parametrize("text", BAD_CONFIG, ids=lambda t: t.split("\n")[1].strip() or t.strip())
def test_bad_values_in_the_repository_config_change_nothing(env_repo, text):
    r, secret, sha = env_repo
    with open(r.path / ".git" / "config", "a") as fh:
        fh.write(text)
    code, got, err = scan(r.path)
    assert (code, got) == (1, [(".env", "history", sha, "huggingface-access-token", secret, True)]), err


def test_a_config_that_is_no_file(env_repo):
    r, secret, sha = env_repo
    config = r.path / ".git" / "config"
    config.unlink()
    config.mkdir()
    code, got, err = scan(r.path)
    assert (code, got) == (1, [(".env", "history", sha, "huggingface-access-token", secret, True)]), err


def test_a_sha256_repository_whose_config_git_cannot_parse(tmp_path):
    path = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "--object-format=sha256", str(path)], check=True)
    r = Repo(path)
    secret = token(HF, "sha256")
    sha = r.commit({".env": f"HF_TOKEN={secret}\n"}, "init")
    assert len(sha) == 64
    with open(path / ".git" / "config", "a") as fh:
        fh.write("[core\n")
    code, got, err = scan(path)
    assert (code, got) == (1, [(".env", "history", sha, "huggingface-access-token", secret, True)]), err


def test_grafts_do_not_hide_history(tmp_path):
    r = Repo(tmp_path / "repo")
    secret = token(HF, "graft")
    added = r.commit({".env": f"HF_TOKEN={secret}\n"}, "add")
    r.commit({".env": None}, "remove")
    tip = r.commit({"a.txt": "a\n"}, "more")
    (r.path / ".git" / "info" / "grafts").write_text(f"{tip}\n")  # `tip` now has no parent
    assert r.git("rev-list", "--all") == tip  # git itself sees nothing behind it
    code, got, err = scan(r.path)
    assert (code, got) == (1, [(".env", "history", added, "huggingface-access-token", secret, False)]), err


def test_a_forged_shallow_list_does_not_hide_history_and_a_real_one_still_works(tmp_path):
    r = Repo(tmp_path / "repo")
    secret, later = token(HF, "shallow"), token(HF, "later")
    added = r.commit({".env": f"HF_TOKEN={secret}\n"}, "add")
    r.commit({".env": None}, "remove")
    tip = r.commit({"a.py": f"T = '{later}'\n"}, "more")
    (r.path / ".git" / "shallow").write_text(f"{tip}\n")
    assert r.git("rev-list", "--all") == tip
    code, got, err = scan(r.path)
    assert (code, sorted(got)) == (1, [(".env", "history", added, "huggingface-access-token", secret, False),
                                       ("a.py", "history", tip, "huggingface-access-token", later, True)]), err  # fmt: skip
    (r.path / ".git" / "shallow").unlink()
    clone = tmp_path / "clone"  # a real shallow clone: `tip`'s parent is not there
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{r.path}", str(clone)], check=True,
                   capture_output=True)  # fmt: skip
    code, got, err = scan(clone)
    assert (code, got) == (1, [("a.py", "history", tip, "huggingface-access-token", later, True)]), err
    assert "warning" not in err


def test_the_stand_in_git_directory_goes_with_the_repository(env_repo):
    r, _, _ = env_repo
    repo = open_repo(r.path)
    stand_in = repo._shadow.path
    assert (stand_in / "config").exists() and r.path / ".git" not in stand_in.parents
    del repo
    gc.collect()
    assert not stand_in.exists()
