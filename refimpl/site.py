"""The course as static HTML pages: readable from the file system, with no server and no network.

`python3 run.py site` runs `main`. Every lesson of `course/` runs top to bottom in a fresh kernel
and becomes one page with what its cells printed, its figures and its widgets' state. Nothing runs
in the page: a slider moves, but what Python would redraw stays as it was at build time. The
exercises are copied as they are handed out (not run), since doing them needs JupyterLab.

nbconvert's pages load require.js, the widget renderer and MathJax from CDNs, which fail offline.
Here the two scripts come from the npm registry once, at build time (kept in a cache, so later
builds need no network), and sit in `_static/` beside the pages; MathJax and mermaid are left out
(no lesson uses LaTeX or diagrams: `markdown_with_math` finds any that would). Every URL a page
loads is relative, so the folder can be moved, zipped or opened on another machine.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import ipywidgets
import jinja2
import nbformat
from jupyter_client.manager import KernelManager
from nbconvert import HTMLExporter
from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

# The two scripts the pages load, as npm packages pinned by their tarball's SHA-256. The widget
# renderer must speak the protocol of the installed ipywidgets: 8.x <-> html-manager 1.x.
REQUIREJS = ("requirejs@2.3.8",
             "777158e89275e16bd51aec3ef714fbcb5dc45789e7078659933bc814916d7dec")
HTML_MANAGER = {8: ("@jupyter-widgets/html-manager@1.0.15",
                    "2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638")}
STATIC = "_static"
MARKER = ".refimpl-site"  # says a folder is a site we built, so a rebuild may replace it

# The lab template minus what would reach a CDN: MathJax always, mermaid.js when a page has a
# diagram. The widget renderer and require.js stay, pointed at `_static/` by `exporter`.
# The renderer's parts look for their fonts beside the URL require.js gives their module name
# (`@jupyter-widgets/...`, resolved against the page) or in `__jupyter_widgets_assets_path__`:
# both are pointed at the folder the renderer and its fonts are in.
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block jupyter_widgets -%}
{%- set assets = resources.widget_renderer_url.rsplit('/', 1)[0] -%}
<script>
window.__jupyter_widgets_assets_path__ = "{{ assets }}/";
require.config({paths: {"@jupyter-widgets": "{{ assets }}",
                        "@jupyter-widgets/html-manager/dist": "{{ assets }}"}});
</script>
{{ super() }}
{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

# Links in the notes are to notebooks, like the lessons' own: `rewrite_links` makes them pages.
LESSON_NOTE = """> **A static copy of the course**{index}. The code ran when the page was
> built: the output, the figures and the widgets are shown as they were then. Nothing runs here, so
> moving a slider does not redraw what depends on it. To run the lessons and do the exercises,
> clone the repository and run `python3 run.py course`."""

EXERCISE_NOTE = """> **A read-only copy of these exercises** ([index](../course/index.ipynb)).
> They are shown as handed out, not run. To do them (each answer is checked as you go), clone
> the repository and run `python3 run.py course`."""


def site_path(notebook: Path, root: Path) -> PurePosixPath:
    """Where a notebook's page goes: lessons at the top of the site, exercises in `exercises/`."""
    relative = PurePosixPath(notebook.relative_to(root).as_posix()).with_suffix(".html")
    return PurePosixPath(*relative.parts[1:]) if relative.parts[0] == "course" else relative


def pages(root: Path) -> dict[Path, PurePosixPath]:
    """Every notebook the site shows, index first: the lessons (to run), then the exercises."""
    notebooks = sorted((root / "course").glob("*.ipynb"),
                       key=lambda path: (path.name != "index.ipynb", path.name))
    notebooks += sorted((root / "exercises").glob("*.ipynb"))
    return {notebook: site_path(notebook, root) for notebook in notebooks}


def is_lesson(notebook: Path, root: Path) -> bool:
    return notebook.parent == root / "course"


LINK = re.compile(r'href="(?![a-zA-Z][a-zA-Z0-9+.-]*:|//|#)([^"#?]+\.ipynb)(#[^"]*)?"')


