"""LFS content, Space variables: `leakscan repo` and `sweep run` against the Hub stand-in, whose
model keeps every ML file in LFS as the Hub does (a pointer in git, the content behind the
batch API)."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile

import pytest

from helpers import GHP, HF, OPENAI, leakscan, token
from hubstand import HubStandIn
from make_demo import training_args_bin

MODEL, SPACE = "alice/bert-lfs", "alice/chat"
BIG = 64 << 20


def torch_zip(name: str, state: dict, storage: int = 0) -> bytes:
    """torch.save's layout: {name}/data.pkl and one raw storage {name}/data/0 of `storage` bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{name}/data.pkl", pickle.dumps(state, protocol=2))
        z.writestr(f"{name}/version", "3\n")
        if storage:
            z.writestr(f"{name}/data/0", bytes(storage))
    return buf.getvalue()


def safetensors(path, metadata: dict, size: int) -> None:
    """A safetensors file of `size` bytes (sparse: the tensor bytes are a hole)."""
    n = size - 8
    header = json.dumps({"__metadata__": metadata, "w": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}})
    header = header.encode().ljust(((len(header) + 7) // 8) * 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.truncate(8 + len(header) + (n - len(header)))


def gguf(path, strings: dict[str, str], size: int) -> None:
    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text.encode())) + text.encode()

    kv = b"".join(s(k) + struct.pack("<I", 8) + s(v) for k, v in strings.items())
    with open(path, "wb") as fh:
        fh.write(b"GGUF" + struct.pack("<I", 3) + struct.pack("<Q", 0) + struct.pack("<Q", len(strings)) + kv)
        fh.truncate(size)


def tfevents(text: str) -> bytes:
    """TFRecord framing around an Event whose summary holds a text tensor (CRCs left zero)."""
    def field(num: int, data: bytes) -> bytes:
        return bytes([num << 3 | 2]) + _varint(len(data)) + data

    value = field(1, b"args/text_summary") + field(8, field(8, text.encode()))
    event = b"\x09" + struct.pack("<d", 1.7e9) + field(5, field(1, value))
    return struct.pack("<Q", len(event)) + b"\0" * 4 + event + b"\0" * 4


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def build(hub: HubStandIn, tmp) -> dict[str, str]:
    """The model (every ML file an LFS pointer) and the Space; returns {what: token}."""
    t = {k: token(tpl, f"lfs-{k}") for k, tpl in [
        ("args", HF), ("history_pickle", GHP), ("zip_env", OPENAI), ("adapter", HF), ("weights", HF),
        ("torch", GHP), ("gguf", HF), ("tfevents", HF), ("legacy", GHP), ("variable", HF)]}  # fmt: skip
    hub.add_repo("model", MODEL)
    hub.commit("model", MODEL, {"README.md": "HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n", "config.json": "{}\n",
                                "optimizer.pkl": hub.lfs(pickle.dumps({"lr": 0.1, "token": t["history_pickle"]}))},
               message="first")  # fmt: skip
    hub.commit("model", MODEL, {"optimizer.pkl": None}, message="drop the optimizer state")
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("deploy/.env", f"OPENAI_API_KEY={t['zip_env']}\n")
    for name, write in [("model.safetensors", lambda p: safetensors(p, {"hub_token": t["weights"]}, BIG)),
                        ("adapter_model.safetensors", lambda p: safetensors(p, {"token": t["adapter"]}, 3 << 20)),
                        ("model.gguf", lambda p: gguf(p, {"general.name": "m", "general.notes": f"HF_TOKEN={t['gguf']}"}, BIG))]:  # fmt: skip
        write(tmp / name)
    (tmp / "pytorch_model.bin").write_bytes(torch_zip("pytorch_model", {"config": f"token={t['torch']}"}, BIG))
    with open(tmp / "legacy.bin", "wb") as fh:  # torch's legacy format: a pickle, then the storages
        fh.write(pickle.dumps({"hub_token": t["legacy"]}, protocol=2))
        fh.truncate(BIG)
    hub.commit("model", MODEL, {
        "training_args.bin": hub.lfs(training_args_bin(t["args"])),
        "bundle.zip": hub.lfs(bundle.getvalue()),
        "runs/events.out.tfevents.1700000000.host.1.0": hub.lfs(tfevents(f"hub_token: {t['tfevents']}")),
        **{name: hub.lfs(tmp / name) for name in ("model.safetensors", "adapter_model.safetensors", "model.gguf",
                                                  "pytorch_model.bin", "legacy.bin")},
    }, message="trained")  # fmt: skip
    hub.add_repo("space", SPACE)
    hub.commit("space", SPACE, {"app.py": "import gradio\n"})
    hub.set_variables(SPACE, {"MODEL_ID": MODEL, "HF_TOKEN": t["variable"]})
    return t


