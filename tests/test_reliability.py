#!/usr/bin/python3
"""Reliability of bin/agipd-correct against bad inputs: the catalogue.

Every case runs at 1 and 3 ranks (oversubscribed) on a copy of a small
simulated run (modules 0-1, sequences 0-1, 2 trains of 4 cells) in which one
raw or constants file is broken with h5py, and checks that

  - the run ends within 30 s, with the documented exit status (1 when some
    files failed, 2 for bad options or set-up; never 0);
  - stderr names the broken file, the module and sequence, and the cause, in
    one line, and the summary says how many files failed;
  - every other file is corrected, equal to that of a clean run;
  - no CORR file exists for a failed file, no temporary file remains, and
    nothing else appears in the output folder;
  - the input folders (raw and constants) are byte-identical afterwards
    (sha256 of every file) and nothing was created in them.

Set AGIPD_KEEP=1 to keep the temporary folders.
"""
import os
import re
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from rel_common import (Case, base, check_outputs, compare_corr, corr_name, correct_cmd, describe,  # noqa: E402
                        fingerprint_diff, mpirun, raw_name, reference, simulate, src_of, temporaries)

RANKS = (1, 3)
ALL = [(m, s) for m in (0, 1) for s in (0, 1)]




def others(failed):
    return [f for f in ALL if f not in failed]


# ---------------------------------------------------------------------------
# The check every bad-file case makes
# ---------------------------------------------------------------------------

def run_case(case, np_, args=()):
    """One run of agipd-correct on case at np_ ranks; returns (out, p, input
    changes)."""
    before = case.snapshot()
    out = case.out()
    p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts, args))
    return out, p, fingerprint_diff(before, case.snapshot())


def error_line(stderr, mod, seq, names, words):
    """The stderr line about AGIPDmm Ssssss that names every one of names and
    matches every regex of words (case-insensitive), or None."""
    tag = f"AGIPD{mod:02d} S{seq:05d}"
    for line in stderr.splitlines():
        if tag in line and all(n in line for n in names) and \
                all(re.search(w, line, re.I) for w in words):
            return line
    return None


def expect_file_failures(case, failed, names, words, args=(), ranks=RANKS):
    """Run case at each of ranks: the files in failed fail with a line that
    names names and matches words; the others are corrected; exit 1."""
    ref = reference(args)
    for np_ in ranks:
        out, p, changed = run_case(case, np_, args)
        what = describe(p)
        if changed:
            raise harness.Failed("the input folders changed:\n  " + "\n  ".join(changed) + "\n" + what)
        if p.returncode != 1:
            raise harness.Failed(f"exit {p.returncode}, expected 1 (some files failed):\n{what}")
        for m, s in failed:
            if not error_line(p.stderr, m, s, names, words):
                raise harness.Failed(f"no stderr line names AGIPD{m:02d} S{s:05d}, {names} and {words}:\n{what}")
        if not re.search(r"\b%d file\(s\) failed" % len(failed), p.stderr):
            raise harness.Failed(f"no summary '{len(failed)} file(s) failed' on stderr:\n{what}")
        check_outputs(out, ref, others(failed), failed, what=what)


def expect_refused(case, args, words, out=None, ranks=RANKS, code=2, out_absent=True):
    """Bad options or set-up: exit code, words in stderr, nothing written."""
    for np_ in ranks:
        before = case.snapshot()
        o = out or case.out()
        p = mpirun(np_, correct_cmd(case.in_folder, o, case.consts, args))
        changed = fingerprint_diff(before, case.snapshot())
        what = describe(p)
        if changed:
            raise harness.Failed("the input folders changed:\n  " + "\n  ".join(changed) + "\n" + what)
        if p.returncode != code:
            raise harness.Failed(f"exit {p.returncode}, expected {code}:\n{what}")
        for w in words:
            if not re.search(w, p.stderr, re.I):
                raise harness.Failed(f"stderr does not match {w!r}:\n{what}")
        if out_absent and out is None and os.path.exists(o):
            raise harness.Failed(f"the refused run created {o}: {os.listdir(o)}\n{what}")
        if os.path.isdir(o) and [f for f in os.listdir(o) if f.startswith(("CORR-", ".CORR-", ".agipd"))]:
            raise harness.Failed(f"the refused run wrote {os.listdir(o)}\n{what}")


