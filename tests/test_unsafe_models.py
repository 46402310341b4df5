"""Model files that run code when loaded: pickles (plain, torch zips, legacy torch, 7z-wrapped,
joblib, numpy) and Keras configs (.keras, H5).

Every file here is written opcode by opcode or as JSON text at test time: nothing dangerous is
pickled with `pickle.dumps`, and nothing is ever loaded. Each evasion of the issue has a test;
benign files shaped like real torch, numpy, transformers, joblib and Keras files must not be
reported.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zipfile
import zlib

import jsonschema
import pytest

from helpers import HF, REPO, Repo, leakscan, token
from leakscan.decoders import Unsafe, decode
from leakscan.model import Place, Skip
from leakscan.scan import Scanner

# --- writing pickles by hand -----------------------------------------------------------------------


def u(s: str) -> bytes:
    """BINUNICODE (protocol 1+)."""
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def su(s: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4)."""
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def g(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def torch_state_dict(n: int = 3) -> bytes:
    """A torch state dict as torch.save writes data.pkl: an OrderedDict of tensors rebuilt by
    torch._utils._rebuild_tensor_v2 from persistent-id storages, then its _metadata."""
    out = b"\x80\x02" + g("collections", "OrderedDict") + b"q\x00)Rq\x01("
    for i in range(n):
        out += u(f"layer{i}.weight") + g("torch._utils", "_rebuild_tensor_v2") + b"q\x02("
        out += b"(" + u("storage") + g("torch", "FloatStorage") + u(str(i)) + u("cpu") + b"K\x04tQ"
        out += b"K\x00K\x02K\x02\x86K\x02K\x01\x86\x89" + g("collections", "OrderedDict") + b")RtR"
    out += b"u}" + u("_metadata") + g("collections", "OrderedDict") + b")R(" + u("") + b"}" + u("version")
    out += b"K\x01sub" + b"."
    return out


def torch_zip(members: dict[str, bytes], root: str = "archive") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(f"{root}/{name}", data)
    return buf.getvalue()


PAYLOAD = g("os", "system") + u("id") + b"\x85R"  # os.system("id"), left on the stack


def unsafe(path: str, data: bytes) -> list[Unsafe]:
    return [i for i in decode(path, data, models=True) if isinstance(i, Unsafe)]


def targets(path: str, data: bytes) -> set[str]:
    return {i.target for i in unsafe(path, data)}


def skips(path: str, data: bytes) -> list[Skip]:
    return [i for i in decode(path, data, models=True) if isinstance(i, Skip)]


@pytest.fixture(scope="module")
def scanner(ruleset):
    return Scanner(ruleset)


def scan(scanner, path: str, data: bytes):
    return scanner.scan_bytes(data, Place(path))


# --- imports and calls, opcode by opcode -----------------------------------------------------------


def test_a_plain_global_reduce_is_reported_with_its_offset():
    data = b"\x80\x02" + u("padding") + b"0" + PAYLOAD + b"."
    found = unsafe("model.pkl", data)
    assert [(f.kind, f.severity, f.target, f.offset) for f in found] == [
        ("unsafe-pickle", "critical", "os.system", data.index(b"cos"))]


@pytest.mark.parametrize("put,get", [
    (lambda i: b"\x94", lambda i: b"h" + bytes([i])),  # MEMOIZE / BINGET
    (lambda i: b"q" + bytes([i]), lambda i: b"h" + bytes([i])),  # BINPUT / BINGET
    (lambda i: b"r" + struct.pack("<I", i), lambda i: b"j" + struct.pack("<I", i)),  # LONG_BINPUT / LONG_BINGET
    (lambda i: b"p%d\n" % i, lambda i: b"g%d\n" % i),  # PUT / GET (text)
])
def test_stack_global_fed_through_the_memo(put, get):
    # the module and name are pushed, memoized and dropped long before STACK_GLOBAL fetches them
    data = (b"\x80\x04" + su("posix") + put(0) + b"0" + su("system") + put(1) + b"0"
            + su("torch") + b"0" + get(0) + get(1) + b"\x93" + su("id") + b"\x85R.")  # fmt: skip
    found = unsafe("weights.bin", data)
    assert [(f.target, f.offset) for f in found] == [("posix.system", data.index(b"\x93"))]


def test_getattr_of_import_os_assembled_with_reduce():
    # getattr(__import__("os"), "system")("id"), every step a REDUCE
    data = (b"\x80\x02" + g("__builtin__", "getattr") + g("__builtin__", "__import__") + u("os") + b"\x85R"
            + u("system") + b"\x86R" + u("id") + b"\x85R.")  # fmt: skip
    found = {f.target: f for f in unsafe("model.pt", data)}
    assert set(found) == {"builtins.getattr", "builtins.__import__", "os (reached by a call at load time)",
                          "os.system (reached by a call at load time)"}  # fmt: skip
    assert found["os.system (reached by a call at load time)"].offset == data.index(b"\x86R") + 1
    assert all(f.severity == "critical" for f in found.values())


def test_a_computed_module_name_is_dangerous():
    # STACK_GLOBAL on str("os"): the module name is a call's result, which nothing benign makes
    data = b"\x80\x04" + g("builtins", "str") + su("os") + b"\x85R" + su("system") + b"\x93" + su("id") + b"\x85R."
    assert targets("a.pkl", data) == {"import of a computed name (?.'system')"}


def test_inst_obj_newobj_and_newobj_ex_targets():
    inst = b"(" + u("id") + b"isubprocess\ncheck_output\n."
    obj = b"\x80\x02(" + g("subprocess", "Popen") + u("id") + b"o."
    newobj = b"\x80\x02" + g("socket", "socket") + b")\x81."
    newobj_ex = b"\x80\x04" + su("webbrowser") + su("open") + b"\x93)}\x92."
    assert targets("a.pkl", inst) == {"subprocess.check_output"}
    assert targets("a.pkl", obj) == {"subprocess.Popen"}
    assert targets("a.pkl", newobj) == {"socket.socket"}
    assert targets("a.pkl", newobj_ex) == {"webbrowser.open"}


@pytest.mark.parametrize("proto", [0, 1, 2, 3, 4, 5])
def test_every_protocol(proto):
    text = g("runpy", "run_path") + b"(S'x.py'\ntR."  # protocol 0 opcodes, valid in every protocol
    data = text if proto < 2 else bytes([0x80, proto]) + text
    assert targets("a.pkl", data) == {"runpy.run_path"}


def test_a_dangerous_call_after_benign_ones():
    benign = torch_state_dict(50)[:-1]  # the state dict stays on the stack
    data = benign + g("__builtin__", "exec") + u("print(1)") + b"\x85R\x86."
    found = unsafe("pytorch_model.bin", data)
    assert [(f.target, f.offset) for f in found] == [("builtins.exec", len(benign))]


def test_imports_by_name_through_numpys_ufunc_reconstruct():
    benign = b"\x80\x02" + g("numpy.core", "_ufunc_reconstruct") + u("numpy") + u("log1p") + b"\x86R."
    evil = b"\x80\x02" + g("numpy.core", "_ufunc_reconstruct") + u("os") + u("system") + b"\x86R" + u("id") + b"\x85R."
    assert targets("pipeline.joblib", benign) == set()
    assert targets("pipeline.joblib", evil) == {"os.system (reached by a call at load time)"}


def test_dotted_names_through_dunders_are_dangerous():
    # protocol 4 qualnames walk attributes: a safe module does not make __globals__ safe
    data = b"\x80\x04" + su("collections") + su("OrderedDict.__init__.__globals__") + b"\x93."
    assert targets("a.pkl", data) == {"collections.OrderedDict.__init__.__globals__"}


# --- broken streams --------------------------------------------------------------------------------


def test_a_stream_broken_after_its_payload_is_judged_and_the_break_reported():
    data = b"\x80\x02" + PAYLOAD + b"\xff\xfe garbage"
    items = list(decode("model.pt", data, models=True))
    assert [i.target for i in items if isinstance(i, Unsafe)] == ["os.system"]
    [skip] = [i for i in items if isinstance(i, Skip)]
    assert skip.reason.startswith("malformed pickle") and skip.reason.endswith("(judged on the opcodes before it)")


def test_a_broken_benign_stream_is_never_clean(scanner):
    got = scan(scanner, "pytorch_model.bin", torch_zip({"data.pkl": torch_state_dict()[:-40], "version": b"3\n"}))
    assert got.findings == []
    assert [(s.container, s.reason.split(":")[0]) for s in got.skipped] == [("archive/data.pkl", "malformed pickle")]


def test_stack_underflow_breaks_the_stream():
    data = b"\x80\x02" + g("os", "system") + b"RR."  # REDUCE with nothing to call
    assert targets("a.pkl", data) == {"os.system"}
    [skip] = skips("a.pkl", data)
    assert "stack underflow" in skip.reason


def test_prose_that_starts_like_an_opcode_is_not_a_pickle():
    """Text whose first letter is an opcode (`c` GLOBAL, `C`, `(` MARK …) and that ends with a
    period parses a little as a pickle; it is not one, and gets no malformed-pickle skip. Seen on
    a real history: LICENSE files, `.pyi` stubs and commit messages."""
    for name, text in [("LICENSE", "copyright 2019 Kenneth Reitz\nand contributors\nAll rights reserved."),
                       ("(commit message)", "Merge pull request #4567 from someone/branch\n\nFix the docs."),
                       ("attrs/__init__.pyi", "(x: int) -> None: ...\nIt ends like a pickle does."),
                       ("notes.txt", "cos system\nsomething else entirely, then a period.")]:  # fmt: skip
        assert (targets(name, text.encode()), skips(name, text.encode())) == (set(), []), name


def test_a_pickled_library_object_is_not_dangerous():
    """A pickled `requests` cookie jar (found in a real repository's history) constructs a class:
    unknown, so not reported by default; requests' sending functions are dangerous."""
    jar = b"\x80\x04" + su("requests.cookies") + su("RequestsCookieJar") + b"\x93)\x81}b."
    assert unsafe("session.pkl", jar)[0].severity == "low"
    get = b"\x80\x04" + su("requests") + su("get") + b"\x93" + su("http://x") + b"\x85R."
    assert [(i.target, i.severity) for i in unsafe("session.pkl", get)] == [("requests.get", "critical")]


# --- containers ------------------------------------------------------------------------------------


def test_a_torch_zip_whose_pickle_member_is_not_data_pkl():
    data = torch_zip({"data.pkl": torch_state_dict(), "extra/checkpoint": b"\x80\x02" + PAYLOAD + b".",
                      "version": b"3\n"})  # fmt: skip
    found = unsafe("pytorch_model.bin", data)
    assert [(f.target, f.name) for f in found] == [("os.system", "archive/extra/checkpoint")]


def test_misleading_extensions():
    proto0 = g("os", "system") + b"(S'id'\ntR."
    proto2 = b"\x80\x02" + PAYLOAD + b"."
    assert targets("tokenizer_config.json", proto0) == {"os.system"}
    assert targets("README.md", proto0) == {"os.system"}
    assert targets("model.safetensors", proto2) == {"os.system"}
    assert targets("photo.png", torch_zip({"data.pkl": proto2})) == {"os.system"}
    # protocol 4 opcodes with no PROTO header, which the unpickler does not need
    headerless = su("subprocess") + su("getoutput") + b"\x93" + su("id") + b"\x85R."
    assert targets("weights.bin", headerless) == {"subprocess.getoutput"}
    # line ends after STOP, as an editor leaves them, even more of them than the sniffer's glance
    assert targets("README.md", proto0 + b"\r\n") == {"os.system"}
    assert targets("README.md", proto0 + b"\n" * 300) == {"os.system"}
    assert targets("notes.txt", b"Some text that ends with a period.\n") == set()


def test_a_7z_wrapped_torch_file():
    py7zr = pytest.importorskip("py7zr")
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as archive:
        archive.writestr(b"\x80\x02" + PAYLOAD + b".", "archive/data.pkl")
        archive.writestr(b"3\n", "archive/version")
    found = unsafe("pytorch_model.bin", buf.getvalue())
    assert [(f.target, f.name) for f in found] == [("os.system", "archive/data.pkl")]


def test_a_7z_bomb_stops_at_the_budget():
    py7zr = pytest.importorskip("py7zr")
    from leakscan.decoders import Limits

    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as archive:
        archive.writestr(b"\0" * (64 << 20), "zeros")
    items = list(decode("bomb.7z", buf.getvalue(), Limits(max_decoded_bytes=8 << 20), models=True))
    assert [i.reason for i in items if isinstance(i, Skip)] == ["compression ratio limit (200x) exceeded"]


def test_legacy_torch_tar_and_sequence_files():
    # torch < 1.6 wrote a sequence of pickles (magic, protocol, sys info, the object, storage
    # keys) then raw storage bytes; older still, a tar of `pickle`, `storages`, `tensors`
    legacy = (b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19." + b"\x80\x02M\xe9\x03." + b"\x80\x02}q\x00(" + u("little_endian")
              + b"\x88u." + torch_state_dict() + b"\x80\x02]q\x00" + u("0") + b"a." + bytes(range(256)))  # fmt: skip
    assert unsafe("model.pt", legacy) == [] and skips("model.pt", legacy) == []
    evil = legacy.replace(torch_state_dict(), b"\x80\x02" + PAYLOAD + b".")
    assert targets("model.pt", evil) == {"os.system"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("sys_info", b"\x80\x02}."), ("pickle", b"\x80\x02" + PAYLOAD + b"."), ("storages", b"\x80\x02K\x00.")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert [(f.target, f.name) for f in unsafe("model.tar", buf.getvalue())] == [("os.system", "pickle")]


def npy(descr: str, shape: tuple, body: bytes) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def object_array_pickle(items: bytes) -> bytes:
    """An object array as numpy pickles it: _reconstruct, then BUILD with the items list."""
    return (b"\x80\x02" + g("numpy.core.multiarray", "_reconstruct") + g("numpy", "ndarray") + b"K\x00\x85C\x01b\x87R("
            + b"K\x01K\x02\x85" + g("numpy", "dtype") + u("O8") + b"\x89\x88\x87R(K\x03" + u("|")
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]" + items + b"tb.")  # fmt: skip


def test_numpy_object_arrays_and_plain_arrays():
    benign = npy("|O", (2,), object_array_pickle(b"(" + u("a") + u("b") + b"e"))
    plain = npy("<f8", (4,), struct.pack("<4d", 1, 2, 3, 4))
    evil = npy("|O", (1,), b"\x80\x02" + PAYLOAD + b"]\x86.")
    assert unsafe("x.npy", benign) == [] and skips("x.npy", benign) == []
    assert unsafe("x.npy", plain) == [] and skips("x.npy", plain) == []
    [found] = unsafe("x.npy", evil)
    assert found.target == "os.system" and evil[found.offset : found.offset + 3] == b"cos"
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as zf:
        zf.writestr("weights.npy", plain)
        zf.writestr("labels.npy", evil)
    assert [(f.target, f.name) for f in unsafe("arrays.npz", npz.getvalue())] == [("os.system", "labels.npy")]


def joblib_estimator(evil: bytes = b"") -> bytes:
    """sklearn estimator as joblib dumps it: a NumpyArrayWrapper whose array bytes (aligned by
    a padding byte) are written raw into the pickle stream, then the stream goes on."""
    dtype = g("numpy", "dtype") + u("f8") + b"\x89\x88\x87R(K\x03" + u("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    wrapper = (g("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81}(" + u("subclass") + g("numpy", "ndarray")
               + u("shape") + b"K\x03\x85" + u("order") + u("C") + u("dtype") + dtype + u("allow_mmap") + b"\x88"
               + u("numpy_array_alignment_bytes") + b"K\x10ub")  # fmt: skip
    raw = b"\x03\xff\xff\xff" + b"\xfe\xff(R" * 6  # padding, then 24 bytes that are no opcodes
    return (b"\x80\x02" + g("sklearn.linear_model._base", "LinearRegression") + b")\x81}(" + u("coef_") + wrapper
            + raw + u("intercept_") + b"G?\xf0\x00\x00\x00\x00\x00\x00" + evil + b"ub.")  # fmt: skip


def test_joblib_inline_arrays_are_stepped_over():
    benign = joblib_estimator()
    assert unsafe("model.joblib", benign) == [] and skips("model.joblib", benign) == []
    evil = joblib_estimator(u("hook") + PAYLOAD)
    assert targets("model.joblib", evil) == {"os.system"}
    assert skips("model.joblib", evil) == []
    # joblib.dump(compress=True): a bare zlib stream
    assert [(f.target, f.name) for f in unsafe("model.joblib", zlib.compress(evil))] == [("os.system", "zlib")]
    assert unsafe("model.joblib", zlib.compress(benign)) == [] and skips("model.joblib", zlib.compress(benign)) == []


def test_archives_and_pickles_inside_them():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = torch_zip({"data.pkl": b"\x80\x02" + PAYLOAD + b"."})
        info = tarfile.TarInfo("models/pytorch_model.bin")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    found = unsafe("release.tar.gz", buf.getvalue())
    assert [(f.target, f.name) for f in found] == [("os.system", "models/pytorch_model.bin!archive/data.pkl")]


# --- benign files that must not be reported ------------------------------------------------------


def training_args(tok: str) -> bytes:
    """transformers' TrainingArguments as torch.save pickles it: NEWOBJ, then BUILD with the
    field dict, enums rebuilt by REDUCE."""
    fields = (u("output_dir") + u("out") + u("eval_strategy") + g("transformers.trainer_utils", "IntervalStrategy")
              + u("steps") + b"\x85R" + u("optim") + g("transformers.training_args", "OptimizerNames") + u("adamw_torch")
              + b"\x85R" + u("push_to_hub") + b"\x88" + u("hub_token") + u(tok) + u("distributed_state")
              + g("accelerate.utils.dataclasses", "DistributedType") + u("NO") + b"\x85R" + u("learning_rate")
              + b"G?\x1a6\xe2\xeb\x1cC-")  # fmt: skip
    return b"\x80\x02" + g("transformers.training_args", "TrainingArguments") + b")\x81}(" + fields + b"ub."


def test_benign_torch_numpy_transformers_files_are_not_reported(scanner):
    files = {
        "pytorch_model.bin": torch_zip({"data.pkl": torch_state_dict(), "data/0": bytes(64), "version": b"3\n"},
                                       root="pytorch_model"),
        "optimizer.pt": torch_zip({"data.pkl": b"\x80\x02}(" + u("state") + b"}" + u("param_groups") + b"]u.",
                                   "version": b"3\n"}),
        "scaler.pkl": b"\x80\x04" + su("numpy.core.multiarray") + su("scalar") + b"\x93" + su("numpy") + su("dtype")
                      + b"\x93" + su("f8") + b"\x89\x88\x87R." + b"",
        "rng_state.pth": torch_zip({"data.pkl": b"\x80\x02}(" + u("python") + b"(K\x03(K\x01tNt" + u("numpy")
                                    + g("numpy.random._pickle", "__randomstate_ctor") + u("MT19937") + b"\x85Ru.",
                                    "version": b"3\n"}),
        "codecs.pkl": b"\x80\x02" + g("_codecs", "encode") + u("\x00\x01") + u("latin1") + b"\x86R.",
    }  # fmt: skip
    for name, data in files.items():
        got = scan(scanner, name, data)
        assert got.findings == [] and got.skipped == [], name


def test_a_leaked_token_in_benign_training_args_is_still_reported(scanner):
    tok = token(HF, "training-args")
    got = scan(scanner, "training_args.bin", torch_zip({"data.pkl": training_args(tok), "version": b"3\n"}))
    assert [(f.kind, f.detector, f.secret, f.container) for f in got.findings] == [
        ("secret", "huggingface-access-token", tok, "archive/data.pkl")]
    assert got.skipped == []


# --- Keras -----------------------------------------------------------------------------------------


def dense(name: str) -> dict:
    return {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
            "config": {"name": name, "units": 4, "activation": "relu",
                       "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                                              "config": {"seed": None}, "registered_name": None}}}  # fmt: skip


def sequential(layers: list, name: str = "sequential") -> dict:
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": name, "layers": layers}}


def keras_zip(config: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.6.0", "date_saved": "2026-01-01@00:00:00"}))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(600))
    return buf.getvalue()


def fake_h5(attrs: list[str]) -> bytes:
    """Bytes shaped like an HDF5 file: superblock magic, binary structure, and each attribute
    string NUL-terminated in a heap, as h5py stores `model_config`."""
    out = b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00\x00\x08\x08\x00" + bytes(range(256)) * 4
    for text in attrs:
        out += b"GCOL\x01\x00\x00\x00" + text.encode() + b"\x00" * 8 + bytes(range(200, 256)) * 3
    return out


LAMBDA_K3 = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
             "config": {"name": "shift", "function": {"class_name": "__lambda__", "config": {
                 "code": "4wEAAAAAAAAAAAAAAAEAAAADAAAA8wgAAACXAHwAZAAXAFMAKQFO6QEAAACpAKkB2gF4cwEAAAAg",
                 "defaults": None, "closure": None}}}}  # fmt: skip
LAMBDA_K2 = {"class_name": "Lambda", "config": {"name": "lambda_1", "function": [
    "4wEAAAAAAAAAAAAAAAEAAAADAAAAQwAAAHMIAAAAdABkAYMBUwApAk7aAmlkKQHaBnN5c3RlbSkB2gF4qQByBAAAAPoBPNoIPGxhbWJkYT4B",
    None, None], "function_type": "lambda", "module": "__main__", "output_shape": None}}  # fmt: skip


def test_a_lambda_hidden_in_a_nested_model_config():
    inner = {"module": "keras", "class_name": "Functional", "registered_name": "Functional",
             "config": {"name": "encoder", "layers": [dense("d0"), {"module": "keras.layers", "class_name": "TimeDistributed",
                        "config": {"name": "td", "layer": LAMBDA_K3}, "registered_name": None}]}}  # fmt: skip
    data = keras_zip(sequential([dense("d1"), inner, dense("d2")]))
    found = unsafe("model.keras", data)
    assert [(f.kind, f.severity, f.target, f.name) for f in found] == [
        ("unsafe-model", "critical", "Lambda layer 'shift' with marshalled code", "config.json")]


def test_legacy_h5_model_config_with_a_lambda():
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "Dense", "config": {"name": "dense", "units": 4}}, LAMBDA_K2]}}  # fmt: skip
    training = {"loss": "mse", "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": 0.001}}}
    data = fake_h5([json.dumps(training), json.dumps(config)])
    assert targets("model.h5", data) == {"Lambda layer 'lambda_1' with marshalled code"}