@pytest.fixture
def hub(tmp_path):
    with HubStandIn(root=tmp_path / "hub") as h:
        data = tmp_path / "data"
        data.mkdir()
        h.tokens_planted = build(h, data)
        yield h


def env(hub, tmp_path) -> dict:
    return {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "LEAKSCAN_HUB_CACHE": str(tmp_path / "mirrors"), "LEAKSCAN_CACHE_DIR": str(tmp_path / "cache"),
            "HF_TOKEN": ""}  # fmt: skip


def expected(hub) -> set[tuple]:
    t = hub.tokens_planted
    return {
        ("history", "training_args.bin", "lfs!training_args/data.pkl", t["args"], True),
        ("history", "optimizer.pkl", "lfs!pickle-strings", t["history_pickle"], False),
        ("history", "bundle.zip", "lfs!deploy/.env", t["zip_env"], True),
        ("history", "model.safetensors", "lfs!__metadata__", t["weights"], True),
        ("history", "adapter_model.safetensors", "lfs!__metadata__", t["adapter"], True),
        ("history", "pytorch_model.bin", "lfs!pytorch_model/data.pkl", t["torch"], True),
        ("history", "model.gguf", "lfs!metadata", t["gguf"], True),
        ("history", "legacy.bin", "lfs!pickle-strings", t["legacy"], True),
        ("history", "runs/events.out.tfevents.1700000000.host.1.0", "lfs", t["tfevents"], True),
    }


def got(run) -> set[tuple]:
    return {(f["source"], f["path"], f["container"], f["secret"], f["in_head"]) for f in run.json}


def test_repo_finds_secrets_in_lfs_content_within_8_mib_and_rescans_download_nothing(hub, tmp_path):
    e = env(hub, tmp_path)
    db = tmp_path / "leakscan.sqlite3"
    run = leakscan("repo", MODEL, "-f", "json", "--no-verify", "--db", db, env=e)
    assert run.code == 1, run.err
    assert got(run) == expected(hub), run.err
    served = hub.lfs_bytes_served
    assert 0 < served <= 8 << 20  # four 64 MiB weights files cost their headers and directories
    by = {f["secret"]: f for f in run.json}
    args = by[hub.tokens_planted["args"]]
    log = [r for r in hub.requests if r.path.endswith("/info/lfs/objects/batch")]
    assert log and all(r.method == "POST" for r in log)
    assert args["url"] == f"{hub.url}/{MODEL}/blob/{args['commit']}/training_args.bin" and args["repo"] == MODEL
    pickled = by[hub.tokens_planted["history_pickle"]]
    assert pickled["url"] == f"{hub.url}/{MODEL}/blob/{pickled['commit']}/optimizer.pkl"
    # the pointer's oid is not a secret; the README placeholder is not either
    assert all(f["path"] != "README.md" for f in run.json)

    # the same repository again: every finding again, nothing downloaded
    again = leakscan("repo", MODEL, "-f", "json", "--no-verify", "--db", db, env=e)
    assert again.code == 1, again.err
    assert got(again) == expected(hub)
    assert hub.lfs_bytes_served == served
    # without the scan cache (a new store): read from the content cache, still nothing downloaded
    fresh = leakscan("repo", MODEL, "-f", "json", "--no-verify", "--no-cache", env=e)
    assert got(fresh) == expected(hub) and hub.lfs_bytes_served == served


