#!/usr/bin/env python3
"""Raw image/data layouts: the mapped fast path and the copy path give the
same corrected files.

  - the simulator's default raw layout is the DAQ's: first axis unlimited,
    chunked, image/data one frame a chunk; --contiguous writes the old one;
  - agipd-correct maps image/data when it is contiguous or chunked in whole
    frames, unfiltered (the AGIPD_TEST_PAUSE_MAPPED hook leaves a marker for
    every raw file a rank mapped), and reads it through HDF5 otherwise
    (compressed chunks);
  - every layout (contiguous, one frame a chunk, 24 frames a chunk with a
    partial last chunk, gzip chunks) gives the same CORR files, at 1 and 3
    ranks;
  - a file of 1,040 one-frame chunks (a chunk index of several B-tree
    levels, which the reader walks itself: HDF5 1.10's per-chunk lookup is
    O(chunks)) is mapped too, with the same output.
"""
import os
import re
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

KID = "SPB_DET_AGIPD1M-1"
SIM = ["--modules", "0", "--sequences", "2", "--trains", "4", "--cells", "16", "--no-truth", "--seed", "7"]
RANKS = (1, 3)
_SIM = {}


def src(mod=0):
    return f"INSTRUMENT/{KID}/DET/{mod}CH0:xtdf"


def raw_names(folder):
    return sorted(f for f in os.listdir(os.path.join(folder, "r0001")) if re.match(r"RAW-R\d{4}-AGIPD\d\d-S", f))


def simulate(*extra):
    key = tuple(extra)
    if key not in _SIM:
        if not all(os.access(b, os.X_OK) for b in (harness.CORRECT, harness.SIMULATE)):
            raise harness.Skip("binaries not built")
        d = harness.tmpdir("agipd-layout-")
        harness.run([harness.SIMULATE, "--out-folder", d] + SIM + list(extra))
        _SIM[key] = d
    return _SIM[key]


def relayout(folder, **kw):
    """A copy of the simulated run `folder` whose image/data is rewritten
    with h5py's create_dataset keywords kw (chunks, compression)."""
    d = harness.tmpdir("agipd-layout-")
    shutil.copytree(os.path.join(folder, "r0001"), os.path.join(d, "r0001"))
    for name in raw_names(d):
        with h5py.File(os.path.join(d, "r0001", name), "r+") as f:
            img = f[src() + "/image"]
            data = img["data"][()]
            del img["data"]
            img.create_dataset("data", data=data, maxshape=(None,) + data.shape[1:], **kw)
    return d


def correct(in_folder, consts, np_):
    """Correct in_folder at np_ ranks; returns (out folder, names of the raw
    files some rank mapped)."""
    out = harness.tmpdir("agipd-layout-out-")
    pause = harness.tmpdir("agipd-layout-pause-")
    names = raw_names(in_folder)
    for n in names:   # the hook marks the mapping and, with .go there, goes on at once
        open(os.path.join(pause, n + ".pause"), "w").close()
        open(os.path.join(pause, n + ".go"), "w").close()
    harness.mpirun(np_, [harness.CORRECT, "--in-folder", in_folder, "--out-folder", out, "--run", "1",
                         "--constants-folder", consts], env={"AGIPD_TEST_PAUSE_MAPPED": pause})
    mapped = {n for n in names for f in os.listdir(pause) if f.startswith(n + ".") and f.endswith(".mapped")}
    return out, mapped


def corr_arrays(out):
    """Every dataset of every CORR file but METADATA (which names folders
    and dates): {file/dataset: array}."""
    res = {}
    for name in sorted(os.listdir(out)):
        if not name.startswith("CORR-"):
            continue
        with h5py.File(os.path.join(out, name), "r") as f:
            def visit(k, obj, name=name):
                if isinstance(obj, h5py.Dataset) and not k.startswith("METADATA"):
                    res[f"{name}:{k}"] = obj[()]
            f.visititems(visit)
    if not res:
        raise harness.Failed(f"{out}: no CORR files")
    return res


def same(a, b, what):
    if a.keys() != b.keys():
        raise harness.Failed(f"{what}: datasets differ: {sorted(a.keys() ^ b.keys())[:5]}")
    for k in a:
        x, y = a[k], b[k]
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            raise harness.Failed(f"{what}: {k} differs")


