#!/usr/bin/python3
"""Generate a SMALL synthetic AGIPD run (raw EXDF files + constants) with h5py.

Independent of the C simulator, and deliberately full of edge values:
digital values exactly on a threshold, NaN/inf thresholds and offsets,
|X| > 1e7, values that overflow float16 / int16, ASICs with too few dark
pixels for common mode, NaN and outlier SlopesPC/SlopesFF (and values exactly
on the [0.8, 1.2]*median boundaries), SlopesFF with and without a cell axis,
float32 and float64 constants, trainId 0 entries and INDEX padding, count 0
trains, frames of no train, cellIds out of order, (N,) and (N, 1) per-frame
arrays, chunked and contiguous image/data, extra header/detector/trailer groups.

Layout (SPEC section 2):
    FOLDER/r{run:04d}/RAW-R{run:04d}-AGIPD{mm:02d}-S{seq:05d}.h5
    FOLDER/r{run:04d}/RAW-R{run:04d}-AGIPD1MCTRL00-S{seq:05d}.h5   (control data, SPEC 6.1)
    FOLDER/constants/AGIPD{mm:02d}.h5
(flat=True puts the raw files directly in FOLDER).

The run's operating conditions are the same in the control files, in the
constants' attributes and under SPEC 6.1's fallbacks (so that a corrector
that checks them accepts the run with or without its control files):
memory cells 32 (every cellId is below 32, whatever cells the constants
have), acquisition rate 2.2 MHz (pulseIds 1, 3, 5, ...), gain setting 0,
adaptive gain, integration time 12, bias voltage 300 V.

    gen_run.py FOLDER [--run N] [--modules 0,1] [--seed S] [--karabo-id ID]
"""
import argparse
import os
import sys

import h5py
import numpy as np

ROWS, COLS = 512, 128
F32 = np.float32
DEFAULT_KARABO_ID = "SPB_DET_AGIPD1M-1"
DEFAULT_KARABO_ID_CONTROL = "SPB_IRU_AGIPD1M1"
DEFAULT_KARABO_DA_CONTROL = "AGIPD1MCTRL00"
MEMORY_CELLS = 32        # the run's memory cells (SPEC 6.1 fallback of cellIds < 32)
ACQ_RATE = 2.2           # MHz, from the pulseId spacing 2
BIAS_VOLTAGE = 300.0


# ---------------------------------------------------------------------------
# Train / frame layouts: list of (trainId, [cellIds]) plus special entries.
# An entry ("gap", cells) is frames that belong to no train; ("zero", cells)
# is an INDEX entry with trainId 0 that owns frames; ("empty",) a count-0
# train (first = the next frame; "empty0": first = 0); ("pad", k) k padding
# entries at the end of INDEX.
# ---------------------------------------------------------------------------

def layouts(module, C):
    """Per-sequence layouts for a module; variant chosen by module parity."""
    if module % 2 == 0:
        return [
            [("train", 10001, [3, 0, 7, 1, 12]),          # cells out of order
             ("zero", [2, 5]),                             # trainId 0 with frames
             ("empty", 10003),                             # count 0 train
             ("train", 10004, [15, 2, 5, 8, 11, 4]),
             ("gap", [9]),                                 # frame of no train
             ("train", 10005, [6, 10, 13, 14]),
             ("pad", 2)],
            [("train", 10006, [5, 2, 8]),
             ("empty", 10007),
             ("train", 10008, [11, 14, 0, 9, 3]),
             ("pad", 1)],
        ]
    return [
        [("gap", [17]),                                    # frame before every train
         ("empty", 10001),                                 # count 0 first train
         ("train", 10002, [0, 2, 4, 6, 8, 10, 12, 14]),
         ("empty0", 10003),                                # count 0 with first = 0
         ("train", 10004, [13, 11, 9, 7, 5, 3, 1]),
         ("zero", [1, 2]),
         ("train", 10005, [18, 19, 2]),
         ("gap", [4, 6]),
         ("empty", 10006),
         ("pad", 3)],
    ]


