"""Constants are loaded once per node and module, shared by the node's ranks.

Observed from outside agipd-correct (bin/iotrace.so, tests/iotrace.py), not
from its own counters:
  - the shared copy (--schedule rounds): the node's ranks on a module map
    one and the same shared-memory segment (one per node and module; kept
    across rounds while they stay on the module; none for a rank alone on
    its module); with --schedule groups the ranks of a group on a node
    share, and keep, one copy while the group stays on the module;
  - the constants file: every rank of the group takes a part of it (opens,
    reads, resident pages of its mappings), none as much as a rank that
    loads it alone, and a module kept for a second round is not opened
    again.
The file's layout (pixel-major, cells inside) means any range of cells
touches every page of a constant, so page counts cannot show the split of
the cells between ranks; the checksum's split and the single segment can.
"""
import os
import re

import harness
import iotrace


def simulate(d, modules, sequences):
    harness.run([harness.SIMULATE, "--out-folder", d, "--modules", modules, "--sequences", str(sequences),
                 "--trains", "2", "--cells", "16", "--no-truth"], timeout=120)


def traced(d, np_, tag, extra=()):
    """Run np_ ranks on d's run under the library; (Trace, stdout)."""
    out = os.path.join(d, "out-" + tag)
    tr = os.path.join(d, "trace-" + tag)
    os.makedirs(tr)
    p = harness.mpirun(np_, iotrace.wrap(tr) + [
        harness.CORRECT, "--in-folder", d, "--out-folder", out, "--run", "1",
        "--constants-folder", os.path.join(d, "constants"), *extra], timeout=180)
    return iotrace.Trace(tr, exclude=[d]), p.stdout


_BASE = {}


def alone(d, module):
    """Bytes of module's constants one rank takes when it loads them alone."""
    if (d, module) not in _BASE:
        t, _ = traced(d, 1, "alone%d" % module, ["--modules", str(module), "--sequences", "0"])
        (host,) = t.hosts_of(module)
        _BASE[(d, module)] = t.taken(host, module)
        assert _BASE[(d, module)] > 0, t.describe()
    return _BASE[(d, module)]


def corrected(stdout, n):
    assert re.search(r"%d file\(s\) corrected, 0 skipped, 0 failed" % n, stdout), stdout[-2000:]


def shared_once(t, module, nranks, base, nseg=1):
    """module's constants: one segment on this node mapped by all nranks
    ranks that took the file (nseg in all when the run loads nseg modules
    one after the other), each of which took less than base."""
    (host,) = t.hosts_of(module)
    pids = t.pids(host, module)
    assert len(pids) == nranks, "%d rank(s) took the constants file, expected %d\n%s" % (
        len(pids), nranks, t.describe())
    for (h, pid), b in t.per_pid(module).items():
        assert b < 0.9 * base, "rank %d took %d bytes of the constants, as much as loading alone (%d)\n%s" % (
            pid, b, base, t.describe())
    segs = {s: p for s, p in t.segments(host).items() if pids <= p}
    assert len(segs) == nseg, "expected %d shared segment(s) mapped by all of %s, found %s\n%s" % (
        nseg, sorted(pids), segs, t.describe())
    return sorted(segs)


def test_one_module_two_ranks_loads_once():
    d = harness.tmpdir()
    simulate(d, "0", 2)            # two files of one module: both ranks on module 0 at once
    t, so = traced(d, 2, "np2", ["--schedule", "rounds"])
    corrected(so, 2)
    shared_once(t, 0, 2, alone(d, 0))


def test_one_file_three_ranks_loads_once():
    d = harness.tmpdir()
    simulate(d, "0", 1)
    t, so = traced(d, 3, "np3")
    corrected(so, 1)
    shared_once(t, 0, 3, alone(d, 0))


def test_alone_on_a_module_no_segment():
    d = harness.tmpdir()
    simulate(d, "0-1", 1)          # 2 files, 2 ranks: one module each
    t, so = traced(d, 2, "np2")
    corrected(so, 2)
    for m in (0, 1):
        (host,) = t.hosts_of(m)
        assert len(t.pids(host, m)) == 1, t.describe()
    assert not t.shm, "a rank alone on its module needs no shared segment\n" + t.describe()


def test_two_modules_each_once():
    d = harness.tmpdir()
    simulate(d, "0-1", 2)          # 4 files, 2 ranks: two rounds, one module each
    t, so = traced(d, 2, "np2", ["--schedule", "rounds"])
    corrected(so, 4)
    # one segment per module (the first is freed when the ranks move on)
    shared_once(t, 0, 2, alone(d, 0), nseg=2)
    shared_once(t, 1, 2, alone(d, 1), nseg=2)


def test_kept_across_rounds():
    d = harness.tmpdir()
    simulate(d, "0", 4)            # 4 files of one module on 2 ranks: 2 rounds, loaded once
    t1, so1 = traced(d, 2, "one-round", ["--sequences", "0-1", "--schedule", "rounds"])
    t2, so2 = traced(d, 2, "two-rounds", ["--schedule", "rounds"])
    corrected(so1, 2)
    corrected(so2, 4)
    shared_once(t2, 0, 2, alone(d, 0))
    opens = [sum(r[3] for r in t.files) for t in (t1, t2)]
    assert opens[0] == opens[1], "the constants file was opened %d times in one round, %d in two\n%s" % (
        opens[0], opens[1], t2.describe())


def test_groups_kept_across_files():
    """--schedule groups: 4 files of one module on 2 ranks are 2 groups of
    one rank, each correcting 2 files back to back: each rank loads the
    module alone (no shared segment: its group has no other rank on the
    node) and keeps it for its second file, so each rank opens the constants
    file as often as one rank correcting 2 files."""
    d = harness.tmpdir()
    simulate(d, "0", 4)
    t1, so1 = traced(d, 1, "g-two-files", ["--sequences", "0-1", "--schedule", "groups"])
    t2, so2 = traced(d, 2, "g-four-files", ["--schedule", "groups"])
    corrected(so1, 2)
    corrected(so2, 4)
    (host,) = t2.hosts_of(0)
    assert len(t2.pids(host, 0)) == 2, t2.describe()
    assert not t2.shm, "a group of one rank needs no shared segment\n" + t2.describe()
    opens = [sum(r[3] for r in t.files) for t in (t1, t2)]
    assert 2 * opens[0] == opens[1], "the constants file was opened %d times by 1 rank for 2 files, %d by 2 " \
        "ranks for 4\n%s" % (opens[0], opens[1], t2.describe())


harness.main(globals())
