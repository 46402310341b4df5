"""Where people already work (issue 18): `scan --staged`, `scan -`, `.leakscan.toml`, path
exclusions, unused ignores, the report schema and the everyday flags — through the real command."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest

from helpers import GHP, HF, REPO, Repo, leakscan, token

CUSTOM_RULE = """
[[rules]]
id = "acme-internal-key"
description = "ACME internal key"
keywords = ["acmeint_"]
pattern = '''\\b(?P<secret>acmeint_[a-z0-9]{32})\\b'''
"""


def acme_key(seed: object) -> str:
    return token("acmeint_{hex:32}", seed)


# ---- standard input -----------------------------------------------------------------------------


def test_stdin_is_scanned_and_reported_at_stdin():
    hf = token(HF, "stdin")
    run = leakscan("scan", "-", "-f", "json", input=f"line one\nexport HF_TOKEN={hf}\n")
    assert run.code == 1, run.err
    assert [(f["path"], f["source"], f["line"], f["column"], f["detector"], f["secret"]) for f in run.json] == [
        ("<stdin>", "stdin", 2, 17, "huggingface-access-token", hf)
    ]
    clean = leakscan("scan", "-", input="nothing to see\n")
    assert clean.code == 0 and "no secrets found" in clean.out


def test_stdin_past_max_target_is_cut_and_reported():
    hf = token(HF, "late")
    text = "x" * (2 << 20) + f"\nHF_TOKEN={hf}\n"
    run = leakscan("scan", "-", "-f", "json", "--max-target-mb", "1", input=text)
    assert run.code == 0, run.err
    assert run.json == []
    assert [(s["path"], s["reason"]) for s in run.skipped] == [
        ("<stdin>", "larger than 1 MiB (--max-target-mb): only the first part was scanned")
    ]


# ---- staged content ---------------------------------------------------------------------------


@pytest.fixture
def work(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path / "work")
    repo.commit({"README.md": "hello\n"})
    return repo


def test_staged_scans_the_index_not_the_work_tree(work: Repo):
    staged, unstaged, deleted = token(HF, "s1"), token(GHP, "s2"), token(HF, "s3")
    (work.path / ".env").write_text(f"HF_TOKEN={staged}\n")
    (work.path / "gone.py").write_text(f"t = '{deleted}'\n")
    work.git("add", ".env", "gone.py")
    (work.path / "gone.py").unlink()  # staged, then deleted from the work tree: still committed
    (work.path / "notes.txt").write_text(f"{unstaged}\n")  # never staged
    run = leakscan("scan", "--staged", "-f", "json", cwd=work.path)
    assert run.code == 1, run.err
    got = sorted((f["path"], f["source"], f["line"], f["secret"]) for f in run.json)
    assert got == [(".env", "staged", 1, staged), ("gone.py", "staged", 1, deleted)]


def test_staged_skips_what_head_already_holds_and_decodes(work: Repo):
    old = token(HF, "old")
    work.commit({"old.env": f"HF_TOKEN={old}\n"})  # committed already: not this commit's doing
    hf = token(HF, "nb")
    notebook = {"cells": [{"cell_type": "code", "source": ["print(1)"], "metadata": {}, "execution_count": 1,
                           "outputs": [{"output_type": "stream", "name": "stdout", "text": [f"token {hf}\n"]}]}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    (work.path / "train.ipynb").write_text(json.dumps(notebook))
    (work.path / "README.md").write_text("hello again\n")
    work.git("add", "-A")
    run = leakscan("scan", "--staged", work.path / "README.md", "-f", "json")  # any path inside it
    assert run.code == 1, run.err
    assert [(f["path"], f["container"], f["secret"]) for f in run.json] == [("train.ipynb", "cell 1 output 1", hf)]


def test_staged_reads_the_index_git_commit_names(work: Repo, tmp_path: Path):
    """`git commit -a` runs pre-commit hooks with GIT_INDEX_FILE naming the index it prepared."""
    hf = token(HF, "idx")
    (work.path / "app.py").write_text(f"key = '{hf}'\n")
    index = tmp_path / "next-index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    subprocess.run(["git", "read-tree", "HEAD"], cwd=work.path, env=env, check=True)
    subprocess.run(["git", "add", "app.py"], cwd=work.path, env=env, check=True)
    assert leakscan("scan", "--staged", cwd=work.path).code == 0  # the default index has nothing staged
    run = leakscan("scan", "--staged", "-f", "json", cwd=work.path, env={"GIT_INDEX_FILE": str(index)})
    assert run.code == 1, run.err
    assert [(f["path"], f["secret"]) for f in run.json] == [("app.py", hf)]


def test_staged_outside_a_repository_is_one_line(tmp_path: Path):
    run = leakscan("scan", "--staged", cwd=tmp_path)
    assert run.code == 2
    assert run.err == f"leakscan: error: --staged needs a git work tree: . is not in one\n"


def test_pre_commit_hook_manifest():
    import yaml

    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert [(h["id"], h["language"], h["entry"], h["pass_filenames"]) for h in hooks] == [
        ("leakscan", "python", "leakscan scan --staged", False)
    ]


# ---- configuration -------------------------------------------------------------------------------


def test_config_at_the_root_adds_a_rule_and_keeps_the_built_ins(tmp_path: Path):
    acme, hf = acme_key("c1"), token(HF, "c1")
    (tmp_path / "app.py").write_text(f"ACME = '{acme}'\nHF = '{hf}'\n")
    (tmp_path / ".leakscan.toml").write_text(CUSTOM_RULE)
    run = leakscan("scan", tmp_path, "-f", "json")
    assert run.code == 1, run.err
    assert [(f["detector"], f["provider"], f["secret"]) for f in run.json] == [
        ("acme-internal-key", "custom", acme), ("huggingface-access-token", "huggingface", hf)
    ]  # fmt: skip
    sarif = leakscan("scan", tmp_path, "-f", "sarif")
    assert [r["ruleId"] for r in json.loads(sarif.out)["runs"][0]["results"]] == ["acme-internal-key", "huggingface-access-token"]


def test_use_default_false_replaces_the_built_ins_loudly(tmp_path: Path):
    acme, hf = acme_key("c2"), token(HF, "c2")
    (tmp_path / "app.py").write_text(f"ACME = '{acme}'\nHF = '{hf}'\n")
    (tmp_path / ".leakscan.toml").write_text("[extend]\nuse_default = false\n" + CUSTOM_RULE)
    run = leakscan("scan", tmp_path, "-f", "json", "-q")
    assert run.code == 1, run.err
    assert [f["detector"] for f in run.json] == ["acme-internal-key"]
    assert run.err == (f"leakscan: warning: {tmp_path / '.leakscan.toml'}: [extend] use_default = false: the built-in "
                       "detectors are OFF; only the 1 rule(s) of this file are used\n")  # fmt: skip


def test_config_flag_and_environment_variable(tmp_path: Path):
    acme = acme_key("c3")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_text(f"{acme}\n")
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text(CUSTOM_RULE)
    assert leakscan("scan", tmp_path / "tree").code == 0
    by_flag = leakscan("scan", tmp_path / "tree", "-f", "json", "--config", cfg)
    by_env = leakscan("scan", tmp_path / "tree", "-f", "json", env={"LEAKSCAN_CONFIG": str(cfg)})
    assert [f["secret"] for f in by_flag.json] == [f["secret"] for f in by_env.json] == [acme]


@pytest.mark.parametrize("text,message", [
    ("[[rules]]\nid = 'x'\n", ".leakscan.toml: rule x: description is required"),
    ("[allowlist]\npaths = ['a']\n", ".leakscan.toml: allowlist 1: give the reason (reason = \"…\")"),
    ("[options]\ncolour = true\n", ".leakscan.toml: unknown option 'colour' (known: "),
    ("[[rules]]\nid = 'huggingface-access-token'\ndescription = 'd'\nkeywords = ['hf_']\npattern = 'hf_[a-z]{8}'\n",
     "invalid detectors: .leakscan.toml: rule huggingface-access-token: id already used in huggingface.toml"),
    ("not toml = = 1", ".leakscan.toml: not valid TOML: "),
])  # fmt: skip
def test_bad_config_is_one_line_exit_2(tmp_path: Path, text: str, message: str):
    (tmp_path / ".leakscan.toml").write_text(text)
    run = leakscan("scan", tmp_path)
    assert run.code == 2
    assert run.err.startswith(f"leakscan: error: {message}"), run.err
    assert run.err.count("\n") == 1


def test_allowlist_entries_and_unused_report(tmp_path: Path):
    keep, by_path, by_regex, by_stop, by_fp = (token(HF, f"a{i}") for i in range(5))
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / "keys.txt").write_text(f"{by_path}\n")
    (tmp_path / "app.py").write_text(f"a = '{keep}'\nb = '{by_regex}'\nc = '{by_stop}'\nd = '{by_fp}'\n")
    first = {f["secret"]: f["fingerprint"] for f in leakscan("scan", tmp_path, "-f", "json").json}
    stop = by_stop[5:13]
    (tmp_path / ".leakscan.toml").write_text(f"""
