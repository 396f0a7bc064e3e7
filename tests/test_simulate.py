#!/usr/bin/python3
"""Tests of bin/agipd-simulate: the files it writes follow SPEC sections 2-3
exactly (paths, dtypes, shapes, EXDF groups, INDEX), the constants are in the
facility's axis order, the digital values reproduce the true gain stage, the
SPEC's correction applied in NumPy gives back the truth photons, output does
not depend on the rank count, and every edge case is there when asked.

Small runs only (a few seconds each).  Set AGIPD_KEEP=1 to keep the folders.
"""
import atexit
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import ref_agipd as R  # noqa: E402

ROWS, COLS = 512, 128
KID = "SPB_DET_AGIPD1M-1"
_TMP = []
_CACHE = {}

# enum agipd_sim_pixel_flag (include/agipd_sim.h)
PF_OUT_ML, PF_OUT_MH, PF_OUT_FF = 1, 2, 4
PF_NAN_OFFSET, PF_INF_OFFSET, PF_NAN_THR = 8, 16, 32
PF_NAN_ML, PF_NAN_BH, PF_NAN_FF = 64, 128, 256


def _cleanup():
    if os.environ.get("AGIPD_KEEP"):
        print("kept:", " ".join(_TMP))
        return
    for d in _TMP:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def need_simulate():
    if not os.access(harness.SIMULATE, os.X_OK):
        raise harness.Skip("bin/agipd-simulate not built")


def check(cond, msg):
    if not cond:
        raise harness.Failed(msg)


def simulate(key, *args, np_=1):
    """Run agipd-simulate once per key; returns its output folder."""
    need_simulate()
    if key not in _CACHE:
        d = harness.tmpdir("agipd-sim-")
        _TMP.append(d)
        harness.mpirun(np_, [harness.SIMULATE, "--out-folder", d] + list(map(str, args)), timeout=60)
        _CACHE[key] = d
    return _CACHE[key]


def small():
    """Modules 2 and 5, 2 sequences of 3 trains x 8 cells, constants with 10 cells."""
    return simulate("small", "--modules", "2,5", "--sequences", "2", "--trains", "3", "--cells", "8",
                    "--constants-cells", "10", "--run", "7", np_=2)


def physics():
    """One module with enough trains for bright Bragg spots (medium and low gain)."""
    return simulate("physics", "--modules", "3", "--trains", "4", "--cells", "12", "--seed", "5")


def edges():
    return simulate("edges", "--modules", "0", "--trains", "5", "--cells", "12", "--edge-cases", "all")


def raw_path(d, run, mod, seq):
    return os.path.join(d, f"r{run:04d}", f"RAW-R{run:04d}-AGIPD{mod:02d}-S{seq:05d}.h5")


def truth_path(d, run, mod, seq):
    return os.path.join(d, "truth", f"TRUTH-R{run:04d}-AGIPD{mod:02d}-S{seq:05d}.h5")


def const_path(d, mod):
    return os.path.join(d, "constants", f"AGIPD{mod:02d}.h5")


def src(mod):
    return f"{KID}/DET/{mod}CH0:xtdf"


def transpose_c(ds):
    """A constants dataset in C order (..., cell, 512, 128), as float32 for reals."""
    a = ds[()]
    if a.dtype.kind == "f":
        a = a.astype(np.float32)
    return np.ascontiguousarray(np.transpose(a))


def kept_frames(f, mod):
    """Frame numbers of the valid trains (trainId != 0), in file order."""
    tid = f["INDEX/trainId"][()]
    first = f[f"INDEX/{src(mod)}/image/first"][()]
    count = f[f"INDEX/{src(mod)}/image/count"][()]
    sel = []
    for t, a, n in zip(tid, first, count):
        if t != 0:
            sel.extend(range(int(a), int(a + n)))
    return np.array(sel, dtype=np.int64)


# ---- command line ------------------------------------------------------------

def test_help_and_errors():
    need_simulate()
    p = harness.run([harness.SIMULATE, "--help"])
    check(all(f"--{o}" in p.stdout for o in ("out-folder", "edge-cases", "control", "karabo-id-control",
                                             "karabo-da-control", "mem-cells", "acq-rate", "gain-setting",
                                             "gain-mode", "integration-time", "bias-voltage", "control-change",
                                             "caldb", "caldb-dims-order")), "usage text incomplete")
    for args, word in ((["--trains", "2"], "out-folder"),
                       (["--out-folder", "/tmp/x", "--cells", "353"], "cells"),
                       (["--out-folder", "/tmp/x", "--modules", "3-16"], "module"),
                       (["--out-folder", "/tmp/x", "--edge-cases", "bogus"], "bogus"),
                       (["--out-folder", "/tmp/x", "--frobnicate"], "frobnicate"),
                       (["--out-folder", "/tmp/x", "--control", "bogus"], "bogus"),
                       (["--out-folder", "/tmp/x", "--control-change", "nPulse"], "nPulse"),
                       (["--out-folder", "/tmp/x", "--gain-mode", "4"], "gain-mode"),
                       (["--out-folder", "/tmp/x", "--gain-setting", "2"], "gain-setting"),
                       (["--out-folder", "/tmp/x", "--acq-rate", "0"], "acq-rate"),
                       (["--out-folder", "/tmp/x", "--karabo-id-control", "A/B"], "A/B")):
        p = harness.run([harness.SIMULATE] + args, check=False)
        check(p.returncode != 0, f"{args}: exit status 0")
        check(word in p.stderr, f"{args}: message does not name '{word}': {p.stderr!r}")


def test_unwritable_output_fails_cleanly():
    need_simulate()
    d = harness.tmpdir("agipd-sim-")
    _TMP.append(d)
    blocker = os.path.join(d, "file")
    open(blocker, "w").close()
    p = harness.mpirun(2, [harness.SIMULATE, "--out-folder", os.path.join(blocker, "sub"),
                           "--modules", "0", "--trains", "1", "--cells", "2"], check=False, timeout=60)
    check(p.returncode != 0, "writing below a plain file succeeded")
    check("file/sub" in p.stderr, f"error does not name the path: {p.stderr!r}")


# ---- raw files -----------------------------------------------------------------

