#!/usr/bin/python3
"""Faults during a 3-rank run of bin/agipd-correct (make check-faults).

  - kill -9 of one rank in the middle of the run: the job ends within 30 s
    (mpirun aborts it), no rank is left behind, no incomplete file exists
    under a final CORR name; the re-run (same options, no --overwrite)
    completes, cleans the stale .part files, skips the complete outputs
    without touching them, and its outputs equal an uninterrupted run's;
  - SIGTERM (and SIGINT) to mpirun, which forwards it to the ranks: they
    stop cleanly, remove their temporary files, and the job exits non-zero;
    the re-run completes as above.

The run: modules 0-1 x 2 sequences x 24 trains of 16 cells, --batch-frames 4
and --common-mode.  Rank 0 stops itself (AGIPD_TEST_PAUSE=frames-written@0,
include/agipd_testhook.h) once it has written its first frames, so that
every fault lands while a file is incomplete: these tests never depend on
timing and never skip.  Set AGIPD_KEEP=1 to keep
the temporary folders.
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from rel_common import (LIMIT, Case, alive, check_outputs, compare_corr, correct_cmd,  # noqa: E402
                        describe, finish, kill_session, mpirun, pause_env, simulate, start, temporaries,
                        wait_paused, wait_signalled)

NP = 3
ARGS = ["--batch-frames", "4", "--common-mode"]
ALL = [(m, s) for m in (0, 1) for s in (0, 1)]
_REF = {}


def sim():
    return simulate("faults", "--modules", "0-1", "--sequences", "2", "--trains", "24", "--cells", "16")


def reference():
    """The outputs of an uninterrupted run with the same options and ranks."""
    if "ref" not in _REF:
        case = Case(sim())
        out = case.out("ref")
        p = mpirun(NP, correct_cmd(case.in_folder, out, case.consts, ARGS), limit=120)
        if p.returncode != 0:
            raise harness.Failed("the uninterrupted run failed:\n" + describe(p))
        _REF["ref"] = out
    return _REF["ref"]


PAUSED = 0        # the rank that stops itself after writing its first frames


def paused_start(case, out):
    """Start the run with rank PAUSED set to stop itself (SIGSTOP) once it has
    written its first frames (AGIPD_TEST_PAUSE, include/agipd_testhook.h):
    the fault then lands while its file is a .part, every time.  Returns
    (proc, {world rank: pid}, paused pid)."""
    proc = start(NP, correct_cmd(case.in_folder, out, case.consts, ARGS), env=pause_env("frames-written", PAUSED))
    try:
        ranks, paused = wait_paused(proc, NP, PAUSED)
    except BaseException:
        kill_session(proc)
        raise
    if not any(f.endswith(".part") for f in os.listdir(out)):
        kill_session(proc)
        raise harness.Failed(f"rank {PAUSED} paused after writing frames, but {out} holds no .part file: "
                             f"{os.listdir(out)}")
    return proc, ranks, paused


def complete_outputs(out, ref, what):
    """Every CORR file present equals the uninterrupted run's."""
    errors = []
    for f in sorted(os.listdir(out)):
        if f.startswith("CORR-"):
            compare_corr(os.path.join(out, f), os.path.join(ref, f), errors)
    if errors:
        raise harness.Failed("an incomplete or wrong file under a final name:\n  " + "\n  ".join(errors) + what)


