#!/usr/bin/env python3
"""The project's entry points. Each one sets up what it needs the first time it runs.

    python3 run.py course [ARGS]   JupyterLab on the course index, in your workspace
    python3 run.py test [ARGS]     the whole test suite (ARGS go to pytest)
    python3 run.py site            the course as static HTML pages in artifacts/site/

Set-up: a virtual environment in `.venv` with this package and its tools, reinstalled whenever
`pyproject.toml` changes. Jupyter, IPython and matplotlib keep their state under `.venv/home`
instead of your home directory. `test` also installs Debian's chromium and bubblewrap (the
autograder's sandbox) when run as root.

The workspace: `course` serves `workspace/` (git-ignored), never the repository's notebooks.
It holds `course/` and `exercises/` side by side, so a lesson's link `../exercises/NN-x.ipynb`
opens your copy. Your exercise notebooks are copied once and never overwritten; a newer course
adds the exercise notebooks you do not have yet. Lessons are refreshed from the course when it
changes, unless you edited their cells (outputs do not count): then yours stay, and the command
says so. Delete a file from `workspace/` to get the course's version back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
HOME = VENV / "home"
CHROMIUM = Path("/usr/bin/chromium")
WORKSPACE = ROOT / "workspace"
COPIES = ".course-copies.json"
"""In the workspace: each copied file's course version (a hash of its cells' sources)."""
LAB_SETTINGS = {
    # no "news" prompt over the first notebook, no update check (nothing is fetched)
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
    # everything Lab can open lives in the workspace: save answers often
    "@jupyterlab/docmanager-extension:plugin": {"autosave": True, "autosaveInterval": 30},
}


def say(message: str) -> None:
    print(f"[run.py] {message}", flush=True)


def ensure_venv() -> None:
    if sys.version_info < (3, 10):
        sys.exit("this project needs Python 3.10 or newer")
    if not PYTHON.exists():
        say("creating .venv")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    stamp = VENV / ".installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    say("installing the project and its tools into .venv (a few minutes the first time)")
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(pip + ["install", "--quiet", "-e", f"{ROOT}[course,test]"], check=True)
    # rfc3987-syntax (pulled in by jsonschema) builds ~35 parsers at import, adding seconds to
    # every Jupyter start; jsonschema works without it.
    subprocess.run(pip + ["uninstall", "--quiet", "-y", "rfc3987-syntax"], check=True)
    stamp.write_text(wanted)


def tool_environment() -> dict[str, str]:
    """The environment for Jupyter and the tests: venv first, state kept out of $HOME (npm's
    cache too: JupyterLab runs `npm prefix` at start, which logs into it)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    for variable, folder in (("JUPYTER_CONFIG_DIR", "jupyter-config"),
                             ("JUPYTER_DATA_DIR", "jupyter-data"),
                             ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"),
                             ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "matplotlib"),
                             ("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"),
                             ("npm_config_cache", "npm")):
        path = HOME / folder
        path.mkdir(parents=True, exist_ok=True)
        env[variable] = str(path)
    return env


def cells_hash(notebook: Path) -> str:
    """A notebook's version: its cells' types and sources, not outputs or counts, so running a
    lesson is not editing it."""
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    sources = [(cell.get("cell_type"), "".join(cell.get("source", ""))) for cell in cells]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def sync_workspace(root: Path = ROOT, workspace: Path | None = None) -> list[str]:
    """Create or update the learner's workspace from the course in `root`; what it did.

    Exercises are copied when missing, never overwritten. Lessons are replaced by the
    course's version when that changed and the learner's copy is still the one copied."""
    workspace = workspace or root / "workspace"
    copies_path = workspace / COPIES
    copies = json.loads(copies_path.read_text()) if copies_path.exists() else {}
    notes = []
    for folder, refresh in (("course", True), ("exercises", False)):
        (workspace / folder).mkdir(parents=True, exist_ok=True)
        for source in sorted((root / folder).glob("*.ipynb")):
            name, target = f"{folder}/{source.name}", workspace / folder / source.name
            version = cells_hash(source)
            if not target.exists():
                notes.append(f"added {name}")
            elif copies.get(name) == version:
                continue
            elif not refresh:
                notes.append(f"kept your {name}; the course's version changed (to see it, "
                             f"rename yours and start again)")
                copies[name] = version
                continue
            elif cells_hash(target) != copies.get(name):
                notes.append(f"kept your edited {name}; the course has a newer version (delete "
                             f"or rename yours and start again to get it)")
                continue
            else:
                notes.append(f"updated {name} to the course's new version")
            shutil.copyfile(source, target)
            copies[name] = version
    copies_path.write_text(json.dumps(copies, indent=1, sort_keys=True) + "\n")
    return notes


def install_lab_settings() -> None:
    """JupyterLab's defaults for this venv (its app settings' overrides.json)."""
    settings = VENV / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "overrides.json").write_text(json.dumps(LAB_SETTINGS, indent=1) + "\n")


def course(args: list[str]) -> int:
    ensure_venv()
    install_lab_settings()
    for note in sync_workspace():
        say(f"workspace: {note}")
    # Rooted at the workspace: the repository's notebooks are never opened, so never saved.
    command = [str(VENV / "bin" / "jupyter"), "lab", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.root_dir={WORKSPACE}",
               "--LabApp.default_url=/lab/tree/course/index.ipynb"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return subprocess.call(command + args, cwd=WORKSPACE, env=tool_environment())


def site(args: list[str]) -> int:
    """The course as static HTML in artifacts/site/ (refimpl/site.py says how; ARGS go to it)."""
    ensure_venv()
    return subprocess.call([str(PYTHON), "-m", "refimpl.site", *args], cwd=ROOT,
                           env=tool_environment())


def ensure_debian_packages() -> None:
    """Install what the tests need from Debian when we can: as root (CI, containers). The
    browser tests drive `chromium` (/usr/bin/chromium, never a browser Playwright downloads);
    the autograder runs student code in `bubblewrap` and refuses to grade without it. About
    15 s."""
    missing = [package for package, present in (("chromium", CHROMIUM.exists()),
                                                ("bubblewrap", shutil.which("bwrap")))
               if not present]
    if not missing:
        return
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        say(f"not installed: {', '.join(missing)}; the browser tests skip and the autograder "
            f"refuses to grade (sudo apt-get install {' '.join(missing)})")
        return
    say(f"installing Debian's {' and '.join(missing)} for the tests (about 15 s)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
        if subprocess.call(command, env=env, stdout=subprocess.DEVNULL):
            say(f"`{' '.join(command)}` failed: the tests that need {', '.join(missing)} will "
                f"skip (fail under CI)")
            return


def test(args: list[str]) -> int:
    ensure_venv()
    ensure_debian_packages()
    command = [str(PYTHON), "-m", "pytest"]
    if not args:
        command += ["-n", "auto", "--dist", "loadfile"]
    return subprocess.call(command + args, cwd=ROOT, env=tool_environment())


def main() -> int:
    commands = {"course": course, "test": test, "site": site}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