def test_raw_layout():
    d = small()
    check(sorted(os.listdir(os.path.join(d, "r0007"))) ==
          [f"RAW-R0007-AGIPD{m:02d}-S{s:05d}.h5" for m in (2, 5) for s in (0, 1)] +
          [f"RAW-R0007-AGIPD1MCTRL00-S{s:05d}.h5" for s in (0, 1)],
          f"raw files: {os.listdir(os.path.join(d, 'r0007'))}")
    for mod in (2, 5):
        for seq in (0, 1):
            with h5py.File(raw_path(d, 7, mod, seq), "r") as f:
                s = src(mod)
                img = f[f"INSTRUMENT/{s}/image"]
                n = 3 * 8
                want = {"data": ("uint16", (n, 2, ROWS, COLS)), "cellId": ("uint16", (n, 1)),
                        "pulseId": ("uint64", (n, 1)), "trainId": ("uint64", (n, 1)),
                        "status": ("uint16", (n, 1)), "length": ("uint32", (n, 1))}
                for k, (dt, shape) in want.items():
                    check(img[k].dtype == np.dtype(dt) and img[k].shape == shape,
                          f"{k}: {img[k].dtype} {img[k].shape}, want {dt} {shape}")
                # the DAQ's layout: first axis unlimited, one frame a chunk
                check(img["data"].chunks == (1, 2, ROWS, COLS) and img["data"].maxshape[0] is None and
                      img["data"].compression is None,
                      f"image/data chunks {img['data'].chunks} maxshape {img['data'].maxshape}")
                for k, dt in (("trainId", "uint64"), ("timestamp", "uint64"), ("flag", "int32")):
                    check(f[f"INDEX/{k}"].dtype == np.dtype(dt) and f[f"INDEX/{k}"].shape == (3,),
                          f"INDEX/{k}: {f[f'INDEX/{k}'].dtype} {f[f'INDEX/{k}'].shape}")
                for part in ("image", "header", "detector", "trailer"):
                    for k in ("first", "count"):
                        ds = f[f"INDEX/{s}/{part}/{k}"]
                        check(ds.dtype == np.uint64 and ds.shape == (3,), f"INDEX {part}/{k}")
                for k, dt, shape in (("header/trainId", "uint64", (3,)),
                                     ("header/pulseCount", "uint64", (3,)),
                                     ("header/majorTrainFormatVersion", "uint32", (3,)),
                                     ("header/minorTrainFormatVersion", "uint32", (3,)),
                                     ("header/magicNumberBegin", "int8", (3, 8)),
                                     ("detector/data", "uint8", (3, 5408)),
                                     ("trailer/checksum", "int8", (3, 16)),
                                     ("trailer/status", "uint64", (3,)),
                                     ("trailer/trainId", "uint64", (3,))):
                    ds = f[f"INSTRUMENT/{s}/{k}"]
                    check(ds.dtype == np.dtype(dt) and ds.shape == shape, f"{k}: {ds.dtype} {ds.shape}")
                tids = 10000 + 3 * seq + np.arange(3)
                check((f["INDEX/trainId"][()] == tids).all(), f"train ids {f['INDEX/trainId'][()]}")
                check((f[f"INSTRUMENT/{s}/header/trainId"][()] == tids).all(), "header train ids")
                check((f[f"INSTRUMENT/{s}/header/pulseCount"][()] == 8).all(), "pulseCount")
                check((f["INDEX/flag"][()] == 1).all(), "flags")
                check((np.diff(f["INDEX/timestamp"][()].astype(np.int64)) > 0).all(), "timestamps")
                check((img["cellId"][:, 0] == np.tile(np.arange(8), 3)).all(), "cellIds")
                check((img["pulseId"][:, 0] == np.tile(np.arange(8), 3)).all(), "pulseIds")
                check((img["trainId"][:, 0] == np.repeat(tids, 8)).all(), "image trainIds")
                check((img["length"][()] == 262144).all() and (img["status"][()] == 0).all(),
                      "length/status")


def test_metadata():
    d = small()
    with h5py.File(raw_path(d, 7, 5, 1), "r") as f:
        m = f["METADATA"]
        for k in ("dataFormatVersion", "creationDate", "daqLibrary", "karaboFramework", "updateDate"):
            ds = m[k]
            check(ds.dtype.kind == "S" and ds.shape == (1,), f"METADATA/{k}: {ds.dtype} {ds.shape}")
        check(m["dataFormatVersion"][0] == b"1.0", "dataFormatVersion")
        check(len(m["creationDate"][0]) == 16 and m["creationDate"][0].endswith(b"Z"), "creationDate")
        check(m["runNumber"][0] == 7 and m["sequenceNumber"][0] == 1, "run/sequence numbers")
        check(m["proposalNumber"].shape == (1,), "proposalNumber")
        ids = [x.decode() for x in m["dataSources/dataSourceId"][()]]
        check(ids == [f"INSTRUMENT/{src(5)}/{p}" for p in ("detector", "header", "image", "trailer")],
              f"dataSourceId {ids}")
        check([x.decode() for x in m["dataSources/root"][()]] == ["INSTRUMENT"] * 4, "root")
        check([x.decode() for x in m["dataSources/deviceId"][()]] ==
              [f"{src(5)}/{p}" for p in ("detector", "header", "image", "trailer")], "deviceId")
        for k in ("dataSourceId", "root", "deviceId"):
            ds = m[f"dataSources/{k}"]
            check(ds.dtype.kind == "S" and h5py.check_string_dtype(ds.dtype).encoding == "ascii",
                  f"{k} is not fixed-length ASCII")
        # every source group listed exists
        for i in ids:
            check(i in f, f"{i} listed but missing")


def test_index_covers_frames():
    for d, mod, seqs in ((small(), 2, (0, 1)), (edges(), 0, (0,))):
        run = 7 if d == _CACHE["small"] else 1
        for seq in seqs:
            with h5py.File(raw_path(d, run, mod, seq), "r") as f:
                n = f[f"INSTRUMENT/{src(mod)}/image/data"].shape[0]
                first = f[f"INDEX/{src(mod)}/image/first"][()]
                count = f[f"INDEX/{src(mod)}/image/count"][()]
                check(count.sum() == n, f"counts sum to {count.sum()}, {n} frames")
                check((first == np.concatenate([[0], np.cumsum(count)[:-1]])).all(),
                      f"first {first} count {count} not contiguous")
                tid = f["INDEX/trainId"][()]
                itid = f[f"INSTRUMENT/{src(mod)}/image/trainId"][:, 0]
                for t, a, c in zip(tid, first, count):
                    check((itid[a:a + c] == t).all(), f"frames of train {t} carry other ids")
                for part in ("header", "detector", "trailer"):
                    hf = f[f"INDEX/{src(mod)}/{part}/first"][()]
                    hc = f[f"INDEX/{src(mod)}/{part}/count"][()]
                    rows = f[f"INSTRUMENT/{src(mod)}/{part}/trainId"].shape[0]
                    check(hc.sum() == rows and (hf[hc > 0] == np.arange(rows)).all(),
                          f"{part} index {hf} {hc} for {rows} rows")


# ---- constants -----------------------------------------------------------------

def test_constants_layout():
    d = small()
    check(sorted(os.listdir(os.path.join(d, "constants"))) == ["AGIPD02.h5", "AGIPD05.h5"],
          "constants files")
    want = {"ThresholdsDark": ("float64", 5), "Offset": ("float64", 3), "Noise": ("float32", 3),
            "BadPixelsDark": ("uint32", 3), "SlopesPC": ("float32", 10), "BadPixelsPC": ("uint32", None),
            "SlopesFF": ("float32", None), "BadPixelsFF": ("uint32", None)}
    with h5py.File(const_path(d, 5), "r") as f:
        for k, (dt, depth) in want.items():
            shape = (COLS, ROWS, 10) + ((depth,) if depth else ())
            check(f[k].dtype == np.dtype(dt) and f[k].shape == shape,
                  f"{k}: {f[k].dtype} {f[k].shape}, want {dt} {shape}")
        a = f.attrs
        for k in ("memory_cells", "acquisition_rate", "gain_setting", "bias_voltage", "creation_date",
                  "constant_id"):
            check(k in a, f"attribute {k} missing")
        check(a["memory_cells"] == 10, "memory_cells")
        off = f["Offset"][()]
        check(np.isfinite(off).all(), "Offset has NaN without nan-constants")
        check(4000 < np.median(off[..., 0]) < 6000 and np.median(off[..., 2]) > np.median(off[..., 0]),
              "offsets not around 5000/5800")
        thr = f["ThresholdsDark"][()]
        check((thr[..., 0] < thr[..., 1]).all(), "thresholds not increasing")
        # the sanitisation of SPEC step 5 has something to do
        ml = f["SlopesPC"][..., 0]
        med = np.median(ml.reshape(-1, 10), axis=0)
        out = (ml < 0.8 * med) | (ml > 1.2 * med)
        check(0 < out.any(axis=2).sum() < 200, f"{out.any(axis=2).sum()} ml outlier pixels")
        bpd = f["BadPixelsDark"][()]
        check(0 < (bpd != 0).mean() < 0.05, "bad pixel fraction")


