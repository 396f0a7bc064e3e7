#!/usr/bin/python3
"""Unit tests of the NumPy reference (tests/ref_agipd.py) on tiny cases whose
results are computed by hand here, so that the end-to-end comparisons rest on
a reference we trust."""
import atexit
import os
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import ref_agipd as R  # noqa: E402

F32 = np.float32
TMP = []
atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in TMP])
ROWS, COLS = 512, 128
NAN_BIT, OOR_BIT = 1 << 11, 1 << 12


def consts(C=2, off=(100.0, 200.0, 300.0), t0=1000.0, t1=2000.0):
    """Constants in C order, uniform values."""
    shp = (C, ROWS, COLS)
    K = {
        "Offset": np.stack([np.full(shp, F32(o)) for o in off]),
        "ThresholdsDark": np.stack([np.full(shp, F32(t0)), np.full(shp, F32(t1))]
                                   + [np.zeros(shp, F32)] * 3),
        "BadPixelsDark": np.zeros((3,) + shp, np.uint32),
    }
    pc = np.zeros((10,) + shp, F32)
    pc[0], pc[1], pc[3], pc[4] = F32(30), F32(10), F32(1), F32(4)
    K["SlopesPC"] = pc
    K["BadPixelsPC"] = np.zeros(shp, np.uint32)
    K["SlopesFF"] = np.full(shp, F32(8))
    K["BadPixelsFF"] = np.zeros(shp, np.uint32)
    return K


def frames(n=1, a=0, d=0):
    return np.full((n, ROWS, COLS), a, np.uint16), np.full((n, ROWS, COLS), d, np.uint16)


def run(A, D, K, cells=None, **kw):
    cells = np.zeros(A.shape[0], np.intp) if cells is None else np.asarray(cells)
    return R.correct_frames(A, D, cells, K, R.Options(**kw))


def eq(a, b, what=""):
    if not np.array_equal(a, b):
        raise harness.Failed(f"{what}: got {a!r}, expected {b!r}")


# ---------------------------------------------------------------------------

def test_gain_stage_strict():
    K = consts()
    K["ThresholdsDark"][0, 0, 0, 5] = F32(1000.5)
    K["ThresholdsDark"][0, 0, 0, 6] = np.nan
    K["ThresholdsDark"][1, 0, 0, 6] = np.nan
    K["ThresholdsDark"][0, 0, 0, 7] = F32(3000)    # T1 < T0: second test still applies
    A, D = frames(a=500)
    D[0, 0, :8] = [1000, 1001, 2000, 2001, 0, 1001, 60000, 2500]
    data, gain, mask = run(A, D, K)
    eq(gain[0, 0, :8], np.array([0, 1, 1, 2, 0, 1, 0, 2], np.uint8), "gain")
    eq(data[0, 0, :4], np.array([400, 300, 300, 200], F32), "data")
    eq(data.dtype, np.dtype(F32), "dtype")


def test_fixed_gain():
    K = consts()
    K["ThresholdsDark"][:] = np.nan
    A, D = frames(a=1000, d=65535)
    for mode, g in (("fixed-high", 0), ("fixed-medium", 1), ("fixed-low", 2)):
        data, gain, _ = run(A, D, K, gain_mode=mode, force_mg_if_below=True, force_hg_if_below=True)
        eq(np.unique(gain), np.array([g], np.uint8), mode)
        eq(np.unique(data), np.array([1000 - (100, 200, 300)[g]], F32), mode)
    del K["ThresholdsDark"]
    run(A, D, K, gain_mode="fixed-low")        # thresholds not needed


def test_force_gain():
    K = consts(off=(100, 5000, 6000))
    A, D = frames(a=5000, d=2500)              # all low gain by thresholds
    A[0, 0, :6] = [5999, 6000, 6001, 5400, 5400, 5400]
    D[0, 0, 3:6] = [1500, 1500, 500]           # medium, medium, high
    # M = A - 5000 = [999, 1000, 1001, 400, 400, 400]
    _, g, _ = run(A, D, K, force_mg_if_below=True)
    eq(g[0, 0, :6], np.array([1, 2, 2, 1, 1, 0], np.uint8), "mg only")
    _, g, _ = run(A, D, K, force_hg_if_below=True)
    eq(g[0, 0, :6], np.array([0, 2, 2, 0, 0, 0], np.uint8), "hg only")
    _, g, _ = run(A, D, K, force_mg_if_below=True, force_hg_if_below=True, hg_hard_threshold=500)
    eq(g[0, 0, :6], np.array([1, 2, 2, 0, 0, 0], np.uint8), "both, hg 500")
    _, g, _ = run(A, D, K, force_mg_if_below=True, force_hg_if_below=True,
                  mg_hard_threshold=1000.5, hg_hard_threshold=999.5)
    eq(g[0, 0, :6], np.array([0, 1, 2, 0, 0, 0], np.uint8), "both, 1000.5/999.5")


def test_offset_float32():
    K = consts(off=(0.1, 0, 0))
    A, D = frames(a=1)
    data, _, _ = run(A, D, K)
    eq(data[0, 0, 0], F32(F32(1) - F32(0.1)), "1 - 0.1f")
    K["Offset"][0, 0, 0, 1] = np.nan
    K["Offset"][0, 0, 0, 2] = -np.inf
    K["Offset"][0, 0, 0, 3] = F32(-1e7 + 1)     # X = 1e7: kept
    K["Offset"][0, 0, 0, 4] = F32(-1e7)         # X = 1e7 + 1: out of range
    K["BadPixelsDark"][0, 0, 0, 1] = 5
    data, _, mask = run(A, D, K)
    eq(data[0, 0, 1:5], np.array([0, 0, 1e7, 0], F32), "non-finite / range")
    eq(mask[0, 0, 1:5], np.array([5 | NAN_BIT, NAN_BIT, 0, OOR_BIT], np.uint32), "mask")


