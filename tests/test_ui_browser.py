"""The findings page in a real browser: the OS's headless Chromium (/usr/bin/chromium, Debian's
`chromium`, which `make test` installs), driven by Playwright, against `leakscan ui` over a store
that a real sweep of the Hub stand-in filled."""

from __future__ import annotations

import json
import os
import sqlite3
from urllib.parse import quote

import pytest

from helpers import GHP, HF, OPENAI, leakscan, token
from hubstand import HubStandIn
from uiserver import Ui

from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.dialogs = []  # any alert() a path managed to run

    def dialog(d):
        page.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    yield page
    context.close()


@pytest.fixture
def swept(tmp_path):
    """A sweep over five stand-in repositories into a store: (store, hub URL, the JSONL findings)."""
    with HubStandIn(root=tmp_path / "hub", page_size=2) as hub:
        hub.add_repo("model", "org/alpha")
        hub.commit("model", "org/alpha", {"config.py": f"HF_TOKEN = '{token(HF, 'b-alpha')}'\n"})
        hub.add_repo("model", "org/beta")  # only in history
        hub.commit("model", "org/beta", {"train.py": f"gh = '{token(GHP, 'b-beta')}'\n"})
        hub.commit("model", "org/beta", {"train.py": "gh = os.environ['GH']\n"}, message="remove")
        hub.add_repo("dataset", "org/gamma")
        hub.commit("dataset", "org/gamma", {f"notes/{HOSTILE}.md": f"key: {token(OPENAI, 'b-gamma')}\n"})
        hub.add_repo("space", "org/delta")
        hub.commit("space", "org/delta", {"app.py": f"A = '{token(HF, 'b-delta')}'\nB = '{token(GHP, 'b-delta')}'\n"})
        hub.add_repo("model", "org/clean")
        hub.commit("model", "org/clean", {"README.md": "# nothing here\n"})
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
               "LEAKSCAN_HUB_CACHE": str(tmp_path / "mirrors"), "HF_TOKEN": "", "LEAKSCAN_NO_VERIFY": "1"}  # fmt: skip
        db, out = tmp_path / "store.sqlite3", tmp_path / "found.jsonl"
        run = leakscan("sweep", "run", "--db", db, "-o", out, "--no-verify", "--workers", "2", "--backoff", "0",
                       "--no-discussions", env=env)  # fmt: skip
        assert run.code == 1, run.err
        found = [json.loads(l) for l in out.read_text().splitlines()]
        assert sorted(f["repo"] for f in found) == ["datasets/org/gamma", "org/alpha", "org/beta",
                                                      "spaces/org/delta", "spaces/org/delta"]
        yield db, hub, env, found


def fingerprints(page) -> list[str]:
    return [r.get_attribute("data-fingerprint") for r in page.locator("tr[data-fingerprint]").all()]


def test_a_swept_store_in_the_browser(swept, page, tmp_path):
    db, hub, env, found = swept
    secrets = [f["secret"] for f in found]
    everything = sorted(f["fingerprint"] for f in found)
    assert len(set(everything)) == len(everything) == 5

    ui = Ui(db)
    try:
        page.goto(ui.url)
        assert sorted(fingerprints(page)) == everything  # each finding once
        html = page.content()
        assert [s for s in secrets if s in html] == []
        expect(page.locator("button.save").first).to_be_hidden()  # ui.js ran under the CSP

        # the hostile path is text: visible as written, no element made of it, nothing ran
        hostile = next(f for f in found if f["repo"] == "datasets/org/gamma")
        cell = page.locator(f'tr[data-fingerprint="{hostile["fingerprint"]}"] td.path')
        expect(cell).to_contain_text(f"notes/{HOSTILE}.md")
        expect(page.get_by_text(HOSTILE)).to_be_visible()
        assert page.locator("tbody img").count() == 0
        link = cell.locator("a").get_attribute("href")
        assert link == hostile["url"] == f"{hub.url}/datasets/org/gamma/blob/{hostile['commit']}/{quote(hostile['path'])}"

        # the provider filter, set by its own control, narrows to exactly that provider's findings
        page.select_option('form.filters select[name="provider"]', "github")
        page.wait_for_url("**/?provider=github")
        github = sorted(f["fingerprint"] for f in found if f["provider"] == "github")
        assert sorted(fingerprints(page)) == github
        expect(page.locator("#total")).to_have_text("2")

        # a status change is saved at once, and is still there after a reload and a restart
        beta = next(f["fingerprint"] for f in found if f["repo"] == "org/beta")
        select = page.locator(f'tr[data-fingerprint="{beta}"] select[name="status"]')
        select.select_option("false-positive")
        expect(page.locator(f'tr[data-fingerprint="{beta}"] .saved')).to_have_text("saved")
        page.reload()
        expect(page.locator(f'tr[data-fingerprint="{beta}"] select[name="status"]')).to_have_value("false-positive")
    finally:
        assert ui.stop() == 0
    with Ui(db) as again:
        page.goto(again.url)
        assert sorted(fingerprints(page)) == everything
        expect(page.locator(f'tr[data-fingerprint="{beta}"] select[name="status"]')).to_have_value("false-positive")
        for fp in set(everything) - {beta}:
            expect(page.locator(f'tr[data-fingerprint="{fp}"] select[name="status"]')).to_have_value("open")
        assert page.dialogs == []

    # the false positive stays suppressed when the sweep scans its repository again
    hub.commit("model", "org/beta", {"README.md": "# beta\n"})
    run = leakscan("sweep", "run", "--db", db, "-o", tmp_path / "again.jsonl", "--no-verify", "--backoff", "0",
                   "--no-discussions", env=env)  # fmt: skip
    assert run.code == 0, run.err
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT repo, findings FROM sweep_scans WHERE pass_id=2").fetchall() == [("org/beta", 0)]


def test_without_script_forms_still_triage_and_notes_are_text(swept, browser):
    db, hub, env, found = swept
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    fp = found[0]["fingerprint"]
    try:
        with Ui(db) as ui:
            page.goto(ui.url + "?provider=" + found[0]["provider"])
            row = page.locator(f'tr[data-fingerprint="{fp}"]')
            row.locator('select[name="status"]').select_option("accepted-risk")
            row.locator("button.save").click()  # a plain form post, then back to the same filter
            page.wait_for_url(f"**/?provider={found[0]['provider']}")
            expect(page.locator(f'tr[data-fingerprint="{fp}"] select[name="status"]')).to_have_value("accepted-risk")

            page.goto(f"{ui.url}findings/{fp}")
            page.fill('textarea[name="body"]', f"checked by ops {HOSTILE}")
            page.click("form.note-form button")
            page.wait_for_url(f"**/findings/{fp}#notes")
            expect(page.locator(".note .body")).to_have_text(f"checked by ops {HOSTILE}")
            assert page.locator("main img").count() == 0
            expect(page.locator("table.places td.path")).to_contain_text(found[0]["path"])
    finally:
        context.close()