def test_constants_axis_order():
    """Values at known [x, y, c, g]: the special pixels of the truth file, and
    the offsets against dark pixels of the raw data."""
    d = edges()
    with h5py.File(truth_path(d, 1, 0, 0), "r") as t, h5py.File(const_path(d, 0), "r") as c:
        sp = t["special_pixels"][()]
        off = c["Offset"][()]
        thr = c["ThresholdsDark"][()]
        spc = c["SlopesPC"][()]
        sff = c["SlopesFF"][()]
        kinds = set()
        for row, col, fl in sp:
            kinds.add(int(fl))
            if fl & PF_NAN_OFFSET:
                check(np.isnan(off[col, row]).all(), f"Offset[{col},{row}] not NaN")
                check(np.isfinite(off[col, row + 1 if row < 511 else row - 1]).all(), "neighbour NaN")
            if fl & PF_INF_OFFSET:
                check(np.isposinf(off[col, row, :, 0]).all() and np.isfinite(off[col, row, :, 1:]).all(),
                      "Offset inf")
            if fl & PF_NAN_THR:
                check(np.isnan(thr[col, row, :, :2]).all() and np.isfinite(thr[col, row, :, 2:]).all(),
                      "ThresholdsDark NaN")
            if fl & PF_NAN_ML:
                check(np.isnan(spc[col, row, :, 0]).all(), "SlopesPC ml NaN")
            if fl & PF_NAN_BH:
                check(np.isnan(spc[col, row, :, 4]).all(), "SlopesPC bh NaN")
            if fl & PF_NAN_FF:
                check(np.isnan(sff[col, row]).all(), "SlopesFF NaN")
            if fl & PF_OUT_ML:
                med = np.nanmedian(spc[..., 0].reshape(-1, spc.shape[2]), axis=0)
                check((spc[col, row, :, 0] < 0.6 * med).all(), f"ml outlier at x={col} y={row}")
            if fl & PF_OUT_FF:
                med = np.nanmedian(sff.reshape(-1, sff.shape[2]), axis=0)
                r = sff[col, row] / med
                check(((r < 0.6) | (r > 1.4)).all(), f"FF outlier at x={col} y={row}: {r}")
        for k in (PF_NAN_OFFSET, PF_INF_OFFSET, PF_NAN_THR, PF_NAN_ML, PF_NAN_BH, PF_NAN_FF,
                  PF_OUT_ML, PF_OUT_MH, PF_OUT_FF):
            check(k in kinds, f"no special pixel of kind {k}")
    # Offsets of dark high-gain pixels: raw analog - Offset[x=col, y=row, cell, 0] ~ noise.
    with h5py.File(raw_path(d, 1, 0, 0), "r") as f, h5py.File(truth_path(d, 1, 0, 0), "r") as t, \
            h5py.File(const_path(d, 0), "r") as c:
        a = f[f"INSTRUMENT/{src(0)}/image/data"][:, 0].astype(np.float64)
        cell = f[f"INSTRUMENT/{src(0)}/image/cellId"][:, 0]
        dark = (t["photons"][()] == 0) & (t["gain"][()] == 0)
        off0 = np.transpose(c["Offset"][..., 0])  # (C, 512, 128)
        diff = (a - off0[cell])[dark & np.isfinite(off0[cell])]
        check(abs(diff.mean()) < 0.5 and diff.std() < 8, f"dark residual {diff.mean()} +- {diff.std()}")
        wrong = (a - np.transpose(off0, (0, 2, 1)).reshape(off0.shape)[cell])[dark]  # rows/cols mixed up
        check(np.std(wrong[np.isfinite(wrong)]) > 20, "the offset check cannot tell axis orders apart")


def test_constants_cells():
    d = simulate("ccells", "--modules", "1", "--trains", "2", "--cells", "6", "--constants-cells", "3")
    with h5py.File(const_path(d, 1), "r") as c:
        check(c["Offset"].shape == (COLS, ROWS, 3, 3), f"Offset {c['Offset'].shape}")
        check(c.attrs["memory_cells"] == 3, "memory_cells")
    with h5py.File(raw_path(d, 1, 1, 0), "r") as f:
        check(f[f"INSTRUMENT/{src(1)}/image/cellId"][()].max() == 5, "cellIds up to 5")


# ---- physics -------------------------------------------------------------------

def test_digital_reproduces_gain():
    d = physics()
    with h5py.File(raw_path(d, 1, 3, 0), "r") as f, h5py.File(truth_path(d, 1, 3, 0), "r") as t, \
            h5py.File(const_path(d, 3), "r") as c:
        dig = f[f"INSTRUMENT/{src(3)}/image/data"][:, 1].astype(np.float32)
        cell = f[f"INSTRUMENT/{src(3)}/image/cellId"][:, 0]
        thr = transpose_c(c["ThresholdsDark"])
        g = (dig > thr[0][cell]).astype(np.uint8) + (dig > thr[1][cell])
        tg = t["gain"][()]
        check(t["gain"].dtype == np.uint8 and t["photons"].dtype == np.float32, "truth dtypes")
        check(t["photons"].shape == (dig.shape[0], ROWS, COLS), "truth shape")
        check(abs(t["photons"].attrs["photon_energy"] - 9.3) < 1e-9, "photon_energy attribute")
        check((g == tg).all(), f"{(g != tg).sum()} pixels with the wrong gain stage")
        n = np.bincount(tg.ravel(), minlength=3)
        check(n[1] > 100 and n[2] > 100, f"stages exercised: {n}")
        ph = t["photons"][()]
        check(0.3 < (ph == 0).mean() < 0.9 and ph.max() > 5000, "photon statistics")


def correct_numpy(raw, cell, c, energy):
    """SPEC section 4 steps 1, 3, 5 (with adjust-mg-baseline), 6 and 7 in NumPy."""
    A = raw[:, 0].astype(np.float32)
    D = raw[:, 1].astype(np.float32)
    thr = transpose_c(c["ThresholdsDark"])
    off = transpose_c(c["Offset"])
    spc = transpose_c(c["SlopesPC"])
    ff = transpose_c(c["SlopesFF"])
    g = np.zeros(A.shape, np.int64)
    g[D > thr[0][cell]] = 1
    g[D > thr[1][cell]] = 2
    X = A - np.take_along_axis(off[:, cell], g[None], 0)[0]

    def med(a):
        return np.nanmedian(a.reshape(a.shape[0], -1), axis=1).astype(np.float32)[:, None, None]

    par = {}
    for i, name, slope in ((0, "ml", True), (1, "bl", False), (3, "mh", True), (4, "bh", False)):
        v = spc[i]
        m = np.broadcast_to(med(v), v.shape)
        bad = ~np.isfinite(v)
        if slope:
            bad |= (v < np.float32(0.8) * m) | (v > np.float32(1.2) * m)
        par[name] = np.where(bad, m, v)
    ml, bl, mh, bh = par["ml"], par["bl"], par["mh"], par["bh"]
    rel = np.stack([np.ones_like(ml), ml / mh, np.float32(4.48) * ml / mh])
    X = X * np.take_along_axis(rel[:, cell], g[None], 0)[0]
    X = np.where(g == 1, X + (bl - bh * ml / mh)[cell], X)
    mf = med(ff)
    mfb = np.broadcast_to(mf, ff.shape)
    F = np.where(~np.isfinite(ff) | (ff < np.float32(0.8) * mfb) | (ff > np.float32(1.2) * mfb), mfb, ff)
    X = X * (mf / F)[cell]
    return X / (mf[cell] * np.float32(energy)), g


