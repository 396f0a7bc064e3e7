#!/usr/bin/python3
"""Integrity of the output folder and the user-visible edges of a run.

  - a CORR file that exists counts as done only when complete (opens, every
    dataset has its shape, its provenance says `completed`); a truncated,
    empty or half-made one is corrected again, with a message saying why;
  - one made with other options is refused (exit 1) until --overwrite;
  - two runs into one folder at once never undo each other's work: a file
    another run holds is left alone and reported, temporaries are named per
    run, and only those whose run is gone are removed;
  - output paths of 250 characters (Open MPI 4.1.4's sharedfp/lockedfile
    overflowed a buffer on them);
  - raw file names with a negative sequence are not raw files; the report is
    valid JSON (UTF-8) for any path; --dry-run reports what it cannot plan;
    switches take no value; a key twice in --config is refused; SIGTERM's
    exit status is what the README says; the provenance holds absolute paths
    and the ADU per keV used; ranks waiting for a stopped rank do not spin.

Every run-level case runs at 1 and 3 ranks.  AGIPD_KEEP=1 keeps the folders.
"""
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from rel_common import (LIMIT, Case, base, check_outputs, corr_name, correct_cmd, describe, finish,  # noqa: E402
                        kill_session, mpirun, raw_name, reference, simulate, src_of, start,
                        temporaries)

RANKS = (1, 3)
ALL = [(m, s) for m in (0, 1) for s in (0, 1)]
LOCK = ".agipd-correct.lock"




def stat_key(path):
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# ---------------------------------------------------------------------------
# Outputs that exist
# ---------------------------------------------------------------------------

def _truncate(path, mod):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _empty(path, mod):
    open(path, "wb").close()


def _not_completed(path, mod):
    with h5py.File(path, "r+") as h:
        del h["METADATA/calibration"].attrs["completed"]


def _short_gain(path, mod):
    with h5py.File(path, "r+") as h:
        g = f"INSTRUMENT/{src_of(mod)}/image/gain"
        n = h[g].shape[0]
        del h[g]
        h.create_dataset(g, data=np.zeros((n - 1, 512, 128), np.uint8))


BROKEN = [("truncated", _truncate, r"does not open"),
          ("empty", _empty, r"does not open"),
          ("no 'completed' attribute", _not_completed, r"completed"),
          ("gain one frame short", _short_gain, r"image/gain has the wrong shape")]


def test_incomplete_corr_is_redone():
    """A CORR file under its final name that is truncated, empty, lacks the
    `completed` attribute or has a dataset of the wrong shape is corrected
    again without --overwrite (and the message says why); complete ones are
    skipped untouched."""
    case = Case(base())
    ref = reference()
    for np_ in RANKS:
        out = case.out()
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts))
        if p.returncode != 0:
            raise harness.Failed(describe(p))
        for (what, breaker, why), (m, s) in zip(BROKEN, ALL):
            breaker(os.path.join(out, corr_name(m, s)), m)
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts))
        d = describe(p)
        if p.returncode != 0 or not re.search(r"4 file\(s\) corrected, 0 skipped, 0 failed", p.stdout):
            raise harness.Failed(f"{np_} rank(s): every broken file should be corrected again:\n{d}")
        for (what, _, why), (m, s) in zip(BROKEN, ALL):
            tag = f"AGIPD{m:02d} S{s:05d}"
            if not any(tag in ln and "not complete" in ln and re.search(why, ln) for ln in p.stderr.splitlines()):
                raise harness.Failed(f"{np_} rank(s): no message saying why {tag} ({what}) is redone:\n{d}")
        check_outputs(out, ref, ALL, what=d)
        # complete now: a third run skips every file, untouched
        before = {f: stat_key(os.path.join(out, f)) for f in os.listdir(out)}
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts))
        if p.returncode != 0 or not re.search(r"0 file\(s\) corrected, 4 skipped", p.stdout):
            raise harness.Failed(f"{np_} rank(s): the complete files should be skipped:\n{describe(p)}")
        if before != {f: stat_key(os.path.join(out, f)) for f in os.listdir(out)}:
            raise harness.Failed(f"{np_} rank(s): a skipped file was touched")