def expand_layout(layout):
    """-> index arrays (trainId, first, count) and per-frame (cellId, trainId, pulseId)."""
    tid, first, count = [], [], []
    cells, ftid, pid = [], [], []
    for e in layout:
        kind = e[0]
        n0 = len(cells)
        if kind == "train":
            _, t, cl = e
            tid.append(t); first.append(n0); count.append(len(cl))
            cells += cl; ftid += [t] * len(cl); pid += [2 * i + 1 for i in range(len(cl))]
        elif kind == "zero":
            tid.append(0); first.append(n0); count.append(len(e[1]))
            cells += e[1]; ftid += [0] * len(e[1]); pid += list(range(len(e[1])))
        elif kind == "empty":
            tid.append(e[1]); first.append(n0); count.append(0)
        elif kind == "empty0":
            tid.append(e[1]); first.append(0); count.append(0)
        elif kind == "gap":
            cells += e[1]; ftid += [ftid[-1] if ftid else 10000] * len(e[1]); pid += [99] * len(e[1])
        elif kind == "pad":
            for _ in range(e[1]):
                tid.append(0); first.append(0); count.append(0)
    return (np.array(tid, np.uint64), np.array(first, np.uint64), np.array(count, np.uint64),
            np.array(cells, np.uint16), np.array(ftid, np.uint64), np.array(pid, np.uint64))


# ---------------------------------------------------------------------------
# Constants (built in C order (k, C, 512, 128), written fully transposed)
# ---------------------------------------------------------------------------

def f32_median(a):
    v = np.sort(a[~np.isnan(a)].astype(F32))
    m = v.shape[0]
    return v[m // 2] if m % 2 else (v[m // 2 - 1] + v[m // 2]) / F32(2)


def put_outliers(rng, a, nan_count, kinds):
    """Insert NaN and outliers in one (512, 128) float array; then values
    exactly on the 0.8/1.2 * median boundaries (and one float32 step outside),
    replacing values on the same side of the median so that it is unchanged."""
    flat = a.reshape(-1)
    idx = rng.choice(flat.size, nan_count + len(kinds) * 3, replace=False)
    flat[idx[:nan_count]] = np.nan
    pos = nan_count
    for k in kinds:
        for _ in range(3):
            flat[idx[pos]] = k(flat[idx[pos]])
            pos += 1
    med = f32_median(flat)
    lo = F32(0.8) * med
    hi = F32(1.2) * med
    lo_out = np.nextafter(lo, F32(-np.inf))
    hi_out = np.nextafter(hi, F32(np.inf))
    fl32 = flat.astype(F32)
    below = np.nonzero(fl32 < med)[0]
    above = np.nonzero(fl32 > med)[0]
    b = rng.choice(below, 6, replace=False)
    h = rng.choice(above, 6, replace=False)
    flat[b[:3]] = lo
    flat[b[3:]] = lo_out
    flat[h[:3]] = hi
    flat[h[3:]] = hi_out
    assert f32_median(flat) == med
    return flat.reshape(a.shape)


OUTLIERS = [lambda v: 2 * v, lambda v: 0.5 * v, lambda v: 0.0, lambda v: -v,
            lambda v: np.inf, lambda v: -np.inf, lambda v: 10 * v]


def make_constants(rng, C, ff_cells, dtype):
    K = {}
    shp = (C, ROWS, COLS)
    off = np.empty((3,) + shp, np.float64)
    off[0] = 4000 + rng.normal(0, 100, shp)
    off[1] = 5000 + rng.normal(0, 100, shp)
    off[2] = 5600 + rng.normal(0, 100, shp)
    # a third of the pixels get integral offsets (exact M == threshold cases)
    integral = rng.random(shp) < 0.33
    off[:, integral] = np.round(off[:, integral])
    thr = np.zeros((5,) + shp, np.float64)
    thr[0] = 6000 + rng.normal(0, 40, shp)
    thr[1] = 7500 + rng.normal(0, 40, shp)
    thr[2:] = rng.normal(0, 1, (3,) + shp)
    thr[:2, integral] = np.round(thr[:2, integral])
    # broken thresholds: NaN, inf, T1 < T0
    pix = rng.integers(0, [C, ROWS, COLS], (40, 3)).T
    thr[0][tuple(pix[:, :10])] = np.nan
    thr[1][tuple(pix[:, 10:20])] = np.nan
    thr[0][tuple(pix[:, 20:25])] = np.inf
    thr[1][tuple(pix[:, 25:30])] = -np.inf
    thr[1][tuple(pix[:, 30:40])] = 5000
    # broken offsets
    pix = rng.integers(0, [C, ROWS, COLS], (30, 3)).T
    for g in range(3):
        off[g][tuple(pix[:, 0:5])] = np.nan
        off[g][tuple(pix[:, 5:10])] = np.inf
        off[g][tuple(pix[:, 10:15])] = -np.inf
        off[g][tuple(pix[:, 15:20])] = -2.5e7          # X > 1e7
        off[g][tuple(pix[:, 20:25])] = 3e7              # X < -1e7
    K["Offset"] = off
    K["ThresholdsDark"] = thr
    K["Noise"] = np.abs(rng.normal(3, 0.5, (3,) + shp))

    def badpix(shape, frac):
        bits = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 16, 19, 23, 30, 31])
        b = np.zeros(shape, np.uint32)
        hit = rng.random(shape) < frac
        b[hit] = (np.uint32(1) << bits[rng.integers(0, len(bits), hit.sum())].astype(np.uint32))
        hit2 = rng.random(shape) < frac / 4
        b[hit2] |= np.uint32(1 << 11)
        return b

    K["BadPixelsDark"] = badpix((3,) + shp, 0.02)

    pc = np.zeros((10,) + shp, np.float64)
    pc[0] = 25 + rng.normal(0, 1.0, shp)      # ml
    pc[1] = rng.normal(50, 20, shp)            # bl
    pc[2] = rng.normal(0, 1, shp)
    pc[3] = 0.8 + rng.normal(0, 0.02, shp)    # mh
    pc[4] = rng.normal(30, 10, shp)            # bh
    pc[5:] = rng.normal(0, 1, (5,) + shp)
    for c in range(C):
        for k in (0, 3):
            pc[k, c] = put_outliers(rng, pc[k, c], 20 + (c % 2), OUTLIERS)
        for k in (1, 4):
            flat = pc[k, c].reshape(-1)
            i = rng.choice(flat.size, 40, replace=False)
            flat[i[:21 - c % 2]] = np.nan
            flat[i[30:33]] = np.inf if k == 1 else -np.inf
            flat[i[33:36]] = 1e6                # huge but not replaced (no slope)
    K["SlopesPC"] = pc
    K["BadPixelsPC"] = badpix(shp, 0.01)

    if ff_cells:
        ff = 7 + rng.normal(0, 0.3, shp)
        for c in range(C):
            ff[c] = put_outliers(rng, ff[c], 10 + c % 2, OUTLIERS)
        K["SlopesFF"] = ff
        K["BadPixelsFF"] = badpix(shp, 0.01)
    else:
        ff = 7 + rng.normal(0, 0.3, (ROWS, COLS))
        K["SlopesFF"] = put_outliers(rng, ff, 11, OUTLIERS)
        K["BadPixelsFF"] = badpix((ROWS, COLS), 0.01)

    for k in list(K):
        if K[k].dtype.kind == "f":
            K[k] = K[k].astype(dtype)
    return K