def test_physics_inverts():
    d = physics()
    with h5py.File(raw_path(d, 1, 3, 0), "r") as f, h5py.File(truth_path(d, 1, 3, 0), "r") as t, \
            h5py.File(const_path(d, 3), "r") as c:
        X, g = correct_numpy(f[f"INSTRUMENT/{src(3)}/image/data"][()],
                             f[f"INSTRUMENT/{src(3)}/image/cellId"][:, 0], c, 9.3)
        ph = t["photons"][()]
        tg = t["gain"][()]
    check(np.isfinite(X).all(), "non-finite corrected values without nan-constants")
    hg = tg == 0
    mae = np.abs(X[hg] - ph[hg]).mean()
    bias = (X[hg] - ph[hg]).mean()
    check(mae < 0.2 and abs(bias) < 0.02, f"high gain: mean abs error {mae}, bias {bias}")
    for s in (1, 2):
        sel = (tg == s) & (ph > 100)
        check(sel.sum() > 50, f"stage {s}: only {sel.sum()} bright pixels")
        rel = np.abs(X[sel] - ph[sel]) / ph[sel]
        check(rel.mean() < 0.05 and np.median(rel) < 0.02, f"stage {s}: relative error {rel.mean()}")


def test_physics_with_edge_cases():
    """With every edge case: the valid frames still invert, except at the
    NaN/inf pixels (and those with NaN thresholds, which fall back to HG)."""
    d = edges()
    with h5py.File(raw_path(d, 1, 0, 0), "r") as f, h5py.File(truth_path(d, 1, 0, 0), "r") as t, \
            h5py.File(const_path(d, 0), "r") as c:
        sel = kept_frames(f, 0)
        raw = f[f"INSTRUMENT/{src(0)}/image/data"][()][sel]
        X, g = correct_numpy(raw, f[f"INSTRUMENT/{src(0)}/image/cellId"][:, 0][sel], c, 9.3)
        ph = t["photons"][()][sel]
        tg = t["gain"][()][sel]
        sp = t["special_pixels"][()]
    bad = np.zeros((ROWS, COLS), bool)
    for row, col, fl in sp:
        if fl & (PF_NAN_OFFSET | PF_INF_OFFSET | PF_NAN_THR):
            bad[row, col] = True
    check((~np.isfinite(X)).any(axis=0)[~bad].sum() == 0, "non-finite values outside NaN pixels")
    check((~np.isfinite(X)).any(axis=0)[bad].sum() >= 5, "NaN/inf offsets gave finite values")
    ok = ~bad[None] & (tg == 0)
    mae = np.abs(X[ok] - ph[ok]).mean()
    check(mae < 0.2, f"high gain mean abs error {mae}")


# ---- determinism and edge cases -------------------------------------------------

