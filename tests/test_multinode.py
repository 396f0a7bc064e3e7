#!/usr/bin/python3
"""agipd-correct on a virtual cluster of 2 and 3 nodes, without Slurm.

    mpirun --host A:2,B:2 --mca plm_rsh_agent tests/node-agent.sh ...

starts Open MPI's daemon for each host in a UTS namespace of its own with
that host name, so the ranks of A and B are on different nodes as far as
Open MPI can tell: their own shared-memory segments, a node communicator
each (MPI_Comm_split_type SHARED), TCP between them.  (Same machine, same
file system and page cache: what differs between real nodes and these is
the network and the file systems, which this does not model.)

  - 4 ranks on 2 nodes (and 3 on 3) write the same files as 1 rank, byte for
    byte in every dataset outside METADATA (data, gain, mask included);
  - a file whose group of ranks spans both nodes is written correctly;
  - each node loads a module's constants once, observed with bin/iotrace.so
    (tests/iotrace.py): one shared segment per node and module, mapped by the
    node's ranks on it, the constants file opened as often on each node as
    one node's load takes, no rank taking as much as a lone load;
  - progress messages cross nodes: the final progress line counts every file
    and frame;
  - kill -9 of a rank on the node without rank 0: the job ends on both nodes
    within 30 s, no rank is left, no incomplete file under a final CORR name;
    the re-run completes and equals the 1-rank run.
After each test no process and no /dev/shm file of its host names is left.
Needs root (unshare --uts); skipped otherwise.
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import iotrace  # noqa: E402
from rel_common import LIMIT, alive, comm_of, finish, kill_session  # noqa: E402

import h5py  # noqa: E402

AGENT = os.path.join(harness.TOP, "tests", "node-agent.sh")
# Host names of this process's virtual nodes: unique, so that their
# /dev/shm files are told apart from other jobs' on this machine.
TAG = "agipdv%d" % os.getpid()
A, B, C = TAG + "a", TAG + "b", TAG + "c"
_SIM = {}
_REF = {}


def need():
    if os.geteuid() != 0:
        raise harness.Skip("needs root (unshare --uts for the virtual nodes)")
    p = subprocess.run(["unshare", "--uts", "true"], capture_output=True)
    if p.returncode != 0:
        raise harness.Skip("unshare --uts does not work here: " + p.stderr.decode(errors="replace").strip())
    for b in (harness.CORRECT, harness.SIMULATE):
        if not os.access(b, os.X_OK):
            raise harness.Skip(f"{b} not built")


def mpirun_cmd(hosts, cmd, mca=()):
    """mpirun over the virtual nodes, e.g. hosts=[(A, 2), (B, 2)]; mca: more
    (name, value) MCA settings."""
    np_ = sum(n for _, n in hosts)
    extra = [x for nv in mca for x in ("--mca",) + tuple(nv)]
    return ["mpirun", "--host", ",".join("%s:%d" % h for h in hosts), "--mca", "plm_rsh_agent", AGENT,
            *extra, "-np", str(np_)] + list(map(str, cmd))


def simulate(key, *args):
    need()
    if key not in _SIM:
        d = harness.tmpdir("agipd-mn-sim-")
        harness.run([harness.SIMULATE, "--out-folder", d, "--no-truth"] + list(map(str, args)), timeout=300)
        _SIM[key] = d
    return _SIM[key]


def correct(d, out, extra=()):
    return [harness.CORRECT, "--in-folder", d, "--out-folder", out, "--run", "1",
            "--constants-folder", os.path.join(d, "constants")] + list(map(str, extra))


def reference(d, extra=()):
    """The 1-rank run's outputs (one local rank)."""
    key = (d, tuple(extra))
    if key not in _REF:
        out = harness.tmpdir("agipd-mn-ref-")
        harness.mpirun(1, correct(d, out, list(extra) + ["--quiet"]), timeout=300)
        _REF[key] = out
    return _REF[key]


def corr_files(folder):
    return sorted(f for f in os.listdir(folder) if f.startswith("CORR-"))


def same_bytes(got, ref):
    """Every dataset outside METADATA of got equals ref's byte for byte."""
    errors = []
    with h5py.File(got, "r") as g, h5py.File(ref, "r") as r:
        names = []
        r.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and
                     not n.startswith("METADATA") else None)
        for part in ("image/data", "image/gain", "image/mask"):
            if not any(n.endswith(part) for n in names):
                errors.append(f"{os.path.basename(ref)}: no {part} to compare")
        for n in names:
            if n not in g:
                errors.append(f"{os.path.basename(got)}: {n} missing")
                continue
            a, b = g[n], r[n]
            if a.dtype != b.dtype or a.shape != b.shape or a[()].tobytes() != b[()].tobytes():
                errors.append(f"{os.path.basename(got)}: {n} differs from the 1-rank run")
    return errors