def test_rerun_with_other_options():
    """Re-running into a folder of finished files with other correction
    options refuses each file (exit 1, naming the option and --overwrite),
    touching none; the same options skip them; --overwrite replaces them."""
    case = Case(base())
    ref_cm = reference(["--common-mode"])
    for np_ in RANKS:
        out = case.out()
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts))
        if p.returncode != 0:
            raise harness.Failed(describe(p))
        before = {f: stat_key(os.path.join(out, f)) for f in os.listdir(out)}
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts, ["--common-mode"]))
        d = describe(p)
        if p.returncode != 1:
            raise harness.Failed(f"{np_} rank(s): exit {p.returncode}, expected 1 (made with other options):\n{d}")
        for m, s in ALL:
            tag = f"AGIPD{m:02d} S{s:05d}"
            if not any(tag in ln and "other options" in ln and "--common-mode" in ln and "--overwrite" in ln
                       for ln in p.stderr.splitlines()):
                raise harness.Failed(f"{np_} rank(s): no line says {tag} was made with other options:\n{d}")
        if before != {f: stat_key(os.path.join(out, f)) for f in os.listdir(out)}:
            raise harness.Failed(f"{np_} rank(s): files were touched without --overwrite:\n{d}")
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts))
        if p.returncode != 0 or not re.search(r"0 file\(s\) corrected, 4 skipped", p.stdout):
            raise harness.Failed(f"{np_} rank(s): the same options should skip every file:\n{describe(p)}")
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts, ["--common-mode", "--overwrite"]))
        if p.returncode != 0:
            raise harness.Failed(describe(p))
        check_outputs(out, ref_cm, ALL, what=describe(p))


# ---------------------------------------------------------------------------
# Runs into one folder at once
# ---------------------------------------------------------------------------

def lock_byte(run, module, seq):
    return (run << 24) + (module << 17) + seq


def test_locked_file_left_alone():
    """A file whose lock another run holds (here: this test, with a POSIX
    lock on its byte of OUT/.agipd-correct.lock, and its temporary under that
    run's name) is neither written nor has its temporary removed; the run
    says so and exits 1; the other files are corrected; temporaries of runs
    that are gone (old and new names) are removed."""
    case = Case(base())
    ref = reference()
    for np_ in RANKS:
        out = case.out()
        os.makedirs(out)
        fd = os.open(os.path.join(out, LOCK), os.O_RDWR | os.O_CREAT, 0o664)
        live = os.path.join(out, "." + corr_name(0, 0) + ".otherhost.4242.part")
        dead = [os.path.join(out, "." + corr_name(1, 1) + ".part"),
                os.path.join(out, "." + corr_name(1, 0) + ".deadhost.1.part")]
        for f in [live] + dead:
            with open(f, "wb") as h:
                h.write(b"\x89HDF\r\n\x1a\n half a file")
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, lock_byte(1, 0, 0))
            p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts))
        finally:
            os.close(fd)
        d = describe(p)
        if p.returncode != 1:
            raise harness.Failed(f"{np_} rank(s): exit {p.returncode}, expected 1 (a file held by another run):\n{d}")
        if not any("AGIPD00 S00000" in ln and "another agipd-correct run" in ln for ln in p.stderr.splitlines()):
            raise harness.Failed(f"{np_} rank(s): no message names the file another run holds:\n{d}")
        if os.path.exists(os.path.join(out, corr_name(0, 0))):
            raise harness.Failed(f"{np_} rank(s): the file another run holds was written:\n{d}")
        if not os.path.exists(live):
            raise harness.Failed(f"{np_} rank(s): the live run's temporary was removed:\n{d}")
        left = [f for f in dead if os.path.exists(f)]
        if left:
            raise harness.Failed(f"{np_} rank(s): temporaries of runs that are gone remain: {left}\n{d}")
        os.unlink(live)
        os.unlink(os.path.join(out, LOCK))   # our own; a run removes its lock file only when alone
        check_outputs(out, ref, [f for f in ALL if f != (0, 0)], [(0, 0)], what=d)


