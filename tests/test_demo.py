"""The bundled demo target: built from templates with fresh tokens, every planted one found,
the placeholder decoys not."""

from __future__ import annotations

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
