"""The findings page over HTTP (`leakscan ui` as a real subprocess on 127.0.0.1) and triage that
sticks: what scans record, the API and its filters, CSRF and token refusals, keyset pages over
100,000 findings, CSV/JSON/.leakscanignore exports, false positives suppressed and revoked
findings not reported live by later scans, the static HTML report, the store migration."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

from helpers import GHP, HF, OPENAI, Repo, leakscan, token
from uiserver import Ui, csrf_of, finding, request, row_fingerprints

from leakscan.pipeline import mark_revoked
from leakscan.store import connect, transaction
from leakscan.store.db import VERSION
from leakscan.store.findings import record_repo_findings

NO_VERIFY = {"LEAKSCAN_NO_VERIFY": "1"}


def secret_bytes_in(db: Path, secrets: list[str]) -> list[str]:
    """Which of `secrets` appear anywhere in the store's files (the database, its WAL)."""
    blob = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
    return [s for s in secrets if s.encode() in blob]


@pytest.fixture
def local(tmp_path):
    """A repository with three secrets of three providers, one under a path holding HTML."""
    repo = Repo(tmp_path / "app")
    secrets = {"hf": token(HF, "ui-hf"), "gh": token(GHP, "ui-gh"), "oa": token(OPENAI, "ui-oa")}
    repo.commit({"config.py": f"HF_TOKEN = '{secrets['hf']}'\n", "README.md": "# app\n"})
    repo.commit({"ci/<img src=x onerror=alert(1)>.yml": f"token: {secrets['gh']}\n"})
    repo.commit({"=cmd|calc.py": f"OPENAI_API_KEY = '{secrets['oa']}'\n"})
    return repo, secrets


def scanned(repo: Repo, db: Path, *extra) -> list[dict]:
    run = leakscan("scan", repo.path, "--db", db, "-f", "json", *extra, env=NO_VERIFY)
    assert run.code in (0, 1), run.err
    return run.json


@pytest.fixture
def stored(local, tmp_path):
    """The repository scanned into a store: (repo, secrets, store path, provider → fingerprint)."""
    repo, secrets = local
    db = tmp_path / "store.sqlite3"
    return repo, secrets, db, {f["provider"]: f["fingerprint"] for f in scanned(repo, db)}


def test_scan_with_a_store_records_redacted_findings_the_page_lists_once_each(local, tmp_path):
    repo, secrets = local
    db = tmp_path / "store.sqlite3"
    report = scanned(repo, db)
    assert sorted(f["provider"] for f in report) == ["github", "huggingface", "openai"]
    assert secret_bytes_in(db, list(secrets.values())) == []  # hashed and redacted at rest
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT fingerprint, repo, commit_id, source, status, verification FROM findings").fetchall()
        assert {r[0] for r in rows} == {f["fingerprint"] for f in report}
        assert {r[1:] for r in rows} == {(str(repo.path.resolve()), f["commit"], "history", "open", "unverified")
                                          for f in report}  # fmt: skip
        assert c.execute("SELECT DISTINCT origin FROM repo_findings").fetchall() == [("scan",)]

    scanned(repo, db)  # a second scan: the same findings, not new rows
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM findings").fetchone() == (3,)
        assert c.execute("SELECT count(*) FROM finding_checks").fetchone() == (3,)

    with Ui(db) as ui:
        assert ui.printed.startswith("leakscan ui: http://127.0.0.1:")
        page = request(ui.base, "GET", "/")
        assert page.status == 200
        assert sorted(row_fingerprints(page.text)) == sorted(f["fingerprint"] for f in report)
        assert [s for s in secrets.values() if s in page.text] == []
        assert "ci/&lt;img src=x onerror=alert(1)&gt;.yml" in page.text and "<img src=x" not in page.text
        headers = page.headers
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert "<script>" not in page.text and '<script src="/static/ui.js" defer></script>' in page.text
        js = request(ui.base, "GET", "/static/ui.js")
        assert js.status == 200 and js.headers["Content-Type"].startswith("text/javascript")
        assert request(ui.base, "GET", "/static/../server.py").status == 404

        fp = next(f["fingerprint"] for f in report if f["provider"] == "github")
        one = request(ui.base, "GET", f"/findings/{fp}")
        assert one.status == 200 and "&lt;img src=x onerror=alert(1)&gt;" in one.text
        assert secrets["gh"] not in one.text and "Verification history" in one.text
        assert request(ui.base, "GET", "/findings/ffffffffffffffffffffffffffffffff").status == 404