def big():
    return simulate("big", "--modules", "0-1", "--sequences", "2", "--trains", "16", "--cells", "16")


def test_concurrent_runs():
    """Two runs (3 ranks and 1 rank) into one folder at the same time: each
    ends with 0 or 1, a failure only for a file the other run holds; every
    file exists once, complete and equal to a run alone; no temporary and no
    lock file remains; a third run skips everything."""
    case = Case(big())
    ref = case.out("ref")
    p = mpirun(1, correct_cmd(case.in_folder, ref, case.consts, ["--batch-frames", "8"]), limit=120)
    if p.returncode != 0:
        raise harness.Failed(describe(p))
    for order in ((3, 1), (1, 3)):
        out = case.out()
        procs = [start(n, correct_cmd(case.in_folder, out, case.consts, ["--batch-frames", "8"])) for n in order]
        res = []
        try:
            for q in procs:
                res.append(finish(q, 120))
        finally:
            for q in procs:
                kill_session(q)
        what = "\n".join(f"{q.cmd}\nexit {q.returncode}\n{so[-1500:]}\n{se[-1500:]}"
                         for q, (so, se) in zip(procs, res))
        for q, (so, se) in zip(procs, res):
            if q.returncode not in (0, 1):
                raise harness.Failed(f"exit {q.returncode}:\n{what}")
            bad = [ln for ln in se.splitlines() if re.match(r"\s+AGIPD\d\d S\d{5}: ", ln)
                   and "another agipd-correct run" not in ln]
            if bad:
                raise harness.Failed(f"failures other than a file held by the other run: {bad}\n{what}")
        if os.path.exists(os.path.join(out, LOCK)):
            raise harness.Failed(f"the lock file remains after both runs:\n{what}")
        check_outputs(out, ref, ALL, what=what)
        p = mpirun(3, correct_cmd(case.in_folder, out, case.consts, ["--batch-frames", "8"]))
        if p.returncode != 0 or not re.search(r"0 file\(s\) corrected, 4 skipped", p.stdout):
            raise harness.Failed(f"a third run should skip every file:\n{describe(p)}")


# ---------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------

def test_long_output_path():
    """A 250-character output path (Open MPI 4.1.4's sharedfp/lockedfile
    aborted every rank from about 212)."""
    case = Case(base())
    ref = reference()
    for np_ in RANKS:
        out = case.out("o")
        out = os.path.join(out, "d" * 120)
        out = os.path.join(out, "e" * (250 - len(out) - 1))
        if len(out) != 250:
            raise harness.Failed(f"test set-up: path of {len(out)} characters")
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts))
        if p.returncode != 0:
            raise harness.Failed(f"{np_} rank(s), output path of {len(out)} characters:\n{describe(p)}")
        check_outputs(out, ref, ALL, what=describe(p))


def test_negative_sequence_name():
    """RAW-...-S-0001.h5 is not a raw file name: not corrected, and alone it
    is 'no raw files'."""
    case = Case(base())
    for m in (0, 1):
        shutil.copyfile(case.raw(m, 0), os.path.join(case.raw_dir, f"RAW-R0001-AGIPD{m:02d}-S-0001.h5"))
    for np_ in RANKS:
        out = case.out()
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts))
        if p.returncode != 0 or not re.search(r"4 file\(s\) corrected", p.stdout):
            raise harness.Failed(describe(p))
        odd = [f for f in os.listdir(out) if "S-" in f]
        if odd or "S-0001" in p.stdout or "S-0001" in p.stderr or "S-1" in p.stdout:
            raise harness.Failed(f"a negative sequence was taken as a file: {odd}\n{describe(p)}")
    only = Case(base())
    for m, s in ALL:
        os.rename(only.raw(m, s), os.path.join(only.raw_dir, f"RAW-R0001-AGIPD{m:02d}-S-{s + 1:04d}.h5"))
    for np_ in RANKS:
        p = mpirun(np_, correct_cmd(only.in_folder, only.out(), only.consts))
        if p.returncode != 2 or "no raw files" not in p.stderr:
            raise harness.Failed(f"only negative sequences: expected exit 2, 'no raw files':\n{describe(p)}")


