"""Open every page of the built book in a real (headless) Chromium and fail on anything broken.

Run after `make book` (the Makefile's `test` target does both): `pytest -q tests/browser`.

The built book (_build/html) is served by http.server on 127.0.0.1 (a free port, in a thread) and each
page is loaded by playwright's sync API driving the system's Chromium (Debian's `chromium` package;
playwright's own browser download is not used). A page fails on:

- a console message of type error, or an uncaught JavaScript exception;
- a failed request, or an HTTP status >= 400, for a request to the local server;
- any request to another origin: the built book must work offline;
- an <img> that did not load (naturalWidth == 0);
- a MathJax error (a TeX formula that did not typeset);
- a link inside the site whose target file is missing from _build/html, or whose #fragment is not an
  id of the target page;
- a notebook cell output that shows an error: stderr, a traceback, red ANSI text;
- a result table (`critkl.plots.show_table`, class critkl-table) wider than its cell output's box, at 1280 px.

A full-page screenshot of each page goes to _build/screenshots/<page>.png, for humans to look at.
"""

from __future__ import annotations

import functools
import html.parser
import os
import re
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "_build"
# $CRITKL_BOOK_HTML checks another built book (e.g. a copy with planted faults, to test this test).
HTML = Path(os.environ.get("CRITKL_BOOK_HTML") or BUILD / "html").resolve()
SCREENSHOTS = BUILD / "screenshots"

# Sphinx's own pages and folders, not the book's.
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "reports"}
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a small /dev/shm
]

# A notebook cell output that shows an error (myst-nb's classes).
ERROR_OUTPUT_JS = """() => {
  const found = [];
  const add = (el, why) => found.push(why + ': ' + el.innerText.trim().slice(0, 300));
  document.querySelectorAll('.cell_output .output.stderr, .output.stderr').forEach(el => add(el, 'stderr output'));
  document.querySelectorAll('.output.traceback').forEach(el => add(el, 'traceback output'));
  document.querySelectorAll('div.cell_output .ansi-red-fg').forEach(el => add(el, 'red ANSI text'));
  document.querySelectorAll('.cell_output').forEach(el => {
    if (el.innerText.includes('Traceback (most recent call last)')) add(el, 'traceback text');
  });
  return found;
}"""

# Load every image (lazy ones too), then list those that did not load.
BROKEN_IMAGES_JS = """async () => {
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(img => { img.loading = 'eager'; return img.decode().catch(() => null); }));
  return imgs.filter(img => !img.complete || img.naturalWidth === 0)
             .map(img => img.currentSrc || img.src || img.outerHTML.slice(0, 200));
}"""

# Result tables (critkl.plots.show_table) wrap their cells so that they fit their output box: list those that do not.
WIDE_TABLES_JS = """() => {
  const room = t => (t.closest('.cell_output') || t.parentElement).clientWidth;
  return Array.from(document.querySelectorAll('table.critkl-table'))
              .filter(t => t.getBoundingClientRect().width > room(t) + 1)
              .map(t => Math.round(t.getBoundingClientRect().width) + ' px in ' + room(t) + ' px: '
                        + (t.querySelector('thead') || t).innerText.trim().replace(/\\s+/g, ' ').slice(0, 120));
}"""

# Wait for MathJax (when the page has it) to typeset, then list the formulas it could not.
MATHJAX_ERRORS_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  return Array.from(document.querySelectorAll('mjx-merror, .MathJax_Error'))
              .map(el => (el.getAttribute('data-mjx-error') || el.textContent || '').slice(0, 200));
}"""

LINKS_JS = """() => Array.from(document.querySelectorAll('a[href]')).map(a => [a.getAttribute('href'), a.href])"""


def _pages() -> list[str]:
    """The book's pages, as paths relative to _build/html (posix)."""
    if not HTML.is_dir():
        return []
    pages = []
    for path in sorted(HTML.rglob("*.html")):
        rel = path.relative_to(HTML)
        if SKIP_DIRS & set(rel.parts[:-1]) or rel.as_posix() in SKIP_PAGES:
            continue
        pages.append(rel.as_posix())
    return pages