def test_api_filters_status_and_csrf(stored):
    repo, secrets, db, by = stored
    with Ui(db) as ui:
        api = request(ui.base, "GET", "/api/findings").json
        assert api["total"] == 3 and api["next"] is None
        assert {f["fingerprint"] for f in api["findings"]} == set(by.values())
        assert all(f["secret_sha256"] and "secret" not in f for f in api["findings"])
        assert [f["fingerprint"] for f in request(ui.base, "GET", "/api/findings?provider=openai").json["findings"]] == [by["openai"]]
        assert [f["fingerprint"] for f in request(ui.base, "GET", "/api/findings?q=onerror").json["findings"]] == [by["github"]]
        assert request(ui.base, "GET", "/api/findings?provider=nope").json == {"findings": [], "next": None, "total": 0}
        assert request(ui.base, "GET", f"/api/findings?repo={repo.path.resolve()}").json["total"] == 3
        assert request(ui.base, "GET", "/api/findings?after=junk").status == 400

        csrf = csrf_of(request(ui.base, "GET", "/").text)
        url = f"/api/findings/{by['huggingface']}/status"
        assert request(ui.base, "POST", url, {"status": "revoked"}).status == 403  # no token
        assert request(ui.base, "POST", url, {"status": "revoked"}, {"X-CSRF-Token": "0" * 64}).status == 403
        assert request(ui.base, "POST", url, "status=revoked&csrf=" + "0" * 64,
                       {"Content-Type": "application/x-www-form-urlencoded"}).status == 403  # fmt: skip
        evil = request(ui.base, "POST", url, {"status": "revoked"}, {"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
        assert evil.status == 403
        assert request(ui.base, "POST", url, {"status": "gone"}, {"X-CSRF-Token": csrf}).status == 400
        assert request(ui.base, "POST", "/api/findings/" + "f" * 32 + "/status", {"status": "open"},
                       {"X-CSRF-Token": csrf}).status == 404  # fmt: skip
        assert request(ui.base, "GET", "/api/findings?status=open").json["total"] == 3  # nothing changed so far

        ok = request(ui.base, "POST", url, {"status": "revoked"}, {"X-CSRF-Token": csrf})
        assert (ok.status, ok.json) == (200, {"fingerprint": by["huggingface"], "status": "revoked"})
        # a plain form post (no script): saved, then back to the page it came from, never elsewhere
        form = f"status=false-positive&csrf={csrf}&next=%2F%3Fprovider%3Dopenai"
        back = request(ui.base, "POST", f"/api/findings/{by['openai']}/status", form,
                       {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert (back.status, back.headers["Location"]) == (303, "/?provider=openai")
        away = request(ui.base, "POST", f"/api/findings/{by['openai']}/status", f"status=false-positive&csrf={csrf}&next=//evil.example/",
                       {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert (away.status, away.headers["Location"]) == (303, "/")
        got = {f["fingerprint"]: f["status"] for f in request(ui.base, "GET", "/api/findings").json["findings"]}
        assert got == {by["huggingface"]: "revoked", by["openai"]: "false-positive", by["github"]: "open"}
        revoked = request(ui.base, "GET", "/api/findings?status=revoked").json["findings"]
        assert [(f["fingerprint"], f["verification"]) for f in revoked] == [(by["huggingface"], "revoked")]  # not live
        assert request(ui.base, "GET", "/api/findings?verification=revoked").json["total"] == 1

        # notes: a form post with the token; shown escaped on the finding's page
        note = "rotated by <b>ops</b> on Monday"
        posted = request(ui.base, "POST", f"/findings/{by['github']}/notes", f"csrf={csrf}&body=" + note.replace(" ", "+"),
                         {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert (posted.status, posted.headers["Location"]) == (303, f"/findings/{by['github']}#notes")
        assert request(ui.base, "POST", f"/findings/{by['github']}/notes", "body=x",
                       {"Content-Type": "application/x-www-form-urlencoded"}).status == 403  # fmt: skip
        assert "rotated by &lt;b&gt;ops&lt;/b&gt; on Monday" in request(ui.base, "GET", f"/findings/{by['github']}").text

        # a request naming another host (DNS rebinding) is refused on loopback
        assert request(ui.base, "GET", "/", headers={"Host": "evil.example"}).status == 421


def test_triage_sticks_false_positive_suppressed_revoked_not_live(stored):
    repo, secrets, db, by = stored
    with Ui(db) as ui:
        csrf = csrf_of(request(ui.base, "GET", "/").text)
        for provider, status in (("github", "false-positive"), ("huggingface", "revoked")):
            assert request(ui.base, "POST", f"/api/findings/{by[provider]}/status", {"status": status},
                           {"X-CSRF-Token": csrf}).status == 200  # fmt: skip
        ignore = request(ui.base, "GET", "/export/leakscanignore")
        assert ignore.status == 200 and "attachment" in ignore.headers["Content-Disposition"]

    again = leakscan("scan", repo.path, "--db", db, "-f", "json", env=NO_VERIFY)
    assert again.code == 1 and "1 suppressed" in again.err
    got = {f["provider"]: f["verification"] for f in again.json}
    assert got == {"huggingface": "revoked", "openai": "unverified"}  # the false positive gone, the revoked not live

    # the export is an ignore file: one entry, its comment on the same line whatever the path held
    lines = [l for l in ignore.text.splitlines() if not l.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith(by["github"] + "  # false positive: github-pat ")
    (db.parent / "ignore").write_text(ignore.text)
    elsewhere = leakscan("scan", repo.path, "--no-cache", "--ignore-file", db.parent / "ignore", "-f", "json", env=NO_VERIFY)
    assert sorted(f["provider"] for f in elsewhere.json) == ["huggingface", "openai"]

    # a provider that still accepts a key marked revoked is said so, and it is not reported live
    f = finding(secrets["hf"], verification="verified")
    mark_revoked([f], {f.fingerprint})
    assert (f.verification, f.verification_reason) == ("revoked", "marked revoked in triage, yet the provider still accepted it")


def test_token_required_off_loopback(tmp_path):
    db = tmp_path / "store.sqlite3"
    connect(db).close()
    refused = leakscan("ui", "--db", db, "--host", "0.0.0.0", "--port", "0", env={"LEAKSCAN_UI_TOKEN": ""})
    assert (refused.code, refused.err) == (2, "leakscan: error: --host 0.0.0.0 is not loopback: set LEAKSCAN_UI_TOKEN "
                                              "to the token people must present\n")  # fmt: skip
    missing = leakscan("ui", "--db", tmp_path / "none.sqlite3", "--port", "0")
    assert (missing.code, missing.err) == (2, f"leakscan: error: no store at {tmp_path / 'none.sqlite3'}\n")

    secret = token("{alpha:32}", "ui-token")
    with Ui(db, host="0.0.0.0", env={"LEAKSCAN_UI_TOKEN": secret}) as ui:
        assert ui.printed.endswith("(token required)\n")
        assert request(ui.base, "GET", "/").status == 401
        assert request(ui.base, "GET", "/api/findings").status == 401
        assert request(ui.base, "GET", "/", headers={"Authorization": "Bearer " + secret[:-1] + "x"}).status == 401
        assert request(ui.base, "GET", "/?token=wrong").status == 401
        assert request(ui.base, "GET", "/api/findings", headers={"Authorization": f"Bearer {secret}"}).json["total"] == 0
        once = request(ui.base, "GET", f"/?provider=x&token={secret}")
        assert once.status == 303 and once.headers["Location"] == "/?provider=x"  # the token leaves the address
        cookie = once.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and secret not in cookie
        session = cookie.split(";")[0]
        assert request(ui.base, "GET", "/", headers={"Cookie": session}).status == 200
        assert request(ui.base, "GET", "/", headers={"Cookie": "leakscan_ui=" + "0" * 64}).status == 401


def fill(db: Path, n: int) -> list[tuple[float, str]]:
    """`n` findings straight into the store's tables (a sweep's worth without the sweep): 1,000
    a day over n/1000 days, four providers. Returns (first_seen, fingerprint), newest first."""
    conn = connect(db)
    providers = ["huggingface", "github", "openai", "aws"]
    base = 1.7e9
    rows, places = [], []
    for i in range(n):
        fp = f"{i:032x}"
        seen = base + (i // 1000) * 86400 + (i % 1000) * 60
        rows.append((fp, f"{providers[i % 4]}-token", providers[i % 4], "hf_ab…yz", f"{i:064x}", f"org/repo-{i % 97}",
                     f"src/file-{i}.py", None, f"{i:040x}", "history", None, "unverified", seen, seen))  # fmt: skip
        places.append((f"org/repo-{i % 97}", fp, f"{i:040x}", f"{providers[i % 4]}-token", providers[i % 4], "hf_ab…yz",
                       f"{i:064x}", f"src/file-{i}.py", 1, "history", None, None, "unverified", "fill", seen, seen))  # fmt: skip
    with transaction(conn):
        conn.executemany("INSERT INTO findings (fingerprint, detector, provider, redacted, secret_sha256, repo, path, "
                         "container, commit_id, source, url, verification, first_seen, last_seen) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)  # fmt: skip
        conn.executemany("INSERT INTO repo_findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", places)
    conn.close()
    return sorted(((r[12], r[0]) for r in rows), reverse=True)


def test_pages_over_a_hundred_thousand_findings(tmp_path):
    db = tmp_path / "store.sqlite3"
    n = 100_000
    order = fill(db, n)
    with Ui(db) as ui:
        started = time.monotonic()
        first = request(ui.base, "GET", "/")
        took = time.monotonic() - started
        assert first.status == 200 and took < 10  # not a scan of the whole table per row (loose: shared CI cores)
        assert row_fingerprints(first.text) == [fp for _, fp in order[:100]]
        assert '<strong id="total">100000</strong>' in first.text
        nxt = re.search(r'<a rel="next" href="/\?after=([^"]+)">', first.text).group(1)
        second = request(ui.base, "GET", f"/?after={nxt}")
        assert row_fingerprints(second.text) == [fp for _, fp in order[100:200]]
        big = request(ui.base, "GET", "/?limit=1000&provider=aws").text
        assert row_fingerprints(big) == [fp for _, fp in order if int(fp, 16) % 4 == 3][:1000]
        assert re.search(r'<a rel="next" href="/\?provider=aws&amp;after=[^"]+&amp;limit=1000">next 1000', big)

        # the whole table through the API, 1,000 at a time: each finding once, newest first
        seen: list[str] = []
        after = ""
        while True:
            got = request(ui.base, "GET", f"/api/findings?limit=1000{after}").json
            seen += [f["fingerprint"] for f in got["findings"]]
            if got["next"] is None:
                break
            after = "&after=" + got["next"]
        assert seen == [fp for _, fp in order]

        deep = request(ui.base, "GET", f"/api/findings?provider=aws&limit=5&after={order[90_001][0]!r}:{order[90_001][1]}").json
        want = [fp for ts, fp in order[90_002:] if int(fp, 16) % 4 == 3][:5]
        assert [f["fingerprint"] for f in deep["findings"]] == want and deep["total"] == n // 4
        counted = request(ui.base, "GET", "/?provider=github")
        assert '<strong id="total">25000</strong>' in counted.text
        assert set(row_fingerprints(counted.text)) <= {fp for _, fp in order if int(fp, 16) % 4 == 1}


def test_csv_and_json_exports_follow_the_filter(stored):
    repo, secrets, db, by = stored
    with Ui(db) as ui:
        every = request(ui.base, "GET", "/export.json")
        assert every.status == 200 and "attachment" in every.headers["Content-Disposition"]
        items = every.json
        assert sorted(i["fingerprint"] for i in items) == sorted(by.values())
        assert items == request(ui.base, "GET", "/api/findings").json["findings"]
        only = request(ui.base, "GET", "/export.json?provider=openai").json
        assert [i["path"] for i in only] == ["=cmd|calc.py"]

        table = request(ui.base, "GET", "/export.csv?provider=openai")
        assert table.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(table.text)))
        assert len(rows) == 1 and rows[0]["fingerprint"] == only[0]["fingerprint"]
        assert rows[0]["path"] == "'=cmd|calc.py"  # a spreadsheet does not run it
        assert rows[0]["redacted"] == only[0]["redacted"] and secrets["oa"] not in table.text
        assert len(list(csv.DictReader(io.StringIO(request(ui.base, "GET", "/export.csv").text)))) == 3


def test_static_html_report_is_redacted_and_self_contained(local, tmp_path):
    repo, secrets = local
    out = tmp_path / "report.html"
    run = leakscan("scan", repo.path, "--no-cache", "-f", "html", "-o", out, env=NO_VERIFY)
    assert run.code == 1 and "3 findings" in run.err
    html = out.read_text()
    assert out.stat().st_mode & 0o777 == 0o600
    assert [s for s in secrets.values() if s in html] == []
    assert len(re.findall(r'<tr data-fingerprint="[0-9a-f]{32}">', html)) == 3
    assert "ci/&lt;img src=x onerror=alert(1)&gt;.yml" in html and "<img" not in html
    assert "<script" not in html and "<link" not in html  # nothing to fetch, nothing to run
    assert re.search(r"style-src 'sha256-[A-Za-z0-9+/=]+'", html)
    assert "3 findings in 3 files" in html
    # stdout too, --redact or not
    assert secrets["hf"] not in leakscan("scan", repo.path, "--no-cache", "-f", "html", env=NO_VERIFY).out


def test_a_version_2_store_is_migrated_and_its_findings_listed(tmp_path):
    db = tmp_path / "old.sqlite3"
    conn = connect(db)
    f1, f2 = finding(token(HF, "m1")), finding(token(GHP, "m2"), detector="github-pat", provider="github", path="b.py")
    with transaction(conn):
        record_repo_findings(conn, "org/a", [f1, f2], "pass 1", 1_700_000_000.0)
        record_repo_findings(conn, "org/b", [f1], "pass 2", 1_700_100_000.0)
        # back to what version 2 had: no triage tables, its places only
        for table in ("findings", "finding_checks", "finding_notes"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP INDEX repo_findings_fingerprint")
        conn.execute("PRAGMA user_version=2")
        conn.execute("UPDATE meta SET value='2' WHERE key='schema'")
    conn.close()
    conn = connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (VERSION,) == (3,)
        got = conn.execute("SELECT fingerprint, repo, status, first_seen, last_seen FROM findings ORDER BY repo, fingerprint").fetchall()
        assert sorted(got) == sorted([(f1.fingerprint, "org/a", "open", 1_700_000_000.0, 1_700_100_000.0),
                                      (f2.fingerprint, "org/a", "open", 1_700_000_000.0, 1_700_000_000.0)])  # fmt: skip
    finally:
        conn.close()


def test_repo_with_a_store_records_hub_findings(tmp_path):
    from hubstand import HubStandIn

    secret = token(HF, "repo-db")
    with HubStandIn(root=tmp_path / "hub") as hub:
        hub.add_repo("model", "org/m")
        sha = hub.commit("model", "org/m", {"a b/cfg.py": f"HF_TOKEN = '{secret}'\n"})
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "LEAKSCAN_HUB_CACHE": str(tmp_path / "m"),
               "HF_TOKEN": "", **NO_VERIFY}  # fmt: skip
        db = tmp_path / "store.sqlite3"
        run = leakscan("repo", "org/m", "--db", db, "--no-discussions", "-f", "json", env=env)
        assert run.code == 1, run.err
        base = hub.url
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT repo, path, commit_id, url FROM findings").fetchall()
    assert rows == [("org/m", "a b/cfg.py", sha, f"{base}/org/m/blob/{sha}/a%20b/cfg.py")]
    assert secret_bytes_in(db, [secret]) == []


def test_a_finding_page_shows_places_verification_history_and_deliveries(tmp_path):
    from leakscan.revoke.outbox import Outbox

    db = tmp_path / "store.sqlite3"
    secret = token(HF, "detail")
    conn = connect(db)
    with transaction(conn):
        record_repo_findings(conn, "org/a", [finding(secret, url="https://hub.example/org/a/blob/c/config.py")],
                             "pass 1", 1_700_000_000.0)  # fmt: skip
        live = finding(secret, commit="d" * 40, verification="verified")
        live.verification_reason = f"echoed {secret} back"
        live.identity = {"user": "ada"}
        record_repo_findings(conn, "org/b", [live], "job 7", 1_700_086_400.0)
    conn.close()
    with Outbox(db) as outbox:  # a delivery to a receiver whose URL path holds a token of its own
        outbox.enqueue([live], [{"type": "webhook", "url": "https://revoke.example/hooks/t0ps3cr3tpath"}], "org/b")

    with Ui(db) as ui:
        page = request(ui.base, "GET", f"/findings/{live.fingerprint}").text
        assert secret not in page and "t0ps3cr3tpath" not in page
        places = re.findall(r"<tr><td>(org/[ab])</td>", page)
        assert places == ["org/a", "org/b"]
        assert '<a href="https://hub.example/org/a/blob/c/config.py" rel="noopener noreferrer" target="_blank">config.py</a>' in page
        assert re.findall(r'<td><span class="v v-(\w+)">', page) == ["unverified", "verified"]
        assert "echoed [secret] back" in page and "user: ada" in page
        assert "webhook: https://revoke.example/…" in page and "<td>pending</td>" in page
        listed = request(ui.base, "GET", "/api/findings").json["findings"]
        assert [(f["repo"], f["repos"], f["verification"], f["identity"]) for f in listed] == [("org/a", 2, "verified", {"user": "ada"})]
        assert request(ui.base, "GET", "/").text.count("(+1)") == 1


def test_the_hook_records_into_its_store_and_honours_its_triage(tmp_path):
    from test_hook import ID, git

    srv, wt = tmp_path / "srv.git", tmp_path / "wt"
    db = tmp_path / "store.sqlite3"
    git("init", "-q", "--bare", "-b", "main", str(srv), cwd=tmp_path)
    assert leakscan("hook", "install", srv).code == 0
    (srv / "leakscan-hook.toml").write_text(f"store = {json.dumps(str(db))}\n")
    git("init", "-q", "-b", "main", str(wt), cwd=tmp_path)
    secret = token(HF, "hook-store")
    (wt / "config.py").write_text(f"HF_TOKEN = '{secret}'\n")
    git("add", ".", cwd=wt)
    git(*ID, "commit", "-q", "-m", "add", cwd=wt)
    assert git("push", str(srv), "main", cwd=wt, check=False).returncode != 0
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT f.fingerprint, f.repo, f.path, p.origin FROM findings f JOIN repo_findings p USING (fingerprint)").fetchall()
    assert [r[1:] for r in rows] == [(str(srv.resolve()), "config.py", "hook")]
    assert secret_bytes_in(db, [secret]) == []

    with Ui(db) as ui:
        csrf = csrf_of(request(ui.base, "GET", "/").text)
        assert request(ui.base, "POST", f"/api/findings/{rows[0][0]}/status", {"status": "false-positive"},
                       {"X-CSRF-Token": csrf}).status == 200  # fmt: skip
    assert git("push", "-q", str(srv), "main", cwd=wt, check=False).returncode == 0  # triaged: it goes through
