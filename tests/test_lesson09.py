"""Lesson 09 off Linux: the host comparison says why it cannot run, and the rest of the lesson,
its checks included, runs as it does on Linux. (nbval runs the lesson as it is on this host.)"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

import refimpl.host.linux_maps as linux_maps  # noqa: E402

LESSON = Path(__file__).resolve().parent.parent / "course" / "09-the-life-of-an-address-space.ipynb"
REASON = "the host is darwin, not Linux: no /proc/self/maps to read back"


def _code_cells() -> list[str]:
    cells = json.loads(LESSON.read_text())["cells"]
    return ["\n".join(line for line in "".join(cell["source"]).splitlines()
                      if not line.startswith("%"))  # %matplotlib inline: IPython only
            for cell in cells if cell["cell_type"] == "code"]


def test_off_linux_the_comparison_says_why_and_the_lesson_still_runs(monkeypatch):
    monkeypatch.setattr(linux_maps, "HOST_UNSUPPORTED", REASON)
    monkeypatch.setattr(linux_maps, "run_on_linux", lambda *_: (_ for _ in ()).throw(
        AssertionError("the lesson called the host off Linux")))
    namespace: dict = {}
    with capture_output() as captured:
        for source in _code_cells():
            exec(compile(source, str(LESSON), "exec"), namespace)
    plt.close("all")
    assert f"the host cannot provide it: {REASON}" in captured.stdout
    assert "comparisons" not in namespace and namespace["outcomes"][-1].resident == {}