def rewrite_links(html: str, notebook: Path, page: PurePosixPath,
                  site: dict[Path, PurePosixPath]) -> tuple[str, list[str]]:
    """Links to notebooks the site shows now lead to their pages; the others are returned.

    A link is matched by the file it points at, or, for an exercise, by its name alone: a lesson
    may link to the learner's working copy of the exercises rather than to `exercises/`."""
    by_exercise_name = {path.name: target for path, target in site.items()
                        if target.parts[0] == "exercises"}
    unresolved = []

    def replace(match: re.Match) -> str:
        link, fragment = match.group(1), match.group(2) or ""
        target_file = (notebook.parent / link).resolve()
        target = site.get(target_file)
        if target is None and "exercises" in PurePosixPath(link).parts:
            target = by_exercise_name.get(target_file.name)
        if target is None:
            unresolved.append(link)
            return match.group(0)
        return f'href="{os.path.relpath(target, page.parent)}{fragment}"'

    return LINK.sub(replace, html), unresolved


def markdown_with_math(notebook: Path) -> list[str]:
    """The markdown that MathJax would typeset (`$...$`, `$$...$$`), outside code."""
    found = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"```.*?```|`[^`\n]*`", "", cell.source, flags=re.DOTALL)
        found += re.findall(r"\$\$.+?\$\$|(?<![\w$\\])\$[^\s$][^$\n]*?(?<![\s\\])\$(?![\w$])",
                            text, flags=re.DOTALL)
    return found


def npm_package(package: tuple[str, str], cache: Path) -> Path:
    """The npm tarball of `package` (spec, SHA-256), fetched with `npm pack` the first time only."""
    spec, sha256 = package
    tarball = cache / (spec.lstrip("@").replace("/", "-").replace("@", "-") + ".tgz")
    if not tarball.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"building the site needs npm once, to fetch {spec} "
                               "(Debian: apt-get install npm); later builds reuse the download")
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "pack", "--silent", spec, "--pack-destination", str(cache)],
                       check=True, stdout=subprocess.DEVNULL)
    if hashlib.sha256(tarball.read_bytes()).hexdigest() != sha256:
        tarball.unlink()
        raise RuntimeError(f"{spec} from npm is not the tarball this site was checked with "
                           f"(SHA-256 {sha256}); deleted it from {cache}")
    return tarball


def extract(tarball: Path, wanted: re.Pattern, destination: Path) -> list[Path]:
    """Copy the tarball's files whose path (after `package/`) matches `wanted`, flattened."""
    copied = []
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("package/")
            if member.isfile() and wanted.fullmatch(name):
                target = destination / PurePosixPath(name).name
                target.write_bytes(archive.extractfile(member).read())
                copied.append(target)
    return copied


def install_scripts(static: Path, cache: Path) -> tuple[str, str]:
    """require.js and the widget renderer (with its fonts) in `static`; their site paths."""
    major = int(ipywidgets.__version__.split(".")[0])
    if major not in HTML_MANAGER:
        raise RuntimeError(f"no widget renderer known for ipywidgets {ipywidgets.__version__}: "
                           f"add its @jupyter-widgets/html-manager version to HTML_MANAGER")
    extract(npm_package(REQUIREJS, cache), re.compile(r"require\.js"), static)
    # embed-amd.js finds its fonts beside itself; the other bundles and source maps aren't used.
    renderer = re.compile(r"dist/(embed-amd\.js|embed\.js\.LICENSE\.txt"
                          r"|[0-9a-f]+\.(woff2?|ttf|eot|svg))")
    extract(npm_package(HTML_MANAGER[major], cache), renderer, static / "html-manager")
    return f"{STATIC}/require.js", f"{STATIC}/html-manager/embed-amd.js"


