#!/usr/bin/python3
"""Inputs that must never give wrong corrected data with exit 0 (issue 13,
reader side), each at 1 and 3 ranks:

  - raw image/data and every constant reached through a soft link, an
    external link or a virtual dataset (VDS): corrected exactly as the plain
    files are (the mapped fast path only for data stored in the mapped file);
  - integer inputs stored in other types: accepted when in range (and the
    output's per-frame arrays in the SPEC's types), refused with file,
    dataset, index and value when negative or out of range, never clamped
    (bad-pixel constants: a 32-bit mask keeps its bits however it is read);
  - EXDF format versions 0.5, 1.0, 1.1, 1.2, 1.3 as EXtra-data's mock files
    write them (INDEX zero-padded past first/count, 0.5 without timestamp,
    flag or dataFormatVersion, 1.1 with flag as an index): the output is
    labelled 1.0 and its INDEX/flag has 1.0's meaning;
  - a raw or constants file truncated while it is mapped (paused with the
    AGIPD_TEST_PAUSE_MAPPED hook right after the mapping): an error of that
    file, the other files still corrected.

Set AGIPD_KEEP=1 to keep the temporary folders.
"""
import os
import re
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import ref_agipd  # noqa: E402
from rel_common import (Case, base, check_outputs, const_name, corr_name, correct_cmd, describe,  # noqa: E402
                        finish, kill_session, mpirun, raw_name, reference, simulate, src_of, start)

RANKS = (1, 3)
ALL = [(m, s) for m in (0, 1) for s in (0, 1)]
FULL = ["--rel-gain", "--ff-gain"]     # every constant of the file is read
CONSTS = ("ThresholdsDark", "Offset", "Noise", "BadPixelsDark", "SlopesPC", "BadPixelsPC", "SlopesFF",
          "BadPixelsFF")
IMG = "INSTRUMENT/{src}/image"
IDX = "INDEX/{src}/image"




def expect_clean(case, ref, args=(), files=ALL):
    for np_ in RANKS:
        out = case.out()
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts, args), limit=60)
        what = describe(p)
        if p.returncode != 0:
            raise harness.Failed(f"exit {p.returncode}, expected 0:\n{what}")
        check_outputs(out, ref, files, what=what)


# ---------------------------------------------------------------------------
# 1. Soft, external and virtual links
# ---------------------------------------------------------------------------

def link_dataset(path, name, kind, side):
    """Replace dataset name of path by a link of kind to the same values:
    'soft' (to a copy in the same file), 'external' (to a copy in file side)
    or 'virtual' (a VDS over a copy in file side)."""
    with h5py.File(path, "r+") as h:
        v = h[name][()]
        del h[name]
        if kind == "soft":
            h.create_dataset(name + "_stored", data=v)
            h[name] = h5py.SoftLink("/" + name + "_stored")
            return
        with h5py.File(side, "a") as s:
            # something first, so the copy's offset is not the original's
            s.create_dataset(f"pad_{len(s)}", data=np.arange(1000 + 37 * len(s), dtype=np.uint8))
            s.create_dataset(name, data=v)
        if kind == "external":
            h[name] = h5py.ExternalLink(side, "/" + name)
        else:
            lay = h5py.VirtualLayout(shape=v.shape, dtype=v.dtype)
            lay[...] = h5py.VirtualSource(side, "/" + name, shape=v.shape)
            h.create_virtual_dataset(name, lay)


def linked_case(kind):
    case = Case(base())
    side = os.path.join(case.root, "side")
    os.makedirs(side)
    link_dataset(case.raw(0, 1), IMG.format(src=src_of(0)) + "/data", kind, os.path.join(side, "raw.h5"))
    path = case.own(case.const(1))
    for c in CONSTS:
        link_dataset(path, c, kind, os.path.join(side, "consts.h5"))
    return case


def test_soft_links():
    """Raw image/data of AGIPD00 S00001 and every constant of module 1 as soft links."""
    expect_clean(linked_case("soft"), reference(FULL), FULL)


def test_external_links():
    """The same as external links to another file: read through HDF5, not from
    the mapping of the linking file (which gave every value wrong, exit 0)."""
    expect_clean(linked_case("external"), reference(FULL), FULL)