def check_equal(out, ref, what=""):
    errors = []
    if corr_files(out) != corr_files(ref):
        errors.append(f"files {corr_files(out)} vs the 1-rank run's {corr_files(ref)}")
    for f in sorted(set(corr_files(out)) & set(corr_files(ref))):
        errors += same_bytes(os.path.join(out, f), os.path.join(ref, f))
    left = [f for f in os.listdir(out) if f.startswith(".")]
    if left:
        errors.append(f"temporary files left: {left}")
    if errors:
        raise harness.Failed("\n  ".join(["outputs differ:"] + errors) + what)


def shm_left():
    """/dev/shm files named after this process's virtual hosts."""
    try:
        return sorted(f for f in os.listdir("/dev/shm") if TAG in f)
    except OSError:
        return []


def procs_left():
    """Processes whose UTS host name is one of this process's virtual
    hosts (ranks, daemons)."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if f"AGIPD_MN_TAG={TAG}".encode() in env.split(b"\0") and alive(int(p)):
            out.append(int(p))
    return out


def no_leftovers(what="", grace=10):
    """Ranks and daemons gone (a few seconds' grace), no /dev/shm file."""
    t0 = time.time()
    while procs_left() and time.time() - t0 < grace:
        time.sleep(0.2)
    left, shm = procs_left(), shm_left()
    for p in left:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read().rsplit(")", 1)
            with open(f"/proc/{p}/wchan") as f:
                wchan = f.read()
            what += f"\nleft: {p} {comm_of(p)} {st[1].split()[:3]} in {wchan}"
        except OSError:
            pass
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for f in shm:
        try:
            os.unlink(os.path.join("/dev/shm", f))
        except OSError:
            pass
    if left or shm:
        raise harness.Failed(f"left behind: processes {left}, /dev/shm files {shm}{what}")


def marked(cmd):
    """cmd with AGIPD_MN_TAG in its environment, so that its processes (ranks
    and, through mpirun's environment, daemons) can be found."""
    return ["env", "AGIPD_MN_TAG=" + TAG] + list(map(str, cmd))


def run(hosts, cmd, timeout=300, mca=()):
    """mpirun over the virtual nodes, the ranks marked; fails on leftovers.
    Returns the CompletedProcess (checked)."""
    cmd = marked(cmd)
    p = harness.run(mpirun_cmd(hosts, cmd, mca), timeout=timeout, check=False, env={"AGIPD_MN_TAG": TAG})
    what = f"\n{' '.join(mpirun_cmd(hosts, cmd, mca))}\nexit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    no_leftovers(what)
    if p.returncode != 0:
        raise harness.Failed("the multi-node run failed:" + what)
    p.what = what
    return p


def traced(hosts, d, tag, extra=(), mca=()):
    out = os.path.join(harness.tmpdir("agipd-mn-out-"), "out")
    tr = harness.tmpdir("agipd-mn-trace-")
    p = run(hosts, iotrace.wrap(tr) + correct(d, out, extra), mca=mca)
    return out, iotrace.Trace(tr, exclude=[d]), p


_ALONE = {}


def alone(d, module):
    """Bytes of module's constants that one rank takes loading them alone."""
    if (d, module) not in _ALONE:
        tr = harness.tmpdir("agipd-mn-trace-")
        out = harness.tmpdir("agipd-mn-out-")
        harness.mpirun(1, iotrace.wrap(tr) + correct(d, out, ["--modules", module, "--sequences", "0", "--quiet"]))
        t = iotrace.Trace(tr, exclude=[d])
        (h,) = t.hosts_of(module)
        _ALONE[(d, module)] = t.taken(h, module)
    return _ALONE[(d, module)]


def opens(t, host, module):
    return sum(r[3] for r in t._of(module) if r[0] == host)


def loaded_once_per_node(t, module, hosts, base):
    """On each of hosts, module's constants: the file taken by the host's
    ranks on it, none of them as much as a lone load; one shared segment
    mapped by all of them (when they are 2 or more).  Returns {host: opens}."""
    got = t.hosts_of(module)
    assert got == sorted(hosts), f"module {module} loaded on {got}, expected {sorted(hosts)}\n{t.describe()}"
    res = {}
    for h in hosts:
        pids = t.pids(h, module)
        if len(pids) > 1:
            for (hh, pid), b in t.per_pid(module).items():
                assert hh != h or b < 0.9 * base, (
                    f"{h}: rank {pid} took {b} bytes of module {module}'s constants, as much as a lone "
                    f"load ({base})\n{t.describe()}")
            segs = [s for s, p in t.segments(h).items() if pids <= p]
            assert segs, f"{h}: no shared segment mapped by all of {sorted(pids)}\n{t.describe()}"
        res[h] = opens(t, h, module)
    return res


def final_progress(stderr, files, frames):
    lines = [x for x in stderr.splitlines() if re.search(r"\] files \d+/\d+, frames", x)]
    want = f"files {files}/{files}, frames {frames}/{frames} (100%)"
    assert lines and want in lines[-1], f"final progress line should say '{want}': {lines[-1:] or stderr[-2000:]}"
    assert "no progress display" not in stderr, stderr[-2000:]


# ---------------------------------------------------------------- tests

def test_two_nodes_equal_one_rank():
    """6 files of 3 modules, 2 ranks on each of 2 nodes.  Only the shared-
    memory one-sided component is allowed (osc sm): no window may span
    nodes, whatever a site's MPI offers between them."""
    d = simulate("six", "--modules", "0-2", "--sequences", "2", "--trains", "3", "--cells", "16")
    ref = reference(d)
    out, t, p = traced([(A, 2), (B, 2)], d, "six", ["--schedule", "rounds"], mca=[("osc", "sm")])
    assert "on 4 rank(s)" in p.stdout, p.what
    check_equal(out, ref, p.what)
    assert t.hosts() == sorted([A, B]), t.describe()
    # round 1: A on module 0, B on module 1; round 2: module 2 on both nodes
    base = alone(d, 2)
    o0 = loaded_once_per_node(t, 0, [A], alone(d, 0))
    o1 = loaded_once_per_node(t, 1, [B], alone(d, 1))
    o2 = loaded_once_per_node(t, 2, [A, B], base)
    assert o0[A] == o1[B] == o2[A] == o2[B], (
        f"opens of a module's constants per node differ: {o0} {o1} {o2}\n{t.describe()}")
    final_progress(p.stderr, 6, 6 * 3 * 16)


def test_two_nodes_groups():
    """--schedule groups: 6 files of 3 modules on 2 ranks on each of 2 nodes
    are 2 groups, one per node, of 3 files each (modules 0, 0, 1 on A; 1, 2,
    2 on B): each group loads a module once for its files, shared by its 2
    ranks; outputs equal to one rank's."""
    d = simulate("six", "--modules", "0-2", "--sequences", "2", "--trains", "3", "--cells", "16")
    ref = reference(d)
    out, t, p = traced([(A, 2), (B, 2)], d, "six-groups", ["--schedule", "groups"], mca=[("osc", "sm")])
    check_equal(out, ref, p.what)
    o0 = loaded_once_per_node(t, 0, [A], alone(d, 0))
    o1 = loaded_once_per_node(t, 1, [A, B], alone(d, 1))
    o2 = loaded_once_per_node(t, 2, [B], alone(d, 2))
    assert o0[A] == o1[A] == o1[B] == o2[B], (
        f"opens of a module's constants per node differ: {o0} {o1} {o2}\n{t.describe()}")
    final_progress(p.stderr, 6, 6 * 3 * 16)


def test_group_spans_two_nodes():
    """1 file on 4 ranks: its group spans both nodes."""
    d = simulate("one", "--modules", "0", "--sequences", "1", "--trains", "6", "--cells", "16")
    ref = reference(d)
    out, t, p = traced([(A, 2), (B, 2)], d, "one")
    check_equal(out, ref, p.what)
    o = loaded_once_per_node(t, 0, [A, B], alone(d, 0))
    assert o[A] == o[B], f"opens per node differ: {o}\n{t.describe()}"
    for h in (A, B):
        assert len(t.pids(h, 0)) == 2, t.describe()
    final_progress(p.stderr, 1, 6 * 16)


def test_group_spans_three_nodes():
    """1 file on 3 ranks, one per node: no shared segment, each node loads."""
    d = simulate("one", "--modules", "0", "--sequences", "1", "--trains", "6", "--cells", "16")
    ref = reference(d)
    out, t, p = traced([(A, 1), (B, 1), (C, 1)], d, "three")
    check_equal(out, ref, p.what)
    loaded_once_per_node(t, 0, [A, B, C], alone(d, 0))
    assert not t.shm, "a rank alone on its node needs no shared segment\n" + t.describe()


def test_serial_writer_two_nodes():
    """--writer serial: whole files per rank, on both nodes."""
    d = simulate("six", "--modules", "0-2", "--sequences", "2", "--trains", "3", "--cells", "16")
    ref = reference(d)
    out = os.path.join(harness.tmpdir("agipd-mn-out-"), "out")
    p = run([(A, 2), (B, 2)], correct(d, out, ["--writer", "serial"]))
    check_equal(out, ref, p.what)


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        try:
            for t in os.listdir(f"/proc/{q}/task"):
                with open(f"/proc/{q}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            pass
    return out


def host_of(pid):
    p = subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True, text=True)
    return p.stdout.strip()


def test_kill9_rank_on_second_node():
    """kill -9 of a rank on node B while files are written."""
    args = ["--batch-frames", "4", "--common-mode"]
    d = simulate("faults", "--modules", "0-1", "--sequences", "2", "--trains", "24", "--cells", "16")
    ref = reference(d, args)
    out = os.path.join(harness.tmpdir("agipd-mn-out-"), "out")
    cmd = mpirun_cmd([(A, 2), (B, 2)], marked(correct(d, out, args)))
    env = dict(os.environ)
    env.update(harness.MPI_ENV)
    env["AGIPD_MN_TAG"] = TAG
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    proc.cmd = " ".join(cmd)
    victim = None
    try:
        t0 = time.time()
        ranks = []
        while proc.poll() is None and time.time() - t0 < 120:
            ranks = [k for k in descendants(proc.pid) if comm_of(k) == "agipd-correct"]
            if len(ranks) == 4 and os.path.isdir(out) and any(f.endswith(".part") for f in os.listdir(out)):
                break
            time.sleep(0.01)
        if proc.poll() is not None or len(ranks) != 4:
            so, se = finish(proc, LIMIT)
            raise harness.Skip(f"the run ended (exit {proc.returncode}) before a .part file was seen")
        on_b = [k for k in ranks if host_of(k) == B]
        assert len(on_b) == 2, f"ranks {ranks} on hosts {[host_of(k) for k in ranks]}, expected 2 on {B}"
        time.sleep(0.2)
        victim = on_b[-1]
        os.kill(victim, signal.SIGKILL)
        t_kill = time.time()
        so, se = finish(proc, LIMIT)      # fails when the job outlives the kill by 30 s
        took = time.time() - t_kill
    finally:
        kill_session(proc)
    what = (f"\n{proc.cmd}\nexit {proc.returncode} {took:.1f} s after the kill\n"
            f"stdout:\n{so[-2000:]}\nstderr:\n{se[-3000:]}")
    assert took < LIMIT, what
    if proc.returncode == 0:
        raise harness.Failed("exit 0 after a rank was killed" + what)
    # every rank on both nodes ends with the job (its daemons' grace included)
    no_leftovers(what, grace=max(1.0, LIMIT - (time.time() - t_kill)))
    while [k for k in ranks if alive(k)] and time.time() - t_kill < LIMIT:
        time.sleep(0.1)   # exiting: environment gone, not yet a zombie
    left = [k for k in ranks if alive(k)]
    assert not left, f"ranks {left} outlived the job by {LIMIT} s{what}"
    # whatever has a final name is complete
    errors = []
    for f in corr_files(out):
        errors += same_bytes(os.path.join(out, f), os.path.join(ref, f))
    if errors:
        raise harness.Failed("an incomplete or wrong file under a final name:\n  " + "\n  ".join(errors) + what)
    done = corr_files(out)
    print(f"killed rank pid {victim} on {B}; job ended {took:.1f} s later with exit {proc.returncode}; "
          f"left {sorted(os.listdir(out))}")
    p = run([(A, 2), (B, 2)], correct(d, out, args))
    if not re.search(r"%d file\(s\) corrected, %d skipped, 0 failed" % (4 - len(done), len(done)), p.stdout):
        raise harness.Failed(f"the re-run should correct {4 - len(done)} and skip {len(done)}" + p.what)
    check_equal(out, ref, p.what)


if __name__ == "__main__":
    harness.main(globals())
