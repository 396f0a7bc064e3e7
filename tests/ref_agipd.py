#!/usr/bin/python3
"""Independent NumPy reference implementation of SPEC.md sections 2-5.

Written from the specification alone (not from the C sources), so that the
end-to-end tests can compare bin/agipd-correct against it bit for bit.  It is
deliberately plain: whole arrays, float32 everywhere, the steps of SPEC
section 4 in their order.

NumPy 1.24 note: a NumPy float32 *scalar* combined with a Python float gives
float64, so every constant below is an explicit np.float32 and every
intermediate is a float32 array or scalar.

Section 6 too: the operating conditions from the run's control data (with
the fallbacks of 6.1), constants from a calibration-database store named by
a calibration_metadata.yml (6.2, honouring `dims`), and the check of the
constants' conditions against the run's.

Library use:
    opts = Options(rel_gain=True, photon_energy=9.3)
    res = correct_file(raw_path, const_path, opts)   # dict of arrays
    K = read_caldb(yaml_path, module)                 # the store instead
    res = correct_file(raw_path, None, opts, K=K)
    cond, source = run_conditions(run_folder, run, modules)

Command line:
    ref_agipd.py RAWFILE CONSTFILE OUT.npz [--rel-gain ...]
    ref_agipd.py RAWFILE - OUT.npz --calibration-metadata YML [--caldb-root DIR] ...
"""
import argparse
import glob
import os
import re
import sys

import h5py
import numpy as np

F32 = np.float32
ROWS, COLS = 512, 128
VALUE_IS_NAN = np.uint32(1 << 11)
VALUE_OUT_OF_RANGE = np.uint32(1 << 12)
GAIN_MODES = {"adaptive": None, "fixed-high": 0, "fixed-medium": 1, "fixed-low": 2}
GAIN_MODE_NAMES = ("adaptive", "fixed-high", "fixed-medium", "fixed-low")   # by gainModeIndex
DTYPES = ("float32", "float16", "int16")


class RefError(Exception):
    """A configuration or input that the SPEC says must be refused."""


class Options:
    """Correction options, named like the command line (dashes -> underscores)."""

    DEFAULTS = dict(
        cells=None,                 # (start, stop, step) or None for all
        gain_mode="adaptive",
        force_mg_if_below=False,
        force_hg_if_below=False,
        mg_hard_threshold=1000.0,
        hg_hard_threshold=1000.0,
        common_mode=False,
        cm_dark_range=(-30.0, 30.0),
        cm_dark_fraction=0.15,
        cm_n_itr=4,
        rel_gain=False,
        adjust_mg_baseline=False,
        ff_gain=False,
        photon_energy=None,
        adu_per_kev=None,
        round_photons=False,
        rounding_threshold=0.5,
        data_dtype="float32",
    )

    def __init__(self, **kw):
        for k in kw:
            if k not in self.DEFAULTS:
                raise TypeError(f"unknown option {k}")
        for k, v in self.DEFAULTS.items():
            setattr(self, k, kw.get(k, v))

    def __repr__(self):
        changed = {k: getattr(self, k) for k in self.DEFAULTS if getattr(self, k) != self.DEFAULTS[k]}
        return f"Options({changed})"


def validate(opts):
    """Refusals that do not depend on the constants."""
    if opts.gain_mode not in GAIN_MODES:
        raise RefError(f"unknown gain mode {opts.gain_mode}")
    if opts.data_dtype not in DTYPES:
        raise RefError(f"unknown data dtype {opts.data_dtype}")
    if opts.round_photons and opts.photon_energy is None:
        raise RefError("--round-photons needs --photon-energy")
    if opts.data_dtype == "int16" and not opts.round_photons:
        raise RefError("--data-dtype int16 needs --round-photons")


# ---------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------

def _str(v):
    v = np.asarray(v).ravel()[0] if np.ndim(v) else v
    return v.decode() if isinstance(v, bytes) else str(v)


def find_source(f, karabo_id=None, module=None):
    """The `{karabo_id}/DET/{module}CH0:xtdf` source of a raw/corrected file."""
    found = []
    inst = f.get("INSTRUMENT")
    if inst is None:
        raise RefError(f"{f.filename}: no INSTRUMENT group")
    for kid in inst:
        if karabo_id is not None and kid != karabo_id:
            continue
        det = inst[kid].get("DET")
        if not isinstance(det, h5py.Group):
            continue
        for name in det:
            m = re.fullmatch(r"(\d+)CH0:xtdf", name)
            if m and (module is None or int(m.group(1)) == module):
                found.append(f"{kid}/DET/{name}")
    if len(found) != 1:
        raise RefError(f"{f.filename}: expected one AGIPD source, found {found}")
    return found[0]