def test_virtual_datasets():
    """The same as virtual datasets (VDS) over another file."""
    expect_clean(linked_case("virtual"), reference(FULL), FULL)


# ---------------------------------------------------------------------------
# 2. Integer inputs stored in other types
# ---------------------------------------------------------------------------

def retype(path, name, dtype, fn=None):
    """Store dataset name of path as dtype (same shape), values changed by fn."""
    with h5py.File(path, "r+") as h:
        v = h[name][()].astype(np.int64)
        if fn:
            v = fn(v)
        del h[name]
        h.create_dataset(name, data=v.astype(dtype))


def at(i, value):
    def fn(v):
        v = v.copy()
        v.reshape(-1)[i] = value
        return v
    return fn


def run_int_case(case, bad, ref):
    """bad: {(mod, seq): [regexes its error line must match]}; the other
    files must be corrected as in ref, with per-frame arrays in SPEC types."""
    good = [f for f in ALL if f not in bad]
    for np_ in RANKS:
        out = case.out()
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts), limit=60)
        what = describe(p)
        if p.returncode != 1:
            raise harness.Failed(f"exit {p.returncode}, expected 1 (some files failed):\n{what}")
        for (m, s), words in bad.items():
            tag = f"AGIPD{m:02d} S{s:05d}"
            lines = [ln for ln in p.stderr.splitlines() if tag in ln and raw_name(m, s) in ln]
            if not any(all(re.search(w, ln) for w in words) for ln in lines):
                raise harness.Failed(f"no error line for {tag} naming {raw_name(m, s)} and {words}:\n{what}")
        check_outputs(out, ref, good, list(bad), what=what)
        for m, s in good:
            with h5py.File(os.path.join(out, corr_name(m, s)), "r") as h:
                img = h[IMG.format(src=src_of(m))]
                for k, dt in (("cellId", np.uint16), ("pulseId", np.uint64), ("trainId", np.uint64)):
                    if img[k].dtype != dt:
                        raise harness.Failed(f"{corr_name(m, s)}: {k} is {img[k].dtype}, not {np.dtype(dt)}")


def test_integer_types_and_ranges():
    """S00000 of AGIPD00 with cellId int16, pulseId int32, trainIds and
    INDEX first/count int64 (all in range): corrected, output in SPEC types.
    cellId -1 in an int16, INDEX count -1 in an int64, cellId 65539 in an
    int32: refused with dataset, index and value (HDF5 would clamp them to
    0, 0 and 65535)."""
    case = Case(base())
    s0 = src_of(0)
    p = case.raw(0, 0)
    retype(p, IMG.format(src=s0) + "/cellId", np.int16)
    retype(p, IMG.format(src=s0) + "/pulseId", np.int32)
    retype(p, IMG.format(src=s0) + "/trainId", np.int64)
    retype(p, "INDEX/trainId", np.int64)
    retype(p, IDX.format(src=s0) + "/first", np.int64)
    retype(p, IDX.format(src=s0) + "/count", np.int64)
    retype(case.raw(0, 1), IMG.format(src=s0) + "/cellId", np.int16, at(2, -1))
    retype(case.raw(1, 0), IDX.format(src=src_of(1)) + "/count", np.int64, at(1, -1))
    retype(case.raw(1, 1), IMG.format(src=src_of(1)) + "/cellId", np.int32, at(5, 65539))
    bad = {
        (0, 1): [r"image/cellId\[2\]", r"-1\b", r"negative"],
        (1, 0): [r"image/count\[1\]", r"-1\b", r"negative"],
        (1, 1): [r"image/cellId\[5\]", r"65539", r"out of range"],
    }
    run_int_case(case, bad, reference())


def test_integer_negative_ids():
    """INDEX first -1 (int32), image/trainId -5 (int64) and pulseId -1 (int8)
    are refused, with the dataset, index and value."""
    case = Case(base())
    retype(case.raw(0, 1), IDX.format(src=src_of(0)) + "/first", np.int32, at(1, -1))
    retype(case.raw(1, 0), IMG.format(src=src_of(1)) + "/trainId", np.int64, at(3, -5))
    retype(case.raw(1, 1), IMG.format(src=src_of(1)) + "/pulseId", np.int8, at(0, -1))
    bad = {
        (0, 1): [r"image/first\[1\]", r"-1\b"],
        (1, 0): [r"image/trainId\[3\]", r"-5\b"],
        (1, 1): [r"image/pulseId\[0\]", r"-1\b"],
    }
    run_int_case(case, bad, reference())


