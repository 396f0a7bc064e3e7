#!/usr/bin/python3
"""End-to-end tests: bin/agipd-correct (under mpirun, 1-3 ranks) against the
independent NumPy reference tests/ref_agipd.py, on small runs written by
tests/gen_run.py (edge values) and by bin/agipd-simulate (realistic physics,
with the truth photons).

Every output file is compared with the reference: data bit-exact on the stored
dtype, gain and mask exact, per-frame arrays, INDEX, METADATA; and its storage
(chunks, filters) is checked.  Set AGIPD_KEEP=1 to keep the temporary folders.
"""
import glob
import hashlib
import os
import re
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import gen_run  # noqa: E402
import ref_agipd as R  # noqa: E402

ROWS, COLS = 512, 128
TIMEOUT = 120
_CACHE = {}
_REF = {}


def tmpdir():
    d = harness.tmpdir()
    return d


def need_correct():
    if not os.access(harness.CORRECT, os.X_OK):
        raise harness.Skip("bin/agipd-correct not built")


def need_simulate():
    need_correct()
    if not os.access(harness.SIMULATE, os.X_OK):
        raise harness.Skip("bin/agipd-simulate not built")


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

def main_run():
    """The gen_run.py run: modules 0 (2 sequences) and 1, edge values."""
    if "main" not in _CACHE:
        _CACHE["main"] = gen_run.generate(tmpdir(), run=1, modules=(0, 1))
    return _CACHE["main"]


def sim_run(edge=False):
    """A run written by bin/agipd-simulate (modules 0-1, 3 trains, 16 cells);
    edge=True adds its --edge-cases all, two sequences and 20-cell constants."""
    need_simulate()
    key = "sim-edge" if edge else "sim"
    if key not in _CACHE:
        d = tmpdir()
        cmd = [harness.SIMULATE, "--out-folder", d, "--modules", "0-1", "--trains", "3",
               "--cells", "16"]
        if edge:
            cmd += ["--edge-cases", "all", "--sequences", "2", "--constants-cells", "20", "--seed", "5"]
        harness.run(cmd, timeout=TIMEOUT)
        files = []
        for path in sorted(glob.glob(os.path.join(d, "r0001", "RAW-R0001-AGIPD[0-9][0-9]-S*.h5"))):
            m = re.search(r"AGIPD(\d+)-S(\d+)\.h5$", path)
            mod, seq = int(m.group(1)), int(m.group(2))
            files.append({"module": mod, "seq": seq, "raw": path,
                          "const": os.path.join(d, "constants", f"AGIPD{mod:02d}.h5")})
        if not files:
            raise harness.Failed(f"agipd-simulate wrote no raw files under {d}/r0001")
        _CACHE[key] = {"folder": d, "const_dir": os.path.join(d, "constants"), "run": 1,
                       "karabo_id": gen_run.DEFAULT_KARABO_ID, "files": files}
    return _CACHE[key]


def corr_name(run, mod, seq):
    return f"CORR-R{run:04d}-AGIPD{mod:02d}-S{seq:05d}.h5"


def correct(info, args, np_=1, out=None, check=True, extra=(), timeout=TIMEOUT):
    """Run bin/agipd-correct on a run; returns (out folder, CompletedProcess)."""
    need_correct()
    out = out or tmpdir()
    cmd = [harness.CORRECT, "--in-folder", info["folder"], "--out-folder", out,
           "--run", str(info["run"]), "--constants-folder", info["const_dir"]]
    if info.get("karabo_id") and info["karabo_id"] != gen_run.DEFAULT_KARABO_ID:
        cmd += ["--karabo-id", info["karabo_id"]]
    p = harness.mpirun(np_, cmd + list(extra) + list(args), timeout=timeout, check=check)
    return out, p


def ref_options(args):
    a = R.build_parser().parse_args(["raw", "const", "out"] + list(args))
    return R.options_from_args(a)


_CONSTS = {}


def constants(path):
    """read_constants, keeping the last few files (they are large)."""
    if path not in _CONSTS:
        while len(_CONSTS) >= 4:
            _CONSTS.pop(next(iter(_CONSTS)))
        _CONSTS[path] = R.read_constants(path)
    return _CONSTS[path]