def write_constants(path, K, C, vlen_strings=True):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in K.items():
            f.create_dataset(k, data=np.transpose(v))   # facility axis order
        f.attrs["memory_cells"] = np.int32(MEMORY_CELLS)    # the run's, not the array's C
        f.attrs["acquisition_rate"] = np.float64(ACQ_RATE)
        f.attrs["gain_setting"] = np.int32(0)
        f.attrs["bias_voltage"] = np.float64(BIAS_VOLTAGE)
        if vlen_strings:
            f.attrs["creation_date"] = "2024-01-01T00:00:00"     # variable-length UTF-8
        else:
            f.attrs["creation_date"] = np.bytes_(b"2024-01-01T00:00:00")  # fixed-length ASCII
        f.attrs["constant_id"] = np.int64(4242)


# ---------------------------------------------------------------------------
# Raw frames
# ---------------------------------------------------------------------------

SPECIAL_X = [65504.0, float(np.nextafter(F32(65504), F32(np.inf))), 65519.0, 65520.0, 70000.0,
             -70000.0, 1e7, 10000001.0, -1e7, -10000001.0, 5e6, 3e6, -5e6, 2.5e6, 0.0, 0.49,
             0.5, 32767.0 * 65, 32768.0 * 65]


def make_frames(rng, cells, K, special):
    """Analog/digital for frames with these cellIds; K in C order (float64/32)."""
    n = len(cells)
    shp = (n, ROWS, COLS)
    T0 = K["ThresholdsDark"][0][cells].astype(F32)
    T1 = K["ThresholdsDark"][1][cells].astype(F32)
    off = K["Offset"][:, cells].astype(F32)
    fin = lambda a, d: np.where(np.isfinite(a), a, d)
    T0f, T1f = fin(T0, 6000), fin(T1, 7500)
    off = np.stack([fin(off[0], 4000), fin(off[1], 5000), fin(off[2], 5600)])
    off = np.clip(off, 0, 65535)

    # intended gain and dark fraction per (frame, ASIC)
    fracs = np.array([1.0, 0.9, 0.5, 0.2, 0.16, 0.14, 0.05, 0.0])
    asic_frac = fracs[rng.integers(0, len(fracs), (n, 16))]
    frac = np.repeat(np.repeat(asic_frac.reshape(n, 2, 8).transpose(0, 2, 1), 64, 1), 64, 2)
    u = rng.random(shp)
    dark = u < frac
    v = rng.random(shp)
    gi = np.where(dark, 0, np.where(v < 0.55, 0, np.where(v < 0.8, 1, 2)))

    D = np.where(gi == 0, T0f - rng.integers(1, 800, shp),
                 np.where(gi == 1, (T0f + T1f) / 2 + rng.integers(-300, 300, shp),
                          T1f + rng.integers(1, 2000, shp)))
    # digital exactly on a threshold (only meaningful where it is integral)
    on0 = rng.random(shp) < 0.02
    on1 = rng.random(shp) < 0.02
    D = np.where(on0 & (T0f == np.round(T0f)), T0f, D)
    D = np.where(on0 & (T0f == np.round(T0f)) & (rng.random(shp) < 0.5), T0f + 1, D)
    D = np.where(on1 & (T1f == np.round(T1f)), T1f, D)
    D = np.where(on1 & (T1f == np.round(T1f)) & (rng.random(shp) < 0.5), T1f + 1, D)
    D = np.clip(np.round(D), 0, 65535)

    cm_asic = rng.uniform(-12, 12, (n, 16))
    cm = np.repeat(np.repeat(cm_asic.reshape(n, 2, 8).transpose(0, 2, 1), 64, 1), 64, 2)
    o = np.take_along_axis(off, gi[None], 0)[0]
    sig = np.where(gi == 0, rng.uniform(35, 3000, shp),
                   np.where(gi == 1, rng.uniform(-1500, 3000, shp), 0))
    A = np.where(dark, o + cm + rng.normal(0, 3, shp), o + sig)
    # low gain: analog around Offset[1] + [-500, 4000] so M crosses 1000
    A = np.where(gi == 2, off[1] + rng.uniform(-500, 4000, shp), A)
    # M exactly 1000 / 1500 / 800 for some high-gain-stage pixels (integral Offset[1])
    ex = (gi > 0) & (rng.random(shp) < 0.03) & (off[1] == np.round(off[1]))
    A = np.where(ex, off[1] + rng.choice([1000.0, 1500.0, 800.0, 999.0, 1001.0], shp), A)
    A = np.clip(np.round(A), 0, 65535)
    cm_asic_frames(rng, A, D, off, cm_asic)

    # special pixels: digital 100 (high gain unless the thresholds are broken),
    # analog chosen so that X = A - Offset[0] hits listed values exactly
    for (r, c), x in special:
        D[:, r, c] = 100
        A[:, r, c] = 0
    return A.astype(np.uint16), D.astype(np.uint16)