[[allowlist]]
reason = "generated fixtures"
paths = ["fixtures/**", "nowhere/*.txt"]

[[allowlist]]
reason = "known test values"
regexes = ['^{by_regex[:12]}']
stopwords = ["{stop.upper()}"]
fingerprints = ["{first[by_fp]}", "{'0' * 32}"]
""")
    (tmp_path / ".leakscanignore").write_text(f"{'1' * 32}  # stale\n")
    run = leakscan("scan", tmp_path, "-f", "json", "--report-unused-ignores", "--exclude-path", "build/**")
    assert run.code == 1, run.err
    assert [f["secret"] for f in run.json] == [keep]
    unused = [l for l in run.err.splitlines() if "unused:" in l]
    assert unused == [
        "leakscan: warning: unused: .leakscanignore: fingerprint 11111111111111111111111111111111 matched no finding",
        "leakscan: warning: unused: .leakscan.toml: allowlist 1 (generated fixtures): path 'nowhere/*.txt' matched no finding",
        f"leakscan: warning: unused: .leakscan.toml: allowlist 2 (known test values): fingerprint '{'0' * 32}' matched no finding",
        "leakscan: warning: unused: --exclude-path 'build/**' matched no path",
    ]
    assert "4 suppressed" in run.err
    assert leakscan("scan", tmp_path, "-f", "json").err.count("unused") == 0  # only when asked


def test_config_options_are_defaults_the_command_line_overrides(tmp_path: Path):
    hf = token(HF, "opt")
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "lib.py").write_text(f"k = '{token(HF, 'vendored')}'\n")
    (tmp_path / "app.py").write_text(f"k = '{hf}'\n")
    (tmp_path / ".leakscan.toml").write_text('[options]\nformat = "json"\nredact = true\nexit_code = 3\n'
                                             'exclude_paths = ["vendor"]\n')  # fmt: skip
    run = leakscan("scan", tmp_path)
    assert run.code == 3, run.err
    assert [(f["path"], f["secret"]) for f in run.json] == [("app.py", None)]
    table = leakscan("scan", tmp_path, "-f", "table", "--exit-code", "5", "--exclude-path", "app.py")
    assert table.code == 0 and "no secrets found" in table.out


# ---- exclusions and size -----------------------------------------------------------------------


def test_exclude_path_covers_files_and_every_place_in_history(tmp_path: Path):
    repo = Repo(tmp_path / "r")
    a, b = token(HF, "x1"), token(GHP, "x2")
    repo.commit({"tests/data/sample.env": f"HF_TOKEN={a}\n", "src/app.py": f"g = '{b}'\n"})
    repo.commit({"docs/sample.env": f"HF_TOKEN={a}\n"})  # the same blob at a second place
    run = leakscan("scan", repo.path, "-f", "json", "--no-cache", "--exclude-path", "tests/**")
    assert run.code == 1, run.err
    assert sorted((f["path"], f["secret"]) for f in run.json) == [("docs/sample.env", a), ("src/app.py", b)]
    only = leakscan("scan", repo.path, "-f", "json", "--no-cache", "--exclude-path", "*.env", "--exclude-path", "src")
    assert only.code == 0 and only.json == []


def test_max_target_mb_skips_big_files_and_says_so(tmp_path: Path):
    hf = token(HF, "big")
    (tmp_path / "big.log").write_text("x" * (3 << 20) + f"\nHF_TOKEN={hf}\n")
    (tmp_path / "small.env").write_text(f"HF_TOKEN={hf}\n")
    run = leakscan("scan", tmp_path, "-f", "json", "--max-target-mb", "2")
    assert run.code == 1
    assert [f["path"] for f in run.json] == ["small.env"]
    assert [(s["path"], s["reason"]) for s in run.skipped] == [("big.log", "larger than 2 MiB (--max-target-mb): not scanned")]


# ---- everyday flags ----------------------------------------------------------------------------


def test_quiet_verbose_json_logs_and_exit_code(tmp_path: Path):
    (tmp_path / "a.env").write_text(f"HF_TOKEN={token(HF, 'q')}\n")
    quiet = leakscan("scan", tmp_path, "-q", "-f", "json")
    assert quiet.code == 1 and quiet.err == "" and len(quiet.json) == 1
    table = leakscan("scan", tmp_path, "-q")
    assert "finding" not in table.out.splitlines()[-1] and "a.env:1:10" in table.out
    verbose = leakscan("scan", tmp_path, "-v", "-f", "json", "--exit-code", "9")
    assert verbose.code == 9
    assert verbose.err.splitlines()[0].startswith("leakscan: ") and " detectors" in verbose.err.splitlines()[0]
    logged = leakscan("scan", tmp_path, "--log-format", "json", "-f", "json", "--exclude-path", "zz", "--report-unused-ignores")
    lines = [json.loads(l) for l in logged.err.splitlines()]
    assert [(l["level"], l["message"]) for l in lines][0] == ("warning", "unused: --exclude-path 'zz' matched no path")
    assert lines[1]["level"] == "info" and lines[1]["message"].startswith("1 finding in 1 file")
    error = leakscan("scan", tmp_path / "missing", "--log-format", "json")
    assert error.code == 2 and json.loads(error.err)["level"] == "error"
    assert json.loads(error.err)["message"] == f"no such file or directory: {tmp_path / 'missing'}"


# ---- the report schema -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema():
    run = leakscan("schema")
    assert run.code == 0
    doc = json.loads(run.out)
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


def test_every_report_validates_against_the_schema(schema, tmp_path: Path):
    repo = Repo(tmp_path / "r")
    hf, ghp = token(HF, "sc1"), token(GHP, "sc2")
    repo.commit({"a.env": f"HF_TOKEN={hf}\n", "big.bin": "x" * (2 << 20)})
    repo.commit({"b.py": f"g = '{ghp}'\n"}, message=f"oops {hf}")
    (repo.path / "untracked.env").write_text(f"HF_TOKEN={hf}\n")
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for args in ([], ["--redact"], ["--max-target-mb", "1"]):
        doc = leakscan("scan", repo.path, "-f", "json", "--no-cache", *args)
        items = json.loads(doc.out)
        validator.validate(items)
        assert {i["source"] for i in items if i["type"] == "finding"} == {"history", "commit-message", "file"}
        assert all(i["schema_version"] == schema["$defs"]["finding"]["properties"]["schema_version"]["const"] for i in items)
        lines = leakscan("scan", repo.path, "-f", "jsonl", "--no-cache", *args).out.splitlines()
        for line in lines:
            validator.validate([json.loads(line)])
        assert len(lines) == len(items)
    assert any(i["type"] == "skipped" for i in items)
    for extra in (["-"], ):
        run = leakscan("scan", *extra, "-f", "json", input=f"{hf}\n")
        validator.validate(json.loads(run.out))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate([{**items[0], "line": 0}])


def test_sarif_of_config_rules_and_staged_stays_valid(tmp_path: Path, work: Repo):
    (work.path / ".leakscan.toml").write_text(CUSTOM_RULE)
    (work.path / "x.py").write_text(f"a = '{acme_key('s')}'\nb = '{token(HF, 's')}'\n")
    work.git("add", "x.py")
    out = tmp_path / "r.sarif"
    run = leakscan("scan", "--staged", "-f", "sarif", "-o", out, cwd=work.path)
    assert run.code == 1, run.err
    doc = json.loads(out.read_text())
    official = json.loads((REPO / "fixtures" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(official, format_checker=jsonschema.FormatChecker()).validate(doc)
    assert [r["ruleId"] for r in doc["runs"][0]["results"]] == ["acme-internal-key", "huggingface-access-token"]


def test_a_scan_that_excluded_paths_does_not_count_as_having_covered_them(tmp_path: Path):
    """With the scan cache: history walked with --exclude-path (or --max-target-mb) is walked
    again by the next scan without it, so what was left out is found then."""
    repo = Repo(tmp_path / "r")
    hf = token(HF, "cached")
    repo.commit({"vendor/x.env": f"HF_TOKEN={hf}\n"})
    db = tmp_path / "store.sqlite3"
    first = leakscan("scan", repo.path, "-f", "json", "--db", db, "--exclude-path", "vendor")
    assert first.code == 0 and first.json == []
    second = leakscan("scan", repo.path, "-f", "json", "--db", db)
    assert [(f["path"], f["secret"]) for f in second.json] == [("vendor/x.env", hf)]
