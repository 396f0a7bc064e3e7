#!/usr/bin/python3
"""Tests of the parallel writes of bin/agipd-correct (1-4 ranks, oversubscribed).

The outputs of the collective writer at 1, 2, 3 and 4 ranks -- more ranks than
files, fewer ranks than files, ranks with no frames, uneven and empty trains,
a single-frame file, an empty selection, several batch sizes -- must be equal,
dataset by dataset, to those of ``--writer serial`` on one rank, and agree
with the raw files (per-frame arrays and INDEX, computed here independently).
The files must read back with stock readers (h5py, h5dump); gain and mask must
carry shuffle, deflate, fletcher32 in that order with a checksum that is real
and checked on read; --dry-run must print the plan and write nothing; the run
summary must show per-rank counters; no ``.CORR-*.part`` file may remain; and
existing outputs must be skipped without --overwrite and replaced with it.

Every MPI run is under a time-out.  Set AGIPD_KEEP=1 to keep the temporary
folders.
"""
import collections
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TIMEOUT = 120
KID = "SPB_DET_AGIPD1M-1"
ROWS, COLS = 512, 128
FRAME_DS = ("data", "gain", "mask")
PF_DS = ("cellId", "pulseId", "trainId", "status", "length")
_CACHE = {}


def tmpdir():
    d = harness.tmpdir("agipd-par-")
    return d


def need_bins():
    for b in (harness.CORRECT, harness.SIMULATE):
        if not os.access(b, os.X_OK):
            raise harness.Skip(f"{b} not built")


def src_of(module):
    return f"{KID}/DET/{module}CH0:xtdf"


def corr_name(mod, seq, run=1):
    return f"CORR-R{run:04d}-AGIPD{mod:02d}-S{seq:05d}.h5"


def raw_name(mod, seq, run=1):
    return f"RAW-R{run:04d}-AGIPD{mod:02d}-S{seq:05d}.h5"


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

def simulate(key, *args):
    need_bins()
    if key not in _CACHE:
        d = tmpdir()
        harness.run([harness.SIMULATE, "--out-folder", d, "--no-truth"] + list(map(str, args)),
                    timeout=TIMEOUT)
        _CACHE[key] = d
    return _CACHE[key]


def sim_main():
    """2 modules x 5 sequences; 6 trains of 4 cells with every edge case:
    uneven trains, an empty train, a train of id 0 (dropped), padded INDEX,
    cells out of order, NaN constants."""
    return simulate("main", "--modules", "0-1", "--sequences", "5", "--trains", "6", "--cells", "4",
                    "--edge-cases", "all")


def sim_one_train():
    """1 module, 1 sequence, 1 train of 4 cells (with --cells 3:4: one frame)."""
    return simulate("one_train", "--modules", "0", "--sequences", "1", "--trains", "1", "--cells", "4")


def sim_one_frame():
    """1 module, 1 sequence, 1 train of 1 cell: a file of a single frame."""
    return simulate("one_frame", "--modules", "0", "--sequences", "1", "--trains", "1", "--cells", "1")


def correct(sim, np_, args=(), out=None, check=True, timeout=TIMEOUT, env=None):
    """bin/agipd-correct under mpirun; returns (out folder, CompletedProcess)."""
    out = out or os.path.join(tmpdir(), "out")
    cmd = [harness.CORRECT, "--in-folder", sim, "--out-folder", out, "--run", "1",
           "--constants-folder", os.path.join(sim, "constants")] + list(map(str, args))
    t0 = time.time()
    p = harness.mpirun(np_, cmd, timeout=timeout, check=check, env=env)
    p.wall = time.time() - t0
    p.cmd = f"mpirun -np {np_} " + " ".join(cmd)
    if os.path.isdir(out):
        assert_no_part(out, p.cmd)
    return out, p


def assert_no_part(out, what=""):
    left = [f for f in os.listdir(out) if f.endswith(".part") or f.startswith(".CORR-")]
    if left:
        raise harness.Failed(f"temporary files remain in {out} after {what}: {left}")


def reference(key, sim, args):
    """The --writer serial output on one rank (cached)."""
    k = ("ref", key, tuple(args))
    if k not in _CACHE:
        out, _ = correct(sim, 1, list(args) + ["--writer", "serial"])
        _CACHE[k] = out
    return _CACHE[k]


def files_of(sim, modules, seqs):
    return [(m, s) for m in modules for s in seqs
            if os.path.exists(os.path.join(sim, "r0001", raw_name(m, s)))]


# ---------------------------------------------------------------------------
# Independent expectation from the raw file
# ---------------------------------------------------------------------------

def expected_from_raw(sim, mod, seq, cells=None):
    """Kept frames, per-frame arrays and INDEX as SPEC.md section 5 defines them."""
    with h5py.File(os.path.join(sim, "r0001", raw_name(mod, seq)), "r") as h:
        src = src_of(mod)
        tid = h["INDEX/trainId"][()]
        ts = h["INDEX/timestamp"][()]
        flag = h["INDEX/flag"][()]
        first = h[f"INDEX/{src}/image/first"][()]
        count = h[f"INDEX/{src}/image/count"][()]
        pf = {n: h[f"INSTRUMENT/{src}/image/{n}"][()].reshape(-1) for n in PF_DS}
    rng = range(*cells) if cells else None
    keep, o_tid, o_ts, o_flag, o_first, o_count = [], [], [], [], [], []
    for t in range(len(tid)):
        if tid[t] == 0:
            continue
        fr = [i for i in range(int(first[t]), int(first[t] + count[t]))
              if rng is None or int(pf["cellId"][i]) in rng]
        o_first.append(len(keep))
        o_count.append(len(fr))
        o_tid.append(tid[t])
        o_ts.append(ts[t])
        o_flag.append(flag[t])
        keep += fr
    keep = np.array(keep, dtype=np.int64)
    exp = {f"INSTRUMENT/{src}/image/{n}": pf[n][keep] for n in PF_DS}
    exp.update({"INDEX/trainId": np.array(o_tid), "INDEX/timestamp": np.array(o_ts),
                "INDEX/flag": np.array(o_flag),
                f"INDEX/{src}/image/first": np.array(o_first, dtype=np.uint64),
                f"INDEX/{src}/image/count": np.array(o_count, dtype=np.uint64)})
    return exp, len(keep), o_first, o_tid


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------