def read_raw(path, karabo_id=None, module=None):
    """Everything of one raw file the correction needs, per-frame arrays 1-D."""
    r = {"path": path}
    with h5py.File(path, "r") as f:
        src = find_source(f, karabo_id, module)
        r["source"] = src
        img = f[f"INSTRUMENT/{src}/image"]
        data = img["data"]
        if data.ndim != 4 or data.shape[1:] != (2, ROWS, COLS):
            raise RefError(f"{path}: image/data has shape {data.shape}")
        raw = data[()]
        r["analog"] = raw[:, 0]
        r["digital"] = raw[:, 1]
        n = raw.shape[0]
        for k in ("cellId", "pulseId", "trainId", "status", "length"):
            a = img[k][()]
            r[k] = a.reshape(a.shape[0]) if a.ndim == 2 and a.shape[1] == 1 else a.ravel()
            if r[k].shape[0] != n:
                raise RefError(f"{path}: image/{k} has {r[k].shape[0]} entries, data {n}")
        for k in ("cellId", "pulseId", "trainId"):
            r[k] = _checked_ints(path, f"image/{k}", r[k], 0xFFFF if k == "cellId" else None)
        version = format_version(f)
        r["format"] = version
        r["first"] = _checked_ints(path, "first", f[f"INDEX/{src}/image/first"][()].ravel())
        r["count"] = _checked_ints(path, "count", f[f"INDEX/{src}/image/count"][()].ravel())
        T = r["first"].shape[0]
        tid = _checked_ints(path, "INDEX/trainId", f["INDEX/trainId"][()].ravel())
        # first/count may be shorter than a zero-padded INDEX/trainId
        if tid.shape[0] < T or np.any(tid[T:] != 0):
            raise RefError(f"{path}: INDEX/trainId does not match first/count (or non-zero padding)")
        r["index_trainId"] = tid[:T]
        if version == "0.5":
            r["index_timestamp"] = np.zeros(T, np.uint64)
            r["index_flag"] = derive_validity(r["index_trainId"])
        else:
            r["index_timestamp"] = f["INDEX/timestamp"][()].ravel()[:T]
            flag = f["INDEX/flag"][()].ravel()[:T]
            if version == "1.1":        # an index there: 0 = valid
                flag = (flag == 0).astype(np.int32)
            r["index_flag"] = flag
        md = f.get("METADATA")
        r["metadata"] = {}
        if md is not None:
            for k in ("runNumber", "sequenceNumber", "dataFormatVersion"):
                if k in md:
                    r["metadata"][k] = md[k][()]
        # format 0.5 has no run or sequence number: the file name's
        m = re.match(r"RAW-R(\d{4})-AGIPD\d{2}-S(\d{5})", path.rsplit("/", 1)[-1])
        if m:
            r["metadata"].setdefault("runNumber", np.array([int(m.group(1))], np.uint32))
            r["metadata"].setdefault("sequenceNumber", np.array([int(m.group(2))], np.uint32))
    return r


def _checked_ints(path, name, a, hi=None):
    """Integers as uint64 (cellId: uint16); negative or too large values are
    refused, never clamped."""
    if a.dtype.kind not in "iu":
        raise RefError(f"{path}: {name} is not an integer dataset")
    v = a.astype(np.int64) if a.dtype.kind == "i" else a
    if a.dtype.kind == "i" and np.any(v < 0):
        raise RefError(f"{path}: {name} has negative values")
    if hi is not None and np.any(v > hi):
        raise RefError(f"{path}: {name} has values above {hi}")
    return v.astype(np.uint16 if hi == 0xFFFF else np.uint64)


def format_version(f):
    """METADATA/dataFormatVersion as a string; "0.5" when absent."""
    d = f.get("METADATA/dataFormatVersion")
    return "0.5" if d is None else _str(d[()])


def derive_validity(tid):
    """INDEX/flag (1 = valid) of a format 0.5 file, as EXtra-data derives it
    over the non-zero train ids: at each place where the ids stop
    increasing, the side of the jump needing fewer trains dropped loses them."""
    nz = np.nonzero(tid != 0)[0]
    ids = tid[nz].astype(np.int64)
    ok = np.ones(ids.shape[0], bool)
    for ix in np.nonzero(ids[1:] <= ids[:-1])[0]:
        bad_before = ids[:ix + 1] >= ids[ix + 1]
        bad_after = ids[ix + 1:] <= ids[ix]
        if np.count_nonzero(bad_before) < np.count_nonzero(bad_after):
            ok[:ix + 1] &= ~bad_before
        else:
            ok[ix + 1:] &= ~bad_after
    flag = np.zeros(tid.shape[0], np.int32)
    flag[nz] = ok
    return flag


def read_constants(path):
    """Constants as float32/uint32 arrays in C order (..., cell, 512, 128).

    The facility order (128, 512, C, k) is fully transposed to (k, C, 512, 128);
    (128, 512, C) to (C, 512, 128) and (128, 512) to (512, 128)."""
    K = {}
    with h5py.File(path, "r") as f:
        for name, obj in f.items():
            if not isinstance(obj, h5py.Dataset):
                continue
            a = obj[()]
            if a.dtype.kind == "f":
                a = a.astype(F32)          # float64 -> float32, round to nearest
            K[name] = np.ascontiguousarray(np.transpose(a))
        K["_attrs"] = {k: f.attrs[k] for k in f.attrs}
    return K


