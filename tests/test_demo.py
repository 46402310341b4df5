"""The bundled demo target: built from templates with fresh tokens, every planted one found,
the placeholder decoys not."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import REPO, leakscan


def test_demo_finds_exactly_the_planted_tokens(tmp_path):
    dest = tmp_path / "demo"
    subprocess.run([sys.executable, str(REPO / "fixtures" / "make_demo.py"), str(dest)], check=True,
                   capture_output=True)  # fmt: skip
    run = leakscan("scan", dest / "model-repo", "-f", "json", "--no-cache")
    assert run.code == 1, run.err
    assert [(f["path"], f["container"], f["line"], f["detector"], f["in_head"]) for f in run.json] == [
        (".env", None, 3, "openai-project-key", True),
        ("deploy.env", None, 1, "huggingface-access-token", False),  # deleted, still in history
        ("notebooks/explore.ipynb", "cell 1 output 1", 1, "wandb-api-key", True),
        ("notebooks/explore.ipynb", "cell 1 output 1", 2, "huggingface-access-token", True),
        ("scripts/settings.yaml", None, 2, "database-url-password", True),
        ("scripts/train.py", None, 6, "huggingface-access-token", True),
        ("scripts/train.py", None, 14, "github-pat", True),
        ("training_args.bin", "training_args/data.pkl", 4, "huggingface-access-token", True),
    ]
    # the templates themselves (committed in this repo) hold no secret
    assert leakscan("scan", REPO / "fixtures" / "demo").code == 0


def test_demo_on_the_hub_stand_in_finds_them_in_lfs_and_a_space_variable(tmp_path):
    dest = tmp_path / "demo"
    subprocess.run([sys.executable, str(REPO / "fixtures" / "make_demo.py"), str(dest)], check=True,
                   capture_output=True)  # fmt: skip
    run = subprocess.run([sys.executable, str(REPO / "fixtures" / "demo_hub.py"), str(dest), "-f", "json", "--no-verify",
                          "--no-cache"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 1, run.stderr
    found = json.loads(run.stdout)
    assert sorted((f["repo"], f["path"], f["container"], f["detector"]) for f in found) == [
        ("demo/sentiment", ".env", None, "openai-project-key"),
        ("demo/sentiment", "deploy.env", None, "huggingface-access-token"),
        ("demo/sentiment", "notebooks/explore.ipynb", "cell 1 output 1", "huggingface-access-token"),
        ("demo/sentiment", "notebooks/explore.ipynb", "cell 1 output 1", "wandb-api-key"),
        ("demo/sentiment", "scripts/settings.yaml", None, "database-url-password"),
        ("demo/sentiment", "scripts/train.py", None, "github-pat"),
        ("demo/sentiment", "scripts/train.py", None, "huggingface-access-token"),
        # in git only as an LFS pointer: found in the content the Hub serves for it
        ("demo/sentiment", "training_args.bin", "lfs!training_args/data.pkl", "huggingface-access-token"),
        ("spaces/demo/sentiment-app", "variables/HF_TOKEN", None, "huggingface-access-token"),
    ]
    assert "LFS content served by the stand-in:" in run.stderr