def dataset_digests(folder):
    """{relative path: {dataset: bytes}} for every HDF5 file under folder,
    without the creation dates."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            if not name.endswith(".h5"):
                with open(p, "rb") as fp:
                    out[os.path.relpath(p, folder)] = fp.read()
                continue
            entries = {}
            with h5py.File(p, "r") as f:
                def visit(n, o):
                    if isinstance(o, h5py.Dataset) and not n.endswith("Date"):
                        entries[n] = (o.dtype.str, o.shape, o[()].tobytes())
                f.visititems(visit)
                entries["@attrs"] = sorted((k, str(v)) for k, v in f.attrs.items() if k != "creation_date")
            out[os.path.relpath(p, folder)] = entries
    return out


def test_determinism_across_ranks():
    args = ["--modules", "0-2", "--sequences", "2", "--trains", "2", "--cells", "4",
            "--edge-cases", "cell-order,uneven-trains", "--seed", "42"]
    d1 = simulate("det1", *args, np_=1)
    d2 = simulate("det2", *args, np_=2)
    d3 = simulate("det3", *(args[:-1] + ["43"]), np_=2)
    a, b, c = dataset_digests(d1), dataset_digests(d2), dataset_digests(d3)
    check(sorted(a) == sorted(b), f"different files: {sorted(a)} vs {sorted(b)}")
    check(len(a) == 6 + 6 + 3 + 2, f"{len(a)} files")   # raw, truth, constants, control
    for k in a:
        check(a[k] == b[k], f"{k} differs between 1 and 2 ranks")
    raw = "r0001/RAW-R0001-AGIPD01-S00001.h5"
    dkey = f"INSTRUMENT/{src(1)}/image/data"
    check(a[raw][dkey] != c[raw][dkey], "another seed gives the same data")


def test_edge_cases_present():
    d = edges()
    with h5py.File(raw_path(d, 1, 0, 0), "r") as f:
        tid = f["INDEX/trainId"][()]
        count = f[f"INDEX/{src(0)}/image/count"][()]
        cell = f[f"INSTRUMENT/{src(0)}/image/cellId"][:, 0]
        first = f[f"INDEX/{src(0)}/image/first"][()]
        n = f[f"INSTRUMENT/{src(0)}/image/data"].shape[0]
        # zero-train: a trainId 0 entry with frames, plus two padding entries at the end
        check(len(tid) == 5 + 2 and (tid[-2:] == 0).all() and (count[-2:] == 0).all(),
              f"padding: {tid} {count}")
        check((first[-2:] == n).all(), "padding first")
        check(((tid[:-2] == 0) & (count[:-2] > 0)).sum() == 1, f"no zero train with frames: {tid} {count}")
        # empty-train
        check(((tid != 0) & (count == 0)).sum() == 1, f"no empty train: {tid} {count}")
        # uneven-trains
        nz = count[(tid != 0) & (count > 0)]
        check(len(set(nz.tolist())) > 1, f"trains all of {nz} frames")
        # cell-order
        orders = [cell[a:a + c] for a, c in zip(first, count) if c > 1]
        check(any((np.diff(o.astype(int)) < 0).any() for o in orders), "cells in order")
        check(all(sorted(o) == list(range(len(o))) for o in orders), "cells of a train not 0..n-1")
    with h5py.File(const_path(d, 0), "r") as c:
        for k in ("Offset", "ThresholdsDark", "SlopesPC", "SlopesFF"):
            check(np.isnan(c[k][()]).any(), f"no NaN in {k}")
        check(np.isinf(c["Offset"][()]).any(), "no inf in Offset")
    # and none of it without --edge-cases
    with h5py.File(raw_path(physics(), 1, 3, 0), "r") as f:
        check((f["INDEX/trainId"][()] != 0).all(), "zero train without the edge case")
        check((f[f"INDEX/{src(3)}/image/count"][()] == 12).all(), "uneven trains without the edge case")


def test_edge_cases_one_by_one():
    for case in ("empty-train", "zero-train", "cell-order", "nan-constants", "uneven-trains"):
        d = simulate(case, "--modules", "4", "--trains", "3", "--cells", "4", "--edge-cases", case,
                     "--no-truth", "--constants-cells", "4")
        with h5py.File(raw_path(d, 1, 4, 0), "r") as f:
            tid = f["INDEX/trainId"][()]
            count = f[f"INDEX/{src(4)}/image/count"][()]
            cell = f[f"INSTRUMENT/{src(4)}/image/cellId"][:, 0]
            first = f[f"INDEX/{src(4)}/image/first"][()]
            check((len(tid) == 5) == (case == "zero-train"), f"{case}: {len(tid)} entries")
            check(((count == 0) & (tid != 0)).any() == (case == "empty-train"), f"{case}: counts {count}")
            check((len(set(count[count > 0].tolist())) > 1) == (case == "uneven-trains"),
                  f"{case}: counts {count}")
            shuffled = any((cell[a:a + n] != np.arange(n)).any() for a, n in zip(first, count))
            check(shuffled == (case == "cell-order"), f"{case}: cells {cell}")
        with h5py.File(const_path(d, 4), "r") as c:
            check(np.isnan(c["Offset"][()]).any() == (case == "nan-constants"), f"{case}: NaN")
        check(not os.path.exists(os.path.join(d, "truth")), "--no-truth wrote truth")


def test_empty_file():
    """One train, empty: a raw file with zero frames that still reads."""
    d = simulate("empty", "--modules", "0", "--trains", "1", "--cells", "3", "--edge-cases", "empty-train",
                 "--no-constants")
    with h5py.File(raw_path(d, 1, 0, 0), "r") as f:
        check(f[f"INSTRUMENT/{src(0)}/image/data"].shape == (0, 2, ROWS, COLS), "data shape")
        check(f[f"INDEX/{src(0)}/image/count"][()].tolist() == [0], "count")
    with h5py.File(truth_path(d, 1, 0, 0), "r") as t:
        check(t["photons"].shape == (0, ROWS, COLS), "truth shape")
    check(not os.path.exists(os.path.join(d, "constants")), "--no-constants wrote constants")


def test_h5dump_reads_files():
    if not shutil.which("h5dump"):
        raise harness.Skip("no h5dump")
    d = edges()
    st = store()
    stored = [os.path.join(r, n) for r, _, fs in os.walk(os.path.join(st, "caldb")) for n in fs if n.endswith(".h5")]
    for p in (raw_path(d, 1, 0, 0), truth_path(d, 1, 0, 0), const_path(d, 0), ctrl_path(d, 1, 0),
              stored[0]):
        r = subprocess.run(["h5dump", "-H", p], capture_output=True, text=True, timeout=60)
        check(r.returncode == 0 and "DATASET" in r.stdout, f"h5dump -H {p}: {r.stderr[-500:]}")
    left = [n for dd in (d, st) for root, _, fs in os.walk(dd) for n in fs if n.endswith(".part")]
    check(not left, f"temporary files left: {left}")


# ---- control data (SPEC 6.1) ----------------------------------------------------

FPGA = "SPB_IRU_AGIPD1M1/MDL/FPGA_COMP"
HV = "SPB_IRU_AGIPD1M/PSC/HV"


def ctrl_path(d, run, seq, da="AGIPD1MCTRL00"):
    return os.path.join(d, f"r{run:04d}", f"RAW-R{run:04d}-{da}-S{seq:05d}.h5")


def ctrl_values(d, run, dev, key, seqs, da="AGIPD1MCTRL00"):
    """CONTROL values of all sequences, concatenated, and the RUN value of each file."""
    vals, runs = [], []
    for s in seqs:
        with h5py.File(ctrl_path(d, run, s, da), "r") as f:
            vals.append(f[f"CONTROL/{dev}/{key}/value"][()])
            runs.append(f[f"RUN/{dev}/{key}/value"][()])
    return np.concatenate(vals), runs


def test_control_file_layout():
    """The default control file: EXDF 1.0, the module files' trains, CONTROL,
    RUN and INDEX of the composite device and of the MPOD, the simulated
    conditions (memory cells = the constants' cells)."""
    d = small()
    keys = {"bunchStructure/nPulses": ("uint32", 10), "bunchStructure/repetitionRate": ("float64", 1.1),
            "gain": ("uint8", 0), "gainModeIndex": ("int32", 0), "integrationTime": ("uint32", 12)}
    for seq in (0, 1):
        with h5py.File(ctrl_path(d, 7, seq), "r") as f, h5py.File(raw_path(d, 7, 2, seq), "r") as r:
            tid = f["INDEX/trainId"][()]
            check((tid == r["INDEX/trainId"][()]).all(), f"control trains {tid}")
            check((f["INDEX/timestamp"][()] == r["INDEX/timestamp"][()]).all(), "control timestamps")
            check(f["INDEX/flag"].dtype == np.int32 and (f["INDEX/flag"][()] == 1).all(), "flags")
            m = f["METADATA"]
            check(m["dataFormatVersion"][0] == b"1.0" and m["runNumber"][0] == 7 and
                  m["sequenceNumber"][0] == seq, "metadata")
            check([x.decode() for x in m["dataSources/dataSourceId"][()]] ==
                  [f"CONTROL/{FPGA}", f"CONTROL/{HV}"], "dataSourceId")
            check([x.decode() for x in m["dataSources/root"][()]] == ["CONTROL"] * 2, "root")
            check([x.decode() for x in m["dataSources/deviceId"][()]] == [FPGA, HV], "deviceId")
            for dev in (FPGA, HV):
                check(f[f"INDEX/{dev}/first"][()].tolist() == [0, 1, 2] and
                      f[f"INDEX/{dev}/count"][()].tolist() == [1, 1, 1], f"INDEX of {dev}")
            for k, (dt, v) in keys.items():
                c, rv = f[f"CONTROL/{FPGA}/{k}/value"], f[f"RUN/{FPGA}/{k}/value"]
                check(c.dtype == np.dtype(dt) and c.shape == (3,) and (c[()] == v).all(),
                      f"CONTROL {k}: {c.dtype} {c[()]}")
                check(rv.dtype == np.dtype(dt) and rv.shape == (1,) and rv[0] == v, f"RUN {k}: {rv[()]}")
                check((f[f"CONTROL/{FPGA}/{k}/timestamp"][()] == f["INDEX/timestamp"][()]).all(),
                      f"{k} timestamps")
                check(f[f"RUN/{FPGA}/{k}/timestamp"].shape == (1,), f"RUN {k} timestamp")
            check("setupr" not in f[f"CONTROL/{FPGA}"] and "patternTypeIndex" not in f[f"CONTROL/{FPGA}"],
                  "setupr written in the gain form")
            chans = sorted(f[f"CONTROL/{HV}/channels"])
            check(chans == ["U2", "U5"], f"MPOD channels {chans}")
            for ch in chans:
                v = f[f"CONTROL/{HV}/channels/{ch}/measurementSenseVoltage/value"][()]
                check(v.shape == (3,) and (v >= 300).all() and (v < 300.5).all(), f"{ch} voltages {v}")
    # the whole run: nothing changes, as the reference reads it
    cond, origin = R.run_conditions(os.path.join(d, "r0007"), 7, [2, 5])
    check(cond == {"Memory cells": 10, "Acquisition rate": 1.1, "Gain setting": 0, "Gain mode": 0,
                   "Integration time": 12, "Sensor Bias Voltage": 300}, f"conditions {cond}")
    check(origin["Memory cells"] == f"control:{FPGA}/bunchStructure.nPulses" and
          origin["Sensor Bias Voltage"] == f"control:{HV}/channels.U2.measurementSenseVoltage", f"sources {origin}")
    # and the constants were made for exactly these conditions
    with h5py.File(const_path(d, 2), "r") as c:
        a = c.attrs
        got = {"Memory cells": a["memory_cells"], "Acquisition rate": a["acquisition_rate"],
               "Gain setting": a["gain_setting"], "Gain mode": a["gain_mode"],
               "Integration time": a["integration_time"], "Sensor Bias Voltage": a["bias_voltage"]}
    check(got == cond, f"constants' conditions {got}")


def test_control_options():
    """Every condition option reaches the control file and the constants; the
    pulseIds follow --acq-rate so that SPEC 6.1's fallback gives it back."""
    d = simulate("ctrl-opts", "--modules", "1,3", "--trains", "2", "--cells", "5", "--no-truth",
                 "--karabo-id-control", "MID_EXP_AGIPD1M1", "--karabo-da-control", "AGIPD1MCTRL01",
                 "--mem-cells", "64", "--constants-cells", "70", "--acq-rate", "2.2", "--gain-setting", "1",
                 "--integration-time", "25", "--bias-voltage", "450")
    check(not os.path.exists(ctrl_path(d, 1, 0)), "control file under the default aggregator name")
    cond, origin = R.run_conditions(os.path.join(d, "r0001"), 1, [1, 3], karabo_id_control="MID_EXP_AGIPD1M1",
                                 karabo_da_control="AGIPD1MCTRL01")
    want = {"Memory cells": 64, "Acquisition rate": 2.2, "Gain setting": 1, "Gain mode": 0,
            "Integration time": 25, "Sensor Bias Voltage": 450}
    check(cond == want, f"conditions {cond}")
    check(origin["Sensor Bias Voltage"] == "control:MID_EXP_AGIPD1M/PSC/HV/channels.U1.measurementSenseVoltage",
          f"bias source {origin['Sensor Bias Voltage']}")
    with h5py.File(raw_path(d, 1, 1, 0), "r") as f:
        pid = f[f"INSTRUMENT/{src(1)}/image/pulseId"][:, 0]
        check(pid.tolist() == [0, 2, 4, 6, 8] * 2, f"pulseIds {pid}")
    with h5py.File(const_path(d, 3), "r") as c:
        a = dict(c.attrs)
        check(a["memory_cells"] == 64 and abs(a["acquisition_rate"] - 2.2) < 1e-12 and a["gain_setting"] == 1 and
              a["gain_mode"] == 0 and a["integration_time"] == 25 and a["bias_voltage"] == 450,
              f"constants' conditions {a}")
        check(c["Offset"].shape[2] == 70, "constants cells")
    # the fallbacks of a run without control data
    d2 = simulate("ctrl-none", "--modules", "4", "--trains", "2", "--cells", "40", "--no-truth",
                  "--no-constants", "--control", "none", "--acq-rate", "1.1")
    check(sorted(os.listdir(os.path.join(d2, "r0001"))) == ["RAW-R0001-AGIPD04-S00000.h5"],
          f"--control none wrote {os.listdir(os.path.join(d2, 'r0001'))}")
    raws = [R.read_raw(raw_path(d2, 1, 4, 0))]
    cond, origin = R.run_conditions(os.path.join(d2, "r0001"), 1, [4], raws=raws)
    check(cond == {"Memory cells": 64, "Acquisition rate": 1.1, "Gain mode": 0}, f"fallback conditions {cond}")
    check(set(origin.values()) == {"fallback"}, f"sources {origin}")
    cond, _ = R.run_conditions(os.path.join(d2, "r0001"), 1, [4], raws=raws, cells=(0, 31, 1))
    check(cond["Memory cells"] == 32, f"memory cells of cells 0..30: {cond['Memory cells']}")
    cond, origin = R.run_conditions(os.path.join(d2, "r0001"), 1, [4], raws=raws,
                                 overrides={"Memory cells": 352, "Sensor Bias Voltage": 200})
    check(cond["Memory cells"] == 352 and origin["Sensor Bias Voltage"] == "command line", f"overrides {cond} {origin}")


def test_control_setupr_form():
    """The older form: setupr and patternTypeIndex instead of gain, mapped as
    SPEC 6.1's table says (and an impossible pair is refused)."""
    for pattern, gs, setupr in (("4", "1", 40), ("2", "1", 8), ("4", "0", 32), ("0", "0", 0), ("5", "1", 40)):
        d = simulate(f"setupr-{pattern}-{gs}", "--modules", "0", "--trains", "2", "--cells", "2", "--no-truth",
                     "--no-constants", "--control", "setupr", "--pattern-type-index", pattern,
                     "--gain-setting", gs)
        with h5py.File(ctrl_path(d, 1, 0), "r") as f:
            g = f[f"CONTROL/{FPGA}"]
            check("gain" not in g, "gain key in the setupr form")
            check(g["setupr/value"][()].tolist() == [setupr] * 2 and g["setupr/value"].dtype == np.uint8,
                  f"setupr {g['setupr/value'][()]}")
            check(g["patternTypeIndex/value"][()].tolist() == [int(pattern)] * 2, "patternTypeIndex")
            check(f[f"RUN/{FPGA}/setupr/value"][0] == setupr, "RUN setupr")
        try:
            cond, origin = R.run_conditions(os.path.join(d, "r0001"), 1, [0])
        except R.RefError as e:
            check(pattern == "5" and "setupr 40" in str(e), f"pattern {pattern}: {e}")
            continue
        check(pattern != "5", "pattern 5 accepted")
        check(cond["Gain setting"] == int(gs) and origin["Gain setting"] == f"control:{FPGA}/setupr",
              f"gain setting {cond} {origin}")


def test_control_change():
    """--control-change KEY: only KEY's CONTROL value of the run's last train
    differs; the reference refuses the run naming the key (nPulses: the
    largest value is taken instead)."""
    cases = {"gainModeIndex": ("gainModeIndex", FPGA, 0, 1), "gain": ("gain", FPGA, 0, 1),
             "integrationTime": ("integrationTime", FPGA, 12, 13),
             "repetitionRate": ("bunchStructure/repetitionRate", FPGA, 1.1, 4.5),
             "nPulses": ("bunchStructure/nPulses", FPGA, 4, 2),
             "bias": ("channels/U6/measurementSenseVoltage", HV, None, None)}
    for name, (key, dev, v0, v1) in cases.items():
        d = simulate(f"change-{name}", "--modules", "6", "--sequences", "2", "--trains", "2", "--cells", "4",
                     "--no-truth", "--no-constants", "--control-change", name)
        vals, runs = ctrl_values(d, 1, dev, key, (0, 1))
        if v0 is None:   # bias: within 1 V of 300, then 10 V more
            check((abs(vals[:-1] - 300.1) < 0.5).all() and abs(vals[-1] - 310.1) < 0.5, f"{name}: {vals}")
            check(all(abs(r[0] - 300.1) < 0.5 for r in runs), f"{name}: RUN {runs}")
        else:
            check(np.allclose(vals, [v0, v0, v0, v1]), f"{name}: CONTROL values {vals}")
            check(all(np.allclose(r, [v0]) for r in runs), f"{name}: RUN values {runs}")
        for other, (k2, dev2, _, _) in cases.items():
            if other != name and dev2 == FPGA:
                o, _ = ctrl_values(d, 1, dev2, k2, (0, 1))
                check((o == o[0]).all(), f"{name}: {k2} changed too: {o}")
        try:
            cond, _ = R.run_conditions(os.path.join(d, "r0001"), 1, [6])
        except R.RefError as e:
            check(name != "nPulses", f"nPulses refused: {e}")
            check(key.replace("/", ".") in str(e) and dev in str(e), f"{name}: message {e}")
            continue
        check(name == "nPulses" and cond["Memory cells"] == 4, f"{name} accepted: {cond}")


# ---- fixed gain -----------------------------------------------------------------

def test_fixed_gain_runs():
    """--gain-mode 1..3: every pixel in the forced stage, its digital value in
    that stage's band, gainModeIndex in the control file; the same photons as
    the adaptive run; the reference's fixed-gain correction gives them back."""
    base = physics()
    with h5py.File(truth_path(base, 1, 3, 0), "r") as t:
        ph0 = t["photons"][()]
    for mode in (1, 2, 3):
        d = simulate(f"fixed-{mode}", "--modules", "3", "--trains", "4", "--cells", "12", "--seed", "5",
                     "--gain-mode", str(mode))
        stage = mode - 1
        with h5py.File(raw_path(d, 1, 3, 0), "r") as f, h5py.File(truth_path(d, 1, 3, 0), "r") as t, \
                h5py.File(const_path(d, 3), "r") as c:
            dig = f[f"INSTRUMENT/{src(3)}/image/data"][:, 1].astype(np.float32)
            cell = f[f"INSTRUMENT/{src(3)}/image/cellId"][:, 0]
            thr = transpose_c(c["ThresholdsDark"])
            g = (dig > thr[0][cell]).astype(np.uint8) + (dig > thr[1][cell])
            check((t["gain"][()] == stage).all(), f"mode {mode}: truth gain {np.unique(t['gain'][()])}")
            check((g == stage).all(), f"mode {mode}: digital values give stages {np.bincount(g.ravel())}")
            ph = t["photons"][()]
            check(np.array_equal(ph, ph0), f"mode {mode}: other photons than the adaptive run")
            check(c.attrs["gain_mode"] == mode, "constants' gain_mode")
        with h5py.File(ctrl_path(d, 1, 0), "r") as f:
            check((f[f"CONTROL/{FPGA}/gainModeIndex/value"][()] == mode).all(), "gainModeIndex")
        cond, _ = R.run_conditions(os.path.join(d, "r0001"), 1, [3])
        opts = R.Options(gain_mode=R.GAIN_MODE_NAMES[cond["Gain mode"]], rel_gain=True,
                         adjust_mg_baseline=True, ff_gain=True, photon_energy=9.3)
        res = R.correct_file(raw_path(d, 1, 3, 0), const_path(d, 3), opts)
        check((res["gain"] == stage).all(), f"mode {mode}: reference gain")
        with h5py.File(raw_path(d, 1, 3, 0), "r") as f:
            A = f[f"INSTRUMENT/{src(3)}/image/data"][:, 0]
        ok = (A < 65000) & (res["mask"] == 0)   # not saturated (high gain), not a bad pixel
        # the noise in photons: noise of the stage (5 / 4 / 3.5 ADU) times its gain ratio (1, 30, 4.48 * 30)
        sd = (5.0, 4.0 * 30, 3.5 * 4.48 * 30)[stage] / (7.5 * 9.3)
        err = res["data"][ok] - ph[ok]
        check(np.abs(err).mean() < 1.3 * 0.8 * sd + 0.05 and abs(err.mean()) < 0.1 * sd + 0.05,
              f"mode {mode}: error {err.mean()} +- {np.abs(err).mean()} photons (noise {sd})")
        bright = ok & (ph > 200)
        check(bright.sum() > 20, f"mode {mode}: {bright.sum()} bright pixels")
        rel = np.abs(res["data"][bright] - ph[bright]) / ph[bright]
        check(np.median(rel) < 0.03, f"mode {mode}: relative error {np.median(rel)} of bright pixels")
        if stage == 0:
            check((A[ph > 2000] == 65535).all(), "high gain does not saturate")


# ---- calibration-database store (SPEC 6.2) -----------------------------------------

def store():
    return simulate("store", "--modules", "2,5", "--trains", "2", "--cells", "6", "--constants-cells", "7",
                    "--no-truth", "--caldb", "--gain-mode", "2", "--bias-voltage", "350", np_=2)


def load_yaml(path):
    try:
        import yaml
    except ImportError:
        raise harness.Skip("python3-yaml not installed")
    with open(path) as fp:
        return yaml.safe_load(fp)


DARK = ("ThresholdsDark", "Offset", "Noise", "BadPixelsDark")
ALL_CONSTANTS = DARK + ("SlopesPC", "BadPixelsPC", "SlopesFF", "BadPixelsFF")


def test_caldb_metadata_yaml():
    d = store()
    meta = load_yaml(os.path.join(d, "caldb", "calibration_metadata.yml"))
    check(meta["calibration-configurations"]["karabo-id"] == KID, "karabo-id")
    rc = meta["retrieved-constants"]
    check(sorted(rc) == ["AGIPD02", "AGIPD05", "time-summary"], f"entries {sorted(rc)}")
    check("constants" not in rc["time-summary"], "time-summary has constants")
    ids = []
    for mod in (2, 5):
        e = rc[f"AGIPD{mod:02d}"]
        pdu = f"AGIPD_SIV1_AGIPDV11_M3{mod:02d}"
        check(e["physical-name"] == pdu, f"physical-name {e['physical-name']}")
        check(sorted(e["constants"]) == sorted(ALL_CONSTANTS), f"constants {sorted(e['constants'])}")
        paths = set()
        for name, c in e["constants"].items():
            check(c["dataset"] == f"/{pdu}/{name}/0", f"dataset {c['dataset']}")
            check(c["path"].startswith(f"xfel/cal/agipd-type/{pdu.lower()}/cal.") and c["path"].endswith(".h5"),
                  f"path {c['path']}")
            check(os.path.isfile(os.path.join(d, "caldb", c["path"])), f"{c['path']} missing")
            check(isinstance(c["ccv_id"], int), f"ccv_id {c['ccv_id']!r}")
            check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", c["creation-time"]) is not None,
                  f"creation-time {c['creation-time']!r}")
            ids.append(c["ccv_id"])
            paths.add(c["path"])
        check(len(paths) == len(ALL_CONSTANTS), "constants share files")
    check(len(set(ids)) == len(ids), f"ccv_ids not unique: {ids}")


