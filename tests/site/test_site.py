"""The rendered book, read in a real browser (headless Chromium).

Runs after `make book` (see `.ci/run` and `make check-site`); skipped unless REPROLIB_SITE_TEST=1.
Serves `_build/html` (or `$REPROLIB_SITE_DIR`) on localhost and opens every page: each loads with no
failed request, every <img> has a non-zero natural size, the front page opens with the claims table
(a row per claim of `reprolib.report.CLAIMS`), and the scoreboard page has an interactive (offline)
table for every study whose notebook is in the book. Saves screenshots to `_build/site-check/`.
"""
import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("REPROLIB_SITE_DIR", REPO / "_build" / "html"))
OUT = SITE.parent / "site-check"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"]

pytestmark = pytest.mark.skipif(os.environ.get("REPROLIB_SITE_TEST") != "1",
                                reason="site test runs after `make book` (REPROLIB_SITE_TEST=1)")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").is_file():
        pytest.fail(f"{SITE}/index.html not found: run `make book` first")
    handler = functools.partial(_Quiet, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Debian's chromium is not installed (the CI set-up installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def _pages():
    return sorted(p.relative_to(SITE).as_posix() for p in SITE.glob("**/*.html")
                  if p.name not in ("genindex.html", "search.html") and "_static" not in p.parts
                  and "_sources" not in p.parts)


def test_every_page_loads_cleanly(server, browser):
    OUT.mkdir(parents=True, exist_ok=True)
    summary = {}
    problems = []
    for rel in _pages():
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        failed = []
        page.on("requestfailed", lambda r, f=failed: f.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r, f=failed: f.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
        page.goto(f"{server}/{rel}", wait_until="networkidle")
        page.wait_for_timeout(300)
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.currentSrc || e.src, e.complete, e.naturalWidth, e.naturalHeight])")
        broken = [src for src, complete, w, h in images if not complete or w == 0 or h == 0]
        external = [u for u in failed if not u.startswith(server)]
        if failed:
            problems.append(f"{rel}: failed requests {failed}")
        if broken:
            problems.append(f"{rel}: images with no natural size {broken}")
        summary[rel] = {"images": len(images), "failed_requests": len(failed), "external": len(external)}
        page.close()
    (OUT / "pages.json").write_text(json.dumps(summary, indent=1))
    print(f"visited {len(summary)} pages, {sum(v['images'] for v in summary.values())} images")
    for rel, v in summary.items():
        print(f"  {rel}: {v['images']} images, {v['failed_requests']} failed requests")
    assert not problems, "\n".join(problems)


def test_front_page_opens_with_the_claims_table(server, browser):
    from reprolib.report import CLAIMS, VERDICTS

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/report.html", wait_until="networkidle")
    assert page.locator("table#claims").count() == 1, "claims table missing from the front page"
    rows = page.eval_on_selector_all(
        "table#claims tbody tr",
        "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => [td.textContent.trim(), "
        "td.querySelector('a') ? td.querySelector('a').getAttribute('href') : null]))")
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / "report.png"), full_page=True)
    print("claims table:", *[" | ".join(text for text, _ in row) for row in rows], sep="\n  ")
    assert [row[0][0] for row in rows] == [text for _, text in CLAIMS.values()], "one row per claim, in order"
    for row, (study, _) in zip(rows, CLAIMS.values()):
        for verdict, _ in row[1:3]:
            assert verdict.startswith((*VERDICTS, "not run")), f"not a verdict: {verdict!r}"
        assert row[-1][1] == f"notebooks/{study}.html", f"evidence link of {row[0][0]!r}: {row[-1][1]}"
    top = page.locator("table#claims").bounding_box()["y"]
    assert top < 1000, f"the claims table starts {top:.0f} px down: not on the first screen"


def test_scoreboard_page_has_a_table_per_study(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/scoreboard.html", wait_until="networkidle")
    page.wait_for_timeout(500)
    tables = page.eval_on_selector_all(
        "table[id^='scoreboard-']", "els => els.map(e => [e.id, e.classList.contains('dataTable'), "
        "e.querySelectorAll('tbody tr').length])")
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / "scoreboard.png"), full_page=True)
    print(f"scoreboard tables (id, interactive, rows): {tables}")
    assert tables, "the scoreboard page has no study table"
    not_interactive = [t for t, interactive, _ in tables if not interactive]
    assert not not_interactive, f"tables not made interactive (offline itables bundle not loaded?): {not_interactive}"
    in_book = [p.stem for p in (SITE / "notebooks").glob("*.html")] if (SITE / "notebooks").is_dir() else []
    rows = {t.removeprefix("scoreboard-"): n for t, _, n in tables}
    missing = [s for s in in_book if not rows.get(s)]
    assert not missing, f"studies in the book without scoreboard rows: {missing}"