def bad_pixel_case(values, dtype, chunked):
    """Module 1's BadPixelsDark replaced by values stored as dtype."""
    case = Case(base())
    path = case.own(case.const(1))
    with h5py.File(path, "r+") as h:
        del h["BadPixelsDark"]
        h.create_dataset("BadPixelsDark", data=values.astype(dtype) if dtype != np.int32 else
                         values.view(np.int32), chunks=(16, 64, 1, 1) if chunked else None)
    return case


def test_bad_pixels_integer_types():
    """BadPixelsDark with bit 31 (USER2) set, stored as int32 (negative
    values): the same mask whether the file is read from the mapping
    (contiguous) or through HDF5 (chunked: HDF5 clamped -1 to 0).  As uint16,
    the same values; as int64 with a -1: refused, naming constant, index and
    value."""
    with h5py.File(os.path.join(base(), "constants", const_name(1)), "r") as h:
        bp = h["BadPixelsDark"][()].astype(np.uint32)
    bp[:10, :10] |= np.uint32(1 << 31)
    ref_case = bad_pixel_case(bp, np.uint32, False)
    ref = ref_case.out("ref")
    p = mpirun(1, correct_cmd(ref_case.in_folder, ref, ref_case.consts), limit=60)
    if p.returncode != 0:
        raise harness.Failed("the uint32 run failed:\n" + describe(p))
    with h5py.File(os.path.join(ref, corr_name(1, 0)), "r") as h:
        if not np.any(h[IMG.format(src=src_of(1)) + "/mask"][()] & np.uint32(1 << 31)):
            raise harness.Failed("bit 31 of BadPixelsDark does not reach the mask")
    expect_clean(bad_pixel_case(bp, np.int32, True), ref)
    expect_clean(bad_pixel_case(bp, np.int32, False), ref)
    small = bp & np.uint32(0xFFFF)
    ref_case = bad_pixel_case(small, np.uint32, False)
    ref16 = ref_case.out("ref")
    p = mpirun(1, correct_cmd(ref_case.in_folder, ref16, ref_case.consts), limit=60)
    if p.returncode != 0:
        raise harness.Failed("the uint32 run failed:\n" + describe(p))
    expect_clean(bad_pixel_case(small, np.uint16, True), ref16)
    neg = bp.astype(np.int64)
    neg[3, 4, 1, 2] = -1
    case = bad_pixel_case(neg, np.int64, True)
    for np_ in RANKS:
        out = case.out()
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts), limit=60)
        what = describe(p)
        if p.returncode != 1 or not re.search(r"AGIPD01 S00000.*%s.*BadPixelsDark\[3, 4, 1, 2\] is -1" % const_name(1),
                                              p.stderr):
            raise harness.Failed(f"expected exit 1 naming BadPixelsDark[3, 4, 1, 2] is -1:\n{what}")
        check_outputs(out, reference(), [(0, 0), (0, 1)], [(1, 0), (1, 1)], what=what)


# ---------------------------------------------------------------------------
# 5. EXDF format versions
# ---------------------------------------------------------------------------

NT, NPAD = 5, 8     # trains per file; INDEX padded to this length


def fmt_sim():
    return simulate("fmt", "--modules", "0", "--sequences", "1", "--trains", str(NT), "--cells", "4")