def test_caldb_files_equal_constants():
    """Every store array equals, byte for byte and in dtype, the constants
    folder's; group attributes carry the conditions (gain mode for dark
    constants only); `dims` names the axes."""
    d = store()
    meta = load_yaml(os.path.join(d, "caldb", "calibration_metadata.yml"))
    cond = {"Memory cells": 7, "Acquisition rate": 1.1, "Gain setting": 0, "Gain mode": 2,
            "Integration time": 12, "Sensor Bias Voltage": 350}
    for mod in (2, 5):
        with h5py.File(const_path(d, mod), "r") as cf:
            for name, c in meta["retrieved-constants"][f"AGIPD{mod:02d}"]["constants"].items():
                with h5py.File(os.path.join(d, "caldb", c["path"]), "r") as f:
                    check(list(f) == [f"AGIPD_SIV1_AGIPDV11_M3{mod:02d}"], f"{name}: top groups {list(f)}")
                    g = f[c["dataset"]]
                    data = g["data"]
                    check(data.dtype == cf[name].dtype and data.shape == cf[name].shape,
                          f"{name}: {data.dtype} {data.shape} vs {cf[name].dtype} {cf[name].shape}")
                    check(data[()].tobytes() == cf[name][()].tobytes(), f"module {mod} {name} differs")
                    dims = [x.decode() if isinstance(x, bytes) else x for x in data.attrs["dims"]]
                    want = ["fast_scan", "slow_scan", "cell", "gain"][:data.ndim]
                    check(dims == want, f"{name}: dims {dims}")
                    check(h5py.check_string_dtype(data.attrs.get_id("dims").dtype).length is None,
                          "dims is not variable-length")
                    got = {k: float(v) for k, v in g.attrs.items()}
                    exp = {k: float(v) for k, v in cond.items() if name in DARK or k != "Gain mode"}
                    check(got == exp, f"{name}: conditions {got}")


