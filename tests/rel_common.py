"""Helpers shared by tests/test_reliability.py and tests/test_faults.py.

A small simulated run (2 modules x 2 sequences by default), case folders
built from copies of it, fingerprints of the input folders (sha256 of every
file), and comparisons of CORR files with those of an uninterrupted run.
"""
import atexit
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

KID = "SPB_DET_AGIPD1M-1"
LIMIT = 30          # seconds: every run, at every rank count, ends within this
_TMP = []
_CACHE = {}


def _cleanup():
    if os.environ.get("AGIPD_KEEP"):
        print("kept:", " ".join(_TMP))
        return
    for d in _TMP:
        # a test that failed half-way may leave a mount or an immutable folder
        for root, dirs, _ in os.walk(d):
            for x in dirs:
                p = os.path.join(root, x)
                if os.path.ismount(p):
                    subprocess.run(["umount", "-l", p], capture_output=True)
                subprocess.run(["chattr", "-i", p], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def tmpdir(prefix="agipd-rel-"):
    d = harness.tmpdir(prefix)
    _TMP.append(d)
    return d


def need_bins():
    for b in (harness.CORRECT, harness.SIMULATE):
        if not os.access(b, os.X_OK):
            raise harness.Skip(f"{b} not built")


def src_of(module):
    return f"{KID}/DET/{module}CH0:xtdf"


def raw_name(mod, seq, run=1):
    return f"RAW-R{run:04d}-AGIPD{mod:02d}-S{seq:05d}.h5"


def corr_name(mod, seq, run=1):
    return f"CORR-R{run:04d}-AGIPD{mod:02d}-S{seq:05d}.h5"


def const_name(mod):
    return f"AGIPD{mod:02d}.h5"


def simulate(key, *args):
    """A simulated run, made once per process: its folder (raw files in
    r0001/, constants in constants/)."""
    need_bins()
    if key not in _CACHE:
        d = tmpdir("agipd-rel-sim-")
        harness.run([harness.SIMULATE, "--out-folder", d, "--no-truth"] + list(map(str, args)),
                    timeout=300)
        _CACHE[key] = d
    return _CACHE[key]


# ---------------------------------------------------------------------------
# Case folders
# ---------------------------------------------------------------------------

class Case:
    """in_folder/r0001/ holds copies of the raw files; consts/ the constants
    (hard links to the simulated ones unless a test edits them: edit() copies
    first).  out() gives a fresh, not yet existing output folder."""

    def __init__(self, sim):
        self.sim = sim
        self.root = tmpdir("agipd-rel-case-")
        self.in_folder = os.path.join(self.root, "in")
        self.raw_dir = os.path.join(self.in_folder, "r0001")
        self.consts = os.path.join(self.root, "consts")
        os.makedirs(self.raw_dir)
        os.makedirs(self.consts)
        for f in sorted(os.listdir(os.path.join(sim, "r0001"))):
            shutil.copyfile(os.path.join(sim, "r0001", f), os.path.join(self.raw_dir, f))
        for f in sorted(os.listdir(os.path.join(sim, "constants"))):
            src, dst = os.path.join(sim, "constants", f), os.path.join(self.consts, f)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        self._n = 0

    def raw(self, mod, seq):
        return os.path.join(self.raw_dir, raw_name(mod, seq))

    def const(self, mod):
        return os.path.join(self.consts, const_name(mod))

    def own(self, path):
        """Make path a private copy (not a link to the simulated file)."""
        tmp = path + ".copy"
        shutil.copyfile(path, tmp)
        os.replace(tmp, path)
        return path

    def out(self, tag="out"):
        self._n += 1
        return os.path.join(self.root, f"{tag}{self._n}")

    def snapshot(self):
        return fingerprint([self.in_folder, self.consts])


_DIGESTS = {}


def _sha256(path, st):
    # Keyed on the inode's identity and its change time: any write to the
    # file changes st_ctime_ns, so a cached digest is never stale.
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def fingerprint(folders):
    """{path: ('dir', mode) | ('file', mode, size, mtime_ns, sha256)} of every
    entry under folders (symbolic links followed)."""
    fp = {}
    for top in folders:
        for root, dirs, files in os.walk(top):
            st = os.stat(root)
            fp[root] = ("dir", st.st_mode)
            for f in files:
                p = os.path.join(root, f)
                st = os.stat(p)
                fp[p] = ("file", st.st_mode, st.st_size, st.st_mtime_ns, _sha256(p, st))
    return fp


def fingerprint_diff(before, after):
    out = []
    for p in sorted(set(before) | set(after)):
        if p not in after:
            out.append(f"removed {p}")
        elif p not in before:
            out.append(f"created {p}")
        elif before[p] != after[p]:
            out.append(f"changed {p}: {before[p]} -> {after[p]}")
    return out


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

def correct_cmd(in_folder, out, consts, args=()):
    return [harness.CORRECT, "--in-folder", in_folder, "--out-folder", out, "--run", "1",
            "--constants-folder", consts] + list(map(str, args))


def mpirun(np_, cmd, limit=LIMIT):
    """mpirun -np np_ cmd, which must end within limit seconds; returns the
    CompletedProcess with .wall and .cmd."""
    full = ["mpirun", "-np", str(np_), "--oversubscribe"] + cmd
    t0 = time.time()
    p = harness.run(full, timeout=limit, check=False)
    p.wall = time.time() - t0
    p.cmd = " ".join(full)
    if p.wall > limit:
        raise harness.Failed(f"{p.cmd}: took {p.wall:.1f} s, more than {limit} s")
    return p


def describe(p):
    return f"{p.cmd}\nexit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------

def datasets(h):
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj
    h.visititems(visit)
    return out


def compare_corr(got_path, ref_path, errors):
    """Every dataset outside METADATA equal (names, types, shapes, values)."""
    pre = f"{os.path.basename(got_path)}: "
    try:
        g = h5py.File(got_path, "r")
    except OSError as exc:
        errors.append(pre + f"does not open: {exc}")
        return
    with g, h5py.File(ref_path, "r") as r:
        dg = {k: v for k, v in datasets(g).items() if not k.startswith("METADATA")}
        dr = {k: v for k, v in datasets(r).items() if not k.startswith("METADATA")}
        if set(dg) != set(dr):
            errors.append(pre + f"datasets differ: {sorted(set(dg) ^ set(dr))}")
        for name in sorted(set(dg) & set(dr)):
            a, b = dg[name], dr[name]
            if a.dtype != b.dtype or a.shape != b.shape:
                errors.append(pre + f"{name}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
                continue
            x, y = a[()], b[()]
            eq = np.array_equal(x, y, equal_nan=True) if x.dtype.kind == "f" else np.array_equal(x, y)
            if not eq:
                errors.append(pre + f"{name} differs from the uninterrupted run")
        if "METADATA/calibration" not in g:
            errors.append(pre + "no METADATA/calibration (provenance)")


def temporaries(out):
    if not os.path.isdir(out):
        return []
    return sorted(f for f in os.listdir(out) if f.endswith(".part") or f.startswith(".")
                  or f.endswith(".tmp"))


def check_outputs(out, ref, expect_present, expect_absent=(), may_be_present=(), what=""):
    """The output folder holds CORR files for expect_present (each equal to
    the one in ref), none for expect_absent, no temporary file and nothing
    else; files in may_be_present, when there, equal ref's too."""
    errors = []
    have = set(os.listdir(out)) if os.path.isdir(out) else set()
    tmp = temporaries(out)
    if tmp:
        errors.append(f"temporary files remain: {tmp}")
    want = {corr_name(m, s) for m, s in expect_present}
    maybe = {corr_name(m, s) for m, s in may_be_present}
    for m, s in expect_absent:
        if corr_name(m, s) in have:
            errors.append(f"{corr_name(m, s)} exists, but that file failed")
    for f in sorted(want - have):
        errors.append(f"{f} missing")
    extra = have - want - maybe - set(tmp) - {corr_name(m, s) for m, s in expect_absent}
    if extra:
        errors.append(f"unexpected files: {sorted(extra)}")
    for f in sorted(have & (want | maybe)):
        compare_corr(os.path.join(out, f), os.path.join(ref, f), errors)
    if errors:
        raise harness.Failed(f"{what}:\n  " + "\n  ".join(errors))


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

def children(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def comm_of(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def alive(pid):
    """True while pid runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rank_pids(mpirun_pid):
    """The agipd-correct processes started by this mpirun (its children; the
    same set pgrep -f agipd-correct -P PID gives)."""
    return sorted(k for k in children(mpirun_pid) if comm_of(k) == "agipd-correct")


def start(np_, cmd, env=None):
    full = ["mpirun", "-np", str(np_), "--oversubscribe"] + cmd
    e = dict(os.environ)
    e.update(harness.MPI_ENV)
    e.update(env or {})
    env = e
    p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    p.cmd = " ".join(full)
    return p


def finish(proc, limit):
    """Wait at most limit s for proc; on time-out kill its session and fail."""
    try:
        so, se = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        so, se = proc.communicate()
        raise harness.Failed(f"{proc.cmd}: did not end within {limit} s\n{so[-2000:]}\n{se[-2000:]}")
    return so, se


def kill_session(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()


# ---------------------------------------------------------------------------
# Pausing a rank at a known point (AGIPD_TEST_PAUSE, include/agipd_testhook.h)
# ---------------------------------------------------------------------------

def pause_env(point, rank):
    """The environment that makes rank `rank` stop itself (SIGSTOP) the first
    time it reaches `point`."""
    return {"AGIPD_TEST_PAUSE": f"{point}@{rank}"}


def world_rank(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for kv in f.read().split(b"\0"):
                if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(kv.split(b"=", 1)[1])
    except OSError:
        pass
    return None


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def pending(pid):
    """Signals pending for pid (thread and process), as a set of numbers."""
    bits = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("SigPnd:", "ShdPnd:")):
                    bits |= int(line.split()[1], 16)
    except OSError:
        return set()
    return {n for n in range(1, 65) if bits >> (n - 1) & 1}


def wait_paused(proc, np_, rank, timeout=60):
    """Wait until the np_ ranks run and rank `rank` has stopped itself at its
    pause point; returns ({world rank: pid}, paused pid).  Fails (never
    skips) when the run ends first or the rank does not stop in time."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            so, se = proc.communicate()
            raise harness.Failed(f"{proc.cmd}: the run ended (exit {proc.returncode}) before rank {rank} "
                                 f"paused\n{so[-2000:]}\n{se[-2000:]}")
        pids = rank_pids(proc.pid)
        ranks = {world_rank(k): k for k in pids}
        if len(pids) == np_ and proc_state(ranks.get(rank)) == "T":
            return ranks, ranks[rank]
        time.sleep(0.01)
    raise harness.Failed(f"{proc.cmd}: rank {rank} did not pause within {timeout} s")


def wait_signalled(pid, sigs, timeout=10):
    """Wait until one of sigs is pending for the stopped pid (or it is gone)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if not alive(pid) or pending(pid) & set(sigs):
            return True
        time.sleep(0.01)
    return False


def base():
    """The small run most reliability tests start from (cached)."""
    return simulate("base", "--modules", "0-1", "--sequences", "2", "--trains", "2", "--cells", "4")


_REF = {}


def reference(args=(), sim=None):
    """Outputs of a clean 1-rank run of sim (default: base()) with args (cached)."""
    sim = sim or base()
    key = (sim, tuple(args))
    if key not in _REF:
        case = Case(sim)
        out = case.out("ref")
        p = mpirun(1, correct_cmd(case.in_folder, out, case.consts, args), limit=120)
        if p.returncode != 0:
            raise harness.Failed("the clean reference run failed:\n" + describe(p))
        _REF[key] = out
    return _REF[key]
