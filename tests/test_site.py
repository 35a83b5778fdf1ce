"""The static site of the course (`python3 run.py site`), read from the file system in Chromium.

The site is built once for this module, then moved: a page that still pointed into the folder
it was built in would break. Chromium may open file:// URLs only; any other request is aborted,
recorded, and fails the test. The switch SITE_ROOT=path/to/a/checkout builds another copy of the
repository (the site module is always this one).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

import nbformat
import pytest

from refimpl.site import MARKER, build_site, markdown_with_math, npm_package, rewrite_links
from run import tool_environment
from tests.browser_lab import CHROMIUM, CHROMIUM_FLAGS, require, sync_api
from tests.test_course_links import BEING_WRITTEN

ROOT = Path(__file__).resolve().parents[1]
COURSE_ROOT = Path(os.environ.get("SITE_ROOT", ROOT)).resolve()
SCREENSHOTS = ROOT / "artifacts" / "browser" / "site"
ABSOLUTE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|//|/)")  # a scheme, or the root of a host/disk
CACHE = Path(tool_environment()["XDG_CACHE_HOME"]) / "refimpl-site"  # run.py site keeps npm's here


@pytest.fixture(scope="module")
def npm_or_cache() -> None:
    """A build fetches two npm packages the first time, then keeps them in CACHE."""
    require(shutil.which("npm") is not None or len(list(CACHE.glob("*.tgz"))) >= 2,
            "npm is missing, and building the site needs it once: sudo apt-get install npm")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, npm_or_cache: None) -> Path:
    env = tool_environment()
    built = tmp_path_factory.mktemp("site") / "built"
    result = subprocess.run([sys.executable, "-m", "refimpl.site", "--root", str(COURSE_ROOT),
                             "--out", str(built)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"the build failed:\n{result.stderr[-3000:]}"
    missing = [line for line in result.stderr.splitlines() if "not in the site" in line
               and not any(f"links to {name}," in line for name in BEING_WRITTEN)]
    assert missing == [], result.stderr  # a lesson on another branch may be linked already
    moved = built.with_name("moved")
    built.rename(moved)
    return moved


class References(HTMLParser):
    """Every URL a page loads (scripts, stylesheets, images, frames) and every link in it."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.links: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.in_style = tag == "style"
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed"):
            self.loads += [attributes["src"]] if attributes.get("src") else []
        elif tag == "link":
            self.loads += [attributes["href"]] if attributes.get("href") else []
        elif tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self.loads += re.findall(r"""url\(\s*['"]?([^'")]+)""", data)
            self.loads += re.findall(r"""@import\s+['"]([^'"]+)""", data)

    def handle_endtag(self, tag: str) -> None:
        self.in_style = False


def references(page: Path) -> References:
    html = page.read_text(encoding="utf-8")
    found = References()
    found.feed(html)
    # The widget renderer is added by a script, from a URL in a string.
    found.loads += re.findall(r"widgetRendererSrc = '([^']*)'", html)
    return found


def resolves_inside(site: Path, page: Path, url: str) -> bool:
    target = (page.parent / url.split("#")[0].split("?")[0]).resolve()
    return target.is_relative_to(site) and target.is_file()


def lesson_pages(site: Path) -> list[Path]:
    """The pages of `course/`, index first, as the site lists them."""
    return sorted(site.glob("*.html"), key=lambda page: (page.name != "index.html", page.name))


def test_every_notebook_has_a_page(site: Path) -> None:
    for folder, pages in (("course", site), ("exercises", site / "exercises")):
        for notebook in (COURSE_ROOT / folder).glob("*.ipynb"):
            assert (pages / f"{notebook.stem}.html").is_file(), f"no page for {notebook}"


def test_pages_load_only_files_inside_the_site(site: Path) -> None:
    for page in site.rglob("*.html"):
        for url in references(page).loads:
            if url.startswith("data:"):
                continue
            assert not ABSOLUTE.match(url), f"{page.name} loads {url}: not a relative URL"
            assert resolves_inside(site, page, url), f"{page.name} loads {url}: no such file"


def test_links_between_pages_lead_to_pages(site: Path) -> None:
    for page in site.rglob("*.html"):
        for link in references(page).links:
            if ABSOLUTE.match(link) or link.startswith("#") or link in BEING_WRITTEN:
                continue
            assert resolves_inside(site, page, link), f"{page.name} links to {link}: no such page"


def test_a_link_to_a_notebook_becomes_a_link_to_its_page(tmp_path: Path) -> None:
    lesson = tmp_path / "course" / "01-x.ipynb"
    site = {lesson: PurePosixPath("01-x.html"),
            tmp_path / "exercises" / "00-y.ipynb": PurePosixPath("exercises/00-y.html")}
    html = ('<a href="01-x.ipynb#Top">a</a> <a href="../exercises/00-y.ipynb">b</a> '
            '<a href="../workspace/exercises/00-y.ipynb">c</a> <a href="02-z.ipynb">d</a> '
            '<a href="https://example.org/w.ipynb">e</a>')
    rewritten, unresolved = rewrite_links(html, lesson, PurePosixPath("01-x.html"), site)
    assert rewritten == ('<a href="01-x.html#Top">a</a> <a href="exercises/00-y.html">b</a> '
                         '<a href="exercises/00-y.html">c</a> <a href="02-z.ipynb">d</a> '
                         '<a href="https://example.org/w.ipynb">e</a>')
    assert unresolved == ["02-z.ipynb"]
    back, _ = rewrite_links('<a href="../course/01-x.ipynb">', lesson, PurePosixPath(
        "exercises/00-y.html"), site)
    assert back == '<a href="../01-x.html">'