def reference(fi, args):
    key = (fi["raw"], fi["const"], tuple(args))
    if key not in _REF:
        if len(_REF) > 8:
            _REF.pop(next(iter(_REF)))
        _REF[key] = R.correct_file(fi["raw"], fi["const"], ref_options(args), K=constants(fi["const"]))
    return _REF[key]


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------

def _diff_report(name, got, exp, ref, fi):
    """Where and how much two arrays differ, with the raw inputs of the first pixel."""
    if got.shape != exp.shape:
        return f"{name}: shape {got.shape} != reference {exp.shape}"
    bad = ~((got == exp) | (np.isnan(got.astype(np.float64)) & np.isnan(exp.astype(np.float64))))
    nbad = int(bad.sum())
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    d = np.abs(got.astype(np.float64) - exp.astype(np.float64))
    msg = (f"{name}: {nbad} of {bad.size} values differ; max |diff| {np.nanmax(d[bad]):.6g}; "
           f"first at {idx}: C {got[idx]!r} vs ref {exp[idx]!r}")
    if len(idx) == 3:
        f, r, c = idx
        j = int(ref["sel"][f])
        with h5py.File(fi["raw"], "r") as h:
            raw = h[f"INSTRUMENT/{ref['source']}/image/data"]
            A, D = int(raw[j, 0, r, c]), int(raw[j, 1, r, c])
        msg += (f" [frame {f} = raw frame {j}, cellId {int(ref['cellId'][f])}, row {r}, col {c}, "
                f"A {A}, D {D}, ref gain {int(ref['gain'][idx])}, ref mask {int(ref['mask'][idx]):#x}]")
        by_gain = np.bincount(ref["gain"][bad], minlength=3)
        msg += f"; differing pixels by ref gain {by_gain.tolist()}"
    if name == "mask":
        x = np.bitwise_or.reduce((got ^ exp)[bad])
        msg += f"; differing bits {int(x):#x}"
    return msg


def _vec(a):
    return np.asarray(a).reshape(-1)


def check_storage(h, src, n, errors):
    img = h[f"INSTRUMENT/{src}/image"]
    for name in ("data", "gain", "mask"):
        ds = img[name]
        dcpl = ds.id.get_create_plist()
        filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
        if not set(filters) <= {1, 2, 3}:
            errors.append(f"{name}: non-standard filters {filters}")
        if name != "data" and filters != [2, 1, 3]:
            errors.append(f"{name}: filters {filters}, expected shuffle, deflate, fletcher32 [2, 1, 3]")
        if n > 0 and ds.chunks != (1, ROWS, COLS):
            errors.append(f"{name}: chunks {ds.chunks}, expected (1, 512, 128)")


def compare_file(fi, path, args, errors, label=""):
    """Compare one output file with the reference; append problems to errors."""
    ref = reference(fi, args)
    src = ref["source"]
    pre = f"{label}{os.path.basename(path)}: "
    n = ref["data"].shape[0]
    with h5py.File(path, "r") as h:
        img = h.get(f"INSTRUMENT/{src}/image")
        if img is None:
            errors.append(pre + f"no INSTRUMENT/{src}/image")
            return
        for name in ("data", "gain", "mask"):
            if name not in img:
                errors.append(pre + f"no image/{name}")
                continue
            got = img[name][()]
            exp = ref[name]
            if got.dtype != exp.dtype:
                errors.append(pre + f"{name}: dtype {got.dtype}, expected {exp.dtype}")
            if got.shape != exp.shape:
                errors.append(pre + f"{name}: shape {got.shape}, expected {exp.shape}")
            elif not np.array_equal(got, exp):
                errors.append(pre + _diff_report(name, got, exp, ref, fi))
        for name in ("cellId", "pulseId", "trainId", "status", "length"):
            if name not in img:
                errors.append(pre + f"no image/{name}")
                continue
            got = img[name][()]
            exp = ref[name]
            if got.shape != (n,):
                errors.append(pre + f"{name}: shape {got.shape}, expected ({n},)")
            if got.dtype != exp.dtype:
                errors.append(pre + f"{name}: dtype {got.dtype}, expected {exp.dtype}")
            if not np.array_equal(_vec(got), exp):
                errors.append(pre + f"{name}: {_vec(got)[:20]} != ref {exp[:20]}")
        for name in ("trainId", "timestamp", "flag"):
            got = h.get(f"INDEX/{name}")
            exp = ref["index_" + name]
            if got is None:
                errors.append(pre + f"no INDEX/{name}")
            elif got.dtype != exp.dtype or not np.array_equal(_vec(got[()]), exp):
                errors.append(pre + f"INDEX/{name}: {got.dtype} {_vec(got[()])} != ref {exp.dtype} {exp}")
        for name in ("first", "count"):
            got = h.get(f"INDEX/{src}/image/{name}")
            exp = ref["index_" + name]
            if got is None:
                errors.append(pre + f"no INDEX/{src}/image/{name}")
            elif got.dtype != np.uint64 or not np.array_equal(_vec(got[()]), exp):
                errors.append(pre + f"INDEX/.../image/{name}: {got.dtype} {_vec(got[()])} != ref {exp}")
        for name in ("runNumber", "sequenceNumber"):
            got = h.get(f"METADATA/{name}")
            exp = ref["metadata"].get(name)
            if got is None:
                errors.append(pre + f"no METADATA/{name}")
            elif not np.array_equal(_vec(got[()]), _vec(exp)):
                errors.append(pre + f"METADATA/{name}: {got[()]} != raw {exp}")
        if not isinstance(h.get("METADATA/calibration"), h5py.Group):
            errors.append(pre + "no METADATA/calibration group")
        check_storage(h, src, n, errors)