# ASICs with exactly this many dark high-gain pixels in every frame: on both
# sides of the common-mode count limits 0.15*4096 = 614.4 and 0.25*4096 = 1024.
CM_ASICS = {15: 614, 14: 615, 13: 1024, 12: 1023}


def asic_region(a):
    return slice(64 * (a % 8), 64 * (a % 8) + 64), slice(64 * (a // 8), 64 * (a // 8) + 64)


def in_cm_asics(r, c):
    return any(asic_region(a)[0].start <= r < asic_region(a)[0].stop
               and asic_region(a)[1].start <= c < asic_region(a)[1].stop for a in CM_ASICS)


def clean_cm_asics(rng, K):
    """Well-behaved offsets and thresholds in the CM_ASICS (no broken pixels)."""
    for a in CM_ASICS:
        r, c = asic_region(a)
        C = K["Offset"].shape[1]
        for g, base in enumerate((4000, 5000, 5600)):
            K["Offset"][g, :, r, c] = np.round(base + rng.normal(0, 100, (C, 64, 64)), 2)
        K["ThresholdsDark"][0, :, r, c] = 6000
        K["ThresholdsDark"][1, :, r, c] = 7500


def cm_asic_frames(rng, A, D, off, cm):
    """Exactly CM_ASICS[a] dark high-gain pixels (|X - cm| <= 6); the others
    are bright high gain, or medium gain with a small X that must not count."""
    n = A.shape[0]
    for a, k in CM_ASICS.items():
        r, c = asic_region(a)
        for f in range(n):
            kind = np.full(4096, 1)
            kind[rng.choice(4096, k, replace=False)] = 0
            kind[(kind == 1) & (rng.random(4096) < 0.3)] = 2
            kind = kind.reshape(64, 64)
            o0, o1 = off[0, f, r, c], off[1, f, r, c]
            dark = o0 + cm[f, a] + np.clip(rng.normal(0, 2, (64, 64)), -6, 6)
            bright = o0 + rng.uniform(100, 3000, (64, 64))
            mg_small = o1 + rng.uniform(-20, 20, (64, 64))
            A[f, r, c] = np.round(np.where(kind == 0, dark, np.where(kind == 1, bright, mg_small)))
            D[f, r, c] = np.where(kind == 2, 6750, 5600)


def special_pixels(rng):
    """Pixels (row, col) and the X each must have; the offset is set to -X."""
    used = set()
    out = []
    for x in SPECIAL_X:
        for _ in range(2):
            while True:
                p = (int(rng.integers(0, ROWS)), int(rng.integers(0, COLS)))
                if p not in used and not in_cm_asics(*p):
                    used.add(p)
                    break
            out.append((p, x))
    return out


def _str_ds(g, name, s):
    g.create_dataset(name, data=np.array([s.encode()]))


FORMATS = ("0.5", "1.0", "1.1", "1.2", "1.3")


def write_raw(path, module, run, seq, karabo_id, layout, A, D, variant, format_version="1.0"):
    """format_version other than 1.0 writes INDEX and METADATA as the DAQ of
    that version did (EXtra-data's mock files): INDEX/trainId (and
    timestamp, flag) longer than first/count, the trailing padding entries
    only in them; 0.5 with neither timestamp nor flag nor
    METADATA/dataFormatVersion (and its sources list in METADATA itself);
    1.1 with INDEX/flag an index (0 = valid); 1.2+ with INDEX/origin.  In
    those, the second real train is flagged invalid (not in 0.5)."""
    tid, first, count, cells, ftid, pid = layout
    n = A.shape[0]
    src = f"{karabo_id}/DET/{module}CH0:xtdf"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        base = f.create_group(f"INSTRUMENT/{src}")
        img = base.create_group("image")
        data = np.stack([A, D], axis=1)
        if variant % 2 == 0:
            img.create_dataset("data", data=data, chunks=(1, 2, ROWS, COLS))
        else:
            img.create_dataset("data", data=data)           # contiguous
        shape = (lambda a: a.reshape(n, 1)) if variant % 2 == 0 else (lambda a: a)
        img.create_dataset("cellId", data=shape(cells.astype(np.uint16)))
        img.create_dataset("pulseId", data=shape(pid.astype(np.uint64)))
        img.create_dataset("trainId", data=shape(ftid.astype(np.uint64)))
        img.create_dataset("status", data=shape(np.arange(n, dtype=np.uint16) * 3 + 1))
        img.create_dataset("length", data=shape((np.arange(n, dtype=np.uint32) + 7) * 1000003))
        # extra groups a reader must ignore
        T = tid.shape[0]
        base.create_dataset("header/pulseCount", data=count.astype(np.uint64))
        base.create_dataset("header/trainId", data=tid)
        base.create_dataset("detector/data", data=np.zeros((T, 16), np.uint8))
        base.create_dataset("trailer/checksum", data=np.zeros((T, 16), np.uint8))
        f.create_dataset("INDEX/trainId", data=tid)
        valid = np.where(tid == 0, 0, 1).astype(np.int32)
        if format_version != "1.0":
            real = np.nonzero(tid)[0]
            if len(real) > 1:
                valid[real[1]] = 0
        if format_version != "0.5":
            f.create_dataset("INDEX/timestamp", data=(tid * 100000 + 17).astype(np.uint64))
            f.create_dataset("INDEX/flag", data=(valid == 0).astype(np.int32) if format_version == "1.1"
                             else valid)
        if format_version in ("1.2", "1.3"):
            f.create_dataset("INDEX/origin", data=np.full(T, -1, np.int32))
        # first/count: without the trailing padding, except in 1.0 files
        Tfc = T
        if format_version != "1.0":
            while Tfc > 0 and tid[Tfc - 1] == 0:
                Tfc -= 1
        for grp in ("image", "header", "detector", "trailer"):
            gf = first if grp == "image" else np.arange(T, dtype=np.uint64)
            gc = count if grp == "image" else np.ones(T, np.uint64)
            f.create_dataset(f"INDEX/{src}/{grp}/first", data=gf[:Tfc])
            f.create_dataset(f"INDEX/{src}/{grp}/count", data=gc[:Tfc])
        srcs = [f"INSTRUMENT/{src}", f"CONTROL/{karabo_id}/MDL/FPGA_COMP"]
        if format_version == "0.5":
            md = f.create_group("METADATA")
            md.create_dataset("dataSourceId", data=np.array([s.encode() for s in srcs]))
            f.create_group(f"CONTROL/{karabo_id}/MDL/FPGA_COMP")
            f.create_group(f"RUN/{karabo_id}/MDL/FPGA_COMP")
            return
        md = f.create_group("METADATA")
        _str_ds(md, "dataFormatVersion", format_version)
        _str_ds(md, "creationDate", "20240101T000000Z")
        _str_ds(md, "daqLibrary", "1.x")
        _str_ds(md, "karaboFramework", "2.x")
        md.create_dataset("proposalNumber", data=np.array([700000], np.uint32))
        md.create_dataset("runNumber", data=np.array([run], np.uint32))
        md.create_dataset("sequenceNumber", data=np.array([seq], np.uint32))
        md.create_dataset("dataSources/dataSourceId", data=np.array([s.encode() for s in srcs]))
        md.create_dataset("dataSources/root", data=np.array([b"INSTRUMENT", b"CONTROL"]))
        md.create_dataset("dataSources/deviceId",
                          data=np.array([s.split("/", 1)[1].encode() for s in srcs]))
        f.create_group(f"CONTROL/{karabo_id}/MDL/FPGA_COMP")
        f.create_group(f"RUN/{karabo_id}/MDL/FPGA_COMP")


def write_control(path, run, seq, train_ids, modules, karabo_id_control=DEFAULT_KARABO_ID_CONTROL):
    """The control file of one sequence: the composite device's keys and the
    MPOD channel of every module, one value per train (EXDF CONTROL/RUN)."""
    dev = f"{karabo_id_control}/MDL/FPGA_COMP"
    hv = f"{karabo_id_control[:-1]}/PSC/HV"
    tid = np.array(sorted(train_ids), np.uint64)
    T = len(tid)
    ts = (tid * 100000 + 17).astype(np.uint64)
    keys = [(dev, "bunchStructure/nPulses", np.uint32, MEMORY_CELLS),
            (dev, "bunchStructure/repetitionRate", np.float64, ACQ_RATE),
            (dev, "gain", np.uint8, 0), (dev, "gainModeIndex", np.int32, 0),
            (dev, "integrationTime", np.uint32, 12)]
    keys += [(hv, f"channels/U{m}/measurementSenseVoltage", np.float32, BIAS_VOLTAGE) for m in modules]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("INDEX/trainId", data=tid)
        f.create_dataset("INDEX/timestamp", data=ts)
        f.create_dataset("INDEX/flag", data=np.ones(T, np.int32))
        for d in (dev, hv):
            f.create_dataset(f"INDEX/{d}/first", data=np.arange(T, dtype=np.uint64))
            f.create_dataset(f"INDEX/{d}/count", data=np.ones(T, np.uint64))
        for d, k, dt, v in keys:
            f.create_dataset(f"CONTROL/{d}/{k}/value", data=np.full(T, v, dt))
            f.create_dataset(f"CONTROL/{d}/{k}/timestamp", data=ts)
            f.create_dataset(f"RUN/{d}/{k}/value", data=np.full(1, v, dt))
            f.create_dataset(f"RUN/{d}/{k}/timestamp", data=ts[:1])
        md = f.create_group("METADATA")
        _str_ds(md, "dataFormatVersion", "1.0")
        _str_ds(md, "creationDate", "20240101T000000Z")
        md.create_dataset("runNumber", data=np.array([run], np.uint32))
        md.create_dataset("sequenceNumber", data=np.array([seq], np.uint32))
        md.create_dataset("dataSources/dataSourceId", data=np.array([f"CONTROL/{d}".encode() for d in (dev, hv)]))
        md.create_dataset("dataSources/root", data=np.array([b"CONTROL", b"CONTROL"]))
        md.create_dataset("dataSources/deviceId", data=np.array([d.encode() for d in (dev, hv)]))


def generate(folder, run=1, modules=(0, 1), seed=1234, karabo_id=DEFAULT_KARABO_ID,
             flat=False, const_cells=None, format_version="1.0", control=True):
    """Write the run; returns a dict describing it.

    const_cells: {module: C} overrides the memory cells of the constants.
    format_version: the EXDF format of the raw files (see write_raw).
    control: write the control files (RAW-R{run}-AGIPD1MCTRL00-S{seq}.h5)."""
    raw_dir = folder if flat else os.path.join(folder, f"r{run:04d}")
    const_dir = os.path.join(folder, "constants")
    info = {"folder": folder, "raw_dir": raw_dir, "const_dir": const_dir, "run": run,
            "karabo_id": karabo_id, "modules": list(modules), "files": []}
    trains = {}   # sequence -> train ids of every module
    for mod in modules:
        rng = np.random.default_rng(seed + 7919 * mod)
        variant = mod % 2
        C = 16 if variant == 0 else 20
        if const_cells and mod in const_cells:
            C = const_cells[mod]
        dtype = np.float32 if variant == 0 else np.float64
        K = make_constants(rng, C, ff_cells=(variant == 0), dtype=dtype)
        clean_cm_asics(rng, K)
        special = special_pixels(rng)
        for (r, c), x in special:
            K["Offset"][:, :, r, c] = -x
            K["ThresholdsDark"][:2, :, r, c] = [[6000], [7500]]
        const_path = os.path.join(const_dir, f"AGIPD{mod:02d}.h5")
        write_constants(const_path, K, C, vlen_strings=(variant == 1))
        for seq, lay in enumerate(layouts(mod, C)):
            L = expand_layout(lay)
            # frames whose cellId the constants lack (const_cells) use the last cell
            A, D = make_frames(rng, np.minimum(L[3].astype(np.intp), C - 1), K, special)
            path = os.path.join(raw_dir, f"RAW-R{run:04d}-AGIPD{mod:02d}-S{seq:05d}.h5")
            write_raw(path, mod, run, seq, karabo_id, L, A, D, variant, format_version)
            trains.setdefault(seq, set()).update(int(t) for t in L[0] if t != 0)
            info["files"].append({"module": mod, "seq": seq, "raw": path, "const": const_path,
                                  "n_raw": A.shape[0]})
    if control:
        for seq, tids in sorted(trains.items()):
            write_control(os.path.join(raw_dir, f"RAW-R{run:04d}-{DEFAULT_KARABO_DA_CONTROL}-S{seq:05d}.h5"),
                          run, seq, tids, modules)
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate a small synthetic AGIPD run with edge values.")
    p.add_argument("folder")
    p.add_argument("--run", type=int, default=1)
    p.add_argument("--modules", default="0,1")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--karabo-id", default=DEFAULT_KARABO_ID)
    p.add_argument("--flat", action="store_true", help="raw files directly in FOLDER")
    p.add_argument("--format-version", default="1.0", choices=FORMATS, help="EXDF format of the raw files")
    a = p.parse_args(argv)
    mods = [int(m) for m in a.modules.split(",")]
    info = generate(a.folder, a.run, mods, a.seed, a.karabo_id, a.flat, format_version=a.format_version)
    for fi in info["files"]:
        print(fi["raw"], fi["n_raw"], "frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