# ---------------------------------------------------------------------------
# Editing files
# ---------------------------------------------------------------------------

IMG = "INSTRUMENT/{src}/image"
IDX = "INDEX/{src}/image"


def replace(path, name, **kw):
    """Replace dataset name of path by h5py.create_dataset(name, **kw)."""
    with h5py.File(path, "r+") as h:
        del h[name]
        h.create_dataset(name, **kw)


def edit(path, name, fn):
    """Replace dataset name by fn(its values), same dtype."""
    with h5py.File(path, "r+") as h:
        v = h[name][()]
        nv = np.asarray(fn(v.copy()), dtype=v.dtype)
        del h[name]
        h.create_dataset(name, data=nv)


def nframes(path, mod):
    with h5py.File(path, "r") as h:
        return h[IMG.format(src=src_of(mod)) + "/data"].shape[0]


# ---------------------------------------------------------------------------
# Raw files
# ---------------------------------------------------------------------------

BAD = (0, 1)    # the file broken in the raw-file cases: AGIPD00 S00001


def bad_raw_case(fn):
    case = Case(base())
    path = case.raw(*BAD)
    fn(path, src_of(BAD[0]))
    return case, [raw_name(*BAD)]


def test_missing_raw_file():
    """--sequences 0-2 where no sequence 2 exists: those files fail as missing."""
    case = Case(base())
    failed = [(0, 2), (1, 2)]
    ref = reference()
    for np_ in RANKS:
        out, p, changed = run_case(case, np_, ["--sequences", "0-2"])
        what = describe(p)
        if changed or p.returncode != 1:
            raise harness.Failed(f"exit {p.returncode} (expected 1), input changes {changed}:\n{what}")
        for m, s in failed:
            if not error_line(p.stderr, m, s, [raw_name(m, s)], [r"missing raw file"]):
                raise harness.Failed(f"no line names the missing {raw_name(m, s)}:\n{what}")
        if not re.search(r"\b2 file\(s\) failed", p.stderr):
            raise harness.Failed(f"no summary of the failures:\n{what}")
        check_outputs(out, ref, ALL, failed, what=what)


def test_truncated_raw_file():
    """A raw file cut to half its size (image data gone)."""
    def cut(path, src):
        os.truncate(path, os.path.getsize(path) // 2)
    case, names = bad_raw_case(cut)
    expect_file_failures(case, [BAD], names, [r"truncated"])


def test_truncated_raw_file_superblock():
    """A raw file cut inside its first kilobyte (no whole superblock)."""
    def cut(path, src):
        os.truncate(path, 700)
    case, names = bad_raw_case(cut)
    expect_file_failures(case, [BAD], names, [r"not an HDF5 file|truncated"])


def test_not_hdf5_file():
    """Random bytes under a raw file's name."""
    def junk(path, src):
        n = os.path.getsize(path)
        with open(path, "wb") as f:
            f.write(np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes())
    case, names = bad_raw_case(junk)
    expect_file_failures(case, [BAD], names, [r"not an HDF5 file"])


def test_empty_raw_file():
    """A raw file of zero bytes."""
    case, names = bad_raw_case(lambda path, src: open(path, "wb").close())
    expect_file_failures(case, [BAD], names, [r"not an HDF5 file"])


def test_image_data_wrong_rank():
    """image/data of shape (N, 512, 128): no analog/digital axis."""
    def fn(path, src):
        n = nframes(path, BAD[0])
        replace(path, IMG.format(src=src) + "/data", shape=(n, 512, 128), dtype=np.uint16)
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"image/data", r"shape", r"rank 3"])