def check_outputs(info, out, args, modules=None, seqs=None, label=""):
    """Compare every expected output file; the folder must hold exactly them."""
    files = [fi for fi in info["files"]
             if (modules is None or fi["module"] in modules) and (seqs is None or fi["seq"] in seqs)]
    expected = {corr_name(info["run"], fi["module"], fi["seq"]): fi for fi in files}
    present = set(os.listdir(out))
    errors = []
    if present != set(expected):
        errors.append(f"{label}output folder holds {sorted(present)}, expected {sorted(expected)}")
    for name, fi in sorted(expected.items()):
        path = os.path.join(out, name)
        if os.path.exists(path):
            compare_file(fi, path, args, errors, label)
    if errors:
        raise harness.Failed(f"options {list(args)}:\n  " + "\n  ".join(errors))


def e2e(args, np_=1, info=None, extra=(), modules=None, seqs=None):
    info = info or main_run()
    out, p = correct(info, args, np_, extra=extra)
    check_outputs(info, out, args, modules, seqs, label=f"[{np_} rank{'s' if np_ > 1 else ''}] ")
    return out, p


def refused(info, args, what, code, extra=()):
    """The run must fail with exit status code (README: 2 for bad options or
    set-up, 1 when files fail, e.g. for their module's constants) and leave
    no CORR file behind."""
    out, p = correct(info, args, 1, check=False, extra=extra)
    left = sorted(os.listdir(out)) if os.path.isdir(out) else []
    if p.returncode == 0:
        raise harness.Failed(f"{what}: {args} accepted (exit 0), left {left}")
    if p.returncode != code:
        raise harness.Failed(f"{what}: exit {p.returncode}, expected {code}:\n{(p.stdout + p.stderr)[-3000:]}")
    text = p.stdout + p.stderr
    if "signal" in text.lower() or p.returncode > 100:
        raise harness.Failed(f"{what}: crashed rather than refused (exit {p.returncode}):\n{text[-3000:]}")
    if "error" not in text.lower():
        raise harness.Failed(f"{what}: exit {p.returncode} without an error message:\n{text[-3000:]}")
    if left:
        raise harness.Failed(f"{what}: failed run left files {left}")
    return p


# ---------------------------------------------------------------------------
# Default options, ranks, layout
# ---------------------------------------------------------------------------

def test_default_1rank():
    e2e([], 1)


def test_default_2ranks():
    e2e([], 2)


def test_default_3ranks_serial_writer():
    e2e([], 3, extra=["--writer", "serial"])


