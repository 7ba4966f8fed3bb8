"""The linkage report in a real browser: Debian's chromium, headless, driven by playwright.

For each language the page must load with no console error or warning and no page error, request
nothing but its own file, and draw every chart (an SVG of nonzero size with marks in it).  A
full-page screenshot of each is kept as a test artefact: under ``$AIDLINK_ARTEFACTS`` when set, else
``tests/artefacts/`` (git-ignored).

The browser is the system's (``scripts/setup-browser.sh`` installs it); playwright never downloads
one.  It runs with a fresh profile and every background service off, so that any request seen is
the page's own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hub.report import LANGS, gather_report, write_report
from tests.report_support import report_run

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("AIDLINK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--no-default-browser-check"]


def artefact_dir() -> Path:
    d = Path(os.environ.get("AIDLINK_ARTEFACTS") or ROOT / "tests" / "artefacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def report_pages(tmp_path_factory):
    run = report_run()
    doc = gather_report(run.db, run.run_id)
    out = tmp_path_factory.mktemp("report")
    paths = write_report(doc, out, langs=LANGS)
    return doc, {lang: paths[f"html_{lang}"] for lang in LANGS}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run scripts/setup-browser.sh (the report test needs chromium)"
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000}, service_workers="block")
        try:
            yield context
        finally:
            context.close()


@pytest.mark.parametrize("lang", LANGS)
def test_report_page_loads_offline_and_draws_every_chart(browser, report_pages, lang):
    doc, pages = report_pages
    html = pages[lang]
    page = browser.new_page()
    requests, console, errors = [], [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(html.resolve().as_uri(), wait_until="load")
        page.wait_for_selector("body[data-charts-done]", timeout=60_000)

        own = html.resolve().as_uri()
        foreign = [u for u in requests if u != own and not u.startswith(("data:", "about:", "blob:"))]
        assert not foreign, foreign
        assert own in requests
        assert not errors, errors
        noisy = [(t, m) for t, m in console if t in ("error", "warning", "assert")]
        assert not noisy, noisy

        charts = page.query_selector_all("div.chart[data-chart]")
        assert sorted(c.get_attribute("data-chart") for c in charts) == sorted(doc["charts"])
        for c in charts:
            name = c.get_attribute("data-chart")
            assert c.get_attribute("data-error") is None, (name, c.inner_text()[:300])
            assert c.get_attribute("data-rendered") == "1", name
            svg = c.query_selector("svg")
            assert svg is not None, name
            box = svg.bounding_box()
            assert box and box["width"] > 100 and box["height"] > 100, (name, box)
            marks = c.eval_on_selector_all("svg path, svg rect, svg line", "els => els.length")
            assert marks > 10, (name, marks)
        assert page.title().endswith(doc["run"]["run_id"])

        shot = artefact_dir() / f"report-{lang}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 50_000
        shutil.copy(html, artefact_dir() / f"report-{lang}.html")
    finally:
        page.close()
