"""Small test harness shared by the Python tests.

Each test module defines functions named ``test_*`` and ends with
``harness.main(globals())``.  Every test prints one ``PASS name`` or
``FAIL name`` line (counted by tests/run.sh); a test may raise ``Skip``,
which is a failure when CI=true (or AGIPD_NO_SKIP=1).
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

TOP = os.environ.get("AGIPD_TOP") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(TOP, "bin")
CORRECT = os.path.join(BIN, "agipd-correct")
SIMULATE = os.path.join(BIN, "agipd-simulate")
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    # Oversubscribed ranks must not spin against each other.
    "OMPI_MCA_mpi_yield_when_idle": "1",
}


class Skip(Exception):
    """A test that cannot run here (no root, no tmpfs, a tool missing).  In
    CI (CI=true, or AGIPD_NO_SKIP=1) a skip is a failure: there every test
    must run."""


def skips_fail():
    return os.environ.get("CI", "").lower() in ("true", "1", "yes") or bool(os.environ.get("AGIPD_NO_SKIP"))


class Failed(AssertionError):
    pass


def run(cmd, timeout=120, check=True, env=None, **kw):
    """Run a command with a hard time-out; returns CompletedProcess (text)."""
    e = dict(os.environ)
    e.update(MPI_ENV)
    if env:
        e.update(env)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e, **kw)
    except subprocess.TimeoutExpired as exc:
        raise Failed(f"timed out after {timeout}s: {' '.join(map(str, cmd))}\n"
                     f"{exc.stdout or ''}{exc.stderr or ''}")
    if check and p.returncode != 0:
        raise Failed(f"exit {p.returncode}: {' '.join(map(str, cmd))}\n"
                     f"stdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}")
    return p


def mpirun(np, args, timeout=120, check=True, env=None):
    """Run bin/... under mpirun with np ranks (oversubscribed, time-limited)."""
    cmd = ["mpirun", "-np", str(np), "--oversubscribe"] + list(map(str, args))
    return run(cmd, timeout=timeout, check=check, env=env)


_TMPDIRS = []


def _remove_tmpdirs():
    if os.environ.get("AGIPD_KEEP"):
        if _TMPDIRS:
            print("kept:", " ".join(_TMPDIRS))
        return
    for d in _TMPDIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_remove_tmpdirs)


def tmpdir(prefix="agipd-test-"):
    """A fresh temporary folder, removed when the test program ends
    (kept with AGIPD_KEEP=1)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _TMPDIRS.append(d)
    return d


def main(ns):
    only = sys.argv[1:]
    tests = [(n, f) for n, f in ns.items() if n.startswith("test_") and callable(f)]
    failed = 0
    for name, fn in tests:
        if only and not any(o in name for o in only):
            continue
        t0 = time.time()
        try:
            fn()
        except Skip as s:
            if skips_fail():
                failed += 1
                print(f"FAIL {name}: would be skipped ({s}), and skips fail under CI")
            else:
                print(f"SKIP {name}: {s}")
        except Exception:
            failed += 1
            traceback.print_exc(file=sys.stdout)
            print(f"FAIL {name} ({time.time() - t0:.1f}s)")
        else:
            print(f"PASS {name} ({time.time() - t0:.1f}s)")
        sys.stdout.flush()
    sys.exit(1 if failed else 0)