def test_image_data_wrong_shape():
    """image/data of shape (N, 2, 512, 64)."""
    def fn(path, src):
        n = nframes(path, BAD[0])
        replace(path, IMG.format(src=src) + "/data", shape=(n, 2, 512, 64), dtype=np.uint16)
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"image/data", r"shape"])


def test_image_data_wrong_dtype():
    """image/data stored as float32."""
    def fn(path, src):
        n = nframes(path, BAD[0])
        replace(path, IMG.format(src=src) + "/data", shape=(n, 2, 512, 128), dtype=np.float32)
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"image/data", r"uint16"])


def test_image_data_missing():
    """No image/data at all (wrong source)."""
    def fn(path, src):
        with h5py.File(path, "r+") as h:
            del h[IMG.format(src=src) + "/data"]
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"image/data", r"no dataset|missing"])


def test_cellid_wrong_length():
    """image/cellId with one entry fewer than image/data has frames."""
    def fn(path, src):
        edit(path, IMG.format(src=src) + "/cellId", lambda v: v[:-1])
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"cellId", r"entries", r"expected"])


def test_cellid_wrong_rank():
    """image/cellId of shape (N, 2)."""
    def fn(path, src):
        edit(path, IMG.format(src=src) + "/cellId", lambda v: np.repeat(v.reshape(-1, 1), 2, axis=1))
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"cellId", r"shape"])


def test_cellid_wrong_dtype():
    """image/cellId stored as float64."""
    def fn(path, src):
        name = IMG.format(src=src) + "/cellId"
        with h5py.File(path, "r") as h:
            v = h[name][()]
        replace(path, name, data=v.astype(np.float64))
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"cellId", r"integer"])


def test_index_first_past_data():
    """INDEX first of the last train points at the end of image/data."""
    def fn(path, src):
        n = nframes(path, BAD[0])
        edit(path, IDX.format(src=src) + "/first", lambda v: np.concatenate([v[:-1], [n]]))
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"INDEX", r"first/count", r"points past"])


def test_index_count_past_data():
    """INDEX count so large that first + count wraps around 2^64."""
    def fn(path, src):
        edit(path, IDX.format(src=src) + "/count", lambda v: np.concatenate([v[:-1], [2**64 - 1]]))
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"INDEX", r"first/count", r"points past"])


def test_index_overlapping_trains():
    """The second train's frames start inside the first train's."""
    def fn(path, src):
        edit(path, IDX.format(src=src) + "/first", lambda v: np.concatenate([v[:1], v[1:] - 1]))
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"INDEX", r"overlap"])


def test_index_lengths_differ():
    """INDEX count has one entry more than INDEX/trainId."""
    def fn(path, src):
        edit(path, IDX.format(src=src) + "/count", lambda v: np.concatenate([v, [0]]))
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"INDEX/.*count", r"3 entries", r"expected 2"])


def test_index_trainid_shorter():
    """INDEX/trainId has one entry fewer than first and count."""
    def fn(path, src):
        edit(path, "INDEX/trainId", lambda v: v[:-1])
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names, [r"INDEX/", r"entries", r"expected"])


def test_cellid_beyond_constants_value():
    """A raw cellId of 200 where the constants have 4 memory cells."""
    def fn(path, src):
        edit(path, IMG.format(src=src) + "/cellId", lambda v: np.where(np.arange(v.size).reshape(v.shape) == 5,
                                                                      200, v))
    case, names = bad_raw_case(fn)
    expect_file_failures(case, [BAD], names + ["AGIPD00.h5"], [r"cellId 200", r"not covered", r"4 memory cells"])