# ---------------------------------------------------------------------------
# Frame selection and output INDEX (SPEC "Frame selection", section 5)
# ---------------------------------------------------------------------------

def cells_range(cells):
    if cells is None:
        return None
    start, stop, step = cells
    return range(start, stop, step)


def select_frames(raw, cells=None):
    """Indices (raw order) of the kept frames and the output INDEX."""
    n = raw["analog"].shape[0]
    tid = raw["index_trainId"]
    first, count = raw["first"], raw["count"]
    valid = np.nonzero(tid != 0)[0]
    in_train = np.zeros(n, bool)
    for t in valid:
        f0, c0 = int(first[t]), int(count[t])
        in_train[f0:f0 + c0] = True
    keep = in_train.copy()
    rng = cells_range(cells)
    if rng is not None:
        keep &= np.isin(raw["cellId"].astype(np.int64), np.array(list(rng), np.int64))
    out_count = np.array([int(keep[int(first[t]):int(first[t]) + int(count[t])].sum()) for t in valid],
                         np.uint64)
    out_first = np.concatenate([[0], np.cumsum(out_count)[:-1]]).astype(np.uint64) if len(valid) \
        else np.zeros(0, np.uint64)
    index = {
        "trainId": tid[valid],
        "timestamp": raw["index_timestamp"][valid],
        "flag": raw["index_flag"][valid],
        "first": out_first,
        "count": out_count,
    }
    return np.nonzero(keep)[0], index


# ---------------------------------------------------------------------------
# Constants preparation
# ---------------------------------------------------------------------------