@functools.cache  # an exporter takes a second to set up; pages at one depth can share one
def exporter(up: str, require_js: str, widget_renderer: str) -> HTMLExporter:
    """nbconvert's lab template, loading its two scripts from `up` (the site, seen from a page)."""
    return HTMLExporter(template_name="lab", template_file="offline.html.j2",
                        extra_loaders=[jinja2.DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
                        require_js_url=f"{up}/{require_js}",
                        widget_renderer_url=f"{up}/{widget_renderer}")


def title(nb: nbformat.NotebookNode, notebook: Path) -> str:
    """The page's title: the notebook's first heading, or else its file name."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (heading := re.search(r"^#+ (.+)$", cell.source,
                                                                   flags=re.MULTILINE)):
            return heading.group(1).replace("`", "").strip()
    return notebook.stem


def prepared(notebook: Path, root: Path, timeout: int) -> nbformat.NotebookNode:
    """The notebook with a note on top saying what the page is, run first if it is a lesson."""
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata["title"] = title(nb, notebook)
    index = "" if notebook.name == "index.ipynb" else " ([index](index.ipynb))"
    note = LESSON_NOTE.format(index=index) if is_lesson(notebook, root) else EXERCISE_NOTE
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(note))
    if is_lesson(notebook, root):
        # The kernel's own log (that shutting it down interrupted it) says nothing about the
        # lesson: a cell that fails stops the build by itself. Lessons run side by side, so
        # their kernels talk over IPC sockets in folders of their own: a TCP port chosen free
        # can be taken by another kernel before it is bound.
        runner = ExecutePreprocessor(timeout=timeout, kernel_name="python3",
                                     store_widget_state=True,
                                     extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
        with tempfile.TemporaryDirectory() as folder:
            manager = KernelManager(kernel_name="python3", transport="ipc",
                                    ip=str(Path(folder) / "kernel"))
            runner.preprocess(nb, {"metadata": {"path": str(notebook.parent)}}, km=manager)
    return nb


def check_replaceable(out: Path) -> None:
    """A build replaces `out`: only if it is missing, empty, or a site built here."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise RuntimeError(f"{out} is not empty and is not a site built by this command: "
                           "choose another --out")


def all_prepared(root: Path, notebooks: list[Path], timeout: int) -> list[nbformat.NotebookNode]:
    """`prepared` for each notebook, a few at a time: a lesson spends most of its time waiting
    for its kernel to start."""

    def one(notebook: Path) -> nbformat.NotebookNode:
        started = time.monotonic()
        try:
            nb = prepared(notebook, root, timeout)
        except CellExecutionError as error:
            raise RuntimeError(f"{notebook.relative_to(root)}: a cell failed\n{error}") from None
        if is_lesson(notebook, root):
            print(f"ran {notebook.name} in {time.monotonic() - started:.1f} s", flush=True)
        return nb

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return list(pool.map(one, notebooks))


def write_pages(root: Path, site: dict[Path, PurePosixPath], folder: Path, cache: Path,
                timeout: int) -> None:
    """Each notebook of `site` as its page in `folder`, with the scripts the pages load."""
    require_js, widget_renderer = install_scripts(folder / STATIC, cache)
    for (notebook, page), nb in zip(site.items(), all_prepared(root, list(site), timeout)):
        up = os.path.relpath(".", page.parent)
        html, _ = exporter(up, require_js, widget_renderer).from_notebook_node(nb)
        html, unresolved = rewrite_links(html, notebook, page, site)
        for link in unresolved:
            print(f"warning: {notebook.name} links to {link}, which is not in the site",
                  file=sys.stderr)
        (folder / page).parent.mkdir(parents=True, exist_ok=True)
        (folder / page).write_text(html, encoding="utf-8")


def build_site(root: Path, out: Path, cache: Path, timeout: int = 300) -> None:
    """Build the site of the course at `root` into `out`, replacing what is there when done."""
    check_replaceable(out)
    site = pages(root)
    for notebook in site:
        if math := markdown_with_math(notebook):
            print(f"warning: {notebook.name} uses LaTeX ({math[0]!r}), which shows as typed: "
                  "the site has no MathJax", file=sys.stderr)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        write_pages(root, site, partial, cache, timeout)
        (partial / MARKER).write_text("built by `python3 run.py site`; a rebuild replaces it\n")
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def default_cache() -> Path:
    """npm downloads are kept under $XDG_CACHE_HOME (`.venv/home/cache` when run by run.py)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "refimpl-site"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refimpl.site",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the repository (default: the one this module is in)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the site goes (default: ROOT/artifacts/site)")
    parser.add_argument("--cache", type=Path, default=None, help="where npm downloads are kept")
    args = parser.parse_args(argv)
    out = (args.out or args.root / "artifacts" / "site").resolve()
    try:
        build_site(args.root.resolve(), out, args.cache or default_cache())
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"open {out / 'index.html'} in a browser (no server needed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