def test_cellid_not_covered_by_constants():
    """Module 0's constants simulated with 2 memory cells for 4-cell trains
    (--constants-cells 2): module 0 fails, module 1 is corrected; with
    --cells 0:2 module 0 is corrected too."""
    small = simulate("small-consts", "--modules", "0", "--sequences", "1", "--trains", "2", "--cells", "4",
                     "--constants-cells", "2")
    case = Case(base())
    os.unlink(case.const(0))
    os.link(os.path.join(small, "constants", "AGIPD00.h5"), case.const(0))
    # The constants' memory_cells (2) is not the run's (4): refused for its
    # conditions (SPEC 6.2) ...
    expect_file_failures(case, [(0, 0), (0, 1)], ["AGIPD00.h5"], [r"Memory cells", r"run 4, constant 2"])
    # ... and, with --ignore-conditions, for the cells they do not cover.
    expect_file_failures(case, [(0, 0), (0, 1)], ["AGIPD00.h5"], [r"cellId 3", r"not covered", r"2 memory cells"],
                         args=["--ignore-conditions"])
    for np_ in RANKS:
        out, p, changed = run_case(case, np_, ["--cells", "0:2", "--ignore-conditions"])
        if changed or p.returncode != 0 or len([f for f in os.listdir(out) if f.startswith("CORR-")]) != 4:
            raise harness.Failed(f"--cells 0:2 should correct every file (input changes {changed}):\n{describe(p)}")


# ---------------------------------------------------------------------------
# Constants files
# ---------------------------------------------------------------------------

def bad_const_case(fn):
    case = Case(base())
    path = case.own(case.const(0))
    fn(path)
    return case, ["AGIPD00.h5"]


def test_missing_constants_file():
    """No AGIPD00.h5: module 0 fails, module 1 is corrected."""
    case = Case(base())
    os.unlink(case.const(0))
    expect_file_failures(case, [(0, 0), (0, 1)], ["AGIPD00.h5"], [r"cannot open constants file|no such file"])


def test_missing_required_constant():
    """AGIPD00.h5 without Offset."""
    def fn(path):
        with h5py.File(path, "r+") as h:
            del h["Offset"]
    case, names = bad_const_case(fn)
    expect_file_failures(case, [(0, 0), (0, 1)], names, [r"missing constant Offset"])


def test_missing_constant_for_option():
    """AGIPD00.h5 without SlopesPC, needed by --rel-gain only."""
    def fn(path):
        with h5py.File(path, "r+") as h:
            del h["SlopesPC"]
    case, names = bad_const_case(fn)
    expect_file_failures(case, [(0, 0), (0, 1)], names, [r"missing constant SlopesPC"], args=["--rel-gain"])


def test_constant_wrong_shape():
    """Offset of shape (128, 256, C, 3)."""
    def fn(path):
        with h5py.File(path, "r+") as h:
            v = h["Offset"][:, :256]
        replace(path, "Offset", data=v)
    case, names = bad_const_case(fn)
    expect_file_failures(case, [(0, 0), (0, 1)], names, [r"Offset", r"shape"])


def test_constant_wrong_rank():
    """ThresholdsDark without its trailing axis: (128, 512, C)."""
    def fn(path):
        with h5py.File(path, "r+") as h:
            v = h["ThresholdsDark"][..., 0]
        replace(path, "ThresholdsDark", data=v)
    case, names = bad_const_case(fn)
    expect_file_failures(case, [(0, 0), (0, 1)], names, [r"ThresholdsDark", r"shape"])


def test_constant_wrong_dtype():
    """BadPixelsDark stored as float32."""
    def fn(path):
        with h5py.File(path, "r+") as h:
            v = h["BadPixelsDark"][()].astype(np.float32)
        replace(path, "BadPixelsDark", data=v)
    case, names = bad_const_case(fn)
    expect_file_failures(case, [(0, 0), (0, 1)], names, [r"BadPixelsDark", r"type"])