def nanmedian_f32(a):
    """Median over the last axis ignoring NaN, float32; even count -> (lo+hi)/2
    in float32.  All-NaN -> NaN."""
    a = np.asarray(a, F32)
    lead = a.shape[:-1]
    flat = a.reshape(-1, a.shape[-1])
    out = np.empty(flat.shape[0], F32)
    for i, row in enumerate(flat):
        v = np.sort(row[~np.isnan(row)])
        m = v.shape[0]
        if m == 0:
            out[i] = F32(np.nan)
        elif m % 2:
            out[i] = v[m // 2]
        else:
            out[i] = (v[m // 2 - 1] + v[m // 2]) / F32(2)
    return out.reshape(lead)


def per_cell_median(a, K=None, name=None):
    """a: (C, 512, 128) -> (C,), or (512, 128) -> () (one value).  With K and
    name the result is memoised in K (constants read once, used many times)."""
    if K is not None:
        memo = K.setdefault("_median", {})
        if name not in memo:
            memo[name] = nanmedian_f32(a.reshape(a.shape[:-2] + (-1,)))
        return memo[name]
    return nanmedian_f32(a.reshape(a.shape[:-2] + (-1,)))


def sanitize(a, med, slope):
    """Replace NaN (and, for slopes, values outside [0.8, 1.2]*median) by the
    per-cell median.  a: (C, 512, 128) or (512, 128); med: (C,) or ()."""
    m = np.asarray(med, F32)[..., None, None]
    bad = np.isnan(a)
    if slope:
        lo = F32(0.8) * m
        hi = F32(1.2) * m
        bad |= (a < lo) | (a > hi)
    return np.where(bad, m, a).astype(F32)


def _req(K, name, why):
    if name not in K:
        raise RefError(f"constants lack {name}, needed for {why}")
    return K[name]


class Prepared:
    """Per-run derived constants (rel gain, flat field, photon factor)."""

    def __init__(self, K, opts):
        self.K = K
        C = _req(K, "Offset", "the offset").shape[1]
        self.C = C
        _req(K, "BadPixelsDark", "the mask")
        if GAIN_MODES[opts.gain_mode] is None:
            _req(K, "ThresholdsDark", "adaptive gain")
        if opts.rel_gain:
            pc = _req(K, "SlopesPC", "--rel-gain")
            ml, bl, mh, bh = pc[0], pc[1], pc[3], pc[4]
            med = {k: per_cell_median(v, K, k) for k, v in dict(ml=ml, bl=bl, mh=mh, bh=bh).items()}
            ml = sanitize(ml, med["ml"], True)
            mh = sanitize(mh, med["mh"], True)
            bl = sanitize(bl, med["bl"], False)
            bh = sanitize(bh, med["bh"], False)
            self.pc_median = med
            self.rel1 = (ml / mh).astype(F32)
            self.rel2 = ((F32(4.48) * ml) / mh).astype(F32)
            self.base = (bl - (bh * ml) / mh).astype(F32)
            self.bp_pc = _req(K, "BadPixelsPC", "--rel-gain")
        if opts.ff_gain or (opts.photon_energy is not None and opts.adu_per_kev is None):
            ff = _req(K, "SlopesFF", "--ff-gain or the photon conversion without --adu-per-kev")
            self.ff_median = per_cell_median(ff, K, "ff")   # (C,) or ()
            self.ff = sanitize(ff, self.ff_median, True)
        if opts.ff_gain:
            self.bp_ff = _req(K, "BadPixelsFF", "--ff-gain")

    def ff_for(self, cells):
        """(F, median) per frame: F (n, 512, 128), median (n,)."""
        if self.ff.ndim == 2:
            n = len(cells)
            return (np.broadcast_to(self.ff, (n, ROWS, COLS)),
                    np.full(n, self.ff_median, F32))
        return self.ff[cells], self.ff_median[cells]


# ---------------------------------------------------------------------------
# The correction (SPEC section 4)
# ---------------------------------------------------------------------------

def _pick(stack, cells, g):
    """stack: (3, C, 512, 128); -> stack[g, cell] per frame/pixel."""
    sel = stack[:, cells]                               # (3, n, 512, 128)
    return np.take_along_axis(sel, g[None].astype(np.intp), 0)[0]


def asic_view(a):
    """(n, 512, 128) -> (n, 16, 4096); ASIC a = rows 64*(a%8), cols 64*(a//8)."""
    n = a.shape[0]
    return a.reshape(n, 8, 64, 2, 64).transpose(0, 3, 1, 2, 4).reshape(n, 16, 4096)


def asic_unview(b):
    n = b.shape[0]
    return b.reshape(n, 2, 8, 64, 64).transpose(0, 2, 3, 1, 4).reshape(n, ROWS, COLS)


def common_mode(X, g, opts):
    Xa = asic_view(X).copy()
    hg = asic_view(g) == 0
    lo, hi = F32(opts.cm_dark_range[0]), F32(opts.cm_dark_range[1])
    need = float(opts.cm_dark_fraction) * 4096
    active = np.ones(Xa.shape[:2], bool)
    for _ in range(int(opts.cm_n_itr)):
        with np.errstate(invalid="ignore"):
            sel = hg & np.isfinite(Xa) & (Xa >= lo) & (Xa <= hi)
        cnt = sel.sum(-1)
        # SPEC step 4: "float32(float64 sum / count) (the float64 sum
        # accumulated one pixel at a time in row-major order over the ASIC's
        # 64 x 64 pixels)".  asic_view lays each ASIC out row-major; cumsum
        # adds one element at a time in that order (np.sum would add
        # pairwise); unselected pixels add 0.0, which changes no sum.
        s = np.cumsum(np.where(sel, Xa, F32(0)).astype(np.float64), axis=-1)[..., -1]
        active &= cnt >= need
        if not active.any():
            break
        mean = np.zeros(active.shape, F32)
        mean[active] = (s[active] / cnt[active]).astype(F32)
        Xa = np.where(hg & active[..., None], Xa - mean[..., None], Xa).astype(F32)
    return asic_unview(Xa)


def correct_frames(analog, digital, cells, K, opts, prep=None):
    """Correct frames; analog/digital (n, 512, 128) uint16, cells (n,) ints.
    K: constants in C order (read_constants).  Returns data, gain, mask."""
    validate(opts)
    if prep is None:
        prep = Prepared(K, opts)
    cells = np.asarray(cells, np.intp)
    n = cells.shape[0]
    if n and cells.max() >= prep.C:
        raise RefError(f"cellId {cells.max()} not below the constants' {prep.C} memory cells")
    A = analog.astype(F32)
    D = digital.astype(F32)

    # 1-2. gain stage, force gain
    fixed = GAIN_MODES[opts.gain_mode]
    if fixed is None:
        T = K["ThresholdsDark"]
        with np.errstate(invalid="ignore"):
            g = np.zeros(A.shape, np.uint8)
            g[D > T[0][cells]] = 1
            g[D > T[1][cells]] = 2
            if opts.force_mg_if_below or opts.force_hg_if_below:
                M = A - K["Offset"][1][cells]
                if opts.force_mg_if_below:
                    g[(g == 2) & (M < F32(opts.mg_hard_threshold))] = 1
                if opts.force_hg_if_below:
                    g[(g > 0) & (M < F32(opts.hg_hard_threshold))] = 0
    else:
        g = np.full(A.shape, fixed, np.uint8)

    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        # 3. offset
        X = (A - _pick(K["Offset"], cells, g)).astype(F32)

        # 4. common mode
        if opts.common_mode:
            X = common_mode(X, g, opts)

        # 5. relative gain
        if opts.rel_gain:
            X = np.where(g == 1, X * prep.rel1[cells], X)
            X = np.where(g == 2, X * prep.rel2[cells], X).astype(F32)
            if opts.adjust_mg_baseline:
                X = np.where(g == 1, X + prep.base[cells], X).astype(F32)

        # 6. flat field
        if opts.ff_gain:
            F, med = prep.ff_for(cells)
            X = ((X * med[:, None, None]) / F).astype(F32)

        # 7. photon conversion
        rounded_neg = None
        if opts.photon_energy is not None:
            E = F32(opts.photon_energy)
            if opts.adu_per_kev is not None:
                adu = np.full(n, F32(opts.adu_per_kev), F32)
            elif prep.ff_median.ndim == 0:
                adu = np.full(n, prep.ff_median, F32)
            else:
                adu = prep.ff_median[cells]
            denom = (adu * E).astype(F32)
            X = (X / denom[:, None, None]).astype(F32)
            if opts.round_photons:
                X = np.floor((X + F32(1)) - F32(opts.rounding_threshold)).astype(F32)
                rounded_neg = X < 0
                X[rounded_neg] = F32(0)

        # 8. mask
        mask = _pick(K["BadPixelsDark"], cells, g).astype(np.uint32)
        if opts.rel_gain:
            mask |= prep.bp_pc[cells].astype(np.uint32)
        if opts.ff_gain:
            bp = prep.bp_ff
            mask |= (bp[None] if bp.ndim == 2 else bp[cells]).astype(np.uint32)
        if rounded_neg is not None:
            mask[rounded_neg] |= VALUE_OUT_OF_RANGE
        nf = ~np.isfinite(X)
        mask[nf] |= VALUE_IS_NAN
        X[nf] = F32(0)
        big = np.abs(X) > F32(1e7)
        mask[big] |= VALUE_OUT_OF_RANGE
        X[big] = F32(0)

        # 9. output type
        if opts.data_dtype == "float16":
            over = np.abs(X) > F32(65504)
            mask[over] |= VALUE_OUT_OF_RANGE
            data = np.clip(X, F32(-65504), F32(65504)).astype(np.float16)
        elif opts.data_dtype == "int16":
            over = (X > F32(32767)) | (X < F32(-32768))
            mask[over] |= VALUE_OUT_OF_RANGE
            data = np.clip(X, F32(-32768), F32(32767)).astype(np.int16)
        else:
            data = X.astype(F32)
    return data, g.astype(np.uint8), mask


def correct_file(raw_path, const_path, opts, karabo_id=None, module=None, block=64, K=None):
    """Correct one raw file; dict with data/gain/mask, per-frame arrays, INDEX.
    K: the constants already read from const_path (read_constants), if at hand."""
    validate(opts)
    raw = read_raw(raw_path, karabo_id, module)
    if K is None:
        K = read_constants(const_path)
    prep = Prepared(K, opts)
    sel, index = select_frames(raw, opts.cells)
    n = sel.shape[0]
    dt = {"float32": F32, "float16": np.float16, "int16": np.int16}[opts.data_dtype]
    data = np.empty((n, ROWS, COLS), dt)
    gain = np.empty((n, ROWS, COLS), np.uint8)
    mask = np.empty((n, ROWS, COLS), np.uint32)
    cells = raw["cellId"][sel].astype(np.intp)
    for i in range(0, n, block):
        j = sel[i:i + block]
        data[i:i + block], gain[i:i + block], mask[i:i + block] = correct_frames(
            raw["analog"][j], raw["digital"][j], cells[i:i + block], K, opts, prep)
    out = {"data": data, "gain": gain, "mask": mask, "sel": sel, "source": raw["source"]}
    for k in ("cellId", "pulseId", "trainId", "status", "length"):
        out[k] = raw[k][sel]
    out["cellId"] = out["cellId"].astype(np.uint16)
    out["pulseId"] = out["pulseId"].astype(np.uint64)
    out["trainId"] = out["trainId"].astype(np.uint64)
    for k, v in index.items():
        out["index_" + k] = v
    out["metadata"] = raw["metadata"]
    return out


# ---------------------------------------------------------------------------
# Section 6.1: operating conditions
# ---------------------------------------------------------------------------

CONDITIONS = ("Memory cells", "Acquisition rate", "Gain setting", "Gain mode", "Integration time",
              "Sensor Bias Voltage")
# Root attributes of the section 3 constants files that carry the same conditions.
FILE_CONDITION_ATTRS = {"memory_cells": "Memory cells", "acquisition_rate": "Acquisition rate",
                        "gain_setting": "Gain setting", "gain_mode": "Gain mode",
                        "integration_time": "Integration time", "bias_voltage": "Sensor Bias Voltage"}
MEMORY_CELL_OPTIONS = (4, 32, 64, 76, 128, 176, 202, 250, 352)
DARK_CONSTANTS = ("Offset", "Noise", "ThresholdsDark", "BadPixelsDark")
NON_DARK_CONSTANTS = ("SlopesPC", "BadPixelsPC", "SlopesFF", "BadPixelsFF")


def control_path(run_folder, run, karabo_da_control, seq):
    return os.path.join(run_folder, f"RAW-R{run:04d}-{karabo_da_control}-S{seq:05d}.h5")


class ControlData:
    """The slow data of one run's control files (all sequences, or those
    given), per device and key (Karabo names with dots)."""

    def __init__(self, run_folder, run, karabo_da_control="AGIPD1MCTRL00", sequences=None):
        pat = re.compile(rf"RAW-R{run:04d}-{re.escape(karabo_da_control)}-S(\d{{5}})\.h5$")
        self.files = []
        for p in sorted(glob.glob(os.path.join(run_folder, f"RAW-R{run:04d}-{karabo_da_control}-S*.h5"))):
            m = pat.search(p)
            if m and (sequences is None or int(m.group(1)) in sequences):
                self.files.append(p)

    def __bool__(self):
        return bool(self.files)

    def values(self, device, key):
        """(CONTROL values of the run's valid trains, RUN values); None where
        the file has no such dataset."""
        h5key = key.replace(".", "/")
        ctrl, run = None, None
        for p in self.files:
            with h5py.File(p, "r") as f:
                c = f.get(f"CONTROL/{device}/{h5key}/value")
                if isinstance(c, h5py.Dataset):
                    v = c[()]
                    tid = f["INDEX/trainId"][()] if "INDEX/trainId" in f else None
                    first = f.get(f"INDEX/{device}/first")
                    count = f.get(f"INDEX/{device}/count")
                    if first is not None and count is not None:
                        first, count = first[()], count[()]
                        keep = []
                        for t, (a, n) in enumerate(zip(first, count)):
                            if tid is not None and t < len(tid) and tid[t] == 0:
                                continue
                            keep.extend(range(int(a), int(a + n)))
                        keep = [i for i in keep if i < len(v)]   # entries the key lacks
                        v = v[np.array(keep, np.intp)] if keep else v[:0]
                    ctrl = v if ctrl is None else np.concatenate([ctrl, v])
                r = f.get(f"RUN/{device}/{h5key}/value")
                if isinstance(r, h5py.Dataset) and run is None:
                    run = r[()]
        return ctrl, run


def _one_value(device, key, ctrl, run, atol=0.0):
    """SPEC 6.1's "one value": every CONTROL value agreeing (within atol), the
    RUN value only without CONTROL entries; None when there is neither."""
    if ctrl is not None and len(ctrl):
        v = np.asarray(ctrl, np.float64).ravel()
        if v.max() - v.min() > atol:
            seen = sorted(set(v.tolist()))
            raise RefError(f"{device}: {key} changes during the run: {seen}")
        return float(np.median(v)) if atol else float(v[0])
    if run is not None and np.size(run):
        return float(np.asarray(run, np.float64).ravel()[0])
    return None


def gain_setting_from_setupr(setupr, pattern):
    """SPEC 6.1: setupr 0 (pattern < 4) or 32 (pattern 4) -> 0; 8 or 40 -> 1."""
    setupr, pattern = int(setupr), int(pattern)
    if (setupr == 0 and pattern < 4) or (setupr == 32 and pattern == 4):
        return 0
    if (setupr == 8 and pattern < 4) or (setupr == 40 and pattern == 4):
        return 1
    raise RefError(f"cannot derive the gain setting from setupr {setupr} with patternTypeIndex {pattern}")


def fallback_memory_cells(max_cell_id):
    for n in MEMORY_CELL_OPTIONS:
        if n > max_cell_id:
            return n
    raise RefError(f"cellId {max_cell_id} beyond every memory cell count")


def fallback_acq_rate(raws):
    """round(floor(45 / d) / 10, 1), d the smallest difference of distinct
    sorted pulseIds inside a train of non-zero trainId; None without one."""
    d = None
    for r in raws:
        for t, a, n in zip(r["index_trainId"], r["first"], r["count"]):
            if t == 0 or n < 2:
                continue
            p = np.unique(r["pulseId"][int(a):int(a + n)].astype(np.int64))
            if len(p) > 1:
                dd = int(np.diff(p).min())
                d = dd if d is None else min(d, dd)
    if d is None:
        return None
    return round(np.floor(45 / d) / 10, 1)


def run_conditions(run_folder, run, modules, karabo_id_control="SPB_IRU_AGIPD1M1",
                   karabo_da_control="AGIPD1MCTRL00", raws=None, cells=None, sequences=None,
                   overrides=None):
    """The run's conditions and where each came from (SPEC 6.1).

    raws: read_raw() dicts of the files being corrected (for the fallbacks),
    cells: the --cells selection, overrides: {condition: value} of the command
    line.  Returns (conditions, sources): dicts keyed by the condition names
    of CONDITIONS; unknown conditions are absent.  Sources are
    "control:{device}/{key}" (Karabo key, dots), "fallback" or "command line"."""
    ctl = ControlData(run_folder, run, karabo_da_control, sequences)
    dev = f"{karabo_id_control}/MDL/FPGA_COMP"
    hv = f"{karabo_id_control[:-1]}/PSC/HV"
    cond, src = {}, {}

    def control(name, key, value):
        if value is not None:
            cond[name] = value
            src[name] = f"control:{dev}/{key}"

    if ctl:
        c, r = ctl.values(dev, "bunchStructure.nPulses")
        if c is not None and len(c):
            control("Memory cells", "bunchStructure.nPulses", int(np.max(c)))
        elif r is not None and np.size(r):
            control("Memory cells", "bunchStructure.nPulses", int(np.asarray(r).ravel()[0]))
        v = _one_value(dev, "bunchStructure.repetitionRate", *ctl.values(dev, "bunchStructure.repetitionRate"))
        control("Acquisition rate", "bunchStructure.repetitionRate", None if v is None else round(v, 1))
        v = _one_value(dev, "gain", *ctl.values(dev, "gain"))
        if v is not None:
            control("Gain setting", "gain", int(v))
        else:
            su = _one_value(dev, "setupr", *ctl.values(dev, "setupr"))
            pt = _one_value(dev, "patternTypeIndex", *ctl.values(dev, "patternTypeIndex"))
            if su is not None and pt is not None:
                control("Gain setting", "setupr", gain_setting_from_setupr(su, pt))
        v = _one_value(dev, "gainModeIndex", *ctl.values(dev, "gainModeIndex"))
        if v is not None:
            if int(v) not in (0, 1, 2, 3):
                raise RefError(f"{dev}: gainModeIndex {v} is not 0..3")
            control("Gain mode", "gainModeIndex", int(v))
        v = _one_value(dev, "integrationTime", *ctl.values(dev, "integrationTime"))
        if v is not None:
            control("Integration time", "integrationTime", int(v))
        else:
            cond["Integration time"], src["Integration time"] = 12, "fallback"
        for m in sorted(modules):
            key = f"channels.U{m}.measurementSenseVoltage"
            v = _one_value(hv, key, *ctl.values(hv, key), atol=1.0)
            if v is not None and v > 0:
                cond["Sensor Bias Voltage"] = int(v)
                src["Sensor Bias Voltage"] = f"control:{hv}/{key}"
                break
    if "Memory cells" not in cond and raws is not None:
        top = -1
        for r in raws:
            sel, _ = select_frames(r, cells)
            if len(sel):
                top = max(top, int(r["cellId"][sel].max()))
        if top >= 0:
            cond["Memory cells"], src["Memory cells"] = fallback_memory_cells(top), "fallback"
    if "Acquisition rate" not in cond and raws is not None:
        v = fallback_acq_rate(raws)
        if v is not None:
            cond["Acquisition rate"], src["Acquisition rate"] = v, "fallback"
    if "Gain mode" not in cond:
        cond["Gain mode"], src["Gain mode"] = 0, "fallback"
    for k, v in (overrides or {}).items():
        if k not in CONDITIONS:
            raise TypeError(f"unknown condition {k}")
        cond[k], src[k] = v, "command line"
    return cond, src


# ---------------------------------------------------------------------------
# Section 6.2: the calibration-database store and the conditions check
# ---------------------------------------------------------------------------

def to_facility_order(a, dims, where=""):
    """Transpose a stored array whose axes `dims` names into section 3's order
    (fast_scan, slow_scan, cell, then the last axis whatever its name)."""
    if dims is None:
        return a
    names = [d.decode() if isinstance(d, bytes) else str(d) for d in np.asarray(dims).ravel()]
    order = ",".join(names)
    if len(names) != a.ndim or len(set(names)) != len(names):
        raise RefError(f"{where}: dims {order} do not fit an array of {a.ndim} axes")
    want = [n for n in ("fast_scan", "slow_scan", "cell") if n in names]
    other = [i for i, n in enumerate(names) if n not in ("fast_scan", "slow_scan", "cell")]
    if "fast_scan" not in names or "slow_scan" not in names or len(other) > 1 or \
            (len(other) == 1 and "cell" not in names):
        raise RefError(f"{where}: cannot map axis order {order}")
    perm = [names.index(n) for n in want] + other
    return np.transpose(a, perm)


def read_caldb(yaml_path, module, caldb_root=None):
    """Module `module`'s constants named by a calibration_metadata.yml, as
    read_constants() gives them (C order), plus K["_caldb"][name] = dict(pdu,
    path, dataset, ccv_id, creation_time, conditions)."""
    import yaml
    with open(yaml_path) as fp:
        meta = yaml.safe_load(fp)
    root = caldb_root or os.path.dirname(os.path.abspath(yaml_path))
    da = f"AGIPD{module:02d}"
    entry = (meta.get("retrieved-constants") or {}).get(da)
    if not isinstance(entry, dict) or "constants" not in entry:
        raise RefError(f"{yaml_path}: no constants for module {module} ({da})")
    pdu = entry.get("physical-name")
    K, info = {}, {}
    for name, c in entry["constants"].items():
        path = c["path"] if os.path.isabs(c["path"]) else os.path.join(root, c["path"])
        where = f"module {module} {name} {path}"
        if not os.path.exists(path):
            raise RefError(f"{where}: no such file")
        with h5py.File(path, "r") as f:
            g = f.get(c["dataset"])
            if not isinstance(g, h5py.Group) or not isinstance(g.get("data"), h5py.Dataset):
                raise RefError(f"{where}: no dataset {c['dataset']}/data")
            a = g["data"][()]
            a = to_facility_order(a, g["data"].attrs.get("dims"), where)
            conds = {k: g.attrs[k] for k in g.attrs if k in CONDITIONS}
        if a.dtype.kind == "f":
            a = a.astype(F32)
        K[name] = np.ascontiguousarray(np.transpose(a))
        info[name] = dict(pdu=pdu, path=path, dataset=c["dataset"], ccv_id=c.get("ccv_id"),
                          creation_time=c.get("creation-time"), conditions=conds)
    K["_caldb"] = info
    K["_attrs"] = {}
    return K


def constant_conditions(K, name):
    """The conditions constant `name` carries: its store group's attributes, or
    the root attributes of a section 3 file (same for every constant)."""
    if "_caldb" in K:
        return dict(K["_caldb"].get(name, {}).get("conditions", {}))
    return {FILE_CONDITION_ATTRS[k]: v for k, v in K.get("_attrs", {}).items() if k in FILE_CONDITION_ATTRS}


def condition_mismatches(K, cond, used):
    """SPEC 6.2's check: (constant, condition, constant's value, run's value)
    for every disagreement among the constants in `used`."""
    out = []
    for name in used:
        if name not in K:
            continue
        have = constant_conditions(K, name)
        for c in CONDITIONS:
            if c == "Gain mode" and name not in DARK_CONSTANTS:
                continue
            if c not in have or c not in cond:
                continue
            a, b = float(np.asarray(have[c]).ravel()[0]), float(cond[c])
            tol = 5.0 if c == "Sensor Bias Voltage" else 0.05 if c == "Acquisition rate" else 0.0
            if abs(a - b) > tol + 1e-9 * max(abs(a), abs(b)):
                out.append((name, c, a, b))
    return out


def used_constants(opts):
    """The constants a correction with opts uses (and so checks)."""
    u = ["Offset", "BadPixelsDark"]
    if GAIN_MODES[opts.gain_mode] is None:
        u.append("ThresholdsDark")
    if opts.rel_gain:
        u += ["SlopesPC", "BadPixelsPC"]
    if opts.ff_gain:
        u += ["SlopesFF", "BadPixelsFF"]
    if opts.photon_energy is not None and opts.adu_per_kev is None and "SlopesFF" not in u:
        u.append("SlopesFF")
    return u


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_cells(s):
    parts = s.split(":")
    if not 1 <= len(parts) <= 3:
        raise argparse.ArgumentTypeError(f"bad --cells {s}")
    if len(parts) == 1:
        v = int(parts[0])
        return (v, v + 1, 1)
    start = int(parts[0]) if parts[0] else 0
    stop = int(parts[1]) if parts[1] else 1 << 16
    step = int(parts[2]) if len(parts) > 2 and parts[2] else 1
    return (start, stop, step)


def parse_range(s):
    lo, hi = s.split(",")
    return (float(lo), float(hi))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("raw")
    p.add_argument("constants")
    p.add_argument("out", help="output .npz")
    p.add_argument("--karabo-id")
    p.add_argument("--calibration-metadata", help="read the constants from this store (CONSTFILE: -)")
    p.add_argument("--caldb-root")
    p.add_argument("--module", type=int, help="module of RAWFILE (default: from its source name)")
    p.add_argument("--cells", type=parse_cells)
    p.add_argument("--gain-mode", default="adaptive", choices=list(GAIN_MODES))
    p.add_argument("--force-mg-if-below", action="store_true")
    p.add_argument("--force-hg-if-below", action="store_true")
    p.add_argument("--mg-hard-threshold", type=float, default=1000.0)
    p.add_argument("--hg-hard-threshold", type=float, default=1000.0)
    p.add_argument("--common-mode", action="store_true")
    p.add_argument("--cm-dark-range", type=parse_range, default=(-30.0, 30.0))
    p.add_argument("--cm-dark-fraction", type=float, default=0.15)
    p.add_argument("--cm-n-itr", type=int, default=4)
    p.add_argument("--rel-gain", action="store_true")
    p.add_argument("--adjust-mg-baseline", action="store_true")
    p.add_argument("--ff-gain", action="store_true")
    p.add_argument("--photon-energy", type=float)
    p.add_argument("--adu-per-kev", type=float)
    p.add_argument("--round-photons", action="store_true")
    p.add_argument("--rounding-threshold", type=float, default=0.5)
    p.add_argument("--data-dtype", default="float32", choices=list(DTYPES))
    return p


def options_from_args(a):
    return Options(**{k: getattr(a, k) for k in Options.DEFAULTS})


def main(argv=None):
    a = build_parser().parse_args(argv)
    try:
        K = None
        if a.calibration_metadata:
            mod = a.module
            if mod is None:
                with h5py.File(a.raw, "r") as f:
                    mod = int(re.search(r"/DET/(\d+)CH0", find_source(f, a.karabo_id)).group(1))
            K = read_caldb(a.calibration_metadata, mod, a.caldb_root)
        res = correct_file(a.raw, a.constants, options_from_args(a), karabo_id=a.karabo_id, K=K)
    except RefError as e:
        print(f"ref_agipd: {e}", file=sys.stderr)
        return 2
    arrays = {k: v for k, v in res.items() if isinstance(v, np.ndarray)}
    np.savez(a.out, **arrays)
    print(f"{a.out}: {res['data'].shape[0]} frames of {res['source']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