def to_format(path, version):
    """Rewrite the INDEX and METADATA of a raw file as a DAQ of that format
    version wrote them (EXtra-data's mock files): INDEX/trainId (timestamp,
    flag) zero-padded to NPAD past first/count; train 2 invalid (flag 0 in
    1.0 and 1.2+, flag 1 in 1.1 where it is an index; in 0.5, which has no
    flag, its train id goes backwards).  Returns (train ids, timestamps,
    flag with 1.0's meaning) the output must have."""
    with h5py.File(path, "r+") as h:
        tid = h["INDEX/trainId"][()]
        ts = h["INDEX/timestamp"][()]
        assert tid.shape == (NT,)
        for k in ("trainId", "timestamp", "flag"):
            del h["INDEX/" + k]
        pad = np.zeros(NPAD - NT, np.uint64)
        valid = np.array([1, 1, 0, 1, 1], np.int32)
        if version == "0.5":
            tid = tid.copy()
            tid[2] = tid[0] - 100
            ts = np.zeros(NT, np.uint64)
        else:
            flag = valid if version != "1.1" else 1 - valid
            h.create_dataset("INDEX/flag", data=np.concatenate([flag, np.zeros(NPAD - NT, np.int32)]),
                             maxshape=(None,))
            h.create_dataset("INDEX/timestamp", data=np.concatenate([ts, pad]), maxshape=(None,))
        h.create_dataset("INDEX/trainId", data=np.concatenate([tid, pad]), maxshape=(None,))
        if version in ("1.2", "1.3"):
            h.create_dataset("INDEX/origin", data=np.full(NPAD, -1, np.int32))
        md = h["METADATA"]
        sources = md["dataSources/dataSourceId"][()]
        del h["METADATA"]
        if version == "0.5":
            h.create_dataset("METADATA/dataSourceId", data=sources)
        else:
            h.create_dataset("METADATA/dataSources/dataSourceId", data=sources)
            h["METADATA/dataFormatVersion"] = [version.encode("ascii")]
            h.create_dataset("METADATA/runNumber", data=[1], dtype=np.uint32)
            h.create_dataset("METADATA/sequenceNumber", data=[0], dtype=np.uint32)
    return tid, ts, valid


def check_format(version):
    sim = fmt_sim()
    ref = reference(sim=sim)
    case = Case(sim)
    path = case.raw(0, 0)
    tid, ts, valid = to_format(path, version)
    # the NumPy reference reads the same file the same way
    r = ref_agipd.correct_file(path, case.const(0), ref_agipd.Options())
    for k, want in (("trainId", tid), ("timestamp", ts), ("flag", valid)):
        if not np.array_equal(r["index_" + k], want):
            raise harness.Failed(f"ref_agipd: INDEX/{k} {r['index_' + k]}, expected {want}")
    for np_ in RANKS:
        out = case.out()
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts), limit=60)
        what = describe(p)
        if p.returncode != 0:
            raise harness.Failed(f"format {version}: exit {p.returncode}, expected 0:\n{what}")
        got = os.path.join(out, corr_name(0, 0))
        errors = []
        with h5py.File(got, "r") as g, h5py.File(os.path.join(ref, corr_name(0, 0)), "r") as e:
            if g["METADATA/dataFormatVersion"][0] != b"1.0":
                errors.append(f"dataFormatVersion {g['METADATA/dataFormatVersion'][()]}")
            for k in ("runNumber", "sequenceNumber"):
                if g["METADATA/" + k][0] != e["METADATA/" + k][0]:
                    errors.append(f"METADATA/{k} {g['METADATA/' + k][()]} vs {e['METADATA/' + k][()]}")
            for k, want, dt in (("trainId", tid, np.uint64), ("timestamp", ts, np.uint64),
                                ("flag", valid, np.int32)):
                v = g["INDEX/" + k]
                if v.dtype != dt or not np.array_equal(v[()], want):
                    errors.append(f"INDEX/{k} {v.dtype} {v[()]}, expected {np.dtype(dt)} {want}")
            src = src_of(0)
            names = [IDX.format(src=src) + "/first", IDX.format(src=src) + "/count"] + \
                [IMG.format(src=src) + "/" + k for k in ("data", "gain", "mask", "cellId", "pulseId", "trainId",
                                                        "status", "length")]
            for n in names:
                if g[n].dtype != e[n].dtype or not np.array_equal(g[n][()], e[n][()]):
                    errors.append(f"{n} differs from the run on the format 1.0 file")
        if errors:
            raise harness.Failed(f"format {version}, {np_} rank(s):\n  " + "\n  ".join(errors) + "\n" + what)


def test_format_0_5():
    check_format("0.5")


def test_format_1_0():
    check_format("1.0")


def test_format_1_1():
    check_format("1.1")


def test_format_1_2():
    check_format("1.2")


def test_format_1_3():
    check_format("1.3")