def test_storage_h5dump():
    """h5dump reads every output file whole (a few frames each, to stay fast)."""
    need_correct()
    out, _ = correct(main_run(), ["--cells", "0:16:5"], 2)
    for path in sorted(glob.glob(os.path.join(out, "*.h5"))):
        p = subprocess.run(["h5dump", "-H", path], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise harness.Failed(f"h5dump -H {path}: exit {p.returncode}\n{p.stderr[-2000:]}")
        with open(os.devnull, "w") as null:
            p = subprocess.run(["h5dump", path], stdout=null, stderr=subprocess.PIPE, text=True,
                               timeout=120)
        if p.returncode != 0:
            raise harness.Failed(f"h5dump {path}: exit {p.returncode}\n{p.stderr[-2000:]}")
        with h5py.File(path, "r") as h:
            src = R.find_source(h)
            for name in ("gain", "mask"):
                h[f"INSTRUMENT/{src}/image/{name}"][()]    # fletcher32 verified on read


# ---------------------------------------------------------------------------
# Each switch alone
# ---------------------------------------------------------------------------

def test_gain_mode_fixed_high():
    e2e(["--gain-mode", "fixed-high"], 1)


def test_gain_mode_fixed_medium():
    e2e(["--gain-mode", "fixed-medium"], 2)


def test_gain_mode_fixed_low():
    e2e(["--gain-mode", "fixed-low"], 1)


def test_fixed_gain_skips_force():
    """SPEC step 1: fixed-gain runs skip step 2, so the force options are
    ignored there (not refused)."""
    e2e(["--gain-mode", "fixed-low", "--force-mg-if-below", "--force-hg-if-below"], 1)


def test_gain_mode_adaptive_explicit():
    e2e(["--gain-mode", "adaptive"], 1)


def test_force_mg_if_below():
    e2e(["--force-mg-if-below"], 1)


def test_force_hg_if_below():
    e2e(["--force-hg-if-below"], 2)


def test_force_both_thresholds():
    e2e(["--force-mg-if-below", "--force-hg-if-below", "--mg-hard-threshold", "1500",
         "--hg-hard-threshold", "800"], 1)


def test_force_thresholds_fractional():
    e2e(["--force-mg-if-below", "--force-hg-if-below", "--mg-hard-threshold", "1000.5",
         "--hg-hard-threshold", "999.5"], 2)


def test_common_mode():
    e2e(["--common-mode"], 1)


def test_common_mode_params():
    e2e(["--common-mode", "--cm-dark-range=-20.5,25", "--cm-dark-fraction", "0.25",
         "--cm-n-itr", "2"], 2)


def test_common_mode_one_iteration():
    e2e(["--common-mode", "--cm-n-itr", "1", "--cm-dark-fraction", "0.5"], 1)


def test_rel_gain():
    e2e(["--rel-gain"], 1)


def test_rel_gain_mg_baseline():
    e2e(["--rel-gain", "--adjust-mg-baseline"], 2)


def test_adjust_mg_baseline_alone():
    """SPEC makes the baseline part of step 5 ("with adjust-mg-baseline on,
    medium-gain pixels also get ..."): without --rel-gain the option is
    accepted and does nothing -- the output equals the default run's."""
    info = main_run()
    out, p = correct(info, ["--adjust-mg-baseline"], 1, check=False)
    if p.returncode != 0:
        raise harness.Failed(f"--adjust-mg-baseline without --rel-gain refused (exit {p.returncode}); the SPEC "
                             f"makes it a no-op:\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}")
    check_outputs(info, out, ["--adjust-mg-baseline"])
    plain, _ = correct(info, [], 1)
    for f in sorted(os.listdir(plain)):
        with h5py.File(os.path.join(out, f), "r") as a, h5py.File(os.path.join(plain, f), "r") as b:
            src = R.find_source(b)
            for k in ("data", "gain", "mask"):
                x, y = a[f"INSTRUMENT/{src}/image/{k}"][()], b[f"INSTRUMENT/{src}/image/{k}"][()]
                if not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                    raise harness.Failed(f"{f}: {k} differs from the default run's")


def test_ff_gain():
    e2e(["--ff-gain"], 1)


def test_photon_energy():
    e2e(["--photon-energy", "9.3"], 2)


def test_photon_energy_adu_per_kev():
    e2e(["--photon-energy", "12.4", "--adu-per-kev", "6.75"], 1)


def test_round_photons():
    e2e(["--photon-energy", "9.3", "--round-photons"], 1)


def test_rounding_threshold():
    e2e(["--photon-energy", "9.3", "--round-photons", "--rounding-threshold", "0.75"], 2)


def test_data_dtype_float16():
    e2e(["--data-dtype", "float16"], 1)


def test_data_dtype_float16_photons():
    e2e(["--data-dtype", "float16", "--photon-energy", "9.3", "--adu-per-kev", "0.01"], 2)


def test_data_dtype_float32_explicit():
    e2e(["--data-dtype", "float32"], 1)


def test_data_dtype_int16():
    e2e(["--photon-energy", "9.3", "--round-photons", "--data-dtype", "int16"], 1)


def test_cells_step():
    e2e(["--cells", "2:14:3"], 2)


def test_cells_empty_files():
    """--cells 18:20:1 keeps no frame of module 0: its files hold n = 0 frames."""
    e2e(["--cells", "18:20:1"], 1)


# ---------------------------------------------------------------------------
# Combinations
# ---------------------------------------------------------------------------

FULL = ["--rel-gain", "--adjust-mg-baseline", "--ff-gain", "--photon-energy", "9.3",
        "--round-photons", "--data-dtype", "int16"]


def test_combo_full_int16_1rank():
    e2e(FULL, 1)


def test_combo_full_int16_2ranks():
    e2e(FULL, 2)


def test_combo_cm_force_float16():
    e2e(["--common-mode", "--force-mg-if-below", "--force-hg-if-below", "--rel-gain",
         "--adjust-mg-baseline", "--ff-gain", "--data-dtype", "float16"], 2)


def test_combo_cells_cm_photons():
    e2e(["--cells", "1:16:2", "--common-mode", "--rel-gain", "--ff-gain", "--photon-energy", "8",
         "--adu-per-kev", "7.5"], 1)


def test_combo_fixed_medium_rel_ff():
    e2e(["--gain-mode", "fixed-medium", "--rel-gain", "--adjust-mg-baseline", "--ff-gain",
         "--common-mode"], 2)


def test_combo_round_float16():
    e2e(["--rel-gain", "--photon-energy", "9.3", "--round-photons", "--rounding-threshold", "0.25",
         "--data-dtype", "float16"], 1)


# ---------------------------------------------------------------------------
# Selection, layout and CLI behaviour
# ---------------------------------------------------------------------------

def test_small_batches_3ranks():
    """Many small batches over 3 ranks (frames, trains and dropped frames split
    across ranks and collective writes)."""
    e2e(["--common-mode", "--rel-gain", "--adjust-mg-baseline", "--ff-gain"], 3,
        extra=["--batch-frames", "2"])


def test_format_versions():
    """Raw files in EXDF formats 0.5, 1.1, 1.2 and 1.3 (INDEX padded past
    first/count; no timestamp/flag in 0.5; flag an index in 1.1), at 1 and
    3 ranks: equal to the reference, INDEX/flag with format 1.0's meaning
    (which the output's dataFormatVersion says)."""
    for v in ("0.5", "1.1", "1.2", "1.3"):
        info = gen_run.generate(tmpdir(), run=1, modules=(0, 1), format_version=v)
        for np_ in (1, 3):
            out, _ = e2e(["--common-mode"], np_, info=info)
            for fi in info["files"]:
                with h5py.File(os.path.join(out, corr_name(1, fi["module"], fi["seq"])), "r") as h:
                    if h["METADATA/dataFormatVersion"][0] != b"1.0":
                        raise harness.Failed(f"format {v}: output says {h['METADATA/dataFormatVersion'][()]}")
                    flag = h["INDEX/flag"][()]
                    if v != "0.5" and len(flag) > 1 and (flag[1] != 0 or flag[0] != 1):
                        raise harness.Failed(f"format {v}: INDEX/flag {flag}: train 2 is the invalid one")


def _attr_value(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(())[()]
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode()
    if isinstance(v, (np.integer, np.floating, int, float)):
        return float(v)
    return v if isinstance(v, str) else repr(v)


def test_provenance():
    """METADATA/calibration: program version, every parameter, each constants
    file with a checksum and its root attributes (SPEC section 3 and 5)."""
    info = main_run()
    args = ["--rel-gain", "--photon-energy", "9.3", "--adu-per-kev", "7"]
    out, _ = correct(info, args, 1, extra=["--quiet"])
    problems = []
    for fi in info["files"]:
        path = os.path.join(out, corr_name(1, fi["module"], fi["seq"]))
        objs = {}
        with h5py.File(path, "r") as h:
            cal = h["METADATA/calibration"]
            objs["calibration"] = {k: _attr_value(v) for k, v in cal.attrs.items()}
            cal.visititems(lambda n, o: objs.__setitem__(n, {k: _attr_value(v) for k, v in o.attrs.items()}))
        names = {k.replace("-", "_").lower() for a in objs.values() for k in a}
        text = repr(objs).lower()
        if "version" not in names and "program_version" not in names:
            problems.append(f"{path}: no version attribute")
        for opt in R.Options.DEFAULTS:
            if opt not in names:
                problems.append(f"{os.path.basename(path)}: parameter {opt} not recorded")
        with h5py.File(fi["const"], "r") as c:
            cattrs = {k: _attr_value(v) for k, v in c.attrs.items()}
        holder = [a for a in objs.values() if all(k in a for k in ("memory_cells",))]
        if not holder:
            problems.append(f"{os.path.basename(path)}: no constants provenance with memory_cells")
            continue
        for k, v in cattrs.items():
            if not any(k in a and a[k] == v for a in holder):
                got = [a.get(k) for a in holder]
                problems.append(f"{os.path.basename(path)}: constants attribute {k}={v!r} "
                                f"not copied (found {got})")
        if not any(("crc" in k or "sha" in k or "checksum" in k) for a in holder for k in a):
            problems.append(f"{os.path.basename(path)}: no checksum of the constants file")
        if os.path.basename(fi["const"]).lower() not in text:
            problems.append(f"{os.path.basename(path)}: constants file name not recorded")
    if problems:
        raise harness.Failed("\n".join(problems))


def test_modules_sequences():
    info = main_run()
    out, _ = correct(info, [], 1, extra=["--modules", "0", "--sequences", "1"])
    check_outputs(info, out, [], modules={0}, seqs={1})
    out, _ = correct(info, [], 2, extra=["--modules", "1"])
    check_outputs(info, out, [], modules={1})
    out, _ = correct(info, [], 2, extra=["--modules", "0-1", "--sequences", "0"])
    check_outputs(info, out, [], seqs={0})


def test_flat_folder_karabo_id():
    """Raw files directly in --in-folder, another karabo id, run 42, module 2."""
    need_correct()
    if "flat" not in _CACHE:
        _CACHE["flat"] = gen_run.generate(tmpdir(), run=42, modules=(2,), seed=99,
                                          karabo_id="MID_DET_AGIPD1M-1", flat=True)
    info = _CACHE["flat"]
    e2e(["--rel-gain", "--ff-gain"], 2, info=info)


def test_writer_serial_vs_collective():
    info = main_run()
    args = ["--common-mode", "--rel-gain", "--data-dtype", "float16"]
    out1, _ = correct(info, args, 2, extra=["--writer", "serial"])
    out2, _ = correct(info, args, 2, extra=["--writer", "collective"])
    check_outputs(info, out1, args, label="serial ")
    check_outputs(info, out2, args, label="collective ")


def test_quiet():
    info = main_run()
    out, p = correct(info, [], 1, extra=["--quiet", "--modules", "1"])
    check_outputs(info, out, [], modules={1})
    _, loud = correct(info, [], 1, extra=["--modules", "1"])
    if len(p.stdout) > len(loud.stdout):
        raise harness.Failed(f"--quiet printed more than without:\n{p.stdout[-2000:]}")


def _digest(folder):
    out = {}
    for n in sorted(os.listdir(folder)):
        with open(os.path.join(folder, n), "rb") as f:
            out[n] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_overwrite():
    info = main_run()
    out, _ = correct(info, [], 1, extra=["--modules", "1"])
    before = _digest(out)
    _, p = correct(info, ["--rel-gain"], 1, out=out, check=False, extra=["--modules", "1"])
    if _digest(out) != before:
        raise harness.Failed(f"existing outputs changed without --overwrite (exit {p.returncode})")
    correct(info, ["--rel-gain"], 2, out=out, extra=["--modules", "1", "--overwrite"])
    check_outputs(info, out, ["--rel-gain"], modules={1})


# ---------------------------------------------------------------------------
# Refusals and constants edge cases
# ---------------------------------------------------------------------------

def _stripped_run():
    """Module 0 with constants of only 8 cells; a copy of the constants folder
    with only ThresholdsDark/Offset/BadPixelsDark, and one without thresholds."""
    if "strip" not in _CACHE:
        info = gen_run.generate(tmpdir(), run=3, modules=(0,), seed=7, const_cells={0: 8})
        src = os.path.join(info["const_dir"], "AGIPD00.h5")
        variants = {"minimal": ("ThresholdsDark", "Offset", "BadPixelsDark"),
                    "nothresholds": ("Offset", "BadPixelsDark"),
                    "nobadpix": ("ThresholdsDark", "Offset", "Noise", "BadPixelsDark", "SlopesPC", "SlopesFF")}
        for name, keep in variants.items():
            d = os.path.join(info["folder"], "constants-" + name)
            os.makedirs(d)
            with h5py.File(src, "r") as fin, h5py.File(os.path.join(d, "AGIPD00.h5"), "w") as fo:
                for k in keep:
                    fin.copy(k, fo)
                for k, v in fin.attrs.items():
                    fo.attrs[k] = v
        _CACHE["strip"] = info
    return _CACHE["strip"]


def _with_consts(info, name):
    info = dict(info)
    info["const_dir"] = os.path.join(info["folder"], "constants-" + name)
    info["files"] = [dict(fi, const=os.path.join(info["const_dir"], os.path.basename(fi["const"])))
                     for fi in info["files"]]
    return info


def test_refuse_bad_combinations():
    info = main_run()
    refused(info, ["--data-dtype", "int16"], "int16 without --round-photons", 2)
    refused(info, ["--round-photons"], "--round-photons without --photon-energy", 2)
    refused(info, ["--data-dtype", "int16", "--photon-energy", "9.3"], "int16 without rounding", 2)


def test_cells_beyond_constants():
    """Constants of 8 cells: cellIds 8..15 cannot be corrected (clear error),
    --cells 0:8:1 can."""
    info = _stripped_run()
    p = refused(info, [], "cellId >= memory cells of the constants", 1)
    if "cell" not in (p.stdout + p.stderr).lower():
        raise harness.Failed(f"error does not mention cells:\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}")
    e2e(["--cells", "0:8:1"], 2, info=info)
    e2e(["--cells", "1:8:3", "--rel-gain", "--ff-gain"], 1, info=info)


def test_minimal_constants():
    """Only ThresholdsDark/Offset/BadPixelsDark: default and --adu-per-kev work,
    corrections needing SlopesPC/SlopesFF are refused."""
    info = _with_consts(_stripped_run(), "minimal")
    e2e(["--cells", "0:8:1"], 1, info=info)
    e2e(["--cells", "0:8:1", "--photon-energy", "9.3", "--adu-per-kev", "7", "--round-photons"], 1,
        info=info)
    refused(info, ["--cells", "0:8:1", "--rel-gain"], "--rel-gain without SlopesPC", 1)
    refused(info, ["--cells", "0:8:1", "--ff-gain"], "--ff-gain without SlopesFF", 1)
    refused(info, ["--cells", "0:8:1", "--photon-energy", "9.3"],
            "--photon-energy without SlopesFF nor --adu-per-kev", 1)


def test_missing_badpixels_pc_ff():
    """SlopesPC and SlopesFF without BadPixelsPC and BadPixelsFF (SPEC section
    3: required with the correction that uses them): --rel-gain and --ff-gain
    are refused by the program and by the NumPy reference alike; the default
    corrections still work."""
    info = _with_consts(_stripped_run(), "nobadpix")
    e2e(["--cells", "0:8:1"], 1, info=info)
    fi = info["files"][0]
    for opt, kw, name in (("--rel-gain", dict(rel_gain=True), "BadPixelsPC"),
                          ("--ff-gain", dict(ff_gain=True), "BadPixelsFF")):
        p = refused(info, ["--cells", "0:8:1", opt], f"{opt} without {name}", 1)
        if name not in p.stdout + p.stderr:
            raise harness.Failed(f"{opt} without {name}: the error does not name {name}:\n{p.stderr[-1500:]}")
        try:
            R.correct_file(fi["raw"], fi["const"], R.Options(cells=(0, 8, 1), **kw))
        except R.RefError as exc:
            if name not in str(exc):
                raise harness.Failed(f"the reference refused {opt} without {name} for another reason: {exc}")
        else:
            raise harness.Failed(f"the reference accepted {opt} without {name}; the program refuses it")


def test_fixed_gain_without_thresholds():
    info = _with_consts(_stripped_run(), "nothresholds")
    e2e(["--cells", "0:8:1", "--gain-mode", "fixed-high"], 1, info=info)
    e2e(["--cells", "0:8:1", "--gain-mode", "fixed-low", "--data-dtype", "float16"], 2, info=info)
    refused(info, ["--cells", "0:8:1"], "adaptive gain without ThresholdsDark", 1)


# ---------------------------------------------------------------------------
# The simulator's run: comparison and physics
# ---------------------------------------------------------------------------

SIM_FULL = ["--rel-gain", "--adjust-mg-baseline", "--ff-gain"]


def test_sim_default():
    e2e([], 2, info=sim_run())


def test_sim_full():
    e2e(SIM_FULL + ["--photon-energy", "9.3"], 1, info=sim_run())


def test_sim_edge_default():
    e2e([], 1, info=sim_run(edge=True))


def test_sim_edge_full_int16():
    e2e(["--common-mode"] + SIM_FULL + ["--photon-energy", "9.3", "--round-photons",
                                        "--data-dtype", "int16"], 2, info=sim_run(edge=True))


def test_sim_edge_force_float16():
    e2e(["--force-mg-if-below", "--force-hg-if-below", "--rel-gain", "--ff-gain", "--cells", "1:16:2",
         "--data-dtype", "float16"], 2, info=sim_run(edge=True))


def test_sim_edge_batches():
    e2e(["--photon-energy", "9.3", "--round-photons", "--data-dtype", "float16"], 2,
        info=sim_run(edge=True), extra=["--batch-frames", "5"])


def _physics(extra):
    """Corrected photons vs the simulator's truth; returns (report, errors)."""
    info = sim_run()
    truth_paths = {}
    energy = None
    for fi in info["files"]:
        tp = os.path.join(info["folder"], "truth",
                          f"TRUTH-R0001-AGIPD{fi['module']:02d}-S{fi['seq']:05d}.h5")
        if not os.path.exists(tp):
            raise harness.Failed(f"no truth file {tp}")
        truth_paths[fi["raw"]] = tp
        with h5py.File(tp, "r") as h:
            energy = float(h.attrs.get("photon_energy", h["photons"].attrs.get("photon_energy", 9.3)))
    args = SIM_FULL + list(extra) + ["--photon-energy", repr(energy)]
    out, _ = correct(info, args, 2)
    report, errors = [], []
    for fi in info["files"]:
        ref = reference(fi, args)
        with h5py.File(truth_paths[fi["raw"]], "r") as h:
            truth = h["photons"][()].astype(np.float64)[ref["sel"]]
            special = h["special_pixels"][()] if "special_pixels" in h else np.zeros((0, 2), int)
        with h5py.File(os.path.join(out, corr_name(1, fi["module"], fi["seq"])), "r") as h:
            img = h[f"INSTRUMENT/{ref['source']}/image"]
            data = img["data"][()].astype(np.float64)
            gain = img["gain"][()]
            mask = img["mask"][()]
        good = mask == 0
        # pixels whose constants the simulator broke on purpose are not judged
        good[:, special[:, 0], special[:, 1]] = False
        hg = good & (gain == 0)
        err_hg = float(np.mean(np.abs(data[hg] - truth[hg]))) if hg.any() else 0.0
        bias_hg = float(np.mean(data[hg] - truth[hg])) if hg.any() else 0.0
        bright = good & (truth > 100)
        rel = (float(np.mean(np.abs(data[bright] - truth[bright]) / truth[bright]))
               if bright.any() else 0.0)
        line = (f"{' '.join(extra) or 'no cm'}: module {fi['module']} seq {fi['seq']}: "
                f"{int(good.sum())} good pixels; HG {int(hg.sum())} mean |err| {err_hg:.3f} "
                f"(bias {bias_hg:+.3f}) photons; >100 photons: {int(bright.sum())} pixels, "
                f"mean rel err {rel:.4f}")
        report.append(line)
        if hg.sum() < 1000:
            errors.append(line + " (too few high-gain pixels to judge)")
        if err_hg >= 0.3:
            errors.append(line + " (HG error >= 0.3 photons)")
        if bright.any() and rel >= 0.05:
            errors.append(line + " (relative error >= 5%)")
        if good.mean() < 0.8:
            errors.append(line + f" (only {good.mean():.1%} of pixels unmasked)")
    return report, errors


def test_sim_physics():
    """With --rel-gain --adjust-mg-baseline --ff-gain --photon-energy E the
    corrected photons match the simulator's truth within noise."""
    report, errors = _physics([])
    print("\n".join(report))
    if errors:
        raise harness.Failed("\n".join(errors))


def test_sim_physics_common_mode():
    report, errors = _physics(["--common-mode"])
    print("\n".join(report))
    if errors:
        raise harness.Failed("\n".join(errors))


harness.main(globals())