def test_no_lfs_and_the_per_object_cap(hub, tmp_path):
    e = env(hub, tmp_path)
    off = leakscan("repo", MODEL, "-f", "json", "--no-verify", "--no-cache", "--no-lfs", env=e)
    assert off.code == 0, off.err
    assert off.json == [] and hub.lfs_bytes_served == 0
    assert not [r for r in hub.requests if "/info/lfs/" in r.path]


def test_without_the_batch_api_objects_are_read_through_resolve(hub, tmp_path):
    hub.fail_next(f"/{MODEL}.git/info/lfs/objects/batch", 503)
    run = leakscan("repo", MODEL, "-f", "json", "--no-verify", "--no-cache", env=env(hub, tmp_path))
    assert run.code == 1, run.err
    assert got(run) == expected(hub)
    resolved = {r.path.split("/resolve/", 1)[1].split("/", 1)[1] for r in hub.requests if "/resolve/" in r.path}
    assert "training_args.bin" in resolved and "model.safetensors" in resolved
    assert hub.lfs_bytes_served <= 8 << 20


def test_content_that_does_not_match_its_pointer_is_a_skip_and_never_cached(hub, tmp_path):
    leak = token(HF, "lfs-corrupt")
    pointer = hub.lfs(f"HF_TOKEN={leak}\n".encode())
    oid = pointer.split("sha256:")[1].split()[0]
    (hub.root / "lfs-objects" / oid).write_bytes(f"HF_TOKEN={leak[:-1]}x\n".encode())  # same size, other bytes
    hub.add_repo("model", "alice/corrupt")
    hub.commit("model", "alice/corrupt", {"notes.txt": pointer})
    e = env(hub, tmp_path)
    for _ in range(2):
        run = leakscan("repo", "alice/corrupt", "-f", "json", "--no-verify", "--no-cache", env=e)
        assert run.code == 0, run.err
        assert run.json == []
        assert {(s["path"], s["container"], s["reason"]) for s in run.skipped} == {
            ("notes.txt", "lfs", "LFS object not fetched: the content does not match its pointer (sha256 or size)")}
    assert not list((tmp_path / "cache" / "lfs").rglob(oid))


def test_a_space_variable_holding_a_token(hub, tmp_path):
    run = leakscan("repo", f"spaces/{SPACE}", "-f", "json", "--no-verify", "--no-cache", env=env(hub, tmp_path))
    assert run.code == 1, run.err
    assert [(f["source"], f["path"], f["secret"], f["repo"], f["url"]) for f in run.json] == [
        ("space-variable", "variables/HF_TOKEN", hub.tokens_planted["variable"], f"spaces/{SPACE}",
         f"{hub.url}/spaces/{SPACE}")]  # fmt: skip


def test_sweep_finds_them_too_and_downloads_each_object_once(hub, tmp_path):
    e = env(hub, tmp_path)
    out = tmp_path / "found.jsonl"
    run = leakscan("sweep", "run", "--db", tmp_path / "sweep.sqlite3", "-o", out, "--no-verify", "--workers", "2",
                   "--author", "alice", env=e)  # fmt: skip
    assert run.code == 1, run.err
    found = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(f["source"], f["path"], f["container"], f["secret"], f["in_head"]) for f in found
            if f["repo"] == MODEL} == expected(hub)  # fmt: skip
    assert [(f["repo"], f["path"]) for f in found if f["source"] == "space-variable"] == [(f"spaces/{SPACE}", "variables/HF_TOKEN")]
    served = hub.lfs_bytes_served
    assert served <= 8 << 20
    # a repository scanned again by `repo` (another store): the content cache serves it
    again = leakscan("repo", MODEL, "-f", "json", "--no-verify", "--no-cache", env=e)
    assert got(again) == expected(hub) and hub.lfs_bytes_served == served