def test_report_non_utf8_path():
    """The report is valid JSON (UTF-8) when paths hold bytes that are not
    UTF-8; the bytes come back with os.fsencode."""
    case = Case(base())
    for np_ in RANKS:
        out = os.fsencode(case.out()) + b"-\xff\xfe-caf\xc3\xa9"
        report = os.fsencode(case.root) + b"/report-\xff.json"
        cmd = [os.fsencode(a) for a in correct_cmd(case.in_folder, "X", case.consts, ["--report", "R"])]
        cmd[cmd.index(b"X")] = out
        cmd[cmd.index(b"R")] = report
        p = subprocess.run([b"mpirun", b"-np", str(np_).encode(), b"--oversubscribe"] + cmd,
                           capture_output=True, timeout=LIMIT, env={**os.environ, **harness.MPI_ENV})
        if p.returncode != 0:
            raise harness.Failed(f"exit {p.returncode}\n{p.stdout[-2000:]!r}\n{p.stderr[-2000:]!r}")
        with open(report, "rb") as f:
            raw = f.read()
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise harness.Failed(f"{np_} rank(s): the report is not valid UTF-8 JSON: {exc}")
        outs = {os.fsencode(f["output"]) for f in doc["files"]}
        want = {out + b"/" + os.fsencode(corr_name(m, s)) for m, s in ALL}
        if outs != want:
            raise harness.Failed(f"{np_} rank(s): output paths in the report {outs} != {want}")
        if os.fsencode(doc["parameters"]["out-folder"]) != out:
            raise harness.Failed(f"{np_} rank(s): out-folder {doc['parameters']['out-folder']!r}")


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------

def _single(args):
    return harness.run([harness.CORRECT] + args, check=False, timeout=LIMIT)


def test_switch_with_value():
    """--rel-gain=true: the message says switches take no value."""
    p = _single(["--in-folder", "a", "--out-folder", "b", "--run", "1", "--constants-folder", "c",
                 "--rel-gain=true"])
    if p.returncode != 2 or "switch" not in p.stderr or "takes no value" not in p.stderr \
            or "needs a value" in p.stderr:
        raise harness.Failed(f"exit {p.returncode}: {p.stderr}")


def test_config_duplicate_key():
    """A key given twice in --config is refused, naming both lines."""
    d = harness.tmpdir()
    cfg = os.path.join(d, "c.conf")
    with open(cfg, "w") as f:
        f.write("run = 1\ncommon-mode = true\nrun = 2\n")
    p = _single(["--config", cfg, "--in-folder", "a", "--out-folder", "b", "--constants-folder", "c"])
    if p.returncode != 2 or not re.search(r"c\.conf:3: key 'run' given twice \(first on line 1\)", p.stderr):
        raise harness.Failed(f"exit {p.returncode}: {p.stderr}")


def test_dry_run_reports_failures():
    """--dry-run with a raw file that is not HDF5, or one that is missing:
    exit 1 and stderr names the file and the cause (never exit 0 with
    'cannot plan', never exit 1 without a reason)."""
    case = Case(base())
    with open(case.raw(1, 1), "wb") as f:
        f.write(b"not an HDF5 file at all")
    for np_ in RANKS:
        p = mpirun(np_, correct_cmd(case.in_folder, case.out(), case.consts, ["--dry-run"]))
        if p.returncode != 1 or not re.search(r"AGIPD01 S00001: .*" + re.escape(raw_name(1, 1)), p.stderr):
            raise harness.Failed(f"{np_} rank(s), a broken raw file:\n{describe(p)}")
        p = mpirun(np_, correct_cmd(case.in_folder, case.out(), case.consts,
                                    ["--dry-run", "--modules", "0", "--sequences", "0-2"]))
        if p.returncode != 1 or not re.search(r"AGIPD00 S00002: .*missing raw file", p.stderr):
            raise harness.Failed(f"{np_} rank(s), a missing raw file:\n{describe(p)}")
        p = mpirun(np_, correct_cmd(case.in_folder, case.out(), case.consts, ["--dry-run", "--modules", "0"]))
        if p.returncode != 0 or p.stderr.strip():
            raise harness.Failed(f"{np_} rank(s), a good selection:\n{describe(p)}")