def test_constants_implausible_cells():
    """Constants that claim 100000 memory cells (chunked, never written) and a
    raw cellId of 65535: the cellId is refused as not covered (AGIPD has at
    most 352 cells), without sizing a buffer for 65536 cells (128 GiB)."""
    def fn(path):
        with h5py.File(path, "r+") as h:
            for name, k, dt in (("ThresholdsDark", 5, "f4"), ("Offset", 3, "f4"), ("BadPixelsDark", 3, "u4")):
                del h[name]
                h.create_dataset(name, shape=(128, 512, 100000, k), dtype=dt, chunks=(128, 512, 1, k))
    case, names = bad_const_case(fn)
    src = src_of(0)
    edit(case.raw(0, 1), IMG.format(src=src) + "/cellId",
         lambda v: np.where(np.arange(v.size).reshape(v.shape) == 2, 65535, v))
    failed = [(0, 1)]
    ref = reference()
    for np_ in RANKS:
        out, p, changed = run_case(case, np_)
        what = describe(p)
        if changed or p.returncode != 1:
            raise harness.Failed(f"exit {p.returncode} (expected 1), input changes {changed}:\n{what}")
        if not error_line(p.stderr, 0, 1, [raw_name(0, 1), "AGIPD00.h5"], [r"cellId 65535", r"not covered"]):
            raise harness.Failed(f"no line says that cellId 65535 is not covered:\n{what}")
        # AGIPD00 S00000 is corrected with the (fill-value) constants: it
        # differs from the reference; module 1 does not.
        have = sorted(f for f in os.listdir(out))
        if have != sorted(corr_name(m, s) for m, s in ALL if (m, s) not in failed):
            raise harness.Failed(f"output folder holds {have}\n{what}")
        errors = []
        for m, s in ((1, 0), (1, 1)):
            compare_corr(os.path.join(out, corr_name(m, s)), os.path.join(ref, corr_name(m, s)), errors)
        if errors:
            raise harness.Failed("\n".join(errors) + "\n" + what)


def test_constants_not_hdf5():
    """AGIPD00.h5 is text."""
    def fn(path):
        with open(path, "w") as f:
            f.write("not constants\n")
    case, names = bad_const_case(fn)
    expect_file_failures(case, [(0, 0), (0, 1)], names, [r"not an HDF5 file"])


def _nonfinite(shape, dtype):
    a = np.empty(int(np.prod(shape)), dtype=np.float64)
    a[0::3] = np.nan
    a[1::3] = np.inf
    a[2::3] = -np.inf
    return a.reshape(shape).astype(dtype)


FLOAT_CONSTS = ("ThresholdsDark", "Offset", "Noise", "SlopesPC", "SlopesFF")
ALL_CORRECTIONS = ["--rel-gain", "--adjust-mg-baseline", "--ff-gain", "--common-mode", "--force-mg-if-below",
                   "--force-hg-if-below", "--photon-energy", "9.3", "--adu-per-kev", "10"]


def test_nan_inf_every_constant():
    """Every value of every real-valued constant of every module NaN, +inf or
    -inf: the run still succeeds and writes every file, all its pixels
    flagged VALUE_IS_NAN with data 0 -- with the default corrections and with
    every optional one."""
    case = Case(base())
    for m in (0, 1):
        path = case.own(case.const(m))
        with h5py.File(path, "r+") as h:
            for name in FLOAT_CONSTS:
                ds = h[name]
                ds[...] = _nonfinite(ds.shape, ds.dtype)
    for args in ([], ALL_CORRECTIONS):
        for np_ in RANKS:
            out, p, changed = run_case(case, np_, args)
            what = describe(p)
            if changed:
                raise harness.Failed(f"the input folders changed: {changed}\n{what}")
            if p.returncode != 0:
                raise harness.Failed(f"exit {p.returncode} with non-finite constants, expected 0:\n{what}")
            if temporaries(out) or sorted(os.listdir(out)) != sorted(corr_name(m, s) for m, s in ALL):
                raise harness.Failed(f"output folder holds {sorted(os.listdir(out))}\n{what}")
            for m, s in ALL:
                with h5py.File(os.path.join(out, corr_name(m, s)), "r") as h:
                    img = IMG.format(src=src_of(m))
                    data, gain, mask = h[img + "/data"][()], h[img + "/gain"][()], h[img + "/mask"][()]
                if data.shape[0] == 0:
                    raise harness.Failed(f"{corr_name(m, s)}: no frames\n{what}")
                if not np.all(data == 0):
                    raise harness.Failed(f"{corr_name(m, s)}: non-zero data from non-finite constants\n{what}")
                if not np.all(mask & (1 << 11)):
                    raise harness.Failed(f"{corr_name(m, s)}: {int(np.sum((mask & (1 << 11)) == 0))} pixels not "
                                         f"flagged VALUE_IS_NAN\n{what}")
                if gain.max() > 2:
                    raise harness.Failed(f"{corr_name(m, s)}: gain {gain.max()}\n{what}")


