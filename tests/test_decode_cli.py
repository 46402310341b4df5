"""`leakscan scan` looking inside what ML repos hold, end to end, and surviving hostile files."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import os
import pickle
import struct
import tarfile
import time
import zipfile
from pathlib import Path

from helpers import GHP, HF, OPENAI, Repo, leakscan, token


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def notebook(cells: list[tuple[str, str | None]]) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "source": src.splitlines(True), "metadata": {}, "execution_count": 1,
         "outputs": [] if out is None else [{"output_type": "stream", "name": "stdout", "text": [out]}]}
        for src, out in cells]}, indent=1)  # fmt: skip


def safetensors(metadata: dict[str, str]) -> bytes:
    header = json.dumps({"__metadata__": metadata, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0\0\0\0"


class TrainingArguments:  # what the Trainer pickles into training_args.bin (a torch zip)
    def __init__(self, hub_token: str) -> None:
        self.output_dir = "out"
        self.push_to_hub = True
        self.hub_token = hub_token


def test_ml_repo_secrets_found_in_every_container(tmp_path):
    t = {k: token(tpl, k) for k, tpl in [("nb_src", HF), ("nb_out", GHP), ("args", HF), ("st", HF), ("zip", OPENAI),
                                           ("jsonl", GHP), ("yaml", HF), ("tgz", GHP)]}  # fmt: skip
    r = Repo(tmp_path / "model")
    args_pickle = pickle.dumps(TrainingArguments(t["args"]), protocol=2)
    lfs = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 1234\n"
    r.commit({
        "train.ipynb": notebook([("from huggingface_hub import login\nlogin(token='hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')", None),
                                 (f"HF_TOKEN = '{t['nb_src']}'", None),
                                 ("!git remote -v", f"origin https://{t['nb_out']}@github.com/a/b.git (fetch)\n")]),
        "config.yaml": "model: bert\ncredentials: " + base64.b64encode(f"HF_TOKEN={t['yaml']}\n".encode()).decode() + "\n",
        "model.safetensors.gitattributes": "",
        "pytorch_model.bin": lfs,
    })
    (r.path / "training_args.bin").write_bytes(zip_bytes({"archive/data.pkl": args_pickle, "archive/version": b"3\n"}))
    (r.path / "model.safetensors").write_bytes(safetensors({"format": "pt", "hub_token": t["st"]}))
    (r.path / "assets").mkdir()
    (r.path / "assets" / "project.zip").write_bytes(zip_bytes({"project/.env": f"OPENAI_API_KEY={t['zip']}\n".encode(),
                                                              "project/README.md": b"# docs\n"}))  # fmt: skip
    (r.path / "data.jsonl.gz").write_bytes(gzip.compress(b'{"text": "ok"}\n' + f'{{"text": "push with {t["jsonl"]}"}}\n'.encode()))
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:gz") as tar:
        data = f"GH={t['tgz']}\n".encode()
        info = tarfile.TarInfo("backup/.env")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (r.path / "backup.tar.gz").write_bytes(tar_buf.getvalue())
    r.git("add", "-A")
    r.git("commit", "-q", "-m", "add artefacts")

    run = leakscan("scan", r.path, "-f", "json", "--no-cache")
    got = {(f["path"], f["container"], f["secret"]) for f in run.json}
    assert got == {
        ("train.ipynb", "cell 2", t["nb_src"]),
        ("train.ipynb", "cell 3 output 1", t["nb_out"]),
        ("training_args.bin", "archive/data.pkl", t["args"]),
        ("model.safetensors", "__metadata__", t["st"]),
        ("assets/project.zip", "project/.env", t["zip"]),
        ("data.jsonl.gz", "data.jsonl", t["jsonl"]),
        ("config.yaml", "base64@25", t["yaml"]),
        ("backup.tar.gz", "backup/.env", t["tgz"]),
    }, run.err
    assert all(f["source"] == "history" for f in run.json)
    assert run.skipped == []
    raw = leakscan("scan", r.path, "-f", "json", "--no-cache", "--no-decode")
    # raw bytes: only what is stored as plain text, and the base64 blob as a generic secret
    assert {(f["path"], f["detector"]) for f in raw.json} == {
        ("train.ipynb", "huggingface-access-token"), ("train.ipynb", "github-pat"),
        ("model.safetensors", "huggingface-access-token"), ("config.yaml", "generic-api-key")}


def test_lfs_pointer_is_not_flagged_and_local_lfs_content_is_scanned(tmp_path):
    r = Repo(tmp_path / "repo")
    secret = token(HF, "lfs")
    content = f"HF_TOKEN={secret}\n".encode()
    import hashlib

    oid = hashlib.sha256(content).hexdigest()
    r.commit({"weights.bin": f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(content)}\n"})
    assert leakscan("scan", r.path, "-f", "json", "--no-cache").json == []
    store = r.path / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4]
    store.mkdir(parents=True)
    (store / oid).write_bytes(content)
    run = leakscan("scan", r.path, "-f", "json", "--no-cache")
    assert [(f["path"], f["container"], f["secret"]) for f in run.json] == [("weights.bin", "lfs", secret)]


def _zip_bomb(path: Path, size: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("zeros.bin", "w", force_zip64=True) as fh:
            chunk = b"\0" * (1 << 20)
            for _ in range(size >> 20):
                fh.write(chunk)


class Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_files_end_in_bounded_time_with_reasons(tmp_path):
    root = tmp_path / "hostile"
    root.mkdir()
    marker = tmp_path / "PWNED"
    planted = token(HF, "hostile")
    _zip_bomb(root / "bomb.zip", 1 << 30)  # 1 GiB of zeros in ~1 MB
    inner = zip_bytes({f"z{i}.zip": (root / "bomb.zip").read_bytes() for i in range(3)}, zipfile.ZIP_STORED)
    (root / "nested.zip").write_bytes(zip_bytes({"a.zip": inner, "b.zip": inner}, zipfile.ZIP_STORED))
    (root / "traversal.zip").write_bytes(zip_bytes({"../../../etc/cron.d/x": f"T={planted}\n".encode()}))
    good = zip_bytes({"a/.env": b"X=1\n" * 1000})
    (root / "truncated.zip").write_bytes(good[: len(good) // 2])
    (root / "truncated.gz").write_bytes(gzip.compress(os.urandom(100000))[:5000])
    (root / "evil.pkl").write_bytes(pickle.dumps(Exploit(str(marker))))
    (root / "evil_args.bin").write_bytes(zip_bytes({"archive/data.pkl": pickle.dumps(Exploit(str(marker)))}))
    (root / "absurd.safetensors").write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    (root / "broken.ipynb").write_text('{"cells": [{"cell_type": "code", "source": ["x = 1"')
    (root / "deep.ipynb").write_text('{"cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with open(root / "oneline.log", "wb") as fh:
        fh.write(b"A" * (50 << 20))
        fh.write(f" token={planted}\n".encode())
    (root / "names.zip").write_bytes(_nonutf8_zip())
    (root / "b.bz2").write_bytes(bz2.compress(b"\0" * (300 << 20)))

    started = time.monotonic()
    run = leakscan("scan", root, "-f", "json", timeout=240)
    elapsed = time.monotonic() - started
    assert run.code == 1, run.err
    assert not marker.exists()  # nothing was ever unpickled
    assert elapsed < 120
    found = {(f["path"], f["container"]) for f in run.json}
    assert ("traversal.zip", "../../../etc/cron.d/x") in found
    assert ("oneline.log", None) in found
    reasons = {(s["path"], s["reason"].split(":")[0]) for s in run.skipped}
    paths = {p for p, _ in reasons}
    assert {"bomb.zip", "nested.zip", "truncated.zip", "truncated.gz", "absurd.safetensors", "broken.ipynb",
            "deep.ipynb", "b.bz2"} <= paths, reasons  # fmt: skip
    assert all(s["reason"] for s in run.skipped)


def _nonutf8_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("placeholder")
        z.writestr(info, b"HELLO=1\n")
    data = bytearray(buf.getvalue())
    return bytes(data.replace(b"placeholder", b"caf\xe9.envxx"))