def test_format_padding_not_zero():
    """INDEX/trainId longer than first/count with a non-zero id past them:
    refused, naming the entry (it would be a train without frames)."""
    case = Case(fmt_sim())
    path = case.raw(0, 0)
    to_format(path, "1.0")
    with h5py.File(path, "r+") as h:
        v = h["INDEX/trainId"][()]
        v[NT + 1] = 99999
        h["INDEX/trainId"][...] = v
    for np_ in RANKS:
        out = case.out()
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts), limit=60)
        what = describe(p)
        if p.returncode != 1 or not re.search(r"INDEX/trainId\[%d\] is 99999" % (NT + 1), p.stderr):
            raise harness.Failed(f"expected exit 1 naming INDEX/trainId[{NT + 1}]:\n{what}")


# ---------------------------------------------------------------------------
# 7. A mapped input truncated while it is read
# ---------------------------------------------------------------------------

def truncated_while_mapped(case, target, cut, np_):
    """Run with the pause hook on target; once a rank has mapped it, cut it
    to cut bytes and let the ranks go on.  Returns the CompletedProcess-like
    (returncode, stdout, stderr, cmd) and the output folder."""
    pause = os.path.join(case.root, f"pause{np_}")
    os.makedirs(pause)
    base_ = os.path.basename(target)
    open(os.path.join(pause, base_ + ".pause"), "w").close()
    out = case.out()
    os.environ["AGIPD_TEST_PAUSE_MAPPED"] = pause
    try:
        proc = start(np_, correct_cmd(case.in_folder, out, case.consts))
    finally:
        del os.environ["AGIPD_TEST_PAUSE_MAPPED"]
    try:
        t0 = time.time()
        while not [f for f in os.listdir(pause) if f.endswith(".mapped")]:
            if proc.poll() is not None or time.time() - t0 > 60:
                so, se = proc.communicate()
                raise harness.Failed(f"{proc.cmd}: no rank mapped {base_} (exit {proc.returncode}):\n{so}\n{se}")
            time.sleep(0.02)
        os.truncate(target, cut)
        open(os.path.join(pause, base_ + ".go"), "w").close()
        so, se = finish(proc, 60)
    finally:
        kill_session(proc)
    proc.stdout, proc.stderr = so, se
    return proc, out


def test_raw_truncated_while_mapped():
    """AGIPD00 S00001 cut inside its image data after a rank mapped it: that
    file fails with an error naming it (no SIGBUS), the others are corrected."""
    for np_ in RANKS:
        case = Case(base())
        target = case.raw(0, 1)
        with h5py.File(target, "r") as h:
            d = h[IMG.format(src=src_of(0)) + "/data"].id
            # contiguous, or the DAQ's chunks: where the first frame lies
            off = d.get_offset() if d.get_offset() is not None else d.get_chunk_info(0).byte_offset
        p, out = truncated_while_mapped(case, target, off + 4096, np_)
        what = f"{p.cmd}\nexit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
        if p.returncode != 1:
            raise harness.Failed(f"exit {p.returncode}, expected 1:\n{what}")
        m = re.search(r".*AGIPD00 S00001.*%s.*(changed while it was read|truncated).*" % raw_name(0, 1), p.stderr)
        if not m:
            raise harness.Failed(f"no error line names {raw_name(0, 1)}:\n{what}")
        print(f"  {np_} rank(s): {m.group(0).strip()}")
        check_outputs(out, reference(), [(0, 0), (1, 0), (1, 1)], [(0, 1)], what=what)


def test_constants_truncated_while_mapped():
    """Module 1's constants cut to 1 MB after a rank mapped them: module 1's
    files fail naming the constants file (no SIGBUS), module 0 is corrected."""
    for np_ in RANKS:
        case = Case(base())
        target = case.own(case.const(1))
        p, out = truncated_while_mapped(case, target, 1 << 20, np_)
        what = f"{p.cmd}\nexit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
        if p.returncode != 1:
            raise harness.Failed(f"exit {p.returncode}, expected 1:\n{what}")
        for s in (0, 1):
            m = re.search(r".*AGIPD01 S%05d.*%s.*(changed while it was read|truncated).*" % (s, const_name(1)),
                          p.stderr)
            if not m:
                raise harness.Failed(f"no error line for AGIPD01 S{s:05d} names {const_name(1)}:\n{what}")
            print(f"  {np_} rank(s): {m.group(0).strip()}")
        check_outputs(out, reference(), [(0, 0), (0, 1)], [(1, 0), (1, 1)], what=what)


harness.main(globals())
