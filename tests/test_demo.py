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
    run = leakscan("scan", dest, "-f", "json")
    assert run.code == 1, run.err
    assert [(f["path"], f["line"], f["detector"]) for f in run.json] == [
        ("model-repo/.env", 3, "openai-project-key"),
        ("model-repo/scripts/settings.yaml", 2, "database-url-password"),
        ("model-repo/scripts/train.py", 6, "huggingface-access-token"),
        ("model-repo/scripts/train.py", 14, "github-pat"),
    ]
    # the templates themselves (committed in this repo) hold no secret
    assert leakscan("scan", REPO / "fixtures" / "demo").code == 0