def ranks_gone(ranks, what, grace=10):
    t0 = time.time()
    while time.time() - t0 < grace:
        left = [k for k in ranks if alive(k)]
        if not left:
            return
        time.sleep(0.1)
    for k in left:
        try:
            os.kill(k, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise harness.Failed(f"ranks {left} still ran {grace} s after mpirun ended{what}")


def rerun(case, out, ref):
    """The re-run: completes, cleans stale .part files, skips and keeps the
    complete outputs, and leaves the folder equal to the uninterrupted run."""
    kept = {f: os.stat(os.path.join(out, f)) for f in os.listdir(out) if f.startswith("CORR-")}
    p = mpirun(NP, correct_cmd(case.in_folder, out, case.consts, ARGS))
    what = describe(p)
    if p.returncode != 0:
        raise harness.Failed(f"the re-run failed:\n{what}")
    if not re.search(r"%d file\(s\) corrected, %d skipped, 0 failed" % (len(ALL) - len(kept), len(kept)),
                     p.stdout):
        raise harness.Failed(f"the re-run should correct {len(ALL) - len(kept)} file(s) and skip {len(kept)}:\n"
                             f"{what}")
    for f, st in kept.items():
        st2 = os.stat(os.path.join(out, f))
        if (st.st_ino, st.st_mtime_ns, st.st_size) != (st2.st_ino, st2.st_mtime_ns, st2.st_size):
            raise harness.Failed(f"{f} was rewritten by the re-run without --overwrite")
    check_outputs(out, ref, ALL, what="after the re-run:\n" + what)
    return p


def test_kill9_one_rank():
    """kill -9 of rank 1 while rank 0, paused after its first frames, holds
    an incomplete file."""
    ref = reference()
    case = Case(sim())
    out = case.out()
    before = case.snapshot()
    proc, ranks, paused = paused_start(case, out)
    try:
        victim = ranks[1]
        os.kill(victim, signal.SIGKILL)
        t_kill = time.time()
        so, se = finish(proc, LIMIT)
        took = time.time() - t_kill
    finally:
        kill_session(proc)
    what = (f"\n{proc.cmd}\nexit {proc.returncode} {took:.1f} s after the kill\n"
            f"stdout:\n{so[-2000:]}\nstderr:\n{se[-3000:]}")
    if proc.returncode == 0:
        raise harness.Failed(f"exit 0 after a rank was killed{what}")
    ranks_gone(list(ranks.values()), what)
    complete_outputs(out, ref, what)
    if before != case.snapshot():
        raise harness.Failed(f"the input folders changed{what}")
    done = [f for f in os.listdir(out) if f.startswith("CORR-")]
    if len(done) == len(ALL):
        raise harness.Failed(f"every file is complete, though rank {PAUSED} was stopped inside one{what}")
    print(f"killed rank 1 (pid {victim}) while rank {PAUSED} was paused; job ended {took:.1f} s later with "
          f"exit {proc.returncode}; left {sorted(os.listdir(out))}")
    rerun(case, out, ref)


def _signal_mpirun(sig, name):
    ref = reference()
    case = Case(sim())
    out = case.out()
    proc, ranks, paused = paused_start(case, out)
    try:
        os.kill(proc.pid, sig)
        t_sig = time.time()
        # mpirun passes the signal on; the paused rank holds it pending
        # until it runs again.
        wait_signalled(paused, (signal.SIGTERM, signal.SIGINT, signal.SIGKILL))
        try:
            os.kill(paused, signal.SIGCONT)
        except ProcessLookupError:
            pass
        so, se = finish(proc, LIMIT)
        took = time.time() - t_sig
    finally:
        kill_session(proc)
    what = (f"\n{proc.cmd}\nexit {proc.returncode} {took:.1f} s after {name}\n"
            f"stdout:\n{so[-2000:]}\nstderr:\n{se[-3000:]}")
    ranks_gone(list(ranks.values()), what)
    if proc.returncode == 0:
        raise harness.Failed(f"exit 0 after {name}, which reached the run while rank {PAUSED} was inside a "
                             f"file{what}")
    left = temporaries(out)
    if left:
        raise harness.Failed(f"temporary files remain after {name}: {left}{what}")
    complete_outputs(out, ref, what)
    if len([f for f in os.listdir(out) if f.startswith("CORR-")]) == len(ALL):
        raise harness.Failed(f"every file is complete after {name}, though rank {PAUSED} was stopped inside "
                             f"one{what}")
    print(f"{name} to mpirun: job ended {took:.1f} s later with exit {proc.returncode}; left {sorted(os.listdir(out))}")
    rerun(case, out, ref)


def test_sigterm_mpirun():
    """SIGTERM to mpirun while files are being written."""
    _signal_mpirun(signal.SIGTERM, "SIGTERM")


def test_sigint_mpirun():
    """SIGINT (Ctrl-C) to mpirun while files are being written."""
    _signal_mpirun(signal.SIGINT, "SIGINT")


if __name__ == "__main__":
    harness.main(globals())