def test_caldb_dims_order():
    d = simulate("store-dims", "--modules", "1", "--trains", "1", "--cells", "3", "--no-truth", "--caldb",
                 "--caldb-dims-order", "cell,slow_scan,fast_scan,gain")
    meta = load_yaml(os.path.join(d, "caldb", "calibration_metadata.yml"))
    with h5py.File(const_path(d, 1), "r") as cf:
        for name, c in meta["retrieved-constants"]["AGIPD01"]["constants"].items():
            with h5py.File(os.path.join(d, "caldb", c["path"]), "r") as f:
                data = f[c["dataset"]]["data"]
                dims = [x.decode() if isinstance(x, bytes) else x for x in data.attrs["dims"]]
                want = ["cell", "slow_scan", "fast_scan", "gain"][:data.ndim]
                check(dims == want, f"{name}: dims {dims}")
                perm = (2, 1, 0, 3)[:data.ndim]
                check(data.shape == tuple(cf[name].shape[i] for i in perm), f"{name}: shape {data.shape}")
                back = np.transpose(data[()], np.argsort(perm))
                check(back.tobytes() == cf[name][()].tobytes(), f"{name}: transposed values differ")
    # the reference reads both stores back to the same constants
    K = R.read_caldb(os.path.join(d, "caldb", "calibration_metadata.yml"), 1)
    Kf = R.read_constants(const_path(d, 1))
    for name in ALL_CONSTANTS:
        check(K[name].dtype == Kf[name].dtype and K[name].tobytes() == Kf[name].tobytes(),
              f"reference: {name} differs")
    for bad in ("cell,cell,fast_scan,gain", "fast_scan,slow_scan,cell", "x,slow_scan,cell,gain"):
        p = harness.run([harness.SIMULATE, "--out-folder", "/tmp/x", "--caldb-dims-order", bad], check=False)
        check(p.returncode != 0 and bad in p.stderr, f"{bad}: {p.returncode} {p.stderr!r}")