def test_math_is_found_outside_code_only(tmp_path: Path) -> None:
    notebook = tmp_path / "n.ipynb"
    cells = ["Costs $5 and $6; run `echo $HOME $PATH`.", "```sh\n$ make $x$\n```",
             "An area of $x^2$ and $$\\sum_i i$$."]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)
                                                   for text in cells]), notebook)
    assert markdown_with_math(notebook) == ["$x^2$", "$$\\sum_i i$$"]


def test_a_download_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "requirejs-2.3.8.tgz").write_bytes(b"not the real package")
    with pytest.raises(RuntimeError, match="not the tarball"):
        npm_package(("requirejs@2.3.8", "0" * 64), tmp_path)
    assert not (tmp_path / "requirejs-2.3.8.tgz").exists(), "the bad download was kept"


def test_a_folder_that_is_not_a_site_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="not a site built by this command"):
        build_site(ROOT, tmp_path, CACHE)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_a_failing_cell_stops_the_build_and_keeps_the_last_site(npm_or_cache: None,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "course").mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")]),
                   tmp_path / "course" / "00-broken.ipynb")
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text("")
    with pytest.raises(RuntimeError, match=r"00-broken.ipynb: a cell failed(.|\n)*ZeroDivision"):
        build_site(tmp_path, out, CACHE)
    assert [path.name for path in out.iterdir()] == [MARKER], "the last site was changed"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["course", "out"]


def test_no_lesson_needs_mathjax() -> None:
    """The site ships without MathJax; a lesson with LaTeX would show it as typed."""
    for notebook in sorted((COURSE_ROOT / "course").glob("*.ipynb")):
        assert not markdown_with_math(notebook), (
            f"{notebook.name} uses LaTeX: add MathJax to refimpl/site.py (from npm, like the "
            "widget renderer) or write the formula without it")


WIDGETS = """() => [...document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-view+json"]')]
  .map(view => view.previousElementSibling?.classList.contains('widget-subarea')
               && view.previousElementSibling.children.length > 0)"""
FIGURES = """() => [...document.querySelectorAll('.jp-OutputArea-output img')]
  .map(img => img.complete && img.naturalWidth > 0)"""


@pytest.mark.browser
def test_lessons_render_offline_with_figures_and_widgets(site: Path) -> None:
    api = sync_api()
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing: sudo apt-get install chromium")
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # none left from a page that no longer exists
    SCREENSHOTS.mkdir(parents=True)
    not_files, missing, errors = [], [], []
    with_figures, with_widgets = [], []
    with api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def only_files(route) -> None:
            if route.request.url.startswith("file:"):
                route.continue_()
            else:
                not_files.append(route.request.url)
                route.abort()

        context.route("**/*", only_files)
        page = context.new_page()
        page.on("requestfailed", lambda request: missing.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        for html in lesson_pages(site):
            page.goto(html.as_uri())
            views = page.evaluate(WIDGETS)
            if views:
                try:
                    page.wait_for_function(f"() => ({WIDGETS})().every(Boolean)", timeout=30_000)
                except api.TimeoutError:
                    pytest.fail(f"{html.name}: {page.evaluate(WIDGETS).count(False)} of "
                                f"{len(views)} widgets did not render; script errors: {errors}")
                with_widgets.append(html.name)
            figures = page.evaluate(FIGURES)
            assert all(figures), f"{html.name}: an image of an output did not load"
            if figures:
                with_figures.append(html.name)
            for kind, selector in (("figure", ".jp-OutputArea-output img"),
                                   ("widget", ".widget-subarea")):
                shown = page.locator(selector).first
                if shown.count():
                    shown.evaluate("element => element.scrollIntoView({block: 'start'})")
                    page.screenshot(path=str(SCREENSHOTS / f"{html.stem}-{kind}.png"))
        browser.close()
    assert not not_files, f"the pages tried to reach the network: {not_files}"
    assert not missing, f"files the pages asked for are missing: {missing}"
    assert not errors, f"scripts failed: {errors}"
    assert with_widgets, "no lesson page has a rendered widget"
    assert set(pages_with_figures(site)) <= set(with_figures), "a page's figures did not show"


def pages_with_figures(site: Path) -> list[str]:
    """The lesson pages with an image in a cell's output: a matplotlib figure, as a PNG."""
    figure = re.compile(r'<div class="[^"]*jp-RenderedImage[^"]*"[^>]*>\s*<img[^>]*src="data:image')
    return [page.name for page in lesson_pages(site) if figure.search(page.read_text("utf-8"))]


def test_a_lesson_has_a_figure(site: Path) -> None:
    """The browser test checks that figures show; it needs at least one to look at."""
    assert pages_with_figures(site), ("no lesson page has a matplotlib figure (every lesson "
                                      "00-04 is meant to have one), so none was seen to render")