def test_the_content_cache_is_private_and_evicts_the_least_recently_used(tmp_path):
    import os
    import stat

    from leakscan.sources.lfs import ContentCache

    cache = ContentCache(tmp_path / "lfs", max_bytes=250)
    names = [f"{i:02x}" * 32 for i in range(3)]
    for i, name in enumerate(names[:2]):
        cache.put(name, lambda fh: fh.write(b"x" * 100))
        os.utime(cache.path(name), (1_000_000 + i, 1_000_000 + i))
    assert cache.get(names[0]) is not None  # used now: the most recent
    cache.put(names[2], lambda fh: fh.write(b"y" * 100))  # 300 bytes > 250: the least recent goes
    assert [cache.get(n) is not None for n in names] == [True, False, True]
    assert stat.S_IMODE(cache.path(names[2]).stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path(names[2]).parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "lfs").stat().st_mode) == 0o700


@pytest.mark.parametrize("endpoint, href, ok", [
    ("https://huggingface.co", "https://8.8.8.8/obj", True),  # a public CDN the Hub names
    ("https://huggingface.co", "http://8.8.8.8/obj", False),  # not downgraded to plain http
    ("https://huggingface.co", "https://127.0.0.1/obj", False),  # never loopback from a public Hub
    ("https://huggingface.co", "https://10.1.2.3/obj", False),
    ("https://huggingface.co", "file:///etc/passwd", False),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/obj", True),  # the endpoint the user chose
    ("http://127.0.0.1:8080", "http://10.1.2.3/obj", True),  # a private Hub's private storage
])  # fmt: skip
def test_which_download_locations_are_trusted(endpoint, href, ok, tmp_path):
    from leakscan.sources.lfs import ContentCache, LfsClient

    client = LfsClient(f"{endpoint}/u/m", endpoint, None, ContentCache(tmp_path))
    assert (client.refusal(href) is None) is ok


def test_serve_scans_lfs_content_a_push_names_and_fetches_only_new_objects(hub, tmp_path):
    import subprocess

    from test_serve import Service, push

    head = subprocess.run(["git", "--git-dir", str(hub.repo_path("model", MODEL)), "rev-parse", "main"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    svc = Service(hub, tmp_path)
    svc.env.update(LEAKSCAN_CACHE_DIR=str(tmp_path / "cache"))
    svc.start()
    try:
        code, body = svc.post(push(MODEL, head))
        assert code == 202 and svc.wait(body["job"], timeout=120)[0] == "done", svc.err.read_text()
        rows = svc.query("SELECT path, source, container FROM repo_findings WHERE repo=?", MODEL)
        assert sorted(rows) == sorted((p, s, c) for s, p, c, _, _ in expected(hub))
        served = hub.lfs_bytes_served
        assert served <= 8 << 20
        # a push adding one LFS object: that object is fetched, nothing else
        late = token(HF, "lfs-late")
        content = pickle.dumps({"hub_token": late}, protocol=2)
        second = hub.commit("model", MODEL, {"scheduler.pkl": hub.lfs(content)})
        code, body = svc.post(push(MODEL, second, [("refs/heads/main", head, second)]))
        assert code == 202 and svc.wait(body["job"], timeout=120)[0] == "done", svc.err.read_text()
        assert hub.lfs_bytes_served - served == len(content)
        assert svc.query("SELECT path, commit_id, container FROM repo_findings WHERE path='scheduler.pkl'") == [
            ("scheduler.pkl", second, "lfs!pickle-strings")]
    finally:
        assert svc.stop() == 0
