"""The instructor's side: what students receive, and the autograder bundle for Gradescope.

- `release`: the student bundle in nbgrader's layout, `OUT/release/<assignment>/<notebook>`, one
  assignment per lesson notebook, generated from `solutions/`: exercises only, no solution, no
  hidden check. Students hand back `submitted/<student>/<assignment>/...`, which `grade` takes.
- `gradescope_bundle`: a zip for Gradescope's "zip file upload" autograder: `setup.sh` (Debian
  or Ubuntu, as root: bubblewrap and a virtual environment with this package), `run_autograder`
  (grades /autograder/submission as one student and writes /autograder/results/results.json),
  next to the package, the solutions and the instructor's checks files (Gradescope unpacks the
  zip into /autograder/source and runs run_autograder from there). `$AUTOGRADER`
  and `$PYTHON` stand in for /autograder and the environment's Python, for a local rehearsal.
"""

from __future__ import annotations

import shlex
import zipfile
from pathlib import Path

from refimpl.grading.generate import SOLUTIONS, generated_exercises
from refimpl.grading.sandbox import ROOT

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder's image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends bubblewrap util-linux python3 python3-venv
cd "${AUTOGRADER:-/autograder}/source"
python3 -m venv .venv
.venv/bin/pip install --quiet . nbformat
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission: grade it, then hand over results.json.
set -uo pipefail
AUTOGRADER="${AUTOGRADER:-/autograder}"
PYTHON="${PYTHON:-$AUTOGRADER/source/.venv/bin/python}"
cd "$AUTOGRADER/source"
rm -rf "$AUTOGRADER/results/grading"
"$PYTHON" -m refimpl.grading grade "$AUTOGRADER/submission" --one-student \\
    --out "$AUTOGRADER/results/grading" --solutions solutions --jobs 1 %(options)s
status=$?
if [ $status -ne 0 ]; then
    echo "the autograder failed (status $status): no results written" >&2
    exit $status
fi
cp "$AUTOGRADER/results/grading/submission/results.json" "$AUTOGRADER/results/results.json"
"""


def release(out: Path, solutions: Path = SOLUTIONS) -> list[Path]:
    """Write each lesson's exercise notebook to out/release/<lesson>/<lesson>.ipynb."""
    written = []
    for name, data in generated_exercises(solutions).items():
        path = out / "release" / Path(name).stem / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def _package_files() -> list[tuple[Path, str]]:
    """(file, name in the bundle) of the package and what installs it."""
    files = [(ROOT / name, name) for name in ("pyproject.toml", "README.md")
             if (ROOT / name).is_file()]
    for path in sorted((ROOT / "refimpl").rglob("*.py")):
        files.append((path, str(path.relative_to(ROOT))))
    return files


def gradescope_bundle(out: Path, solutions: Path = SOLUTIONS, checks: list[str] = (),
                      isolated: bool = True) -> Path:
    """Write the autograder zip to `out`. `checks`: the instructor's checks files (hidden
    cases), bundled and passed to every run; `isolated=False` writes `--no-isolation` into
    run_autograder, for images where bubblewrap cannot run (Gradescope's container is then
    the only wall)."""
    options = []
    files = _package_files()
    for path in sorted(solutions.glob("*.ipynb")):
        files.append((path, f"solutions/{path.name}"))
    for spec in checks:
        if spec.endswith(".py"):
            files.append((Path(spec), f"checks/{Path(spec).name}"))
            options += ["--checks", f"checks/{Path(spec).name}"]
        else:
            options += ["--checks", spec]
    if not isolated:
        options.append("--no-isolation")
    if any(option == "--checks" for option in options):
        options = ["--checks", "refimpl.grading.checks", *options]
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, text in (("setup.sh", SETUP_SH),
                           ("run_autograder",
                            RUN_AUTOGRADER % {"options": shlex.join(options)})):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            bundle.writestr(info, text)
        for path, name in files:
            bundle.write(path, name)
    return out
