"""`leakscan scan PATH` end to end, through the real command in a subprocess."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from helpers import GHP, HF, OPENAI, REPO, leakscan, token


@pytest.fixture
def tree(tmp_path: Path):
    hf, ghp, oa = token(HF, "t1"), token(GHP, "t2"), token(OPENAI, "t3")
    (tmp_path / "src").mkdir()
    (tmp_path / ".env").write_text(f"HF_TOKEN={hf}\n# comment\n")
    (tmp_path / "src" / "train.py").write_text(f"import os\n\nclient = OpenAI(api_key=\"{oa}\")\nurl = 'https://{ghp}@github.com/o/r.git'\n")
    (tmp_path / "README.md").write_text("Set HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx in your env\n")
    return tmp_path, {"hf": hf, "ghp": ghp, "openai": oa}


def test_json_report_lists_exact_findings(tree):
    root, toks = tree
    run = leakscan("scan", root, "--format", "json")
    assert run.code == 1, run.err
    got = [(f["path"], f["line"], f["column"], f["detector"], f["secret"]) for f in run.json]
    assert got == [
        (".env", 1, 10, "huggingface-access-token", toks["hf"]),
        ("src/train.py", 3, 26, "openai-project-key", toks["openai"]),
        ("src/train.py", 4, 16, "github-pat", toks["ghp"]),
    ]
    first = run.json[0]
    assert first["provider"] == "huggingface" and first["source"] == "file" and first["commit"] is None
    assert first["container"] is None and first["verification"] == "unverified"
    assert first["redacted"] == toks["hf"][:5] + "…" + toks["hf"][-2:]
    assert len(first["fingerprint"]) == 32
    assert "3 findings in 2 files" in run.err


def test_clean_tree_exits_zero(tmp_path):
    (tmp_path / "a.py").write_text("print('hello')\napi_key = os.environ['API_KEY']\n")
    run = leakscan("scan", tmp_path)
    assert run.code == 0
    assert "no secrets found" in run.out


def test_jsonl_and_redact_leave_no_raw_secret(tree):
    root, toks = tree
    for fmt in ("json", "jsonl", "sarif", "table"):
        run = leakscan("scan", root, "-f", fmt, "--redact")
        assert run.code == 1
        for secret in toks.values():
            assert secret not in run.out, fmt
    lines = leakscan("scan", root, "-f", "jsonl").out.splitlines()
    assert [json.loads(l)["detector"] for l in lines] == ["huggingface-access-token", "openai-project-key", "github-pat"]


def test_sarif_is_valid_against_the_official_schema(tree, tmp_path):
    root, _ = tree
    out = tmp_path / "report.sarif"
    run = leakscan("scan", root, "-f", "sarif", "-o", out)
    assert run.code == 1 and run.out == ""
    doc = json.loads(out.read_text())
    schema = json.loads((REPO / "fixtures" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(doc)
    results = doc["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["huggingface-access-token", "openai-project-key", "github-pat"]
    loc = results[0]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == ".env" and loc["region"]["startLine"] == 1
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    assert {r["id"] for r in rules} == {"huggingface-access-token", "openai-project-key", "github-pat"}
    assert all(r["shortDescription"]["text"] and r["help"]["text"] for r in rules)


def test_inline_allow_ignore_file_and_baseline(tree, tmp_path_factory):
    root, toks = tree
    first = leakscan("scan", root, "-f", "json")
    hf_fp = first.json[0]["fingerprint"]
    (root / ".leakscanignore").write_text(f"# accepted risk\n{hf_fp}  # demo token\n")
    run = leakscan("scan", root, "-f", "json")
    assert [f["detector"] for f in run.json] == ["openai-project-key", "github-pat"]
    assert "1 suppressed" in run.err

    train = root / "src" / "train.py"
    train.write_text(train.read_text().replace(".git'\n", ".git'  # leakscan:allow\n"))
    assert [f["detector"] for f in leakscan("scan", root, "-f", "json").json] == ["openai-project-key"]

    baseline = tmp_path_factory.mktemp("reports") / "baseline.json"  # outside the scanned tree
    leakscan("scan", root, "-f", "json", "-o", baseline)
    assert leakscan("scan", root, "--baseline", baseline).code == 0
    new = token(HF, "new")
    (root / "new.py").write_text(f"t = '{new}'\n")
    run = leakscan("scan", root, "--baseline", baseline, "-f", "json")
    assert run.code == 1 and [f["secret"] for f in run.json] == [new]


def test_fingerprint_survives_edits_above_the_secret(tree):
    root, _ = tree
    before = {f["detector"]: f["fingerprint"] for f in leakscan("scan", root, "-f", "json").json}
    train = root / "src" / "train.py"
    train.write_text("# a new header\n\n\n" + train.read_text())
    after = leakscan("scan", root, "-f", "json").json
    assert {f["detector"]: f["fingerprint"] for f in after} == before
    assert [f["line"] for f in after if f["path"] == "src/train.py"] == [6, 7]


def test_same_secret_at_the_same_place_once_and_specific_beats_generic(tmp_path):
    hf = token(HF, "dup")
    (tmp_path / "a.env").write_text(f"HF_API_KEY={hf}\n")
    run = leakscan("scan", tmp_path, "-f", "json")
    assert [(f["detector"], f["line"]) for f in run.json] == [("huggingface-access-token", 1)]


def test_skips_git_dir_venv_and_reports_symlinks_out_and_fifos(tmp_path):
    hf = token(HF, "skip")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(hf)
    root = tmp_path / "root"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text(f"url = https://u:{hf}@huggingface.co/x\n")
    (root / "venv").mkdir()
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "venv" / "lib.py").write_text(f"t='{hf}'\n")
    (root / "link").symlink_to(outside / "secret.txt")
    (root / "dirlink").symlink_to(outside)
    os.mkfifo(root / "pipe")
    run = leakscan("scan", root, "-f", "json")
    assert run.code == 0 and run.json == []
    assert "3 skipped" in run.err
    table = leakscan("scan", root)
    assert "skipped dirlink: symlink points outside the scanned tree" in table.out
    assert "skipped link: symlink points outside the scanned tree" in table.out
    assert "skipped pipe: not a regular file" in table.out
    assert leakscan("scan", root, "--include-deps", "-f", "json").json[0]["path"] == "venv/lib.py"


def test_large_file_is_streamed_with_right_lines(tmp_path):
    hf = token(HF, "big")
    path = tmp_path / "train.log"
    line = b"step 1234 loss 0.1234 lr 0.0001 some logging text here\n"
    with open(path, "wb") as fh:
        for _ in range(3):
            fh.write(line * 150_000)  # ~8 MB a round: crosses several 4 MiB chunks
            fh.write(f"token={hf}\n".encode())
    run = leakscan("scan", path, "-f", "json")
    assert [(f["line"], f["secret"]) for f in run.json] == [(150_001, hf), (300_002, hf), (450_003, hf)]


def test_errors_are_one_line_with_exit_2(tmp_path):
    cases = [
        (["scan", tmp_path / "missing"], "leakscan: error: no such file or directory"),
        (["scan", tmp_path, "--format", "xml"], "leakscan: error: Invalid value for '--format'"),
        (["scan", tmp_path, "--baseline", tmp_path / "nope.json"], "leakscan: error: cannot read baseline"),
        (["scan", tmp_path, "--only", "no-such-detector"], "leakscan: error: invalid detectors: unknown detector(s): no-such-detector"),
        (["scan"], "leakscan: error: Missing argument"),
    ]
    for args, message in cases:
        run = leakscan(*args)
        assert run.code == 2, args
        assert run.err.startswith(message), run.err
        assert len(run.err.strip().splitlines()) == 1 and "Traceback" not in run.err


def test_bad_ignore_file_and_malformed_detector_file(tmp_path):
    (tmp_path / ".leakscanignore").write_text("not-a-fingerprint\n")
    run = leakscan("scan", tmp_path)
    assert run.code == 2 and ".leakscanignore:1: not a leakscan fingerprint" in run.err
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "acme.toml").write_text('[[rules]]\nid = "acme-key"\ndescription = "x"\nkeywords = ["acme_"]\npattern = "acme_[a-z]+"\n')
    run = leakscan("scan", tmp_path / "rules", "--rules", rules)
    assert run.code == 2
    assert run.err.strip() == "leakscan: error: invalid detectors: acme.toml: rule acme-key: pattern has no upper bound on its length; set max_length"


def test_custom_rules_directory(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "acme.toml").write_text(
        'name = "Acme"\n[[rules]]\nid = "acme-key"\ndescription = "Acme key"\nkeywords = ["acme_"]\n'
        "pattern = '''\\bacme_[a-z0-9]{20}\\b'''\nexamples.positive = ['acme_{b36:20}']\nexamples.negative = ['acme_x']\n"
    )
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("k = acme_0123abcd4567efgh8912\n")
    run = leakscan("scan", data, "--rules", rules, "-f", "json")
    assert run.code == 1 and [f["detector"] for f in run.json] == ["acme-key"]
    check = leakscan("detectors", "check", "--rules", rules)
    assert check.code == 0 and check.out.strip() == "1 rules, 0 problems"


def test_engines_give_identical_reports(tree):
    root, _ = tree
    a = leakscan("scan", root, "-f", "json", "--engine", "hyperscan")
    b = leakscan("scan", root, "-f", "json", "--engine", "regex")
    assert a.json == b.json and len(a.json) == 3


def test_detectors_check_passes_on_the_shipped_files():
    run = leakscan("detectors", "check")
    assert run.code == 0, run.err
    assert run.out.strip().endswith(" 0 problems")


def test_a_scan_that_finds_nothing_imports_neither_verification_nor_revocation_code(tmp_path):
    """Start-up matters most to the pre-receive hook: aiohttp (verification, revocation) is
    imported only when there is something to verify."""
    import subprocess
    import sys

    (tmp_path / "clean.py").write_text("x = 1\n")
    code = ("import sys\nfrom leakscan.cli import main\ncode = main(['scan', sys.argv[1]])\n"
            "print(code, sorted(m for m in ('aiohttp', 'leakscan.verify.engine', 'leakscan.revoke.deliver') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "LEAKSCAN_NO_VERIFY"}
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert run.stdout.strip().splitlines()[-1] == "0 []", run.stderr