def test_nan_offset_region():
    """NaN Offset over half of module 0's first ASIC column, +inf over the
    other half: exactly those pixels are flagged VALUE_IS_NAN with data 0;
    every other pixel is as in a clean run."""
    case = Case(base())
    path = case.own(case.const(0))
    with h5py.File(path, "r+") as h:
        v = h["Offset"][()]
        v[0:64, 0:64] = np.nan        # file order: (x = column, y = row, cell, gain)
        v[0:64, 64:128] = np.inf
        h["Offset"][...] = v
    ref = reference()
    for np_ in RANKS:
        out, p, changed = run_case(case, np_)
        what = describe(p)
        if changed or p.returncode != 0:
            raise harness.Failed(f"exit {p.returncode}, input changes {changed}:\n{what}")
        if temporaries(out) or sorted(os.listdir(out)) != sorted(corr_name(m, s) for m, s in ALL):
            raise harness.Failed(f"output folder holds {sorted(os.listdir(out))}\n{what}")
        for m, s in ALL:
            img = IMG.format(src=src_of(m))
            with h5py.File(os.path.join(out, corr_name(m, s)), "r") as h, \
                    h5py.File(os.path.join(ref, corr_name(m, s)), "r") as r:
                d, g, k = (h[img + x][()] for x in ("/data", "/gain", "/mask"))
                rd, rg, rk = (r[img + x][()] for x in ("/data", "/gain", "/mask"))
            region = np.zeros(d.shape[1:], bool)
            if m == 0:
                region[0:128, 0:64] = True   # output order: (row, column)
            if not (np.all(d[:, region] == 0) and np.all(k[:, region] & (1 << 11))):
                raise harness.Failed(f"{corr_name(m, s)}: non-finite offsets not flagged\n{what}")
            if not (np.array_equal(d[:, ~region], rd[:, ~region]) and np.array_equal(g, rg)
                    and np.array_equal(k[:, ~region], rk[:, ~region])):
                raise harness.Failed(f"{corr_name(m, s)}: pixels with finite constants differ from the clean run\n"
                                     f"{what}")


# ---------------------------------------------------------------------------
# Output folder
# ---------------------------------------------------------------------------

def test_out_folder_is_in_folder():
    """The output folder may not be the input folder, its run folder, a
    folder inside it (not even a new one), or another path to them; nothing
    is created in the input folder."""
    case = Case(base())
    link = os.path.join(case.root, "link-to-raw")
    os.symlink(case.raw_dir, link)
    for out in (case.in_folder, case.raw_dir, os.path.join(case.raw_dir, "corr"),
                os.path.join(case.raw_dir, "a", "b"), os.path.join(case.in_folder, ".", "r0001", ".."),
                link, os.path.join(link, "sub")):
        expect_refused(case, [], [r"must not be the input folder"], out=out)
        if out.endswith(("corr", "b", "sub")) and os.path.exists(out):
            raise harness.Failed(f"the refused run created {out}")


def _immutable(path):
    return subprocess.run(["chattr", "+i", path], capture_output=True).returncode == 0


