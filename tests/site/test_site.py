"""The rendered book, read in a real browser (headless Chromium).

Runs after `make book` (see `.ci/run` and `make check-site`); skipped unless REPROLIB_SITE_TEST=1.
Serves `_build/html` on localhost and opens every page: each loads with no failed request, every
<img> has a non-zero natural size, and the scoreboard table has a row for every study whose
notebook is in the book. Saves a screenshot of the front page to `_build/site-check/report.png`.
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
SITE = REPO / "_build" / "html"
OUT = REPO / "_build" / "site-check"
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


def test_scoreboard_has_a_row_per_study(server, browser):
    from reprolib.report import STUDY_TITLES

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/report.html", wait_until="networkidle")
    assert page.locator("table#scoreboard").count() == 1, "scoreboard table missing"
    studies = page.eval_on_selector_all("table#scoreboard tbody tr td:first-child", "els => els.map(e => e.textContent)")
    in_book = [p.stem for p in (SITE / "notebooks").glob("*.html")] if (SITE / "notebooks").is_dir() else []
    missing = [STUDY_TITLES.get(s, s) for s in in_book if STUDY_TITLES.get(s, s) not in set(studies)]
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / "report.png"), full_page=True)
    print(f"scoreboard rows: {len(studies)}; studies: {sorted(set(studies))}")
    assert not missing, f"studies in the book without a scoreboard row: {missing}"
