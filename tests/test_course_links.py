"""Links in the lessons: relative ones lead to a file, SerenityOS ones name full commits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

COURSE = Path(__file__).resolve().parent.parent / "course"
LINK = re.compile(r"\]\(([^)\s]+)\)")
GITHUB = "https://github.com/SerenityOS/serenity/"
BEING_WRITTEN: set[str] = set()
"""Lessons (or exercises) written on other branches at the same time, as the lessons link them;
drop a name once it is merged."""


def links(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return [link for cell in cells if cell["cell_type"] == "markdown"
            for link in LINK.findall("".join(cell["source"]))]


NOTEBOOKS = sorted(COURSE.glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_relative_links_lead_to_a_file(notebook):
    for link in links(notebook):
        if link.startswith("http"):
            continue
        target = (notebook.parent / link.split("#")[0]).resolve()
        assert target.exists() or link in BEING_WRITTEN, f"{notebook.name}: dead link {link}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_serenity_links_name_full_commits_and_lines(notebook):
    """Every link names a full commit; a file may be linked whole (a file the commit changed),
    but a lesson that discusses SerenityOS's code links at least one function at its line."""
    serenity = [link for link in links(notebook) if link.startswith(GITHUB)]
    for link in serenity:
        commit = link[len(GITHUB):].partition("/")[2].split("/")[0]
        assert re.fullmatch(r"[0-9a-f]{40}", commit), f"{notebook.name}: short hash in {link}"
    files = [link for link in serenity if link[len(GITHUB):].startswith("blob/")]
    assert not files or any(re.search(r"#L\d+(-L\d+)?$", link) for link in files), \
        f"{notebook.name}: no SerenityOS file is linked at a line"


LESSONS = sorted(path.stem for path in NOTEBOOKS if path.name[:2].isdigit())


@pytest.mark.parametrize("name", LESSONS)
def test_a_lesson_links_its_exercises_and_the_next_lesson(name):
    found = links(COURSE / f"{name}.ipynb")
    if (COURSE.parent / "exercises" / f"{name}.ipynb").exists():
        assert f"../exercises/{name}.ipynb" in found
    following = f"{int(name[:2]) + 1:02d}-"
    if any(other.startswith(following) for other in LESSONS + sorted(BEING_WRITTEN)):
        assert any(link.startswith(following) for link in found)
    assert any(link.startswith(GITHUB) for link in found)


def test_the_index_links_every_lesson_and_its_exercises():
    found = links(COURSE / "index.ipynb")
    lessons = sorted(path.name for path in NOTEBOOKS if path.name[:2].isdigit())
    for lesson in lessons:
        assert lesson in found
        if (COURSE.parent / "exercises" / lesson).exists():
            assert f"../exercises/{lesson}" in found
    assert BEING_WRITTEN <= set(found)