def test_reference_reads_store():
    """The reference corrects with the store exactly as with the constants
    folder, and finds the constants' conditions equal to the run's."""
    d = store()
    yml = os.path.join(d, "caldb", "calibration_metadata.yml")
    opts = R.Options(gain_mode="fixed-medium", rel_gain=True, ff_gain=True, photon_energy=9.3)
    cond, _ = R.run_conditions(os.path.join(d, "r0001"), 1, [2, 5])
    check(cond["Gain mode"] == 2 and cond["Sensor Bias Voltage"] == 350 and cond["Memory cells"] == 7,
          f"conditions {cond}")
    for mod in (2, 5):
        K = R.read_caldb(yml, mod)
        a = R.correct_file(raw_path(d, 1, mod, 0), None, opts, K=K)
        b = R.correct_file(raw_path(d, 1, mod, 0), const_path(d, mod), opts)
        for k in ("data", "gain", "mask"):
            check(a[k].tobytes() == b[k].tobytes(), f"module {mod}: {k} differs")
        info = K["_caldb"]["Offset"]
        check(info["pdu"] == f"AGIPD_SIV1_AGIPDV11_M3{mod:02d}" and info["ccv_id"] is not None, f"info {info}")
        used = R.used_constants(opts)
        check(R.condition_mismatches(K, cond, used) == [], "store conditions differ from the run's")
        check(R.condition_mismatches(R.read_constants(const_path(d, mod)), cond, used) == [],
              "folder conditions differ from the run's")
        near = dict(cond, **{"Sensor Bias Voltage": 354, "Acquisition rate": 1.14})
        check(R.condition_mismatches(K, near, used) == [], "tolerances of 6.2 not applied")
        far = dict(cond, **{"Sensor Bias Voltage": 356, "Gain mode": 1})
        mm = R.condition_mismatches(K, far, used)
        check({(n, c) for n, c, _, _ in mm} ==
              {(n, "Sensor Bias Voltage") for n in used} | {(n, "Gain mode") for n in used if n in DARK},
              f"mismatches {mm}")
    # a module the YAML lacks
    try:
        R.read_caldb(yml, 7)
        check(False, "module 7 read from the store")
    except R.RefError as e:
        check("AGIPD07" in str(e), str(e))


def test_control_and_store_across_ranks():
    """Control files, store files and YAML do not depend on the rank count."""
    args = ["--modules", "0-2", "--sequences", "2", "--trains", "2", "--cells", "2", "--no-truth", "--caldb",
            "--control-change", "integrationTime"]
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    ds = []
    for np_ in (1, 3):
        d = harness.tmpdir("agipd-sim-")
        harness.mpirun(np_, [harness.SIMULATE, "--out-folder", d] + args, timeout=120, env=env)
        ds.append(d)
    a, b = dataset_digests(ds[0]), dataset_digests(ds[1])
    check(sorted(a) == sorted(b), f"different files: {sorted(a)} vs {sorted(b)}")
    check(len([k for k in a if "AGIPD1MCTRL00" in k]) == 2 and len([k for k in a if k.startswith("caldb/")]) == 25,
          f"files {sorted(a)}")
    for k in a:
        check(a[k] == b[k], f"{k} differs between 1 and 3 ranks")


def test_summary_line():
    need_simulate()
    d = harness.tmpdir("agipd-sim-")
    _TMP.append(d)
    p = harness.mpirun(2, [harness.SIMULATE, "--out-folder", d, "--modules", "0", "--trains", "1",
                           "--cells", "2", "--no-constants"], timeout=60)
    lines = [x for x in p.stdout.splitlines() if "GB/s" in x]
    check(len(lines) == 1 and "2 rank(s)" in lines[0], f"summary: {p.stdout!r}")


def test_last_trains():
    """--last-trains: the last sequence file has fewer trains (uneven files),
    its train ids continue those of the files before it; the others keep
    --trains; more than --trains is refused."""
    d = simulate("last_trains", "--modules", "1", "--sequences", "3", "--trains", "4", "--last-trains", "2",
                 "--cells", "2", "--no-truth", "--no-constants")
    ids = []
    for seq, want in ((0, 4), (1, 4), (2, 2)):
        with h5py.File(raw_path(d, 1, 1, seq), "r") as f:
            tid = f["INDEX/trainId"][()]
            check(len(tid) == want, f"S{seq}: {len(tid)} trains, expected {want}")
            n = f[f"INSTRUMENT/{src(1)}/image/data"].shape[0]
            check(n == 2 * want, f"S{seq}: {n} frames, expected {2 * want}")
            ids += [int(v) for v in tid]
    check(ids == list(range(ids[0], ids[0] + 10)), f"train ids {ids} not consecutive")
    need_simulate()
    p = subprocess.run([harness.SIMULATE, "--out-folder", harness.tmpdir("agipd-sim-"), "--trains", "2",
                        "--last-trains", "3"], capture_output=True, text=True, timeout=60)
    check(p.returncode != 0 and "last-trains" in p.stderr, f"--last-trains 3 > --trains 2: {p.returncode} {p.stderr!r}")


harness.main(globals())
