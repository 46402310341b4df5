"""The pre-commit hook for real: `pre-commit try-repo <this checkout> leakscan` in a repository
with something staged. pre-commit builds its own virtualenv and pip-installs this project there;
the test keeps that offline: no index (pip finds only a setuptools wheel, taken from virtualenv's
bundled seed wheels, to build the project), no dependencies installed (the hook's process finds
them in this interpreter's site-packages through PYTHONPATH, whose .pth files Python does not
process, so the leakscan the hook runs is the one pre-commit installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from helpers import HF, REPO, Repo, token

pytest.importorskip("pre_commit")


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory) -> dict[str, str]:
    import virtualenv

    embed = Path(virtualenv.__file__).parent / "seed" / "wheels" / "embed"
    wheels = sorted(embed.glob("setuptools-*.whl"), key=lambda p: [int(x) for x in p.name.split("-")[1].split(".") if x.isdigit()])
    assert wheels, f"no setuptools wheel in {embed}"
    house = tmp_path_factory.mktemp("wheelhouse")
    shutil.copy(wheels[-1], house)
    home = tmp_path_factory.mktemp("pre-commit-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUALENV_", "PYTHON"))}
    env.update(PRE_COMMIT_HOME=str(home), PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(house),
               PIP_NO_DEPS="1", PIP_DISABLE_PIP_VERSION_CHECK="1", VIRTUALENV_NO_PERIODIC_UPDATE="1",
               PYTHONPATH=sysconfig.get_paths()["purelib"])  # fmt: skip
    return env


def try_repo(repo: Repo, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "leakscan"], cwd=repo.path,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip


def test_try_repo_fails_on_a_staged_secret_and_passes_a_clean_commit(tmp_path: Path, offline_env):
    repo = Repo(tmp_path / "project")
    repo.commit({"README.md": "# project\n"})
    hf = token(HF, "pre-commit")
    (repo.path / ".env").write_text(f"HF_TOKEN={hf}\n")
    repo.git("add", ".env")
    failed = try_repo(repo, offline_env)
    out = failed.stdout + failed.stderr
    assert failed.returncode == 1, out
    assert "leakscan (secrets in staged content)" in out and "Failed" in out
    assert "huggingface-access-token" in out and ".env:1:10" in out
    assert hf not in out  # the table shows the redacted form

    repo.git("rm", "-q", "--cached", ".env")
    (repo.path / "app.py").write_text("import os\ntoken = os.environ['HF_TOKEN']\n")
    repo.git("add", "app.py")
    passed = try_repo(repo, offline_env)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Passed" in passed.stdout
