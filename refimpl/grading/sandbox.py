"""The box a student's code runs in: Linux namespaces through Debian's bubblewrap (`bwrap`).

The grader (root) starts each kernel process as

    prlimit (hard limits) -> bwrap (namespaces, mounts) -> setpriv (a uid of its own) -> python

so that the student's code runs
- as an unprivileged uid of its own (one per grading slot, never the grader's), with no
  capabilities and `no_new_privs`;
- with hard CPU, address-space, process-count and file-size limits set before `exec`: a soft
  limit may be lowered from inside, none raised;
- in its own PID namespace: when the kernel process ends, the kernel kills every process it
  started (a new session or a double fork does not escape), and nothing outside is visible, so
  nothing outside can be signalled;
- with no network, and a filesystem of: the system's and the Python environment's folders and
  the `refimpl` package, read-only; a private, size-capped /tmp. Not there at all: the
  repository's `solutions/`, the hidden checks (their source arrives on stdin), the results,
  and every submission (the answers arrive on stdin too).

Without root, or without a working bwrap, `unavailable()` says why, and the grader refuses
unless told `--no-isolation`.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the `refimpl` package (the repository, or an installed copy)."""
FIRST_UID, UIDS = 61000, 1000
"""Student processes run as uids FIRST_UID ... FIRST_UID + UIDS - 1: one per process running at
once, on the whole machine (graders running side by side included)."""
LOCKS = Path("/run/lock" if Path("/run/lock").is_dir() else "/tmp") / "refimpl-grading-uids"
TMP_BYTES = 64 * 2**20
NPROC = 32
FSIZE_BYTES = 16 * 2**20


@dataclass(frozen=True)
class HardLimits:
    cpu_seconds: int
    memory_mb: int


def _visible_folders() -> list[Path]:
    """What the student process may read: the interpreter, its standard library and
    packages, the system libraries, and the refimpl package. Never ROOT itself (it may hold
    solutions/)."""
    folders = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
               Path(os.path.realpath(sys.executable)).parents[1], ROOT / "refimpl"}
    for system in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives"):
        if Path(system).exists():
            folders.add(Path(system))
    # the narrowest set: drop folders inside another one
    return sorted(folder for folder in folders
                  if not any(other != folder and other in folder.parents for other in folders))


def _mounts() -> list[str]:
    arguments, made = [], set()
    for folder in _visible_folders():
        for parent in reversed(folder.parents[:-1]):
            if parent not in made:  # a created folder is 0700 unless told otherwise
                arguments += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        arguments += ["--ro-bind", str(folder), str(folder)]
    return arguments


def command(argv: list[str], limits: HardLimits, uid: int) -> list[str]:
    """`argv` wrapped in the limits, the namespaces and the uid."""
    memory = limits.memory_mb * 2**20
    return ["prlimit", f"--cpu={limits.cpu_seconds}", f"--as={memory}", f"--nproc={NPROC}",
            f"--fsize={FSIZE_BYTES}", "--core=0",
            "bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            # /tmp first: a folder mounted below it (a test's, a Gradescope copy) stays visible
            "--size", str(TMP_BYTES), "--perms", "1777", "--tmpfs", "/tmp", *_mounts(),
            "--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp",
            "--clearenv", *_env_arguments(),
            "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", *argv]


def environment() -> dict[str, str]:
    """The student process's whole environment: this package importable, a fixed hash seed
    (the same set order, so the same grade, on every run), no GUI backend, single-threaded
    numeric libraries (each thread would reserve address space), $HOME in the private /tmp."""
    return {"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "HOME": "/tmp", "MPLCONFIGDIR": "/tmp", "LANG": "C.UTF-8",
            "PATH": "/usr/bin:/bin"}


def _env_arguments() -> list[str]:
    return [item for name, value in environment().items() for item in ("--setenv", name, value)]


@functools.lru_cache(maxsize=None)
def unavailable() -> str | None:
    """Why student code cannot be isolated here, or None when it can: a tiny process is
    started in the box and must come back as the student uid, without network."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return ("isolation needs root (to run student code as a uid of its own); this grader "
                "runs as an unprivileged user")
    missing = [tool for tool in ("bwrap", "prlimit", "setpriv") if not shutil.which(tool)]
    if missing:
        return (f"{', '.join(missing)} not found (Debian: apt-get install bubblewrap "
                f"util-linux; `python3 run.py test` installs bubblewrap as root)")
    probe = ("import os, socket\nassert os.getuid() == %d and os.getpid() == 2\n"
             "try:\n    socket.create_connection(('192.0.2.1', 9), timeout=0.2)\n"
             "except OSError:\n    print('isolated')\n" % FIRST_UID)
    argv = command([sys.executable, "-c", probe], HardLimits(10, 1024), FIRST_UID)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bwrap could not start: {error}"
    if result.stdout.strip() != "isolated":
        return f"bwrap does not isolate here: {(result.stderr or result.stdout).strip()[-300:]}"
    return None


class IsolationUnavailable(RuntimeError):
    """Raised instead of grading without isolation, unless the instructor said so."""


class Uids:
    """A uid of its own for each student process running at once, so one student's processes
    never count against another's process limit: a uid is taken by locking its file in LOCKS
    (root's; the lock goes with the grader if it dies)."""

    def __init__(self) -> None:
        self._held: dict[int, int] = {}

    def take(self) -> int:
        LOCKS.mkdir(mode=0o700, parents=True, exist_ok=True)
        for uid in range(FIRST_UID, FIRST_UID + UIDS):
            fd = os.open(LOCKS / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._held[uid] = fd
            return uid
        raise RuntimeError(f"all {UIDS} student uids are in use")

    def give_back(self, uid: int) -> None:
        os.close(self._held.pop(uid))