def test_simulator_layouts():
    """Default raw files: image/data (N, 2, 512, 128) with maxshape (None, ...)
    and chunks (1, 2, 512, 128); per-frame and per-train arrays unlimited and
    chunked; header/detector/trailer present.  --contiguous: no chunks, same
    frames."""
    daq, con = simulate(), simulate("--contiguous")
    names = raw_names(daq)
    if names != raw_names(con) or len(names) != 2:
        raise harness.Failed(f"raw files {names} vs {raw_names(con)}")
    for name in names:
        with h5py.File(os.path.join(daq, "r0001", name), "r") as a, \
                h5py.File(os.path.join(con, "r0001", name), "r") as b:
            g, h = a[src()], b[src()]
            d = g["image/data"]
            if d.chunks != (1, 2, 512, 128) or d.maxshape != (None, 2, 512, 128) or d.compression:
                raise harness.Failed(f"{name}: image/data chunks {d.chunks} maxshape {d.maxshape}")
            for k in ("image/cellId", "image/pulseId", "image/trainId", "image/status", "image/length",
                      "header/pulseCount", "detector/data", "trailer/magicNumberEnd", "header/trainId"):
                if g[k].chunks is None or g[k].maxshape[0] is not None:
                    raise harness.Failed(f"{name}: {k} chunks {g[k].chunks} maxshape {g[k].maxshape}")
                if h[k].chunks is not None or not np.array_equal(g[k][()], h[k][()]):
                    raise harness.Failed(f"{name}: --contiguous {k}: chunks {h[k].chunks} or values differ")
            if h["image/data"].chunks is not None or not np.array_equal(d[()], h["image/data"][()]):
                raise harness.Failed(f"{name}: --contiguous image/data chunked or different")


def test_layouts_same_output():
    """Contiguous, one frame a chunk, 24 frames a chunk (mapped) and gzip
    chunks (read through HDF5) give identical CORR files, at 1 and 3 ranks."""
    daq, con = simulate(), simulate("--contiguous")
    consts = os.path.join(daq, "constants")
    cases = [("contiguous", con, True), ("daq", daq, True),
             ("chunks24", relayout(daq, chunks=(24, 2, 512, 128)), True),
             ("gzip", relayout(daq, chunks=(1, 2, 512, 128), compression="gzip", compression_opts=1), False)]
    names = set(raw_names(daq))
    ref = None
    for np_ in RANKS:
        for label, folder, want_mapped in cases:
            out, mapped = correct(folder, consts, np_)
            if mapped != (names if want_mapped else set()):
                raise harness.Failed(f"{label} at {np_} rank(s): mapped {sorted(mapped)}, expected "
                                     f"{sorted(names) if want_mapped else 'none'}")
            arrays = corr_arrays(out)
            if ref is None:
                ref = arrays
            else:
                same(arrays, ref, f"{label} at {np_} rank(s) vs contiguous at 1 rank")
            print(f"  {label:10s} {np_} rank(s): {'mapped' if want_mapped else 'copied'}, "
                  f"{len(arrays)} datasets identical")


def test_many_chunks_mapped():
    """1,040 frames one a chunk (a B-tree of several levels): mapped, the
    same CORR file as the contiguous layout, at 1 and 3 ranks."""
    args = ["--modules", "0", "--sequences", "1", "--trains", "130", "--cells", "8", "--no-truth"]
    daq, con = harness.tmpdir("agipd-layout-"), harness.tmpdir("agipd-layout-")
    harness.run([harness.SIMULATE, "--out-folder", daq] + args)
    harness.run([harness.SIMULATE, "--out-folder", con, "--contiguous", "--no-constants"] + args)
    consts = os.path.join(daq, "constants")
    for np_ in RANKS:
        out_d, mapped_d = correct(daq, consts, np_)
        out_c, mapped_c = correct(con, consts, np_)
        if not mapped_d or not mapped_c:
            raise harness.Failed(f"{np_} rank(s): mapped chunked {sorted(mapped_d)}, contiguous {sorted(mapped_c)}")
        same(corr_arrays(out_d), corr_arrays(out_c), f"1,040 chunks at {np_} rank(s) vs contiguous")
        print(f"  {np_} rank(s): 1,040 chunks mapped, contiguous mapped, outputs identical")


harness.main(globals())