PAGES = _pages()
MISSING = "<no built book>"


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and (name == "id" or (name == "name" and tag == "a")):
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def _ids(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def _redirect(path: Path) -> str | None:
    """The target of a `<meta http-equiv="Refresh" content="0; url=...">` page (the book's index.html)."""
    m = re.search(r"""<meta[^>]*http-equiv=["']?refresh["']?[^>]*content=["'][^"']*url=([^"'>]+)""",
                  path.read_text(encoding="utf-8", errors="replace"), re.IGNORECASE)
    return m.group(1).strip() if m else None


def _target_file(url_path: str) -> Path:
    rel = unquote(url_path).lstrip("/")
    target = HTML / rel
    if rel == "" or rel.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def do_GET(self):
        # Chromium asks for /favicon.ico on its own, at a time of its choosing; the book has none (nor
        # needs one), so answer "no content" rather than a 404 that would fail a page at random.
        if urlsplit(self.path).path == "/favicon.ico" and not (HTML / "favicon.ico").is_file():
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        pytest.fail("no Chromium found: install it (Debian: `apt-get install chromium`; .ci/run does) "
                    "or point $CHROMIUM at one", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _check_links(links: list[list[str]], origin: str) -> list[str]:
    problems = []
    for raw, absolute in links:
        parts = urlsplit(absolute)
        if f"{parts.scheme}://{parts.netloc}" != origin:
            continue  # another site (not fetched by the browser, so allowed), mailto:, javascript:, ...
        target = _target_file(parts.path)
        if not target.is_file():
            problems.append(f"broken link {raw!r}: {target.relative_to(HTML).as_posix()} is not in _build/html")
            continue
        fragment = unquote(parts.fragment)
        if fragment and fragment != "top" and target.suffix == ".html" and fragment not in _ids(target):
            problems.append(f"broken link {raw!r}: no id {fragment!r} in {target.relative_to(HTML).as_posix()}")
    return problems


@pytest.mark.parametrize("page_rel", PAGES or [MISSING])
def test_page(page_rel, request):
    if page_rel == MISSING:
        pytest.fail(f"no built book: {HTML} has no pages. Run `make book` first "
                    "(`make test` builds it before running tests/browser).", pytrace=False)
    origin = request.getfixturevalue("server")
    browser = request.getfixturevalue("browser")

    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def route(r):
        parts = urlsplit(r.request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and f"{parts.scheme}://{parts.netloc}" != origin:
            problems.append(f"request to another origin (the book must work offline): {r.request.url}")
            r.abort()
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()

    def is_local(url: str) -> bool:
        return url.startswith(origin + "/") or url == origin

    page.on("console", lambda m: m.type == "error" and problems.append(
        f"console error: {m.text} (at {m.location.get('url', '')}:{m.location.get('lineNumber', '')})"))
    page.on("pageerror", lambda e: problems.append(f"uncaught JavaScript exception: {e}"))
    page.on("requestfailed", lambda r: is_local(r.url) and problems.append(
        f"request failed: {r.url}: {r.failure}"))
    page.on("response", lambda r: is_local(r.url) and r.status >= 400 and problems.append(
        f"HTTP {r.status}: {r.url}"))

    try:
        url = urljoin(origin + "/", page_rel)
        redirect = _redirect(HTML / page_rel)
        if redirect is not None:
            problems += _check_links([[redirect, urljoin(url, redirect)]], origin)
        page.goto(url, wait_until="load", timeout=30_000)
        if redirect is not None:  # check the page it leads to, once the browser is there
            page.wait_for_url(urljoin(url, redirect), wait_until="load", timeout=30_000)
        try:
            page.wait_for_load_state("networkidle", timeout=10_000)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            problems.append(f"the page did not settle (network still busy after 10 s): {e}")
        problems += [f"MathJax error: {m}" for m in page.evaluate(MATHJAX_ERRORS_JS)]
        problems += [f"image did not load: {src}" for src in page.evaluate(BROKEN_IMAGES_JS)]
        problems += _check_links(page.evaluate(LINKS_JS), origin)
        problems += [f"cell output shows an error ({m})" for m in page.evaluate(ERROR_OUTPUT_JS)]
        problems += [f"result table wider than its output box: {m}" for m in page.evaluate(WIDE_TABLES_JS)]
        shot = SCREENSHOTS / re.sub(r"\.html$", ".png", page_rel)
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()

    if problems:
        pytest.fail(f"{page_rel}:\n  " + "\n  ".join(dict.fromkeys(problems)), pytrace=False)