def test_unwritable_out_folder_immutable():
    """An output folder that root cannot write to (chattr +i): refused with
    exit 2, before any file is read or written; also a new folder inside it."""
    case = Case(base())
    out = os.path.join(case.root, "ro")
    os.mkdir(out)
    if not _immutable(out):
        raise harness.Skip("chattr +i does not work here")
    try:
        expect_refused(case, [], [r"not writable", re.escape(out)], out=out)
        expect_refused(case, [], [r"cannot create output folder", r"sub"], out=os.path.join(out, "sub"))
    finally:
        subprocess.run(["chattr", "-i", out], capture_output=True)
    if os.listdir(out):
        raise harness.Failed(f"files appeared in the unwritable folder: {os.listdir(out)}")


def _mount_tmpfs(path, opts):
    os.makedirs(path, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path], capture_output=True).returncode == 0


def _umount(path):
    subprocess.run(["umount", path], capture_output=True)


def test_unwritable_out_folder_readonly_mount():
    """An output folder on a read-only file system (a ro tmpfs)."""
    case = Case(base())
    out = os.path.join(case.root, "rofs")
    if not _mount_tmpfs(out, "ro,size=1m"):
        raise harness.Skip("cannot mount a tmpfs here")
    try:
        expect_refused(case, [], [r"not writable", r"read-only"], out=out)
    finally:
        _umount(out)


def test_disk_full():
    """The output folder on a 3 MB tmpfs that fills up during the writes:
    the files that do not fit fail with a message saying so, those written
    are complete, no temporary file remains, exit 1."""
    case = Case(base())
    ref = reference()
    for np_ in RANKS:
        out = os.path.join(case.root, f"full{np_}")
        if not _mount_tmpfs(out, "size=3m"):
            raise harness.Skip("cannot mount a tmpfs here")
        try:
            before = case.snapshot()
            p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts))
            changed = fingerprint_diff(before, case.snapshot())
            what = describe(p)
            if changed:
                raise harness.Failed(f"the input folders changed: {changed}\n{what}")
            if p.returncode != 1:
                raise harness.Failed(f"exit {p.returncode} on a full disk, expected 1:\n{what}")
            done = {(m, s) for m, s in ALL if os.path.exists(os.path.join(out, corr_name(m, s)))}
            failed = [f for f in ALL if f not in done]
            if not failed:
                raise harness.Failed(f"every file fitted on the 3 MB disk?\n{what}")
            for m, s in failed:
                if not error_line(p.stderr, m, s, [corr_name(m, s).replace(".h5", "")],
                                  [r"no space left|disk full|ENOSPC"]):
                    raise harness.Failed(f"no line says that AGIPD{m:02d} S{s:05d} failed for lack of space:\n"
                                         f"{what}")
            check_outputs(out, ref, sorted(done), failed, what=what)
        finally:
            _umount(out)


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------

def test_bad_option_values():
    """--cells 5:2, --modules 16, --photon-energy -1, --batch-frames 0:
    exit 2 with the option and the reason on stderr, nothing created."""
    case = Case(base())
    for args, words in ((["--cells", "5:2"], [r"--cells", r"STOP must be greater than START"]),
                        (["--modules", "16"], [r"--modules", r"0-15"]),
                        (["--photon-energy", "-1"], [r"--photon-energy", r"positive"]),
                        (["--photon-energy=-1"], [r"--photon-energy", r"positive"]),
                        (["--batch-frames", "0"], [r"--batch-frames"])):
        expect_refused(case, args, words)


def test_missing_in_folder():
    """An input folder that does not exist: exit 2, its name on stderr."""
    case = Case(base())
    for np_ in RANKS:
        out = case.out()
        p = mpirun(np_, correct_cmd(os.path.join(case.root, "nowhere"), out, case.consts))
        if p.returncode != 2 or "nowhere" not in p.stderr or os.path.exists(out):
            raise harness.Failed(describe(p))


# ---------------------------------------------------------------------------
# --fail-fast, re-runs, stale temporaries
# ---------------------------------------------------------------------------