# ---------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------

def test_provenance_paths_and_adu():
    """Run with relative paths and --photon-energy without --adu-per-kev:
    the provenance holds absolute paths and, per memory cell, the median of
    SlopesFF that was used (not 'adu-per-kev 0')."""
    case = Case(base())
    rel = lambda p: os.path.relpath(p, case.root)  # noqa: E731
    for np_ in RANKS:
        out = case.out()
        full = ["mpirun", "-np", str(np_), "--oversubscribe"] + \
            correct_cmd(rel(case.in_folder), rel(out), rel(case.consts), ["--photon-energy", "9"])
        p = harness.run(full, check=False, timeout=LIMIT, cwd=case.root)
        if p.returncode != 0:
            raise harness.Failed(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
        for m, s in ALL:
            with h5py.File(os.path.join(out, corr_name(m, s)), "r") as h:
                cal = h["METADATA/calibration"]
                par = cal["parameters"].attrs
                got = {"raw_path": cal.attrs["raw_path"], "constants/path": cal["constants"].attrs["path"],
                       "in-folder": par["in-folder"], "out-folder": par["out-folder"],
                       "constants-folder": par["constants-folder"]}
                want = {"raw_path": os.path.realpath(case.raw(m, s)),
                        "constants/path": os.path.realpath(case.const(m)),
                        "in-folder": os.path.realpath(case.in_folder), "out-folder": os.path.realpath(out),
                        "constants-folder": os.path.realpath(case.consts)}
                got = {k: v.decode() if isinstance(v, bytes) else v for k, v in got.items()}
                if got != want:
                    raise harness.Failed(f"{np_} rank(s): paths {got} != {want}")
                adu = par["adu-per-kev"]
                adu = adu.decode() if isinstance(adu, bytes) else adu
                if "median" not in adu:
                    raise harness.Failed(f"{np_} rank(s): adu-per-kev recorded as {adu!r}")
                used = np.asarray(cal.attrs["adu_per_kev_used"])
            with h5py.File(case.const(m), "r") as k:
                ff = k["SlopesFF"][()]
            med = np.array([np.nanmedian(ff[..., c]) for c in range(ff.shape[-1])], np.float32)
            if used.shape != med.shape or not np.allclose(used, med, rtol=1e-6):
                raise harness.Failed(f"{np_} rank(s): adu_per_kev_used {used} != median of SlopesFF {med}")


# ---------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------

def rank_of(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(x.split(b"=", 1) for x in f.read().split(b"\0") if b"=" in x)
        return int(env.get(b"OMPI_COMM_WORLD_RANK", b"-1"))
    except OSError:
        return -1


def rank_pids(mpirun_pid):
    """{rank: pid} of the agipd-correct processes under mpirun_pid."""
    out = {}
    for pid in _descendants(mpirun_pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "agipd-correct":
                    continue
        except OSError:
            continue
        out[rank_of(pid)] = pid
    return out


def _descendants(pid):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                seen += kids
                todo += kids
        except OSError:
            pass
    return seen


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_part(out, proc, limit=60):
    t0 = time.time()
    while time.time() - t0 < limit:
        if os.path.isdir(out) and any(f.endswith(".part") for f in os.listdir(out)):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def test_sigterm_exit_status():
    """SIGTERM to the ranks while a file is written: mpirun exits 3.  SIGTERM
    to mpirun: the ranks stop with status 3 (the report says so) and mpirun
    exits non-zero; the README says what mpirun returns then."""
    args = ["--batch-frames", "2", "--common-mode"]
    for np_ in RANKS:
        for target in ("ranks", "mpirun"):
            case = Case(big())
            out = case.out()
            report = os.path.join(case.root, f"report-{target}.json")
            proc = start(np_, correct_cmd(case.in_folder, out, case.consts, args + ["--report", report]))
            try:
                if not wait_part(out, proc):
                    so, se = finish(proc, LIMIT)
                    raise harness.Failed(f"no .part file was seen (exit {proc.returncode})\n{so}\n{se}")
                ranks = rank_pids(proc.pid)
                if len(ranks) != np_:
                    raise harness.Failed(f"found ranks {ranks}, expected {np_}")
                for pid in ([proc.pid] if target == "mpirun" else ranks.values()):
                    os.kill(pid, signal.SIGTERM)
                so, se = finish(proc, LIMIT)
            finally:
                kill_session(proc)
            what = f"{np_} rank(s), SIGTERM to {target}: exit {proc.returncode}\n{so[-1500:]}\n{se[-1500:]}"
            if temporaries(out):
                raise harness.Failed(f"temporaries remain {temporaries(out)}: {what}")
            if target == "ranks" and proc.returncode != 3:
                raise harness.Failed(f"expected exit 3: {what}")
            if target == "mpirun":
                if proc.returncode == 0:
                    raise harness.Failed(f"exit 0 after SIGTERM: {what}")
                with open(report) as f:
                    st = json.load(f)["exit_status"]
                if st != 3:
                    raise harness.Failed(f"the report's exit_status is {st}, expected 3: {what}")
    with open(os.path.join(harness.TOP, "README.md")) as f:
        readme = " ".join(f.read().split())
    if "`mpirun` exits 1 when it is the one signalled" not in readme:
        raise harness.Failed("README.md does not say what mpirun itself returns after SIGTERM")


def test_stopped_rank_waiters_do_not_spin():
    """A rank stopped for good (SIGSTOP): the ranks waiting for it use next
    to no CPU (measured from /proc, CPU seconds), and after SIGCONT the run
    ends normally.  3 ranks, one file, --writer serial: ranks 1 and 2 wait
    while rank 0 writes."""
    case = Case(simulate("one", "--modules", "0", "--sequences", "1", "--trains", "16", "--cells", "16"))
    out = case.out()
    proc = start(3, correct_cmd(case.in_folder, out, case.consts,
                                ["--writer", "serial", "--batch-frames", "2", "--common-mode"]))
    try:
        if not wait_part(out, proc):
            so, se = finish(proc, LIMIT)
            raise harness.Failed(f"no .part file was seen (exit {proc.returncode})\n{so}\n{se}")
        ranks = rank_pids(proc.pid)
        if sorted(ranks) != [0, 1, 2]:
            raise harness.Failed(f"found ranks {ranks}")
        os.kill(ranks[0], signal.SIGSTOP)
        try:
            time.sleep(1.0)
            c0 = {r: cpu_seconds(ranks[r]) for r in (1, 2)}
            t0 = time.time()
            time.sleep(3.0)
            used = {r: cpu_seconds(ranks[r]) - c0[r] for r in (1, 2)}
            wall = time.time() - t0
        finally:
            os.kill(ranks[0], signal.SIGCONT)
        so, se = finish(proc, LIMIT)
    finally:
        kill_session(proc)
    print(f"CPU seconds of the waiting ranks in {wall:.1f} s while rank 0 was stopped: {used}")
    if any(v > 0.3 for v in used.values()):
        raise harness.Failed(f"waiting ranks used {used} CPU seconds in {wall:.1f} s (they spin)")
    if proc.returncode != 0 or not os.path.exists(os.path.join(out, corr_name(0, 0))):
        raise harness.Failed(f"after SIGCONT: exit {proc.returncode}\n{so[-1500:]}\n{se[-1500:]}")


if __name__ == "__main__":
    harness.main(globals())