def test_keras_objects_naming_modules_to_import():
    fn = {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"}
    custom = {"module": "my_layers.blocks", "class_name": "Residual", "config": {"name": "r"}, "registered_name": None}
    data = keras_zip(sequential([dense("d"), {"module": "keras.layers", "class_name": "Activation",
                                              "config": {"name": "act", "activation": fn}}, custom]))  # fmt: skip
    found = {(f.severity, f.target) for f in unsafe("model.keras", data)}
    assert found == {("critical", "os.system (module imported by Keras)"),
                     ("low", "my_layers.blocks.Residual (module imported by Keras)")}  # fmt: skip


def test_benign_keras_files_are_not_reported(scanner):
    k3 = sequential([{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [None, 8]},
                      "registered_name": None}, dense("dense"), dense("dense_1")])  # fmt: skip
    k3["compile_config"] = {"optimizer": {"module": "keras.optimizers", "class_name": "Adam", "config": {},
                                          "registered_name": None}, "loss": "mse"}  # fmt: skip
    k2 = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 8]}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 4, "activation": "relu"}}]},
        "keras_version": "2.15.0", "backend": "tensorflow"}  # fmt: skip
    for name, data in (("model.keras", keras_zip(k3)), ("model.h5", fake_h5([json.dumps(k2)])),
                       ("model.json", json.dumps(k3).encode())):  # fmt: skip
        got = Scanner(scanner.ruleset, pickle_unknown=True).scan_bytes(data, Place(name))
        assert got.findings == [] and got.skipped == [], name


