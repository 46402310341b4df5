"""Storage buckets (`buckets/ns/name`): `leakscan repo` lists a bucket through huggingface_hub and
fetches its files by the same size and kind rules as LFS content, against the Hub stand-in."""

from __future__ import annotations

import pytest

from helpers import HF, OPENAI, leakscan, token
from hubstand import HubStandIn
from make_demo import training_args_bin
from test_lfs import BIG, env, safetensors

BUCKET = "alice/training-runs"


@pytest.fixture
def hub(tmp_path):
    with HubStandIn(root=tmp_path / "hub") as h:
        t = {k: token(tpl, f"bucket-{k}") for k, tpl in [("args", HF), ("env", OPENAI), ("log", HF), ("weights", HF)]}
        weights = tmp_path / "model.safetensors"
        safetensors(weights, {"hub_token": t["weights"]}, BIG)
        h.add_bucket(BUCKET, {
            "run-1/training_args.bin": training_args_bin(t["args"]),
            "run-1/.env": f"OPENAI_API_KEY={t['env']}\n".encode(),
            "run-1/logs/train.log": f"step 1 loss 0.5\nlogin with HF_TOKEN={t['log']}\n".encode(),
            "run-1/model.safetensors": weights,
            "run-1/notes.txt": b"HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",  # a placeholder: no finding
            "run-1/embeddings.npy": b"\x93NUMPY" + bytes(BIG),  # an array over the cap: not fetched
        })  # fmt: skip
        h.add_repo("model", "alice/bert")
        h.commit("model", "alice/bert", {"README.md": "# bert\n"})
        h.tokens_planted = t
        yield h


def test_repo_scans_a_bucket_by_the_lfs_rules_and_fetches_each_file_once(hub, tmp_path):
    t, e = hub.tokens_planted, env(hub, tmp_path)
    run = leakscan("repo", f"buckets/{BUCKET}", "-f", "json", "--no-verify", "--no-cache", env=e)
    assert run.code == 1, run.err
    assert sorted((f["source"], f["path"], f["container"], f["secret"], f["in_head"], f["repo"], f["url"]) for f in run.json) == sorted([
        ("bucket", "run-1/training_args.bin", "training_args/data.pkl", t["args"], True, f"buckets/{BUCKET}",
         f"{hub.url}/buckets/{BUCKET}/resolve/run-1/training_args.bin"),
        ("bucket", "run-1/.env", None, t["env"], True, f"buckets/{BUCKET}", f"{hub.url}/buckets/{BUCKET}/resolve/run-1/.env"),
        ("bucket", "run-1/logs/train.log", None, t["log"], True, f"buckets/{BUCKET}",
         f"{hub.url}/buckets/{BUCKET}/resolve/run-1/logs/train.log"),
        ("bucket", "run-1/model.safetensors", "__metadata__", t["weights"], True, f"buckets/{BUCKET}",
         f"{hub.url}/buckets/{BUCKET}/resolve/run-1/model.safetensors"),
    ])  # fmt: skip
    served = hub.lfs_bytes_served
    assert served < 1 << 20  # the 64 MiB weights by their header, the 64 MiB array not at all
    skipped = leakscan("repo", f"buckets/{BUCKET}", "-f", "json", "--no-verify", "--no-cache", "-o", tmp_path / "r.json",
                       env=e)  # fmt: skip
    assert skipped.code == 1 and hub.lfs_bytes_served == served  # the content cache: nothing fetched again
    table = leakscan("repo", f"buckets/{BUCKET}", "--no-verify", "--no-cache", env=e)
    assert "1 bucket files (64 MiB) not fetched" in table.out + table.err


def test_an_owner_sweep_by_repo_includes_buckets_and_an_unknown_bucket_is_one_line(hub, tmp_path):
    e = env(hub, tmp_path)
    run = leakscan("repo", "--author", "alice", "-f", "json", "--no-verify", "--no-cache", env=e)
    assert run.code == 1, run.err
    assert {(f["repo"], f["source"]) for f in run.json} == {(f"buckets/{BUCKET}", "bucket")}
    missing = leakscan("repo", "buckets/alice/none", "--no-verify", env=e)
    assert (missing.code, missing.out) == (2, "")
    assert missing.err == "leakscan: error: buckets/alice/none: bucket not found (or private: set HF_TOKEN or log in)\n"
    assert leakscan("sweep", "run", "--db", tmp_path / "s.db", "--type", "bucket", env=e).code == 2
    revision = leakscan("repo", f"buckets/{BUCKET}", "--revision", "main", "--no-verify", env=e)
    assert (revision.code, revision.err) == (2, f"leakscan: error: buckets/{BUCKET}: a bucket has no revisions\n")