def test_fail_fast():
    """With --fail-fast the run stops after the first failed file: at 1 rank
    nothing after it is run; at 3 ranks with --schedule rounds the round in
    progress finishes and the last file is not run; at 3 ranks with
    --schedule groups the 4 files go to one group of 3 ranks, one after the
    other, so nothing after the first is run.  Without it, every other file
    is corrected."""
    case = Case(base())
    size = os.path.getsize(case.raw(0, 0))   # as large as before: the plan weighs files by size
    with open(case.raw(0, 0), "wb") as f:
        f.write(b"garbage\n".ljust(size, b"\0"))
    ref = reference()
    for np_, absent, sched in ((1, ALL, "groups"), (3, [(0, 0), (1, 1)], "rounds"), (3, ALL, "groups")):
        out, p, changed = run_case(case, np_, ["--fail-fast", "--schedule", sched])
        what = describe(p)
        if changed or p.returncode != 1:
            raise harness.Failed(f"exit {p.returncode} (expected 1), input changes {changed}:\n{what}")
        if not error_line(p.stderr, 0, 0, [raw_name(0, 0)], [r"not an HDF5 file"]):
            raise harness.Failed(f"no line names the failed file:\n{what}")
        if not re.search(r"not run", p.stdout + p.stderr):
            raise harness.Failed(f"the summary does not say which files were not run:\n{what}")
        check_outputs(out, ref, [f for f in ALL if f not in absent], absent, what=what)
    expect_file_failures(case, [(0, 0)], [raw_name(0, 0)], [r"not an HDF5 file"], ranks=(3,))


def test_rerun_after_failure():
    """A run with a broken file, then the file repaired and the run repeated
    without --overwrite: only the missing file is corrected, the others are
    skipped untouched, and the folder equals a clean run's."""
    case = Case(base())
    good = case.raw(*BAD) + ".good"
    os.rename(case.raw(*BAD), good)
    with open(case.raw(*BAD), "wb") as f:
        f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    ref = reference()
    for np_ in RANKS:
        out, p, _ = run_case(case, np_)
        if p.returncode != 1:
            raise harness.Failed(describe(p))
        stats = {f: os.stat(os.path.join(out, f)) for f in os.listdir(out)}
        os.rename(case.raw(*BAD), case.raw(*BAD) + ".bad")
        os.rename(good, case.raw(*BAD))
        try:
            p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts))
        finally:
            os.rename(case.raw(*BAD), good)
            os.rename(case.raw(*BAD) + ".bad", case.raw(*BAD))
        what = describe(p)
        if p.returncode != 0 or not re.search(r"1 file\(s\) corrected, 3 skipped, 0 failed", p.stdout):
            raise harness.Failed(f"the re-run should correct 1 file and skip 3:\n{what}")
        for f, st in stats.items():
            st2 = os.stat(os.path.join(out, f))
            if (st.st_ino, st.st_mtime_ns, st.st_size) != (st2.st_ino, st2.st_mtime_ns, st2.st_size):
                raise harness.Failed(f"{f} was rewritten by the re-run without --overwrite")
        check_outputs(out, ref, ALL, what=what)


def test_stale_part_files_cleaned():
    """.part files left by a killed run (garbage, and one whose CORR exists)
    are gone after the next run, whose outputs equal a clean run's."""
    case = Case(base())
    ref = reference()
    for np_ in RANKS:
        out = case.out()
        os.makedirs(out)
        for m, s in ALL:
            with open(os.path.join(out, "." + corr_name(m, s) + ".part"), "wb") as f:
                f.write(b"\x89HDF\r\n\x1a\n half a file")
        p = mpirun(np_, correct_cmd(case.in_folder, out, case.consts))
        if p.returncode != 0:
            raise harness.Failed(describe(p))
        check_outputs(out, ref, ALL, what=describe(p))


if __name__ == "__main__":
    harness.main(globals())