# --- unknown imports -------------------------------------------------------------------------------


def test_unknown_imports_only_with_pickle_unknown(ruleset):
    data = torch_zip({"data.pkl": b"\x80\x02" + g("__main__", "Net") + b")\x81}b.", "version": b"3\n"})
    assert Scanner(ruleset).scan_bytes(data, Place("model.pt")).findings == []
    [f] = Scanner(ruleset, pickle_unknown=True).scan_bytes(data, Place("model.pt")).findings
    assert (f.kind, f.detector, f.severity, f.secret) == ("unsafe-pickle", "unsafe-pickle-unknown", "low", "__main__.Net")
    assert Scanner(ruleset, model_scan=False).scan_bytes(torch_zip({"data.pkl": b"\x80\x02" + PAYLOAD + b"."}),
                                                         Place("model.pt")).findings == []  # fmt: skip


# --- through the CLI, history and the hook -------------------------------------------------------


def test_cli_scan_reports_unsafe_files_in_every_format(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(torch_zip({"data.pkl": b"\x80\x02" + PAYLOAD + b"."}))
    (tmp_path / "ok.bin").write_bytes(torch_zip({"data.pkl": torch_state_dict()}))
    run = leakscan("scan", tmp_path, "--format", "json", "--no-cache")
    assert run.code == 1, run.err
    [item] = run.report
    assert {k: item[k] for k in ("type", "detector", "severity", "target", "path", "container", "offset", "secret")} == {
        "type": "unsafe-pickle", "detector": "unsafe-pickle", "severity": "critical", "target": "os.system",
        "path": "pytorch_model.bin", "container": "archive/data.pkl", "offset": 2, "secret": None}  # fmt: skip
    sarif = json.loads(leakscan("scan", tmp_path, "--format", "sarif", "--no-cache").out)
    schema = json.loads((REPO / "fixtures" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(sarif)
    run0 = sarif["runs"][0]
    assert [r["id"] for r in run0["tool"]["driver"]["rules"]] == ["unsafe-pickle"]
    assert [(r["ruleId"], r["level"], r["properties"]["target"]) for r in run0["results"]] == [
        ("unsafe-pickle", "error", "os.system")]
    table = leakscan("scan", tmp_path, "--no-cache")
    assert "pytorch_model.bin!archive/data.pkl@2" in table.out and "os.system" in table.out and "critical" in table.out
    off = leakscan("scan", tmp_path, "--format", "json", "--no-cache", "--no-model-scan")
    assert off.code == 0 and off.report == []


def test_history_names_the_commit_that_added_the_file(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.commit({"README.md": "# model\n"})
    (repo.path / "model.pkl").write_bytes(b"\x80\x02" + PAYLOAD + b".")
    repo.git("add", "model.pkl")
    repo.git("commit", "-q", "-m", "add weights")
    added = repo.git("rev-parse", "HEAD")
    repo.commit({"model.pkl": None}, "remove weights")
    run = leakscan("scan", repo.path, "--format", "json", "--no-cache")
    assert run.code == 1
    assert [(i["type"], i["target"], i["path"], i["commit"], i.get("in_head")) for i in run.report] == [
        ("unsafe-pickle", "os.system", "model.pkl", added, False)]


def test_the_hook_refuses_a_push_of_an_unsafe_model(tmp_path):
    import subprocess

    from hubstand import git_env

    def git(*args, cwd):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=git_env(), timeout=60)

    srv, wt = tmp_path / "srv.git", tmp_path / "wt"
    git("init", "-q", "--bare", "-b", "main", str(srv), cwd=tmp_path)
    assert leakscan("hook", "install", srv).code == 0
    git("init", "-q", "-b", "main", str(wt), cwd=tmp_path)
    (wt / "pytorch_model.bin").write_bytes(torch_zip({"data.pkl": b"\x80\x02" + PAYLOAD + b"."}))
    git("add", ".", cwd=wt)
    git("-c", "user.name=Dev", "-c", "user.email=dev@example.org", "commit", "-q", "-m", "weights", cwd=wt)
    sha = git("rev-parse", "HEAD", cwd=wt).stdout.strip()
    push = git("push", str(srv), "main", cwd=wt)
    assert push.returncode != 0
    assert "remote: leakscan: push rejected: 1 unsafe model file finding(s) found in the pushed commits" in push.stderr
    assert f"refs/heads/main {sha[:12]} pytorch_model.bin!archive/data.pkl@2  unsafe-pickle  os.system" in push.stderr
    (srv / "leakscan-hook.toml").write_text("block_unsafe_models = false\n")
    push = git("push", str(srv), "main", cwd=wt)
    assert push.returncode == 0, push.stderr
    assert "remote: leakscan: warning: unsafe model file (unsafe-pickle) in refs/heads/main" in push.stderr


def test_nothing_is_ever_executed(tmp_path):
    marker = tmp_path / "pwned"
    data = b"\x80\x02" + g("os", "system") + u(f"touch {marker}") + b"\x85R."
    for wrap in (lambda d: d, lambda d: torch_zip({"data.pkl": d}), lambda d: npy("|O", (1,), d)):
        assert targets("model.bin", wrap(data)) == {"os.system"}
    assert not marker.exists()


def test_a_long_hostile_stream_is_bounded():
    # a million MARKs and tuple builds: linear, bounded by the stack limit, never a hang
    data = b"\x80\x02" + b"(" * 200_000 + b"t" * 200_000 + PAYLOAD + b"."
    assert targets("a.pkl", data) == {"os.system"}



def test_hub_repo_and_sweep_report_an_unsafe_model_kept_in_lfs(tmp_path):
    from hubstand import HubStandIn

    with HubStandIn(root=tmp_path / "hub") as hub:
        hub.add_repo("model", "eve/tiny")
        hub.commit("model", "eve/tiny", {"README.md": "# tiny\n", "pytorch_model.bin": hub.lfs(torch_zip(
            {"data.pkl": torch_state_dict()[:-1] + PAYLOAD + b"\x86.", "version": b"3\n"}, root="pytorch_model"))})
        e = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
             "LEAKSCAN_HUB_CACHE": str(tmp_path / "mirrors"), "LEAKSCAN_CACHE_DIR": str(tmp_path / "cache"),
             "HF_TOKEN": ""}  # fmt: skip
        run = leakscan("repo", "eve/tiny", "-f", "json", "--no-verify", "--no-cache", "--no-discussions", env=e)
        assert run.code == 1, run.err
        want = [("unsafe-pickle", "os.system", "pytorch_model.bin", "lfs!pytorch_model/data.pkl")]
        assert [(i["type"], i["target"], i["path"], i["container"]) for i in run.report] == want
        out = tmp_path / "found.jsonl"
        swept = leakscan("sweep", "run", "--db", tmp_path / "sweep.sqlite3", "-o", out, "--no-verify",
                         "--author", "eve", env=e)  # fmt: skip
        assert swept.code == 1, swept.err
        found = [json.loads(line) for line in out.read_text().splitlines()]
        assert [(i["type"], i["target"], i["path"], i["container"]) for i in found] == want


def test_a_torch_file_over_the_decoding_budget_still_shows_its_pickle(ruleset):
    from leakscan.decoders import Limits

    data = torch_zip({"data.pkl": b"\x80\x02" + PAYLOAD + b".", "data/0": bytes(6 << 20), "version": b"3\n"})
    got = Scanner(ruleset, limits=Limits(max_decoded_bytes=4 << 20)).scan_bytes(data, Place("pytorch_model.bin"))
    assert [(f.secret, f.container) for f in got.findings] == [("os.system", "archive/data.pkl")]
    assert [s.reason for s in got.skipped] == [
        "too large to decode: over the 4 MiB decoded-bytes limit; scanned as raw bytes, its pickles read from the first 4 MiB"]
    legacy = b"\x80\x02K\x01." + b"\x80\x02" + PAYLOAD + b"." + bytes(6 << 20)  # pickles, then storages
    got = Scanner(ruleset, limits=Limits(max_decoded_bytes=4 << 20)).scan_bytes(legacy, Place("model.pt"))
    assert [(f.secret, f.container) for f in got.findings] == [("os.system", None)]


def test_serve_records_and_notifies_an_unsafe_model(tmp_path):
    from aiohttp import web

    from hubstand import HubStandIn
    from standin import StandIn
    from test_serve import Service, push

    notes: list[dict] = []

    async def receive(request: web.Request, body: bytes) -> web.Response:
        notes.append(json.loads(body))
        return web.Response(status=204)

    with HubStandIn(root=tmp_path / "hub") as hub, StandIn(receive) as receiver:
        hub.add_repo("model", "eve/tiny")
        sha = hub.commit("model", "eve/tiny", {"model.pkl": hub.lfs(b"\x80\x02" + PAYLOAD + b".")})
        svc = Service(hub, tmp_path, "--notify", f"http://127.0.0.1:{receiver.port}/leaks").start()
        try:
            code, body = svc.post(push("eve/tiny", sha))
            assert code == 202 and svc.wait(body["job"])[:2] == ("done", 1)
            assert svc.query("SELECT path, commit_id, detector, provider, redacted, container FROM repo_findings") == [
                ("model.pkl", sha, "unsafe-pickle", "model-file", "os.system", "lfs")]
            assert svc.stop() == 0
        finally:
            if svc.proc.poll() is None:
                svc.kill()
    assert [(f["type"], f["target"], f["severity"]) for n in notes for f in n["findings"]] == [
        ("unsafe-pickle", "os.system", "critical")]