def _asic_slices(a):
    return (slice(64 * (a % 8), 64 * (a % 8) + 64), slice(64 * (a // 8), 64 * (a // 8) + 64))


def test_asic_geometry():
    x = np.arange(2 * ROWS * COLS, dtype=F32).reshape(2, ROWS, COLS)
    v = R.asic_view(x)
    for a in (0, 3, 7, 8, 13, 15):
        r, c = _asic_slices(a)
        eq(v[1, a], x[1, r, c].ravel(), f"asic {a}")
    eq(R.asic_unview(v), x, "round trip")


def test_common_mode():
    K = consts(off=(0, 0, 0), t0=1000, t1=2000)
    A, D = frames(a=100)                         # X = 100: out of [-30, 30]
    # ASIC 0: 700 pixels at 20, rest at 45; 2 iterations
    r, c = _asic_slices(0)
    blk = A[0, r, c].reshape(-1)
    blk[:] = 45
    blk[:700] = 20
    A[0, r, c] = blk.reshape(64, 64)
    # ASIC 9: 614 dark pixels at 7 -> too few (614 < 0.15*4096 = 614.4)
    r, c = _asic_slices(9)
    blk = A[0, r, c].reshape(-1)
    blk[:614] = 7
    A[0, r, c] = blk.reshape(64, 64)
    # ASIC 10: 615 dark pixels at 7 (one medium gain pixel at 7 that must not count)
    r, c = _asic_slices(10)
    blk = A[0, r, c].reshape(-1)
    blk[:615] = 7
    A[0, r, c] = blk.reshape(64, 64)
    A[0, r.start + 9, c.start + 40] = 7             # pixel 616 of the ASIC
    D[0, r.start + 9, c.start + 40] = 1500
    data, g, _ = run(A, D, K, common_mode=True, cm_n_itr=2)
    r, c = _asic_slices(0)
    m2 = F32(3396 * 25 / 4096)
    blk = data[0, r, c].reshape(-1)
    eq(blk[:700], np.full(700, F32(F32(0) - m2)), "asic 0 dark")
    eq(blk[700:], np.full(3396, F32(F32(25) - m2)), "asic 0 signal")
    r, c = _asic_slices(9)
    eq(np.unique(data[0, r, c]), np.array([7, 100], F32), "asic 9 untouched")
    r, c = _asic_slices(10)
    hg = g[0, r, c] == 0
    eq(np.unique(data[0, r, c][hg]), np.array([0, 93], F32), "asic 10 high gain")
    eq(np.unique(data[0, r, c][~hg]), np.array([7], F32), "asic 10 medium gain")
    # with the default 4 iterations ASIC 0 still converges to the same
    data4, _, _ = run(A, D, K, common_mode=True)
    r, c = _asic_slices(1)
    eq(np.unique(data4[0, r, c]), np.array([100], F32), "asic 1 untouched")
    # a narrower range / a larger fraction switch it off
    data, _, _ = run(A, D, K, common_mode=True, cm_dark_range=(-5, 5))
    r, c = _asic_slices(10)
    eq(np.unique(data[0, r, c]), np.array([7, 100], F32), "range -5,5")
    data, _, _ = run(A, D, K, common_mode=True, cm_dark_fraction=0.2)
    r, c = _asic_slices(0)
    eq(np.unique(data[0, r, c]), np.array([20, 45], F32), "fraction 0.2")


def test_common_mode_mean_float64():
    K = consts(off=(0, 0, 0))
    A, D = frames(a=100)
    r, c = _asic_slices(4)
    blk = A[0, r, c].reshape(-1)
    blk[:] = np.tile([1, 2, 2], 4096 // 3 + 1)[:4096]
    A[0, r, c] = blk.reshape(64, 64)
    data, _, _ = run(A, D, K, common_mode=True, cm_n_itr=1)
    s = float(blk.astype(np.float64).sum())
    m = F32(s / 4096)
    eq(data[0, r.start, c.start], F32(F32(1) - m), "1 - mean")
    eq(data[0, r.start, c.start + 1], F32(F32(2) - m), "2 - mean")


def test_common_mode_sum_order():
    """SPEC step 4: the float64 sum accumulated one pixel at a time in
    row-major order over the ASIC.  2^-50 everywhere but 16 at (0, 1) and -16
    at (63, 62): row-major the 2^-50 between them are lost (sum 2 * 2^-50);
    column-major, or an exact (pairwise, fsum) sum, keep more.  The expected
    mean is summed here by a plain loop."""
    K = consts(off=(0, 0, 0))
    tiny = F32(2.0 ** -50)
    K["Offset"][0, 0] = F32(1000.25)           # other ASICs: X = -1000.25, no dark pixel
    K["Offset"][0, 0, :64, :64] = -tiny         # X = A - Offset = 2^-50
    K["Offset"][0, 0, 0, 1] = F32(-16)
    K["Offset"][0, 0, 63, 62] = F32(16)
    X = -K["Offset"][0, 0, :64, :64]
    row = 0.0
    for v in X.ravel():                         # row-major, one pixel at a time
        row += float(v)
    col = 0.0
    for v in X.T.ravel():
        col += float(v)
    m_row, m_col = F32(row / 4096), F32(col / 4096)
    if m_row == m_col or m_row == F32(float(np.sum(X, dtype=np.float64)) / 4096):
        raise harness.Failed("the case does not tell the summation orders apart")
    A, D = frames(a=0)
    data, _, _ = run(A, D, K, common_mode=True, cm_n_itr=1)
    eq(data[0, 0, 0], F32(tiny - m_row), "2^-50 - row-major mean")
    eq(data[0, 0, 1], F32(F32(16) - m_row), "16 - row-major mean")
    eq(data[0, 100, 100], F32(-1000.25), "outside the dark range")


def test_missing_badpixels_refused():
    """BadPixelsPC is required with --rel-gain, BadPixelsFF with --ff-gain
    (SPEC section 3), as the program has it."""
    A, D = frames()
    for name, kw in (("BadPixelsPC", dict(rel_gain=True)), ("BadPixelsFF", dict(ff_gain=True))):
        K = consts()
        del K[name]
        run(A, D, K)                             # not needed without the correction
        try:
            run(A, D, K, **kw)
        except R.RefError as exc:
            if name not in str(exc):
                raise harness.Failed(f"refused for another reason: {exc}")
        else:
            raise harness.Failed(f"{kw} without {name} accepted")


def test_median():
    eq(R.nanmedian_f32(np.array([3, 1, np.nan, 2], F32)), F32(2), "odd")
    eq(R.nanmedian_f32(np.array([4, 1, np.nan, 2, 3], F32)), F32(2.5), "even")
    # even count: mean of the two middle values in float32
    a, b = F32(16777216), F32(16777218)
    eq(R.nanmedian_f32(np.array([a, b], F32)), F32(16777216), "float32 (a+b)/2 rounds to even")
    eq(R.nanmedian_f32(np.array([np.nan, np.nan], F32)).dtype, np.dtype(F32), "all nan")
    eq(R.nanmedian_f32(np.array([1, np.inf, np.inf], F32)), F32(np.inf), "inf counts")


def test_rel_gain():
    K = consts(off=(0, 0, 0))
    pc = K["SlopesPC"]
    # cell 0: ml half 30, half 32 plus 2 NaN -> even count, median 31
    ml = pc[0, 0].reshape(-1)
    ml[: ROWS * COLS // 2] = 30
    ml[ROWS * COLS // 2:] = 32
    ml[[0, -1]] = np.nan
    ml[[-2, -3]] = 30            # balance the two values set below in the first half
    pc[0, 0, 0, 1] = 40          # > 1.2*31 = 37.2 -> 31
    pc[0, 0, 0, 2] = F32(37)     # kept
    pc[3, 0, 0, 3] = np.nan      # mh NaN -> 1
    pc[3, 0, 0, 4] = F32(2)      # mh outlier -> 1
    pc[4, 0, 0, 5] = F32(400)    # bh: not a slope, kept
    pc[1, 0, 0, 6] = np.nan      # bl NaN -> 10
    K["BadPixelsPC"][0, 0, 7] = 64
    A, D = frames(a=1000, d=1500)        # all medium gain, X = 1000
    D[0, 0, 8] = 2500                     # low
    D[0, 0, 9] = 0                        # high
    data, g, mask = run(A, D, K, rel_gain=True)

    def rel1(ml_, mh_):
        return F32(ml_) / F32(mh_)
    x = F32(1000)
    eq(data[0, 0, 0], x * rel1(31, 1), "NaN ml -> median")
    eq(data[0, 0, 1], x * rel1(31, 1), "ml outlier -> median")
    eq(data[0, 0, 2], x * rel1(37, 1), "ml inside kept")
    eq(data[0, 0, 3], x * rel1(30, 1), "mh NaN")
    eq(data[0, 0, 4], x * rel1(30, 1), "mh outlier")
    eq(data[0, 0, 8], x * ((F32(4.48) * F32(30)) / F32(1)), "low gain 4.48*ml/mh")
    eq(data[0, 0, 9], x, "high gain x1")
    eq(mask[0, 0, 7], np.uint32(64), "BadPixelsPC")
    data, _, _ = run(A, D, K, rel_gain=True, adjust_mg_baseline=True)
    eq(data[0, 0, 5], x * rel1(30, 1) + (F32(10) - (F32(400) * F32(30)) / F32(1)), "baseline bh")
    eq(data[0, 0, 6], x * rel1(30, 1) + (F32(10) - (F32(4) * F32(30)) / F32(1)), "baseline bl NaN")
    eq(data[0, 0, 8], x * ((F32(4.48) * F32(30)) / F32(1)), "no baseline in low gain")
    eq(data[0, 0, 9], x, "no baseline in high gain")
    # adjust-mg-baseline has no effect without rel-gain
    d2, _, _ = run(A, D, K, adjust_mg_baseline=True)
    eq(d2[0, 0, 5], x, "baseline alone")


def test_rel_gain_rounding_order():
    """4.48*ml/mh is (4.48f*ml)/mh in float32, not 4.48*(ml/mh)."""
    K = consts(off=(0, 0, 0))
    K["SlopesPC"][0] = F32(31.7)
    K["SlopesPC"][3] = F32(0.83)
    A, D = frames(a=1234, d=2500)
    data, _, _ = run(A, D, K, rel_gain=True)
    expect = F32(1234) * ((F32(4.48) * F32(31.7)) / F32(0.83))
    eq(data[0, 0, 0], expect, "low gain")
    eq(data.dtype, np.dtype(F32), "dtype")


def test_flat_field():
    for cells_axis in (True, False):
        K = consts(off=(0, 0, 0))
        ff = np.full((2, ROWS, COLS) if cells_axis else (ROWS, COLS), F32(8))
        ff[..., 0, 1] = F32(6.4)       # exactly 0.8*8: kept
        ff[..., 0, 2] = np.nextafter(F32(6.4), F32(0))   # just below: -> 8
        ff[..., 0, 3] = np.nan
        ff[..., 0, 4] = F32(9)
        if cells_axis:
            ff[1] = F32(10)
            ff[1, 0, 4] = F32(11)
        K["SlopesFF"] = ff
        K["BadPixelsFF"] = np.zeros(ff.shape, np.uint32)
        K["BadPixelsFF"][..., 0, 5] = 256
        A, D = frames(n=2, a=1000)
        data, _, mask = run(A, D, K, cells=[0, 1], ff_gain=True)
        x = F32(1000)
        eq(data[0, 0, :5], np.array([x, (x * F32(8)) / F32(6.4), x, x, (x * F32(8)) / F32(9)], F32),
           f"ff cell 0 ({cells_axis})")
        if cells_axis:
            eq(data[1, 0, 4], (x * F32(10)) / F32(11), "ff cell 1")
            eq(data[1, 0, 1], x, "cell 1: 0.64*median replaced")
        else:
            eq(data[1], data[0], "no cell axis: same for every cell")
        eq(mask[:, 0, 5], np.array([256, 256], np.uint32), "BadPixelsFF")


def test_photon_conversion():
    K = consts(off=(0, 0, 0))
    K["SlopesFF"][0] = F32(7)
    K["SlopesFF"][0, 0, :3] = np.nan               # ignored for the median
    K["SlopesFF"][1] = F32(7.5)
    A, D = frames(n=2, a=1000)
    data, _, _ = run(A, D, K, cells=[0, 1], photon_energy=9.3)
    eq(data[0, 0, 0], F32(1000) / (F32(7) * F32(9.3)), "median of cell 0")
    eq(data[1, 0, 0], F32(1000) / (F32(7.5) * F32(9.3)), "median of cell 1")
    data, _, _ = run(A, D, K, cells=[0, 1], photon_energy=9.3, adu_per_kev=6.5)
    eq(data[1, 0, 0], F32(1000) / (F32(6.5) * F32(9.3)), "--adu-per-kev")
    del K["SlopesFF"]
    try:
        run(A, D, K, photon_energy=9.3)
    except R.RefError:
        pass
    else:
        raise harness.Failed("photon energy without SlopesFF nor adu-per-kev accepted")
    run(A, D, K, photon_energy=9.3, adu_per_kev=7)


def test_round_photons():
    K = consts(off=(0, 0, 0))
    A, D = frames(a=0)
    xs = [0, 0.49, 0.5, 0.51, 1.5, 2.49, -0.4, -0.6, -3, 100.5]
    K["Offset"][0, 0, 0, :len(xs)] = -np.array(xs, F32)
    data, _, mask = run(A, D, K, photon_energy=1, adu_per_kev=1, round_photons=True)
    got = data[0, 0, :len(xs)]
    eq(got, np.array([0, 0, 1, 1, 2, 2, 0, 0, 0, 101], F32), "rounded")
    eq(mask[0, 0, :len(xs)], np.array([0] * 7 + [OOR_BIT, OOR_BIT, 0], np.uint32), "negative flagged")
    data, _, _ = run(A, D, K, photon_energy=1, adu_per_kev=1, round_photons=True, rounding_threshold=0.25)
    eq(data[0, 0, :len(xs)], np.array([0, 1, 1, 1, 2, 3, 0, 0, 0, 101], F32), "threshold 0.25")
    # -inf becomes 0 by the rounding step (flag 12), +inf stays non-finite (flag 11)
    K["Offset"][0, 0, 1, 0] = np.inf
    K["Offset"][0, 0, 1, 1] = -np.inf
    data, _, mask = run(A, D, K, photon_energy=1, adu_per_kev=1, round_photons=True)
    eq(data[0, 1, :2], np.array([0, 0], F32), "inf")
    eq(mask[0, 1, :2], np.array([OOR_BIT, NAN_BIT], np.uint32), "inf flags")


def test_output_types():
    K = consts(off=(0, 0, 0))
    A, D = frames(a=0)
    xs = np.array([65504, np.nextafter(F32(65504), F32(np.inf)), 70000, -70000, 2049, 2051,
                   1e-8, 1.5, 1e7, 1.1e7], F32)
    K["Offset"][0, 0, 0, :len(xs)] = -xs
    data, _, mask = run(A, D, K, data_dtype="float16")
    eq(data.dtype, np.dtype(np.float16), "dtype")
    eq(data[0, 0, :len(xs)].astype(F32),
       np.array([65504, 65504, 65504, -65504, 2048, 2052, 0, 1.5, 65504, 0], F32), "float16")
    eq(mask[0, 0, :len(xs)],
       np.array([0, OOR_BIT, OOR_BIT, OOR_BIT, 0, 0, 0, 0, OOR_BIT, OOR_BIT], np.uint32), "f16 mask")
    xs = np.array([0, 1, 32766.6, 32767, 40000, 3e6], F32)
    K["Offset"][0, 0, 0, :len(xs)] = -xs
    data, _, mask = run(A, D, K, data_dtype="int16", photon_energy=1, adu_per_kev=1, round_photons=True)
    eq(data.dtype, np.dtype(np.int16), "int16")
    eq(data[0, 0, :len(xs)], np.array([0, 1, 32767, 32767, 32767, 32767], np.int16), "int16 values")
    eq(mask[0, 0, :len(xs)], np.array([0, 0, 0, 0, OOR_BIT, OOR_BIT], np.uint32), "int16 mask")
    for bad in (dict(data_dtype="int16"), dict(round_photons=True)):
        try:
            run(A, D, K, **bad)
        except R.RefError:
            pass
        else:
            raise harness.Failed(f"{bad} accepted")


def test_mask_composition():
    K = consts(off=(0, 0, 0))
    K["BadPixelsDark"][0, 0, 0, 0] = 1
    K["BadPixelsDark"][1, 0, 0, 0] = 2
    K["BadPixelsDark"][2, 0, 0, 0] = 4
    K["BadPixelsDark"][1, 1, 0, 0] = 1 << 23     # other cell
    K["BadPixelsPC"][0, 0, 0] = 1 << 5
    K["BadPixelsFF"][0, 0, 0] = 1 << 8
    A, D = frames(n=4, a=10)
    D[:, 0, 0] = [0, 1500, 2500, 1500]
    cells = [0, 0, 0, 1]
    _, _, m = run(A, D, K, cells=cells)
    eq(m[:, 0, 0], np.array([1, 2, 4, 1 << 23], np.uint32), "dark per gain/cell")
    _, _, m = run(A, D, K, cells=cells, rel_gain=True, ff_gain=True)
    eq(m[:, 0, 0], np.array([1 | 32 | 256, 2 | 32 | 256, 4 | 32 | 256, 1 << 23], np.uint32), "all")


def test_cells_too_high():
    K = consts(C=2)
    A, D = frames(n=2)
    try:
        run(A, D, K, cells=[0, 2])
    except R.RefError:
        pass
    else:
        raise harness.Failed("cellId >= C accepted")


def _write_tiny_raw(path, tid, first, count, cells, shape_n1):
    n = len(cells)
    src = "SPB_DET_AGIPD1M-1/DET/3CH0:xtdf"
    with h5py.File(path, "w") as f:
        img = f.create_group(f"INSTRUMENT/{src}/image")
        data = np.zeros((n, 2, ROWS, COLS), np.uint16)
        data[:, 0] = np.arange(n, dtype=np.uint16)[:, None, None] + 500
        img["data"] = data
        sh = (lambda a: a[:, None]) if shape_n1 else (lambda a: a)
        img["cellId"] = sh(np.array(cells, np.uint16))
        img["pulseId"] = sh(np.arange(n, dtype=np.uint64))
        img["trainId"] = sh(np.full(n, 7, np.uint64))
        img["status"] = sh(np.zeros(n, np.uint16))
        img["length"] = sh(np.arange(n, dtype=np.uint32))
        f["INDEX/trainId"] = np.array(tid, np.uint64)
        f["INDEX/timestamp"] = np.arange(len(tid), dtype=np.uint64)
        f["INDEX/flag"] = np.ones(len(tid), np.int32)
        f[f"INDEX/{src}/image/first"] = np.array(first, np.uint64)
        f[f"INDEX/{src}/image/count"] = np.array(count, np.uint64)
        # an EXDF 1.0 file (without dataFormatVersion it would be 0.5, which
        # has no timestamp or flag)
        f["METADATA/dataFormatVersion"] = [b"1.0"]


def test_frame_selection_and_index():
    d = harness.tmpdir()
    TMP.append(d)
    path = os.path.join(d, "raw.h5")
    # trains: 5 (frames 0-2), 0 (frames 3-4), 6 (count 0), 7 (frames 6-8), padding
    # frame 5 belongs to no train
    tid = [5, 0, 6, 7, 0, 0]
    first = [0, 3, 5, 6, 0, 0]
    count = [3, 2, 0, 3, 0, 0]
    cells = [4, 1, 2, 9, 9, 3, 1, 2, 7]
    for shape_n1 in (True, False):
        _write_tiny_raw(path, tid, first, count, cells, shape_n1)
        raw = R.read_raw(path)
        sel, idx = R.select_frames(raw)
        eq(sel, np.array([0, 1, 2, 6, 7, 8]), "kept frames")
        eq(idx["trainId"], np.array([5, 6, 7], np.uint64), "trains")
        eq(idx["first"], np.array([0, 3, 3], np.uint64), "first")
        eq(idx["count"], np.array([3, 0, 3], np.uint64), "count")
        eq(idx["timestamp"], np.array([0, 2, 3], np.uint64), "timestamp")
        sel, idx = R.select_frames(raw, (1, 3, 1))
        eq(sel, np.array([1, 2, 6, 7]), "cells 1:3")
        eq(idx["first"], np.array([0, 2, 2], np.uint64), "first 1:3")
        eq(idx["count"], np.array([2, 0, 2], np.uint64), "count 1:3")
        sel, idx = R.select_frames(raw, (7, 8, 1))
        eq(sel, np.array([8]), "cells 7")
        eq(idx["first"], np.array([0, 0, 0], np.uint64), "first 7")
        eq(idx["count"], np.array([0, 0, 1], np.uint64), "count 7")
        sel, idx = R.select_frames(raw, (0, 10, 4))
        eq(sel, np.array([0]), "cells 0:10:4")
    eq(R.parse_cells("2:14:3"), (2, 14, 3), "parse")


def test_constants_transpose_and_float64():
    d = harness.tmpdir()
    TMP.append(d)
    path = os.path.join(d, "AGIPD03.h5")
    rng = np.random.default_rng(1)
    C = 3
    off = rng.normal(0, 1000, (128, 512, C, 3))          # float64, facility order
    bp = rng.integers(0, 2 ** 32, (128, 512, C, 3), dtype=np.uint32)
    ff = rng.normal(7, 1, (128, 512))
    with h5py.File(path, "w") as f:
        f["Offset"] = off
        f["BadPixelsDark"] = bp
        f["SlopesFF"] = ff.astype(F32)
        f.attrs["memory_cells"] = C
    K = R.read_constants(path)
    eq(K["Offset"].shape, (3, C, 512, 128), "shape")
    eq(K["Offset"].dtype, np.dtype(F32), "float32")
    for (col, row, c, g) in [(0, 0, 0, 0), (127, 511, 2, 2), (5, 300, 1, 1)]:
        eq(K["Offset"][g, c, row, col], F32(off[col, row, c, g]), "value")
        eq(K["BadPixelsDark"][g, c, row, col], bp[col, row, c, g], "bp")
    eq(K["SlopesFF"].shape, (512, 128), "ff shape")
    eq(K["SlopesFF"][10, 3], F32(ff[3, 10]), "ff value")


def test_correct_file_cli():
    """End to end through the reference on a generated file (smoke test)."""
    import gen_run
    d = harness.tmpdir()
    try:
        info = gen_run.generate(d, modules=(1,))
        fi = info["files"][0]
        out = os.path.join(d, "o.npz")
        rc = R.main([fi["raw"], fi["const"], out, "--cells", "0:20:2", "--rel-gain", "--ff-gain",
                     "--photon-energy", "9.3", "--round-photons", "--data-dtype", "int16"])
        eq(rc, 0, "rc")
        z = np.load(out)
        eq(z["data"].dtype, np.dtype(np.int16), "dtype")
        eq(set(z["cellId"] % 2), {0}, "even cells")
        eq(int(z["index_count"].sum()), z["data"].shape[0], "index sums to n")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_generator_has_its_edge_cases():
    """gen_run.py really produces the edge values the e2e tests rely on."""
    import gen_run
    d = harness.tmpdir()
    TMP.append(d)
    info = gen_run.generate(d, modules=(0, 1))
    need = {}

    def hit(name, cond):
        need[name] = need.get(name, False) or bool(cond)

    for fi in info["files"]:
        raw = R.read_raw(fi["raw"])
        K = R.read_constants(fi["const"])
        sel, idx = R.select_frames(raw)
        hit("trainId 0 entry owning frames", np.any((raw["index_trainId"] == 0) & (raw["count"] > 0)))
        hit("INDEX padding", raw["index_trainId"][-1] == 0)
        hit("count 0 train", np.any((raw["index_trainId"] != 0) & (raw["count"] == 0)))
        hit("frame of no train", len(sel) < raw["analog"].shape[0] - sum(
            int(c) for t, c in zip(raw["index_trainId"], raw["count"]) if t == 0))
        hit("cellIds out of order", np.any(np.diff(raw["cellId"][sel].astype(int)) < 0))
        with h5py.File(fi["raw"], "r") as f:
            img = f[f"INSTRUMENT/{raw['source']}/image"]
            hit("(N, 1) cellId", img["cellId"].ndim == 2)
            hit("(N,) cellId", img["cellId"].ndim == 1)
            hit("chunked data", img["data"].chunks is not None)
            hit("contiguous data", img["data"].chunks is None)
        with h5py.File(fi["const"], "r") as f:
            hit("float32 constants", f["Offset"].dtype == np.float32)
            hit("float64 constants", f["Offset"].dtype == np.float64)
            hit("SlopesFF with cells", f["SlopesFF"].ndim == 3)
            hit("SlopesFF without cells", f["SlopesFF"].ndim == 2)
        cells = raw["cellId"][sel].astype(np.intp)
        A = raw["analog"][sel].astype(F32)
        D = raw["digital"][sel].astype(F32)
        T0, T1 = K["ThresholdsDark"][0][cells], K["ThresholdsDark"][1][cells]
        hit("D == ThresholdsDark[0]", np.any(D == T0))
        hit("D == ThresholdsDark[1]", np.any(D == T1))
        hit("NaN threshold", np.any(np.isnan(T0)))
        M = A - K["Offset"][1][cells]
        res = R.correct_file(fi["raw"], fi["const"], R.Options(), K=K)
        g = res["gain"]
        hit("low gain with M == 1000", np.any((g == 2) & (M == 1000)))
        hit("low gain with M < 1000", np.any((g == 2) & (M < 1000)))
        hit("medium gain with M < 1000", np.any((g == 1) & (M < 1000)))
        hit("all gain stages", set(np.unique(g)) == {0, 1, 2})
        m = res["mask"]
        hit("VALUE_IS_NAN", np.any(m & NAN_BIT))
        hit("VALUE_OUT_OF_RANGE (|X| > 1e7)", np.any(m & OOR_BIT))
        hit("X == 1e7 kept", np.any(res["data"] == F32(1e7)))
        r16 = R.correct_file(fi["raw"], fi["const"], R.Options(data_dtype="float16"), K=K)
        top = np.abs(r16["data"].astype(F32)) == 65504
        hit("float16 65504 unflagged", np.any(top & ((r16["mask"] & OOR_BIT) == 0)))
        hit("float16 clamped", np.any(top & ((r16["mask"] & OOR_BIT) != 0) & ((res["mask"] & OOR_BIT) == 0)))
        full = R.Options(rel_gain=True, adjust_mg_baseline=True, ff_gain=True, photon_energy=9.3,
                         round_photons=True, data_dtype="int16")
        ri = R.correct_file(fi["raw"], fi["const"], full, K=K)
        hit("int16 clamped", np.any(ri["data"] == 32767))
        hit("negative photons zeroed", np.any((ri["data"] == 0) & ((ri["mask"] & OOR_BIT) != 0)))
        cm = R.correct_file(fi["raw"], fi["const"], R.Options(common_mode=True), K=K)
        changed = R.asic_view(cm["data"] != res["data"]).any(-1)
        hit("ASIC with common mode applied", changed.any())
        hit("ASIC without enough dark pixels", (~changed).any())
        for a, k in gen_run.CM_ASICS.items():
            r, c = gen_run.asic_region(a)
            X = res["data"][:, r, c]
            dark = ((res["gain"][:, r, c] == 0) & (X >= -30) & (X <= 30)).sum(axis=(1, 2))
            hit(f"ASIC {a} with exactly {k} dark pixels", np.all(dark == k))
            hit(f"ASIC {a} medium gain pixels in the dark range",
                np.all(((res["gain"][:, r, c] == 1) & (np.abs(X) <= 30)).sum(axis=(1, 2)) > 100))
            hit(f"ASIC {a} corrected iff {k} >= 615", np.all(changed[:, a] == (k >= 615)))
        pc = K["SlopesPC"]
        for k, name in ((0, "ml"), (3, "mh")):
            med = R.per_cell_median(pc[k])
            hit(f"{name} NaN", np.isnan(pc[k]).any())
            hit(f"{name} == 0.8*median", np.any(pc[k] == (F32(0.8) * med)[:, None, None]))
            hit(f"{name} just above 1.2*median",
                np.any(pc[k] == np.nextafter(F32(1.2) * med, F32(np.inf))[:, None, None]))
        hit("bl inf", np.isinf(pc[1]).any())
        ff = K["SlopesFF"]
        hit("SlopesFF NaN", np.isnan(ff).any())
    missing = [k for k, v in need.items() if not v]
    if missing:
        raise harness.Failed(f"generated run lacks: {missing}")


# ---------------------------------------------------------------------------
# Section 6: conditions from control data, the calibration-database store
# ---------------------------------------------------------------------------

def raises(fn, *words):
    try:
        fn()
    except R.RefError as e:
        for w in words:
            if w not in str(e):
                raise harness.Failed(f"message {e!r} does not name {w!r}")
        return str(e)
    raise harness.Failed(f"no RefError (wanted {words})")


def test_dims_to_facility_order():
    a = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)       # fast, slow, cell, gain
    for order in (("fast_scan", "slow_scan", "cell", "gain"), ("cell", "slow_scan", "fast_scan", "gain"),
                  ("gain", "cell", "fast_scan", "slow_scan"), ("slow_scan", "gain", "cell", "fast_scan")):
        perm = [("fast_scan", "slow_scan", "cell", "gain").index(n) for n in order]
        stored = np.transpose(a, perm)
        dims = np.array([n.encode() for n in order])          # as h5py gives fixed-length strings
        eq(R.to_facility_order(stored, dims).tolist(), a.tolist(), f"order {order}")
        eq(R.to_facility_order(stored, list(order)).tolist(), a.tolist(), f"order {order} (str)")
    # the last axis may have any name; 3-D and 2-D arrays
    eq(R.to_facility_order(np.transpose(a, (3, 2, 0, 1)), ["parameter", "cell", "fast_scan", "slow_scan"]).tolist(),
       a.tolist(), "named last axis")
    b = a[..., 0]
    eq(R.to_facility_order(np.transpose(b, (2, 0, 1)), ["cell", "fast_scan", "slow_scan"]).tolist(), b.tolist(), "3-D")
    c = b[..., 0]
    eq(R.to_facility_order(c.T, ["slow_scan", "fast_scan"]).tolist(), c.tolist(), "2-D")
    eq(R.to_facility_order(a, None) is a, True, "no dims: as stored")
    for bad in (["cell", "cell", "fast_scan", "gain"], ["fast_scan", "slow_scan", "x", "y"],
                ["module", "slow_scan", "cell", "gain"], ["fast_scan", "slow_scan", "cell"]):
        raises(lambda: R.to_facility_order(a, bad), ",".join(bad))


def _control_file(path, dev_keys, trains=(11, 12, 13)):
    """A control file: dev_keys {device: {key: (control values or None, run value or None)}}."""
    T = len(trains)
    with h5py.File(path, "w") as f:
        f["INDEX/trainId"] = np.array(trains, np.uint64)
        for dev, keys in dev_keys.items():
            f[f"INDEX/{dev}/first"] = np.arange(T, dtype=np.uint64)
            f[f"INDEX/{dev}/count"] = np.ones(T, np.uint64)
            for key, (ctrl, run) in keys.items():
                k = key.replace(".", "/")
                if ctrl is not None:
                    f[f"CONTROL/{dev}/{k}/value"] = np.asarray(ctrl)
                    f[f"CONTROL/{dev}/{k}/timestamp"] = np.zeros(len(ctrl), np.uint64)
                if run is not None:
                    f[f"RUN/{dev}/{k}/value"] = np.asarray([run])
                    f[f"RUN/{dev}/{k}/timestamp"] = np.zeros(1, np.uint64)


def test_conditions_from_control_keys():
    d = harness.tmpdir()
    TMP.append(d)
    dev, hv = "SPB_IRU_AGIPD1M1/MDL/FPGA_COMP", "SPB_IRU_AGIPD1M/PSC/HV"
    keys = {dev: {"bunchStructure.nPulses": (np.zeros(0, np.uint32), 64),          # no CONTROL entries: RUN
                  "bunchStructure.repetitionRate": (np.array([4.5, 4.5, 4.5]), 1.1),  # CONTROL wins over RUN
                  "setupr": (np.array([32, 32, 32], np.uint8), 32),
                  "patternTypeIndex": (np.array([4, 4, 4], np.int32), 4),
                  "gainModeIndex": (np.array([3, 3, 3], np.int32), 0)},
            hv: {"channels.U0.measurementSenseVoltage": (np.array([0.0, 0.0, 0.0], np.float32), 0.0),
                 "channels.U2.measurementSenseVoltage": (np.array([199.2, 199.9, 199.6], np.float32), 500),
                 "channels.U3.measurementSenseVoltage": (np.array([300.0, 300.0, 300.0], np.float32), 300)}}
    _control_file(os.path.join(d, "RAW-R0005-AGIPD1MCTRL00-S00000.h5"), keys)
    cond, src = R.run_conditions(d, 5, [3, 2, 0])
    eq(cond, {"Memory cells": 64, "Acquisition rate": 4.5, "Gain setting": 0, "Gain mode": 3,
              "Integration time": 12, "Sensor Bias Voltage": 199}, "conditions")
    eq(src["Integration time"], "fallback", "integration time without its key")
    eq(src["Gain setting"], f"control:{dev}/setupr", "gain setting source")
    eq(src["Sensor Bias Voltage"], f"control:{hv}/channels.U2.measurementSenseVoltage", "first module > 0")
    cond, src = R.run_conditions(d, 5, [3])
    eq(cond["Sensor Bias Voltage"], 300, "module 3 alone")
    cond, src = R.run_conditions(d, 5, [0])
    eq("Sensor Bias Voltage" in cond, False, "bias of a module at 0 V")
    # a second sequence whose nPulses is larger: the largest value of the run
    keys2 = {dev: dict(keys[dev], **{"bunchStructure.nPulses": (np.array([64, 128, 64], np.uint32), 64)}),
             hv: keys[hv]}
    _control_file(os.path.join(d, "RAW-R0005-AGIPD1MCTRL00-S00001.h5"), keys2, trains=(14, 15, 16))
    eq(R.run_conditions(d, 5, [3])[0]["Memory cells"], 128, "largest nPulses")
    eq(R.run_conditions(d, 5, [3], sequences=[0])[0]["Memory cells"], 64, "sequence 0 only")
    # a key that changes, beyond 1 V for the bias
    for key, vals, words in (("gainModeIndex", np.array([3, 3, 2], np.int32), ("gainModeIndex", "[2.0, 3.0]")),
                             ("setupr", np.array([32, 40, 32], np.uint8), ("setupr", dev)),
                             ("bunchStructure.repetitionRate", np.array([4.5, 2.2, 4.5]), ("repetitionRate",))):
        k3 = {dev: dict(keys[dev], **{key: (vals, vals[0])}), hv: keys[hv]}
        _control_file(os.path.join(d, "RAW-R0006-AGIPD1MCTRL00-S00000.h5"), k3)
        raises(lambda: R.run_conditions(d, 6, [3]), *words)
    for volts, ok in (([300.0, 300.9, 300.2], True), ([300.0, 301.5, 300.0], False)):
        k4 = {dev: keys[dev], hv: {"channels.U3.measurementSenseVoltage": (np.array(volts, np.float32), 300)}}
        _control_file(os.path.join(d, "RAW-R0007-AGIPD1MCTRL00-S00000.h5"), k4)
        if ok:
            eq(R.run_conditions(d, 7, [3])[0]["Sensor Bias Voltage"], 300, "within 1 V")
        else:
            raises(lambda: R.run_conditions(d, 7, [3]), "channels.U3.measurementSenseVoltage", hv)
    # setupr / pattern pairs of SPEC 6.1
    for su, pt, g in ((0, 0, 0), (0, 3, 0), (32, 4, 0), (8, 2, 1), (40, 4, 1)):
        eq(R.gain_setting_from_setupr(su, pt), g, f"setupr {su} pattern {pt}")
    for su, pt in ((32, 2), (8, 4), (0, 4), (40, 5), (16, 1)):
        raises(lambda: R.gain_setting_from_setupr(su, pt), f"setupr {su}", f"patternTypeIndex {pt}")


def test_fallback_conditions():
    eq([R.fallback_memory_cells(c) for c in (0, 3, 4, 31, 32, 75, 76, 201, 202, 351)],
       [4, 4, 32, 32, 64, 76, 128, 202, 250, 352], "memory cells")
    raises(lambda: R.fallback_memory_cells(352), "352")
    raw = {"index_trainId": np.array([5, 0, 6], np.uint64), "first": np.array([0, 3, 5], np.uint64),
           "count": np.array([3, 2, 3], np.uint64),
           "pulseId": np.array([0, 4, 8, 0, 1, 10, 18, 26], np.uint64)}   # train 0's spacing 1 is ignored
    eq(R.fallback_acq_rate([raw]), 1.1, "d = 4")
    for dd, rate in ((1, 4.5), (2, 2.2), (3, 1.5), (4, 1.1), (9, 0.5)):
        r = dict(raw, pulseId=np.array([0, dd, 2 * dd, 0, 1, 0, 3 * dd, 9 * dd], np.uint64))
        eq(R.fallback_acq_rate([r]), rate, f"d = {dd}")
    eq(R.fallback_acq_rate([dict(raw, count=np.array([1, 2, 1], np.uint64))]), None, "one pulse per train")


def test_read_caldb_store():
    d = harness.tmpdir()
    TMP.append(d)
    rng = np.random.default_rng(3)
    off = rng.normal(5000, 10, (128, 512, 2, 3))      # facility order
    ff = rng.normal(7, 1, (128, 512)).astype(F32)
    os.makedirs(os.path.join(d, "store", "a"))
    with h5py.File(os.path.join(d, "store", "a", "off.h5"), "w") as f:
        g = f.create_group("PDU_X/Offset/0")
        g["data"] = np.transpose(off, (2, 3, 1, 0))
        g["data"].attrs["dims"] = ["cell", "gain", "slow_scan", "fast_scan"]
        g.attrs["Memory cells"] = 2.0
        g.attrs["Gain mode"] = 0.0
    with h5py.File(os.path.join(d, "ff.h5"), "w") as f:
        f["PDU_X/SlopesFF/0/data"] = ff                 # no dims: section 3's order
    yml = os.path.join(d, "store", "calibration_metadata.yml")
    with open(yml, "w") as fp:
        fp.write(f"""calibration-configurations:
  karabo-id: X
retrieved-constants:
  AGIPD03:
    physical-name: PDU_X
    constants:
      Offset: {{path: a/off.h5, dataset: /PDU_X/Offset/0, ccv_id: 7, creation-time: '2024-01-01T00:00:00+00:00'}}
      SlopesFF: {{path: {os.path.join(d, 'ff.h5')}, dataset: /PDU_X/SlopesFF/0, ccv_id: 8}}
  time-summary:
    SAll: {{begin-at: x}}
""")
    try:
        import yaml  # noqa: F401
    except ImportError:
        raise harness.Skip("python3-yaml not installed")
    K = R.read_caldb(yml, 3)
    eq(K["Offset"].dtype, np.dtype(F32), "float32")
    eq(K["Offset"].tobytes(), np.ascontiguousarray(np.transpose(off.astype(F32))).tobytes(), "Offset values")
    eq(K["SlopesFF"].tobytes(), np.ascontiguousarray(ff.T).tobytes(), "absolute path, no dims")
    eq(K["_caldb"]["Offset"]["ccv_id"], 7, "ccv_id")
    eq(K["_caldb"]["Offset"]["pdu"], "PDU_X", "pdu")
    eq(R.constant_conditions(K, "Offset"), {"Memory cells": 2.0, "Gain mode": 0.0}, "conditions")
    eq(R.condition_mismatches(K, {"Memory cells": 2, "Gain mode": 1}, ["Offset", "SlopesFF"]),
       [("Offset", "Gain mode", 0.0, 1.0)], "mismatch")
    raises(lambda: R.read_caldb(yml, 0), "AGIPD00")
    other = os.path.join(d, "elsewhere")
    os.makedirs(other)
    raises(lambda: R.read_caldb(yml, 3, caldb_root=other), "Offset", "no such file")
    with h5py.File(os.path.join(d, "store", "a", "off.h5"), "a") as f:
        f["PDU_X/Offset/0/data"].attrs["dims"] = ["cell", "gain", "slow_scan", "module"]
    raises(lambda: R.read_caldb(yml, 3), "Offset", "cell,gain,slow_scan,module")


harness.main(globals())