def datasets(h):
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj
    h.visititems(visit)
    return out


def filters_of(ds):
    pl = ds.id.get_create_plist()
    return [pl.get_filter(i)[0] for i in range(pl.get_nfilters())]


def same(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return np.array_equal(a, b, equal_nan=True)
    return np.array_equal(a, b)


SKIP_CONTENT = ("METADATA/creationDate", "METADATA/updateDate")


def compare_files(got_path, ref_path, errors, label=""):
    """Every dataset of got equal to ref's (names, dtypes, shapes, contents,
    chunking and filters); METADATA dates excepted."""
    pre = f"{label}{os.path.basename(got_path)}: "
    with h5py.File(got_path, "r") as g, h5py.File(ref_path, "r") as r:
        dg, dr = datasets(g), datasets(r)
        if set(dg) != set(dr):
            errors.append(pre + f"datasets differ: only here {sorted(set(dg) - set(dr))}, "
                                f"only in serial {sorted(set(dr) - set(dg))}")
        for name in sorted(set(dg) & set(dr)):
            a, b = dg[name], dr[name]
            if a.dtype != b.dtype or a.shape != b.shape:
                errors.append(pre + f"{name}: {a.dtype}{a.shape} vs serial {b.dtype}{b.shape}")
                continue
            if a.chunks != b.chunks or filters_of(a) != filters_of(b):
                errors.append(pre + f"{name}: chunks {a.chunks} filters {filters_of(a)} vs serial "
                                    f"{b.chunks} {filters_of(b)}")
            if name in SKIP_CONTENT:
                continue
            x, y = a[()], b[()]
            if not same(x, y):
                if x.ndim == 3:
                    bad = sorted({int(i) for i in np.argwhere(
                        ~((x == y) | (np.isnan(x.astype(float)) & np.isnan(y.astype(float)))))[:, 0]})
                    errors.append(pre + f"{name}: frames {bad[:20]} differ from serial")
                else:
                    errors.append(pre + f"{name}: {x.tolist()[:20]} vs serial {y.tolist()[:20]}")


def check_against_raw(sim, mod, seq, path, errors, cells=None):
    exp, n, _, _ = expected_from_raw(sim, mod, seq, cells)
    pre = f"{os.path.basename(path)}: "
    src = src_of(mod)
    with h5py.File(path, "r") as h:
        for name, e in exp.items():
            if name not in h:
                errors.append(pre + f"missing {name}")
                continue
            got = h[name][()]
            if got.shape != e.shape or not np.array_equal(got, e):
                errors.append(pre + f"{name}: {got.tolist()[:20]} != raw {e.tolist()[:20]}")
        for name in FRAME_DS:
            ds = h.get(f"INSTRUMENT/{src}/image/{name}")
            if ds is None:
                errors.append(pre + f"missing image/{name}")
            elif ds.shape != (n, ROWS, COLS):
                errors.append(pre + f"image/{name} shape {ds.shape}, expected {(n, ROWS, COLS)}")


def check_run(sim, key, np_, modules, seqs, extra=(), cells=None, writer="collective", common=()):
    """Run at np_ ranks with extra options; compare each output with that of
    serial on 1 rank (both with the common options) and with raw."""
    sel = ["--modules", ",".join(map(str, modules)), "--sequences", ",".join(map(str, seqs))]
    base = sel + (["--cells", ":".join(map(str, cells))] if cells else []) + list(common)
    ref = reference(key, sim, base)
    out, p = correct(sim, np_, base + ["--writer", writer] + list(extra))
    want = files_of(sim, modules, seqs)
    names = sorted(corr_name(m, s) for m, s in want)
    got = sorted(f for f in os.listdir(out))
    if got != names:
        raise harness.Failed(f"{p.cmd}: wrote {got}, expected {names}")
    errors = []
    for m, s in want:
        compare_files(os.path.join(out, corr_name(m, s)), os.path.join(ref, corr_name(m, s)), errors,
                      f"np {np_}: ")
        check_against_raw(sim, m, s, os.path.join(out, corr_name(m, s)), errors, cells)
    if errors:
        raise harness.Failed(f"{p.cmd}:\n  " + "\n  ".join(errors[:30]))
    summary = parse_summary(p.stdout, np_)
    total = sum(expected_from_raw(sim, m, s, cells)[1] for m, s in want)
    if sum(r["frames"] for r in summary.values()) != total:
        raise harness.Failed(f"{p.cmd}: per-rank frames {summary} do not add up to {total}\n{p.stdout}")
    return out, p, summary


# ---------------------------------------------------------------------------
# Summary and plan parsing
# ---------------------------------------------------------------------------

def parse_summary(stdout, np_):
    lines = stdout.splitlines()
    hdr = [i for i, l in enumerate(lines) if l.split()[:2] == ["rank", "frames"]]
    if len(hdr) != 1:
        raise harness.Failed(f"no per-rank table in the summary:\n{stdout}")
    cols = lines[hdr[0]].split()
    gz = [c for c in ("gz-frames", "gz-chunks") if c in cols]
    if not gz:
        raise harness.Failed(f"no gz-frames (or gz-chunks) column in the per-rank table: {cols}")
    rows = {}
    for l in lines[hdr[0] + 1:]:
        v = l.split()
        if len(v) != len(cols) or not v[0].isdigit():
            break
        row = {c: float(x) for c, x in zip(cols[1:], v[1:])}
        # gz: gain+mask frames this rank filtered (gz-chunks counts 2 per frame).
        row["gz"] = row[gz[0]] / (2 if gz[0] == "gz-chunks" else 1)
        rows[int(v[0])] = row
    if sorted(rows) != list(range(np_)):
        raise harness.Failed(f"per-rank table has rows {sorted(rows)}, expected 0..{np_ - 1}:\n{stdout}")
    return rows


PLAN_FILE = re.compile(r"^\s+AGIPD(\d+) S(\d+): (\d+) frames in (\d+) trains, ranks (\d+)-(\d+)$")
PLAN_RANK = re.compile(r"^\s+rank (\d+): (?:no frames|frames (\d+)-(\d+) \(trains (\d+)\.\.(\d+)\))$")


def parse_plan(stdout):
    """{(module, seq): {"n":, "trains":, "ranks": (r0, r1), "parts": {rank: None | (a, b, t0, t1)}}}"""
    plan, cur = {}, None
    for l in stdout.splitlines():
        m = PLAN_FILE.match(l)
        if m:
            mod, seq, n, nt, r0, r1 = map(int, m.groups())
            if (mod, seq) in plan:
                raise harness.Failed(f"file AGIPD{mod:02d} S{seq:05d} planned twice:\n{stdout}")
            cur = plan[(mod, seq)] = {"n": n, "trains": nt, "ranks": (r0, r1), "parts": {}}
            continue
        m = PLAN_RANK.match(l)
        if m:
            if cur is None:
                raise harness.Failed(f"rank line before any file: {l!r}")
            r = int(m.group(1))
            cur["parts"][r] = None if m.group(2) is None else tuple(int(x) for x in m.groups()[1:])
    return plan


# ---------------------------------------------------------------------------
# Tests: equal outputs across rank counts
# ---------------------------------------------------------------------------

def test_one_file_1_to_4_ranks():
    """1 file (uneven trains, an empty train, a train of id 0, padding) at
    1-4 ranks, more ranks than files.  Small batches make
    ranks run unequal numbers of batches."""
    sim = sim_main()
    for np_, extra in ((1, []), (2, ["--batch-frames", "3"]), (3, []), (4, ["--batch-frames", "2"])):
        check_run(sim, "main", np_, [0], [0], extra)


def test_ranks_without_frames():
    """A file of 1 train (4 frames) on 3 and 4 ranks: trains are not split, so
    all but one rank of the group have no frames, yet take part in every
    collective write."""
    sim = sim_one_train()
    for np_ in (3, 4):
        _, _, summ = check_run(sim, "onetrain", np_, [0], [0], ["--batch-frames", "3"])
        if sorted(r["frames"] for r in summ.values()) != [0] * (np_ - 1) + [4]:
            raise harness.Failed(f"expected one rank with the 4 frames: {summ}")


def test_fewer_ranks_than_files():
    """3 files on 2 ranks (a round of 2 whole files, then 1 file on 2 ranks),
    3 files on 4 ranks (groups of 1, 1, 2 ranks), 5 files on 4 ranks (4 whole files, then 1 file on 4 ranks), 10 files on 3
    ranks with 1-frame batches, two modules."""
    sim = sim_main()
    check_run(sim, "main", 2, [0], [0, 1, 2])
    check_run(sim, "main", 4, [1], [0, 1, 2])       # groups of 1, 1 and 2 ranks
    check_run(sim, "main", 4, [0], [0, 1, 2, 3, 4])
    check_run(sim, "main", 3, [0, 1], [0, 1, 2, 3, 4], ["--batch-frames", "1"])


def sim_uneven():
    """1 module, 5 sequences of 5 trains of 4 cells, the last of 1 train:
    files of unequal length."""
    return simulate("uneven", "--modules", "0", "--sequences", "5", "--trains", "5", "--last-trains", "1",
                    "--cells", "4", "--edge-cases", "uneven-trains")


def test_schedules_uneven_files():
    """5 files of unequal length on 3 ranks with --schedule groups and
    --schedule rounds, and 6 files on 3 ranks (groups of one rank, each
    correcting two files of its own): every output equals the 1-rank run's."""
    sim = sim_uneven()
    for sched in ("groups", "rounds"):
        check_run(sim, "uneven", 3, [0], [0, 1, 2, 3, 4], ["--schedule", sched])
    sim = sim_main()
    for sched in ("groups", "rounds"):
        check_run(sim, "main", 3, [0, 1], [0, 1, 2], ["--schedule", sched])


def test_groups_fail_fast():
    """--fail-fast with fixed groups (6 files on 3 one-rank groups of 2 files):
    the first file of group 0 is broken; the run stops, exits 1 without a
    hang, leaves no temporaries, never runs group 0's second file, names the
    failed file, and every file it wrote equals the 1-rank run's."""
    src_sim = sim_main()
    sim = tmpdir()
    shutil.copytree(os.path.join(src_sim, "constants"), os.path.join(sim, "constants"))
    os.makedirs(os.path.join(sim, "r0001"))
    for f in os.listdir(os.path.join(src_sim, "r0001")):
        os.symlink(os.path.join(src_sim, "r0001", f), os.path.join(sim, "r0001", f))
    bad = os.path.join(sim, "r0001", raw_name(0, 0))
    size = os.path.getsize(bad)   # as large as before: the plan weighs files by size
    os.remove(bad)
    with open(bad, "wb") as f:
        f.write(b"garbage\n".ljust(size, b"\0"))
    sel = ["--modules", "0,1", "--sequences", "0,1,2"]
    ref = reference("main", src_sim, sel)
    for sched in ("groups", "rounds"):
        out, p = correct(sim, 3, sel + ["--fail-fast", "--schedule", sched], check=False)
        what = f"{p.cmd}\n{p.stdout}\n{p.stderr}"
        if p.returncode != 1 or raw_name(0, 0) not in p.stderr:
            raise harness.Failed(f"exit {p.returncode} (expected 1, the bad file named):\n{what}")
        got = sorted(os.listdir(out)) if os.path.isdir(out) else []
        if corr_name(0, 0) in got or (sched == "groups" and corr_name(0, 1) in got):
            raise harness.Failed(f"{sched}: files after the failure of group 0 were written: {got}\n{what}")
        if len(got) >= 5:
            raise harness.Failed(f"{sched}: the run did not stop: {got}\n{what}")
        errors = []
        for f in got:
            compare_files(os.path.join(out, f), os.path.join(ref, f), errors, f"{sched}: ")
        if errors:
            raise harness.Failed("\n".join(errors[:20]))


def test_serial_writer_many_ranks():
    """--writer serial on 3 ranks (one rank per file, idle ranks in the last
    round) equals serial on 1 rank."""
    sim = sim_main()
    check_run(sim, "main", 3, [0, 1], [0, 1], writer="serial")


def test_single_frame_file():
    """A 1-train, 1-cell file (1 frame) at 1-3 ranks, and --cells 3:4 on a
    1-train run (1 kept frame of 4); ranks beyond the first have no frames."""
    sim = sim_one_frame()
    for np_ in (1, 2, 3):
        check_run(sim, "oneframe", np_, [0], [0])
    sim = sim_one_train()
    for np_ in (2, 4):
        _, _, summ = check_run(sim, "onetrain", np_, [0], [0], cells=(3, 4))
        if [r["frames"] for r in summ.values()].count(1) != 1:
            raise harness.Failed(f"expected one rank with the 1 frame: {summ}")


def test_empty_selection():
    """--cells 100:101 keeps no frame: datasets of 0 frames, INDEX with every
    valid train and count 0, at 1 and 3 ranks, equal to serial."""
    sim = sim_main()
    for np_ in (1, 3):
        out, _, _ = check_run(sim, "main", np_, [0, 1], [1], cells=(100, 101))
    with h5py.File(os.path.join(out, corr_name(0, 1)), "r") as h:
        src = src_of(0)
        for n in FRAME_DS:
            if h[f"INSTRUMENT/{src}/image/{n}"].shape != (0, ROWS, COLS):
                raise harness.Failed(f"{n}: shape {h[f'INSTRUMENT/{src}/image/{n}'].shape}")
        ntr = len(expected_from_raw(sim, 0, 1)[3])
        if len(h["INDEX/trainId"]) != ntr or h[f"INDEX/{src}/image/count"][()].any():
            raise harness.Failed(f"INDEX of an empty selection: {h['INDEX/trainId'][()]}, "
                                 f"{h[f'INDEX/{src}/image/count'][()]}")


def test_other_writers():
    """--writer collective-h5filter at 2 and 4 ranks, collective float16 data
    at 3 ranks, collective transfers of the data at 3 ranks, collective with --deflate-level 6 (zlib instead of ISA-L) at
    3 ranks: equal to serial, checksums right; --writer null at 2 ranks
    writes no file."""
    sim = sim_main()
    check_run(sim, "main", 2, [0, 1], [0], writer="collective-h5filter")
    check_run(sim, "main", 4, [0], [1], ["--batch-frames", "2"], writer="collective-h5filter")
    check_run(sim, "main", 3, [1], [3, 4], ["--batch-frames", "2"], common=["--data-dtype", "float16"])
    check_run(sim, "main", 3, [0, 1], [0, 1], ["--batch-frames", "3", "--io-transfer", "collective"])
    out, _, _ = check_run(sim, "main", 3, [0], [0, 1], ["--deflate-level", "6"])
    for s in (0, 1):
        verify_chunks(os.path.join(out, corr_name(0, s)))
        with h5py.File(os.path.join(out, corr_name(0, s)), "r") as h:
            pl = h[f"INSTRUMENT/{src_of(0)}/image/gain"].id.get_create_plist()
            if pl.get_filter(1)[2] != (6,):
                raise harness.Failed(f"deflate level of gain: {pl.get_filter(1)}")
    out, p = correct(sim, 2, ["--modules", "0", "--sequences", "0-1", "--writer", "null"])
    if os.path.isdir(out) and os.listdir(out):
        raise harness.Failed(f"{p.cmd}: wrote {os.listdir(out)}")
    summ = parse_summary(p.stdout, 2)
    if sum(v["frames"] for v in summ.values()) != sum(expected_from_raw(sim, 0, q)[1] for q in (0, 1)):
        raise harness.Failed(f"{p.cmd}: frames {summ}")


def test_cell_selection_with_gaps():
    """--cells 1:4:2 (cells 1 and 3, scattered by the cell-order edge case) at 4 ranks."""
    check_run(sim_main(), "main", 4, [0, 1], [2], cells=(1, 4, 2))


# ---------------------------------------------------------------------------
# Stock readers, storage, fletcher32
# ---------------------------------------------------------------------------

def collective_2(key="c2"):
    """A collective 2-rank output of module 0 sequences 0-1 (cached)."""
    if key not in _CACHE:
        out, _ = correct(sim_main(), 2, ["--modules", "0", "--sequences", "0-1", "--batch-frames", "2"])
        _CACHE[key] = out
    return _CACHE[key]


def test_storage_layout():
    """gain and mask: filters exactly shuffle(2), deflate(1), fletcher32(3) in
    that order; data, gain, mask chunked (1, 512, 128); only standard filters
    anywhere; the dtypes of SPEC.md section 5."""
    out = collective_2()
    errors = []
    for path in sorted(glob.glob(os.path.join(out, "CORR-*.h5"))):
        with h5py.File(path, "r") as h:
            img = h[f"INSTRUMENT/{src_of(0)}/image"]
            for n in FRAME_DS:
                ds = img[n]
                if ds.chunks != (1, ROWS, COLS):
                    errors.append(f"{path}: {n} chunks {ds.chunks}")
                f = filters_of(ds)
                if n != "data" and f != [2, 1, 3]:
                    errors.append(f"{path}: {n} filters {f}, expected [2, 1, 3]")
                if not set(f) <= {1, 2, 3}:
                    errors.append(f"{path}: {n} non-standard filters {f}")
            for name, ds in datasets(h).items():
                if not set(filters_of(ds)) <= {1, 2, 3}:
                    errors.append(f"{path}: {name} filters {filters_of(ds)}")
            want = {"image/data": "float32", "image/gain": "uint8", "image/mask": "uint32",
                    "image/cellId": "uint16", "image/pulseId": "uint64", "image/trainId": "uint64"}
            for name, dt in want.items():
                if img[name.split("/")[1]].dtype != np.dtype(dt):
                    errors.append(f"{path}: {name} dtype {img[name.split('/')[1]].dtype}, expected {dt}")
            for name in ("first", "count"):
                ds = h[f"INDEX/{src_of(0)}/image/{name}"]
                if ds.dtype != np.uint64 or ds.shape != h["INDEX/trainId"].shape:
                    errors.append(f"{path}: INDEX .../{name} {ds.dtype}{ds.shape}")
    if errors:
        raise harness.Failed("\n".join(errors))


def test_stock_readers():
    """h5py reads every dataset of every file; h5dump exits 0 dumping a whole
    single-frame file (written by 3 ranks) and the gain and mask of a
    multi-frame file (which checks every chunk's fletcher32)."""
    if not shutil.which("h5dump"):
        raise harness.Skip("h5dump not installed (hdf5-tools)")
    out1, _ = correct(sim_one_frame(), 3)
    f1 = os.path.join(out1, corr_name(0, 0))
    p = subprocess.run(["h5dump", f1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=TIMEOUT)
    if p.returncode != 0:
        raise harness.Failed(f"h5dump {f1}: exit {p.returncode}: {p.stderr[-2000:]}")
    out = collective_2()
    f2 = os.path.join(out, corr_name(0, 1))
    for n in ("gain", "mask"):
        p = subprocess.run(["h5dump", "-d", f"/INSTRUMENT/{src_of(0)}/image/{n}", f2],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
        if p.returncode != 0:
            raise harness.Failed(f"h5dump -d {n} {f2}: exit {p.returncode}: {p.stderr[-2000:]}")
    for path in glob.glob(os.path.join(out, "*.h5")) + [f1]:
        with h5py.File(path, "r") as h:
            for name, ds in datasets(h).items():
                ds[()]


def fletcher32(b):
    """HDF5's H5_checksum_fletcher32 (H5checksum.c)."""
    n = len(b) // 2
    s1 = s2 = 0
    i = 0
    while n:
        t = min(n, 360)
        n -= t
        for _ in range(t):
            s1 += (b[i] << 8) | b[i + 1]
            s2 += s1
            i += 2
        s1 = (s1 & 0xffff) + (s1 >> 16)
        s2 = (s2 & 0xffff) + (s2 >> 16)
    if len(b) % 2:
        s1 += b[i] << 8
        s2 += s1
        s1 = (s1 & 0xffff) + (s1 >> 16)
        s2 = (s2 & 0xffff) + (s2 >> 16)
    s1 = (s1 & 0xffff) + (s1 >> 16)
    s2 = (s2 & 0xffff) + (s2 >> 16)
    return (s2 << 16) | s1


def verify_chunks(path, module=0):
    """Every gain/mask chunk of path: unfiltered mask 0, ends with the
    Fletcher-32 (little-endian) of the deflate stream before it, inflates and
    unshuffles to the frame h5py reads.  Returns ({(name, frame): (file offset,
    size)}, frames, {name: array})."""
    img = f"INSTRUMENT/{src_of(module)}/image"
    chunks, orig = {}, {}
    with h5py.File(path, "r") as h:
        n = h[f"{img}/gain"].shape[0]
        orig = {k: h[f"{img}/{k}"][()] for k in ("gain", "mask", "data")}
        for k in ("gain", "mask"):
            ds = h[f"{img}/{k}"]
            if ds.id.get_num_chunks() != n:
                raise harness.Failed(f"{path}: {k}: {ds.id.get_num_chunks()} chunks for {n} frames")
            for i in range(n):
                info = ds.id.get_chunk_info(i)
                fmask, payload = ds.id.read_direct_chunk(info.chunk_offset)
                if fmask != 0 or len(payload) != info.size:
                    raise harness.Failed(f"{path}: {k} chunk {i}: filter mask {fmask}, {len(payload)} "
                                         f"bytes vs size {info.size}")
                body, stored = payload[:-4], int.from_bytes(payload[-4:], "little")
                if fletcher32(body) != stored:
                    raise harness.Failed(f"{path}: {k} chunk {i}: stored checksum {stored:#x}, "
                                         f"Fletcher-32 of the stream {fletcher32(body):#x}")
                raw = zlib.decompress(body)
                isz = ds.dtype.itemsize
                arr = np.frombuffer(raw, np.uint8).reshape(isz, -1).T.copy().view(ds.dtype)
                if not np.array_equal(arr.reshape(ROWS, COLS), orig[k][info.chunk_offset[0]]):
                    raise harness.Failed(f"{path}: {k} chunk {i}: unshuffled inflated stream != frame")
                chunks[(k, info.chunk_offset[0])] = (info.byte_offset, info.size)
    return chunks, n, orig


def test_fletcher32_serial_writer():
    """The chunk verifier on --writer serial output, whose chunks HDF5's own
    filter pipeline wrote: the verifier's idea of the stored checksum (the
    Fletcher-32 of the stream, little-endian) is HDF5's, so that it can vouch
    for the collective writer's chunks (tests/test_writer.c compares the
    bytes of both in C).  Also at deflate level 6."""
    sim = sim_main()
    for extra in ([], ["--deflate-level", "6"]):
        out = reference("main", sim, ["--modules", "0", "--sequences", "0,1"] + extra)
        for s in (0, 1):
            _, n, _ = verify_chunks(os.path.join(out, corr_name(0, s)))
            if n < 1:
                raise harness.Failed(f"serial output {corr_name(0, s)} has no frames to verify")


def test_fletcher32_checked():
    """Each gain/mask chunk ends with the Fletcher-32 of its deflate stream;
    flipping a payload byte, or a checksum byte (the deflate stream intact),
    of one frame in a copy of the file makes reading that frame fail while
    the other frames still read and equal the original."""
    out = collective_2()
    path = os.path.join(out, corr_name(0, 0))
    img = f"INSTRUMENT/{src_of(0)}/image"
    chunks, n, orig = verify_chunks(path)
    if n < 3:
        raise harness.Failed(f"need 3 frames, have {n}")
    with open(path, "rb") as f:
        blob = f.read()
    cases = [("gain", n - 1, "payload"), ("mask", 1, "checksum"), ("gain", 0, "checksum")]
    for k, frame, where in cases:
        off, size = chunks[(k, frame)]
        pos = off + (size // 2 if where == "payload" else size - 2)
        bad = bytearray(blob)
        bad[pos] ^= 0x5A
        cp = os.path.join(tmpdir(), "corrupt.h5")
        with open(cp, "wb") as f:
            f.write(bad)
        with h5py.File(cp, "r") as h:
            ds = h[f"{img}/{k}"]
            try:
                ds[frame]
            except OSError:
                pass
            else:
                raise harness.Failed(f"{k} frame {frame}: reading a chunk with a flipped {where} byte "
                                     f"at file offset {pos} did not fail")
            for j in range(n):
                if j != frame and not np.array_equal(ds[j], orig[k][j]):
                    raise harness.Failed(f"{k} frame {j} changed after corrupting frame {frame}")
            other = "mask" if k == "gain" else "gain"
            if not np.array_equal(h[f"{img}/{other}"][()], orig[other]) or \
                    not same(h[f"{img}/data"][()], orig["data"]):
                raise harness.Failed(f"other datasets changed after corrupting {k} frame {frame}")
        if shutil.which("h5dump"):
            p = subprocess.run(["h5dump", "-d", f"/{img}/{k}", cp], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=TIMEOUT)
            if p.returncode == 0:
                raise harness.Failed(f"h5dump read {k} with a corrupt {where} in frame {frame}")


# ---------------------------------------------------------------------------
# Dry run and summary
# ---------------------------------------------------------------------------

def check_plan(sim, plan, np_, files, cells=None):
    if sorted(plan) != sorted(files):
        raise harness.Failed(f"plan names {sorted(plan)}, expected {sorted(files)}")
    per_rank = [0] * np_
    # Rounds of at most np_ files, in the order listed: a group of ranks per file.
    for (mod, seq), p in plan.items():
        n, o_first, o_tid = (lambda e: (e[1], e[2], e[3]))(expected_from_raw(sim, mod, seq, cells))
        if p["n"] != n or p["trains"] != len(o_tid):
            raise harness.Failed(f"AGIPD{mod:02d} S{seq:05d}: plan {p['n']} frames {p['trains']} trains, "
                                 f"raw has {n} kept frames in {len(o_tid)} trains")
        r0, r1 = p["ranks"]
        if sorted(p["parts"]) != list(range(r0, r1 + 1)):
            raise harness.Failed(f"AGIPD{mod:02d} S{seq:05d}: rank lines {sorted(p['parts'])}, "
                                 f"group {r0}-{r1}")
        nxt = 0
        for r in range(r0, r1 + 1):
            part = p["parts"][r]
            if part is None:
                continue
            a, b, ta, tb = part
            if a != nxt or b < a:
                raise harness.Failed(f"AGIPD{mod:02d} S{seq:05d} rank {r}: frames {a}-{b}, expected to "
                                     f"start at {nxt}")
            # Train-aligned: frames a..b are exactly those of trains ta..tb.
            i0, i1 = o_tid.index(ta), o_tid.index(tb)
            cnt = [o_first[i + 1] if i + 1 < len(o_first) else n for i in range(len(o_first))]
            cnt = [cnt[i] - o_first[i] for i in range(len(o_first))]
            if o_first[i0] != a or sum(cnt[i0:i1 + 1]) != b - a + 1:
                raise harness.Failed(f"AGIPD{mod:02d} S{seq:05d} rank {r}: frames {a}-{b} are not "
                                     f"the frames of trains {ta}..{tb}")
            per_rank[r] += b - a + 1
            nxt = b + 1
        if nxt != n:
            raise harness.Failed(f"AGIPD{mod:02d} S{seq:05d}: plan covers frames 0-{nxt - 1} of {n}")
        # Frame-balanced: no rank holds more than its share plus one train.
        g = r1 - r0 + 1
        biggest = max([0] + [b - a + 1 for a, b, _, _ in filter(None, p["parts"].values())])
        longest = max([0] + [(o_first[i + 1] if i + 1 < len(o_first) else n) - o_first[i]
                             for i in range(len(o_first))])
        if biggest > -(-n // g) + longest:
            raise harness.Failed(f"AGIPD{mod:02d} S{seq:05d}: unbalanced plan {p['parts']} "
                                 f"({n} frames, {g} ranks, longest train {longest})")
    return per_rank


def test_dry_run():
    """--dry-run names every file and every rank's frames and trains (contiguous,
    train-aligned, covering every kept frame; ranks of a 1-train file beyond
    the first: no frames), writes nothing (absent or empty out folder), and
    its per-rank frames are those the real run's summary reports."""
    for sim, np_, mods, seqs, w in ((sim_main(), 4, [0], [0, 1, 2, 3, 4], "collective"),
                                    (sim_main(), 3, [0, 1], [0, 1], "collective"),
                                    (sim_main(), 3, [0, 1], [0, 1], "serial"),
                                    (sim_one_train(), 4, [0], [0], "collective")):
        base = tmpdir()
        outs = [os.path.join(base, "absent"), os.path.join(base, "empty")]
        os.mkdir(outs[1])
        sel = ["--modules", ",".join(map(str, mods)), "--sequences", ",".join(map(str, seqs)),
               "--writer", w]
        plans = []
        for out in outs:
            _, p = correct(sim, np_, sel + ["--dry-run"], out=out)
            if not re.search(r"^plan: %d file\(s\) to correct with %d rank\(s\)" % (len(mods) * len(seqs), np_),
                             p.stdout, re.M):
                raise harness.Failed(f"{p.cmd}: no plan header:\n{p.stdout}")
            plans.append(parse_plan(p.stdout))
        if os.path.exists(outs[0]) or os.listdir(outs[1]):
            raise harness.Failed(f"--dry-run wrote: {os.path.exists(outs[0])} {os.listdir(outs[1])}")
        per_rank = check_plan(sim, plans[0], np_, files_of(sim, mods, seqs))
        if len(seqs) == 1 and per_rank.count(0) != np_ - 1:
            raise harness.Failed(f"expected a rank with no frames in {plans[0]}")
        _, p = correct(sim, np_, sel)
        summ = parse_summary(p.stdout, np_)
        got = [int(summ[r]["frames"]) for r in range(np_)]
        if got != per_rank:
            raise harness.Failed(f"{p.cmd}: per-rank frames {got}, the plan said {per_rank}\n{p.stdout}")


def spied(sim, np_, args):
    """Run with bin/deflate_spy.so preloaded (tests/deflate_spy.c): returns
    (out, CompletedProcess, {rank: Counter((bytes in, bytes out, crc32))}),
    the deflate streams each rank's process really made."""
    spy = os.path.join(harness.BIN, "deflate_spy.so")
    if not os.access(spy, os.R_OK):
        raise harness.Failed(f"{spy} not built (make tests)")
    d = tmpdir()
    env = {"LD_PRELOAD": spy, "AGIPD_DEFLATE_SPY": d}
    if "asan" in os.environ.get("AGIPD_SANITIZER", ""):
        env["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
    out, p = correct(sim, np_, args, env=env)
    streams = {}
    for f in os.listdir(d):
        with open(os.path.join(d, f)) as fh:
            for line in fh:
                r, i, o, c = map(int, line.split())
                if r >= 0:
                    streams.setdefault(r, collections.Counter())[(i, o, c)] += 1
    return out, p, streams


def test_compression_per_rank_observed():
    """Every gain/mask chunk stored in the file is a deflate stream that the
    process of the rank owning its frame (by the --dry-run plan) made, seen
    from outside the program (a preloaded wrapper of compress2 and
    isal_deflate_stateless); no rank made a stream that is not stored; ranks
    without frames made none, and at least two ranks made some.  The
    summary's per-rank gz column agrees with what was seen.  Both collective
    writers (ISA-L / our zlib path, and HDF5's own filter)."""
    sim = sim_main()
    for np_, mods, seqs, w, extra in ((4, [0], [0], "collective", []), (3, [0, 1], [3], "collective", []),
                                      (3, [0], [4], "collective", ["--deflate-level", "6"]),
                                      (3, [0], [4], "collective-h5filter", [])):
        sel = ["--modules", ",".join(map(str, mods)), "--sequences", ",".join(map(str, seqs)), "--writer", w] + extra
        _, p = correct(sim, np_, sel + ["--dry-run"])
        plan = parse_plan(p.stdout)
        out, p, streams = spied(sim, np_, sel)
        what = f"{p.cmd} ({w}):"
        left = {r: collections.Counter(c) for r, c in streams.items()}
        frames, stored = collections.Counter(), collections.Counter()
        for (mod, seq), fp in plan.items():
            path = os.path.join(out, corr_name(mod, seq))
            with h5py.File(path, "r") as h:
                img = h[f"INSTRUMENT/{src_of(mod)}/image"]
                for r, part in fp["parts"].items():
                    if part is None:
                        continue
                    frames[r] += part[1] - part[0] + 1
                    for f in range(part[0], part[1] + 1):
                        for k, isz in (("gain", 1), ("mask", 4)):
                            _, payload = img[k].id.read_direct_chunk((f, 0, 0))
                            key = (isz * ROWS * COLS, len(payload) - 4, zlib.crc32(payload[:-4]))
                            if left.get(r, {}).get(key, 0) <= 0:
                                made = [q for q, c in streams.items() if key in c]
                                raise harness.Failed(f"{what} {corr_name(mod, seq)} {k} frame {f}: its stream "
                                                     f"was not made by rank {r}, which owns the frame (made by "
                                                     f"ranks {made})")
                            left[r][key] -= 1
                            stored[r] += 1
        if w == "collective-h5filter":
            # HDF5 allocates filtered chunks early (H5D_ALLOC_TIME_EARLY) and
            # runs the fill value (zeros) through the filters once per
            # dataset on every rank.
            for isz in (1, 4):
                z = zlib.compress(bytes(isz * ROWS * COLS), 1)
                for c in left.values():
                    c[(isz * ROWS * COLS, len(z), zlib.crc32(z))] -= 1
        extra_streams = {r: {k: v for k, v in c.items() if v} for r, c in left.items()}
        extra_streams = {r: c for r, c in extra_streams.items() if c}
        if any(extra_streams.values()):
            raise harness.Failed(f"{what} streams made but not stored, per rank: {extra_streams}")
        if sum(1 for r in range(np_) if frames[r]) < min(np_, 2):
            raise harness.Failed(f"{what} frames on fewer than 2 ranks: {dict(frames)}")
        summ = parse_summary(p.stdout, np_)
        for r, v in summ.items():
            seen = stored[r] / 2
            if v["frames"] != frames[r] or v["gz"] != seen:
                raise harness.Failed(f"{what} rank {r}: summary says {v['frames']:.0f} frames, {v['gz']:.0f} "
                                     f"filtered; the plan gives {frames[r]}, the process made {seen:g} "
                                     f"frames of streams\n{p.stdout}")
        if not re.search(r"\b%d file\(s\) corrected, 0 skipped, 0 failed" % (len(mods) * len(seqs)), p.stdout):
            raise harness.Failed(f"{what} summary line:\n{p.stdout}")


# ---------------------------------------------------------------------------
# Temporary files, skip and overwrite
# ---------------------------------------------------------------------------

def test_skip_and_overwrite():
    """An existing CORR file that is not complete (here garbage) is corrected
    again without --overwrite, saying why; a stale .part from a killed run is
    cleaned away; complete outputs are then skipped and left untouched; with
    --overwrite both files are replaced by complete ones equal to serial."""
    sim = sim_main()
    sel = ["--modules", "1", "--sequences", "0-1"]
    ref = reference("main", sim, ["--modules", "1", "--sequences", "0,1"])
    out = os.path.join(tmpdir(), "out")
    os.mkdir(out)
    garbage = os.path.join(out, corr_name(1, 0))
    with open(garbage, "wb") as f:
        f.write(b"not an HDF5 file\n")
    stale = os.path.join(out, "." + corr_name(1, 1) + ".part")
    with open(stale, "wb") as f:
        f.write(b"stale part\n")
    _, p = correct(sim, 2, sel, out=out)
    if not re.search(r"AGIPD01 S00000: .*not complete \(it does not open as an HDF5 file\)", p.stderr) or \
            not re.search(r"2 file\(s\) corrected, 0 skipped, 0 failed", p.stdout):
        raise harness.Failed(f"{p.cmd}: expected S00000 (not complete) and S00001 corrected:\n{p.stdout}\n{p.stderr}")
    errors = []
    for s in (0, 1):
        compare_files(os.path.join(out, corr_name(1, s)), os.path.join(ref, corr_name(1, s)), errors)
    st1 = os.stat(os.path.join(out, corr_name(1, 1)))
    # Again without --overwrite: both skipped, nothing touched.
    _, p = correct(sim, 3, sel, out=out)
    if not re.search(r"0 file\(s\) corrected, 2 skipped, 0 failed", p.stdout):
        raise harness.Failed(f"{p.cmd}: expected both skipped:\n{p.stdout}")
    st2 = os.stat(os.path.join(out, corr_name(1, 1)))
    if (st1.st_ino, st1.st_mtime_ns, st1.st_size) != (st2.st_ino, st2.st_mtime_ns, st2.st_size):
        raise harness.Failed("a skipped output was rewritten")
    _, p = correct(sim, 2, sel + ["--dry-run"], out=out)
    if not re.search(r"^plan: 0 file\(s\) to correct", p.stdout, re.M) or parse_plan(p.stdout):
        raise harness.Failed(f"{p.cmd}: the plan should skip existing outputs:\n{p.stdout}")
    _, p = correct(sim, 2, sel + ["--dry-run", "--overwrite"], out=out)
    if sorted(parse_plan(p.stdout)) != [(1, 0), (1, 1)]:
        raise harness.Failed(f"{p.cmd}: the plan with --overwrite should name both files:\n{p.stdout}")
    # With --overwrite: both replaced.
    _, p = correct(sim, 3, sel + ["--overwrite"], out=out)
    if not re.search(r"2 file\(s\) corrected, 0 skipped, 0 failed", p.stdout):
        raise harness.Failed(f"{p.cmd}: expected both corrected:\n{p.stdout}")
    st3 = os.stat(os.path.join(out, corr_name(1, 1)))
    if st3.st_ino == st1.st_ino and st3.st_mtime_ns == st1.st_mtime_ns:
        raise harness.Failed("--overwrite did not replace the output")
    for s in (0, 1):
        compare_files(os.path.join(out, corr_name(1, s)), os.path.join(ref, corr_name(1, s)), errors)
    if errors:
        raise harness.Failed("\n".join(errors))
    if sorted(os.listdir(out)) != [corr_name(1, 0), corr_name(1, 1)]:
        raise harness.Failed(f"output folder holds {sorted(os.listdir(out))}")


def test_failed_run_leaves_nothing():
    """A run whose constants are missing fails (exit 1) and leaves neither a
    CORR file nor a .part file."""
    sim = sim_main()
    empty = os.path.join(tmpdir(), "noconsts")
    os.mkdir(empty)
    out = os.path.join(tmpdir(), "out")
    cmd = [harness.CORRECT, "--in-folder", sim, "--out-folder", out, "--run", "1",
           "--constants-folder", empty, "--modules", "0", "--sequences", "0-2"]
    p = harness.mpirun(2, cmd, timeout=TIMEOUT, check=False)
    # A missing constants file fails the files of its module (exit 1, README
    # "Exit status"), not the set-up (2): other modules could still run.
    if p.returncode != 1 or not re.search(r"3 file\(s\) failed", p.stdout + p.stderr):
        raise harness.Failed(f"exit {p.returncode} with no constants, expected 1 and 3 files failed:\n"
                             f"{p.stdout}\n{p.stderr}")
    if os.path.isdir(out) and os.listdir(out):
        raise harness.Failed(f"a failed run left {os.listdir(out)}")


def test_interrupted_run_leaves_no_part():
    """SIGTERM to the ranks while a file is being written (rank 0 stopped
    itself after its first frames, AGIPD_TEST_PAUSE, so its file is a .part
    for sure): exit status 3, no .part file remains, and every CORR file
    present is complete (equal to serial)."""
    from rel_common import kill_session, pause_env, start, wait_paused
    sim = sim_main()
    ref = reference("main", sim, ["--modules", "0,1", "--sequences", "0,1,2,3,4"])
    out = os.path.join(tmpdir(), "out")
    os.mkdir(out)
    cmd = [harness.CORRECT, "--in-folder", sim, "--out-folder", out, "--run", "1",
           "--constants-folder", os.path.join(sim, "constants"), "--batch-frames", "1"]
    proc = start(2, cmd, env=pause_env("frames-written", 0))
    try:
        ranks, paused = wait_paused(proc, 2, 0)
        parts = [f for f in os.listdir(out) if f.endswith(".part")]
        if not parts:
            raise harness.Failed(f"rank 0 paused after writing frames, but no .part file: {os.listdir(out)}")
        for k in ranks.values():
            try:
                os.kill(k, signal.SIGTERM)
            except ProcessLookupError:
                pass
        os.kill(paused, signal.SIGCONT)
        try:
            so, se = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise harness.Failed("mpirun did not end within the time-out after SIGTERM")
    finally:
        kill_session(proc)
    left = [f for f in os.listdir(out) if not f.startswith("CORR-")]
    if left:
        raise harness.Failed(f"after SIGTERM (exit {proc.returncode}) the output folder holds {left}\n{so}\n{se}")
    if proc.returncode != 3:
        raise harness.Failed(f"exit {proc.returncode} after SIGTERM, expected 3\n{so}\n{se}")
    # Files the other rank completed before the signal landed must be whole,
    # like every CORR file here.
    errors = []
    for f in os.listdir(out):
        compare_files(os.path.join(out, f), os.path.join(ref, f), errors, "interrupted: ")
    if errors:
        raise harness.Failed("\n".join(errors))


def test_groups_signal_to_one_group():
    """--schedule groups, 10 files on 2 one-rank groups: SIGTERM to rank 0
    only (paused while writing its first file): its group stops and tells
    the other (a notice), the run ends with exit 3 without a hang, no .part
    file remains, and every CORR file present is complete."""
    from rel_common import kill_session, pause_env, start, wait_paused
    sim = sim_main()
    ref = reference("main", sim, ["--modules", "0,1", "--sequences", "0,1,2,3,4"])
    out = os.path.join(tmpdir(), "out")
    os.mkdir(out)
    cmd = [harness.CORRECT, "--in-folder", sim, "--out-folder", out, "--run", "1",
           "--constants-folder", os.path.join(sim, "constants"), "--batch-frames", "1", "--schedule", "groups"]
    proc = start(2, cmd, env=pause_env("frames-written", 0))
    try:
        ranks, paused = wait_paused(proc, 2, 0)
        os.kill(paused, signal.SIGTERM)
        os.kill(paused, signal.SIGCONT)
        try:
            so, se = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise harness.Failed("mpirun did not end within the time-out after SIGTERM to rank 0")
    finally:
        kill_session(proc)
    left = [f for f in os.listdir(out) if not f.startswith("CORR-")]
    if left or proc.returncode != 3:
        raise harness.Failed(f"exit {proc.returncode} (expected 3), left {left}\n{so}\n{se}")
    errors = []
    for f in os.listdir(out):
        compare_files(os.path.join(out, f), os.path.join(ref, f), errors, "interrupted: ")
    if errors:
        raise harness.Failed("\n".join(errors))


harness.main(globals())
