"""The decoders stage: real files built at test time, tokens generated at test time."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import pickle
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from helpers import HF, token
from leakscan.decoders import Layer, Limits, decode, is_lfs_pointer, lfs_oid, sniff
from leakscan.decoders.encoded import find_encoded
from leakscan.model import Skip


def run(path: str, data: bytes, limits: Limits = Limits()) -> tuple[list[Layer], list[Skip]]:
    items = list(decode(path, data, limits))
    assert all(isinstance(i, (Layer, Skip)) for i in items)
    return [i for i in items if isinstance(i, Layer)], [i for i in items if isinstance(i, Skip)]


def layer(layers: list[Layer], container: str) -> Layer:
    found = [la for la in layers if la.container == container]
    assert found, f"no layer {container!r} in {[la.container for la in layers]}"
    return found[0]


def containing(layers: list[Layer], secret: str) -> list[str]:
    return [la.container for la in layers if secret.encode() in la.data]


def make_zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar(members: dict[str, bytes], mode: str = "w", **kw) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, **kw) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --- notebooks ---------------------------------------------------------------------------------


def test_notebook_cell_source_and_outputs():
    tok, tok2, tok3 = token(HF, "nb1"), token(HF, "nb2"), token(HF, "nb3")
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Training\n", "notes"]},
            {"cell_type": "code", "execution_count": 1, "metadata": {},
             "source": ["from huggingface_hub import login\n", f'login(token="{tok}")\n'],
             "outputs": [
                 {"output_type": "stream", "name": "stdout", "text": [f"logged in with {tok2}\n"]},
                 {"output_type": "execute_result", "execution_count": 1, "metadata": {},
                  "data": {"text/plain": [f"'{tok3}'"]}},
                 {"output_type": "error", "ename": "HTTPError", "evalue": "401",
                  "traceback": ["Traceback ...", f"token={tok}"]},
             ]},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    layers, skips = run("train.ipynb", json.dumps(nb, indent=1).encode())
    assert skips == []
    assert layer(layers, "cell 1").data == b"# Training\nnotes"
    assert layer(layers, "cell 2").data.decode() == f'from huggingface_hub import login\nlogin(token="{tok}")\n'
    assert layer(layers, "cell 2").kind == "notebook-cell"
    assert tok2.encode() in layer(layers, "cell 2 output 1").data
    assert tok3.encode() in layer(layers, "cell 2 output 2").data
    assert tok.encode() in layer(layers, "cell 2 output 3").data
    # sniffed without the .ipynb name too
    assert containing(run("notebook.json", json.dumps(nb).encode())[0], tok2) == ["cell 2 output 1"]


def test_broken_and_deep_notebooks_skip():
    layers, skips = run("broken.ipynb", b'{"cells": [{"source": "x = 1"')
    assert layers == [] and len(skips) == 1 and "broken notebook" in skips[0].reason
    started = time.monotonic()
    deep = b'{"cells": ' + b"[" * 100_000 + b"]" * 100_000 + b', "nbformat": 4}'
    layers, skips = run("deep.ipynb", deep)
    assert time.monotonic() - started < 5
    assert [s.reason for s in skips] == ["broken notebook: JSON nested too deeply"]
    assert skips[0].path == "deep.ipynb" and skips[0].container is None


# --- archives ----------------------------------------------------------------------------------


def test_zip_with_env():
    tok = token(HF, "zip")
    data = make_zip({"project/": b"", "project/.env": f"HF_TOKEN={tok}\n".encode(), "project/README.md": b"hi"})
    layers, skips = run("assets/project.zip", data)
    assert skips == []
    assert [la.container for la in layers] == ["project/.env", "project/README.md"]
    assert layer(layers, "project/.env").data == f"HF_TOKEN={tok}\n".encode()
    assert layer(layers, "project/.env").kind == "zip-member"


def test_zip_in_zip_in_tar_gz():
    tok = token(HF, "nested")
    inner = make_zip({"a/.env": f"HF_TOKEN={tok}\n".encode()})
    outer = make_zip({"inner.zip": inner, "notes.txt": b"nothing"}, zipfile.ZIP_STORED)
    tgz = make_tar({"pkg/outer.zip": outer}, mode="w:gz")
    layers, skips = run("bundle.tar.gz", tgz)
    assert skips == []
    assert containing(layers, tok)[-1] == "pkg/outer.zip!inner.zip!a/.env"
    assert layer(layers, "pkg/outer.zip!inner.zip!a/.env").data == f"HF_TOKEN={tok}\n".encode()
    assert layer(layers, "pkg/outer.zip").kind == "tar-member"
    # the same through bz2 and xz tarballs
    for mode, name in (("w:bz2", "bundle.tar.bz2"), ("w:xz", "bundle.txz")):
        layers, skips = run(name, make_tar({"pkg/outer.zip": outer}, mode=mode))
        assert skips == [] and "pkg/outer.zip!inner.zip!a/.env" in containing(layers, tok)


def test_gzipped_jsonl():
    tok = token(HF, "jsonl")
    rows = [json.dumps({"text": f"row {i}"}) for i in range(1000)]
    rows[500] = json.dumps({"text": f"my token is {tok}"})
    layers, skips = run("data/train.jsonl.gz", gzip.compress("\n".join(rows).encode()))
    assert skips == []
    assert [(la.container, la.kind) for la in layers] == [("train.jsonl", "gzip")]
    assert tok.encode() in layers[0].data
    # bz2 and xz single files, and a gzip without a telling name
    assert containing(run("train.jsonl.bz2", bz2.compress(layers[0].data))[0], tok) == ["train.jsonl"]
    assert containing(run("train.jsonl.xz", lzma.compress(layers[0].data))[0], tok) == ["train.jsonl"]
    assert containing(run("blob", gzip.compress(layers[0].data))[0], tok) == ["gzip"]


def test_path_traversal_names_are_just_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tok = token(HF, "traversal")
    data = make_zip({"../../etc/passwd": f"root:{tok}\n".encode(), "/abs/.env": b"x=1"})
    layers, skips = run("evil.zip", data)
    assert skips == []
    assert containing(layers, tok) == ["../../etc/passwd"]
    assert [la.container for la in layers] == ["../../etc/passwd", "/abs/.env"]
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent.parent / "etc").exists()  # nothing extracted


def test_truncated_zip_keeps_what_was_read():
    tok = token(HF, "trunc-zip")
    first = f"HF_TOKEN={tok}\n".encode()
    data = make_zip({"a/.env": first, "b/big.bin": bytes(range(256)) * 400})
    cut = data[: len(data) // 2]
    layers, skips = run("cut.zip", cut)
    assert layer(layers, "a/.env").data == first
    reasons = " | ".join(s.reason for s in skips)
    assert "truncated" in reasons and "no end-of-central-directory" in reasons
    assert any(s.container == "b/big.bin" and "truncated" in s.reason for s in skips)


def test_streamed_zip_without_central_directory():
    """Zips written to a pipe carry data descriptors; without a central directory the members are
    still found from their local headers."""
    tok = token(HF, "streamed")

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.buf = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            self.buf += b
            return len(b)

    pipe = Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.txt", b"hello " * 1000)
        with zf.open("b/.env", "w") as f:
            f.write(f"HF_TOKEN={tok}\n".encode())
        zf.writestr("c.txt", b"third")
    data = bytes(pipe.buf)
    layers, skips = run("stream.zip", data[: data.find(b"PK\x01\x02")])
    assert [la.container for la in layers] == ["a.txt", "b/.env", "c.txt"]
    assert containing(layers, tok) == ["b/.env"]
    assert len(skips) == 1 and "no end-of-central-directory" in skips[0].reason


def test_truncated_gzip_keeps_what_was_read():
    tok = token(HF, "trunc-gz")
    text = (f"HF_TOKEN={tok}\n" + "".join(f"line {i} {i * 7919 % 10007}\n" for i in range(20000))).encode()
    comp = gzip.compress(text)
    layers, skips = run("log.txt.gz", comp[: len(comp) // 2])
    assert [la.container for la in layers] == ["log.txt"]
    assert layers[0].data.startswith(f"HF_TOKEN={tok}\n".encode()) and len(layers[0].data) < len(text)
    assert len(skips) == 1 and skips[0].reason.startswith("truncated gzip") and skips[0].container == "log.txt"


def test_non_utf8_member_names():
    tok = token(HF, "names")
    data = make_zip({"NAME.env": f"T={tok}".encode()})
    data = data.replace(b"NAME.env", b"\xff\xfe\x01\x80.env")  # raw bytes in both headers, no UTF-8 flag
    layers, skips = run("names.zip", data)
    assert skips == [] and len(layers) == 1 and tok.encode() in layers[0].data
    assert layers[0].container == "\xa0■\\x01Ç.env"  # cp437, control characters escaped
    tar = make_tar({"caf\xe9.env": f"T={tok}".encode()}, format=tarfile.GNU_FORMAT, encoding="latin-1")
    layers, skips = run("names.tar", tar)
    assert skips == [] and [la.container for la in layers] == ["caf\\xe9.env"]
    for la in layers:
        la.container.encode("utf-8")  # always encodable for reports


# --- bombs -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gib_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("zeros.bin", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(1024):
                f.write(chunk)
    return buf.getvalue()


def test_single_member_gib_zip_bomb(gib_bomb):
    assert len(gib_bomb) < 2 << 20
    started = time.monotonic()
    layers, skips = run("bomb.zip", gib_bomb)
    assert time.monotonic() - started < 3
    assert len(skips) == 1 and skips[0].container == "zeros.bin"
    assert "compression ratio limit (200x) exceeded" in skips[0].reason
    assert sum(len(la.data) for la in layers) <= 2 << 20
    # with the ratio check off, the total-size limit stops it
    started = time.monotonic()
    layers, skips = run("bomb.zip", gib_bomb, Limits(max_ratio=1e9, max_decoded_bytes=64 << 20))
    assert time.monotonic() - started < 3
    assert [s.reason for s in skips] == ["decoded-size limit (64 MiB) reached"]
    assert skips[0].container == "zeros.bin"


def test_nested_zip_bomb():
    leaf = make_zip({"zeros.bin": bytes(64 << 20)})
    level1 = make_zip({f"{i}.zip": leaf for i in range(16)}, zipfile.ZIP_STORED)
    level2 = make_zip({f"{i}.zip": level1 for i in range(16)}, zipfile.ZIP_STORED)  # 16 GiB of zeros
    started = time.monotonic()
    layers, skips = run("42.zip", level2)
    assert time.monotonic() - started < 8
    assert any("compression ratio limit" in s.reason for s in skips)
    assert skips[-1].reason == "decoded-size limit (256 MiB) reached"
    assert sum(len(la.data) for la in layers) <= 256 << 20


def test_nesting_depth_limit():
    tok = token(HF, "deep-zip")
    data = f"HF_TOKEN={tok}\n".encode()
    name = ".env"
    for i in range(7):
        data, name = make_zip({name: data}), f"level{i}.zip"
    layers, skips = run("deep.zip", data)
    assert containing(layers, tok) == []
    assert [s.reason for s in skips] == ["nesting depth limit (5) reached: zip not decoded"]
    assert skips[0].container == "level5.zip!level4.zip!level3.zip!level2.zip!level1.zip"
    layers, skips = run("deep.zip", data, Limits(max_depth=8))
    assert skips == [] and containing(layers, tok)[-1].endswith("level0.zip!.env")


def test_member_limit():
    data = make_zip({f"f{i}.txt": b"x" for i in range(50)})
    layers, skips = run("many.zip", data, Limits(max_members=10))
    assert len(layers) == 10 and "member limit (10) exceeded" in skips[0].reason


def test_time_limit():
    text = b" ".join(base64.b64encode(f"word {i} and more words here".encode()) for i in range(200_000))
    layers, skips = run("slow.txt", text, Limits(max_seconds=0.05))
    assert skips and skips[-1].reason == "time limit (0.05 s) reached"


# --- pickles -----------------------------------------------------------------------------------


def test_torch_zip_with_data_pkl():
    tok = token(HF, "torch")
    args = {"output_dir": "out", "learning_rate": 5e-5, "push_to_hub": True, "hub_token": tok, "seed": 42}
    data = make_zip({
        "archive/data.pkl": pickle.dumps(args, protocol=2),
        "archive/data/0": bytes(range(256)) * 64,
        "archive/version": b"3\n",
    }, zipfile.ZIP_STORED)  # fmt: skip
    layers, skips = run("training_args.bin", data)
    assert skips == []
    assert [(la.container, la.kind) for la in layers] == [("archive/data.pkl", "pickle-strings"), ("archive/version", "zip-member")]
    assert f"hub_token = {tok}\n".encode() in layers[0].data
    assert b"output_dir = out\n" in layers[0].data


def test_plain_pickle():
    tok = token(HF, "pickle")

    class Config:  # pickled by reference: never imported back
        pass

    cfg = {"name": "run-1", "secrets": {"hf": tok}, "tags": ["a", "b"]}
    for proto in (0, 2, 4, 5):
        layers, skips = run("cfg.pkl", pickle.dumps(cfg, protocol=proto))
        assert skips == [], proto
        assert [(la.container, la.kind) for la in layers] == [("pickle-strings", "pickle-strings")]
        assert f"hf = {tok}".encode() in layers[0].data and b"name = run-1" in layers[0].data


def test_malicious_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "pwned"
    tok = token(HF, "evil")
    payload = (b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR"
               b"(dp0\nS'hub_token'\np1\nS'" + tok.encode() + b"'\np2\ns.")  # fmt: skip
    assert payload.startswith(b"cos\nsystem")
    layers, skips = run("model.pkl", payload)
    torch_like = make_zip({"archive/data.pkl": payload}, zipfile.ZIP_STORED)
    layers2, skips2 = run("pytorch_model.bin", torch_like)
    assert not marker.exists()
    assert f"hub_token = {tok}".encode() in layers[0].data
    assert containing(layers2, tok) == ["archive/data.pkl"]
    # malformed: strings gathered so far are kept
    layers, skips = run("broken.pkl", pickle.dumps({"hub_token": tok}, protocol=4)[:-3] + b"\xff\xff")
    assert containing(layers, tok) == ["pickle-strings"]
    assert len(skips) == 1 and skips[0].reason.startswith("malformed pickle")


# --- safetensors / GGUF ------------------------------------------------------------------------


def test_safetensors_metadata():
    tok = token(HF, "st")
    header = json.dumps({"__metadata__": {"format": "pt", "hub_token": tok},
                         "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()  # fmt: skip
    data = struct.pack("<Q", len(header)) + header + bytes(8)
    layers, skips = run("model.safetensors", data)
    assert skips == []
    assert [(la.container, la.kind) for la in layers] == [("__metadata__", "safetensors-metadata")]
    assert layers[0].data == f"format = pt\nhub_token = {tok}\n".encode()


def test_safetensors_absurd_header_length():
    started = time.monotonic()
    layers, skips = run("model.safetensors", struct.pack("<Q", 1 << 60) + b'{"a":1}')
    assert time.monotonic() - started < 1
    assert layers == [] and len(skips) == 1 and skips[0].reason.startswith("absurd safetensors header length")


def gguf_string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def test_gguf_metadata():
    tok = token(HF, "gguf")
    kvs = [
        gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama"),
        gguf_string("llama.context_length") + struct.pack("<II", 4, 4096),
        gguf_string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<3f", 0, 1, 2),
        gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + gguf_string("<s>") + gguf_string("hello"),
        gguf_string("general.source.token") + struct.pack("<I", 8) + gguf_string(tok),
    ]
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs) + bytes(64)
    layers, skips = run("model.gguf", data)
    assert skips == []
    assert [(la.container, la.kind) for la in layers] == [("metadata", "gguf-metadata")]
    assert layers[0].data.decode().splitlines() == [
        "general.architecture = llama", "tokenizer.ggml.tokens[0] = <s>", "tokenizer.ggml.tokens[1] = hello",
        f"general.source.token = {tok}"]  # fmt: skip
    # malformed: a string longer than the file; what was read is kept
    bad = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + kvs[4] + gguf_string("x") + struct.pack("<I", 8) + struct.pack("<Q", 1 << 62)
    layers, skips = run("bad.gguf", bad)
    assert containing(layers, tok) == ["metadata"]
    assert len(skips) == 1 and skips[0].reason.startswith("malformed GGUF")


# --- encoded text ------------------------------------------------------------------------------


def test_base64_in_yaml():
    tok = token(HF, "b64")
    secret = base64.b64encode(f"hf_token: {tok}\n".encode()).decode()
    text = f"apiVersion: v1\nkind: Secret\ndata:\n  credentials: {secret}\n"
    layers, skips = run("secret.yaml", text.encode())
    assert skips == []
    assert [la.container for la in layers] == [f"base64@{text.index(secret)}"]
    assert layers[0].data == f"hf_token: {tok}\n".encode() and layers[0].kind == "base64"
    # base64 in base64, and base64url without padding
    double = base64.b64encode(secret.encode()).decode()
    layers, _ = run("x.txt", f"v={double}".encode())
    assert containing(layers, tok) == ["base64@2!base64@0"]
    url = base64.urlsafe_b64encode(f"{tok}??>>".encode()).decode().rstrip("=")
    assert containing(run("x.txt", f"t {url} ".encode())[0], tok) == ["base64@2"]


def test_hex_encoded_token():
    tok = token(HF, "hex")
    text = f"TOKEN_HEX = '{tok.encode().hex()}'\nsha = '{'ab' * 32}'\n"
    layers, skips = run("settings.py", text.encode())
    assert skips == []
    assert [(la.container, la.kind) for la in layers] == [(f"hex@{text.index(tok.encode().hex())}", "hex")]
    assert layers[0].data == tok.encode()


def test_percent_encoded_url():
    tok = token(HF, "pct")
    enc = "".join(f"%{b:02X}" for b in tok.encode())
    text = f"remote: https://user:{enc}@huggingface.co/org/repo.git\n"
    layers, skips = run(".git-credentials", text.encode())
    assert skips == []
    assert [la.container for la in layers] == [f"percent@{text.index('https')}"]
    assert layers[0].data == f"https://user:{tok}@huggingface.co/org/repo.git".encode()


def test_unicode_escaped_json():
    tok = token(HF, "uesc")
    esc = "".join(f"\\u{ord(c):04x}" for c in tok)
    text = '{"name": "demo", "token": "' + esc + '"}'
    layers, skips = run("config.json", text.encode())
    assert skips == []
    assert [(la.container, la.kind) for la in layers] == [(f"unicode-escape@{text.index(esc)}", "unicode-escape")]
    assert layers[0].data == tok.encode()


def test_utf16le_env_with_bom():
    tok = token(HF, "utf16")
    text = f"# settings\nHF_TOKEN={tok}\n"
    layers, skips = run(".env", b"\xff\xfe" + text.encode("utf-16-le"))
    assert skips == [] and [(la.container, la.kind, la.data) for la in layers] == [("utf16", "utf16", text.encode())]
    layers, _ = run(".env", text.encode("utf-16-be"))  # no BOM: NUL-interleaved
    assert [(la.container, la.data) for la in layers] == [("utf16", text.encode())]


def test_plain_text_yields_nothing():
    text = (Path(__file__).parent.parent / "leakscan" / "scan.py").read_bytes()
    assert run("scan.py", text) == ([], [])
    assert run("zeros.bin", bytes(1 << 20)) == ([], [])


def test_50mb_single_line_is_fast_and_bounded():
    tok = token(HF, "long-line")
    hidden = base64.b64encode(f"token={tok}".encode())
    words = b"lorem ipsum dolor sit amet consectetur_adipiscing_elit_sed_do " * 410_000
    line = words + hidden + b" " + words
    assert len(line) > 50_000_000 and b"\n" not in line
    started = time.monotonic()
    layers, skips = run("data.txt", line)
    elapsed = time.monotonic() - started
    assert elapsed < 3, elapsed
    assert containing(layers, tok) == [f"base64@{len(words)}"]
    # an adversarial line (a million short base64-looking words) stays bounded too
    noise = b" ".join(base64.b64encode(bytes([i % 251, i % 241, i % 239]) * 8) for i in range(1_500_000))
    started = time.monotonic()
    layers, skips = run("noise.txt", noise)
    assert time.monotonic() - started < 3
    assert len(skips) == 1 and "candidate limit" in skips[0].reason


def test_encoded_finder_throughput():
    """Cheap enough for every text file: well above 20 MB/s on source code."""
    src = b"".join(p.read_bytes() for p in sorted((Path(__file__).parent.parent / "leakscan").rglob("*.py")))
    blob = src * max(1, (4 << 20) // len(src))
    from leakscan.decoders.base import Context

    started = time.perf_counter()
    list(find_encoded(blob, "x.py", Context(Limits())))
    rate = len(blob) / (time.perf_counter() - started) / 1e6
    assert rate > 20, f"{rate:.1f} MB/s"


# --- LFS ---------------------------------------------------------------------------------------


def test_lfs_pointer_yields_nothing():
    oid = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393"
    ptr = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 12345\n".encode()
    assert is_lfs_pointer(ptr) and lfs_oid(ptr) == oid and sniff(ptr) == "lfs"
    assert run("model.safetensors", ptr) == ([], [])
    assert not is_lfs_pointer(ptr + b"x" * 2000) and lfs_oid(b"hello") is None
    assert not is_lfs_pointer(ptr.replace(b"oid sha256:", b"oid sha1:"))


def test_a_large_image_is_not_searched_for_encoded_text_and_says_so():
    tok = token(HF, "png")
    encoded = base64.b64encode(f"hf_token: {tok}\n".encode())
    body = b"tEXtComment\0" + encoded + b"\0" + bytes(range(256)) * 4096  # 1 MiB of pixel-like bytes
    png = b"\x89PNG\r\n\x1a\n" + body
    layers, skips = run("docs/logo.png", png)
    assert layers == []
    assert skips == [Skip("docs/logo.png", "png image: raw bytes scanned, not searched for encoded text "
                                           "(a format with no text layer)", None)]
    # a small one costs nothing to search: it is searched (and a file that only looks like one
    # further in is text as usual)
    small = b"\x89PNG\r\n\x1a\n" + b"tEXtComment\0" + encoded + b"\0"
    assert containing(run("icon.png", small)[0], tok) == ["base64@20"]
    assert containing(run("notes.txt", b"x" + png)[0], tok) == ["base64@21"]
