"""Facility integration (SPEC 6): operating conditions from the control data,
constants from the calibration database's files, the conditions check, and
xfel-calibrate's option names.  Small simulated runs in temporary folders;
conditions compared with tests/ref_agipd.py where it derives them."""
import json
import os
import shutil
import sys

import h5py
import numpy as np
import yaml

import harness

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_agipd as R  # noqa: E402

KID = "SPB_DET_AGIPD1M-1"
DEV = "SPB_IRU_AGIPD1M1/MDL/FPGA_COMP"
HV = "SPB_IRU_AGIPD1M/PSC/HV"
NAMES = ("Memory cells", "Acquisition rate", "Gain setting", "Gain mode", "Integration time",
         "Sensor Bias Voltage")
CORR_OPTS = ["--rel-gain", "--ff-gain"]


def simulate(folder, *extra, modules="0,1", cells=4, trains=2, run=1):
    harness.run([harness.SIMULATE, "--out-folder", folder, "--run", str(run), "--modules", modules,
                 "--sequences", "1", "--trains", str(trains), "--cells", str(cells), "--seed", "11"]
                + list(map(str, extra)), timeout=300)
    return folder


def correct(np_, raw, out, *extra, run=1, check=True):
    args = [harness.CORRECT, "--in-folder", raw, "--run", str(run), "--out-folder", out] + list(map(str, extra))
    return harness.mpirun(np_, args, timeout=300, check=check)


def corr(out, m, run=1, seq=0):
    return os.path.join(out, f"CORR-R{run:04d}-AGIPD{m:02d}-S{seq:05d}.h5")


def image(path, m):
    with h5py.File(path, "r") as f:
        g = f[f"INSTRUMENT/{KID}/DET/{m}CH0:xtdf/image"]
        return {k: g[k][()] for k in ("data", "gain", "mask")}


def same_bytes(a, b, m):
    x, y = image(a, m), image(b, m)
    for k in ("data", "gain", "mask"):
        assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, k
        assert x[k].tobytes() == y[k].tobytes(), f"{k} of module {m} differs: {a} vs {b}"


def provenance(path):
    with h5py.File(path, "r") as f:
        cal = f["METADATA/calibration"]

        def attrs(g):
            return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in cal[g].attrs.items()} \
                if g in cal else None
        out = {g: attrs(g) for g in ("conditions", "conditions_source", "conditions_check", "constants",
                                     "parameters")}
        out["per_constant"] = {k: attrs(f"constants/{k}") for k in cal["constants"].keys()} \
            if "constants" in cal else {}
        return out


def dry_run_conditions(raw, *extra, run=1):
    """The conditions as --dry-run prints them: {name: (value text, source)}."""
    out = harness.run([harness.CORRECT, "--in-folder", raw, "--run", str(run), "--dry-run",
                       "--constants-folder", "/nonexistent"] + list(map(str, extra))).stdout
    cond = {}
    for line in out.splitlines():
        for n in NAMES:
            if line.startswith("  " + n + " "):
                rest = line[2 + len(n):].strip()
                val = rest.split()[0]
                src = rest[rest.index("[") + 1:rest.rindex("]")] if "[" in rest else None
                cond[n] = (val, src)
    assert len(cond) == len(NAMES), out
    return cond


def ref_conditions(raw, modules, run=1, overrides=None):
    run_folder = os.path.join(raw, f"r{run:04d}")
    raws = []
    for m in modules:
        for p in sorted(os.listdir(run_folder)):
            if p.startswith(f"RAW-R{run:04d}-AGIPD{m:02d}-"):
                raws.append(R.read_raw(os.path.join(run_folder, p), module=m))
    return R.run_conditions(run_folder, run, modules, raws=raws, overrides=overrides)


def check_against_ref(got, ref):
    cond, src = ref
    for n in NAMES:
        if n in cond:
            assert got[n][0] != "unknown", (n, got[n], cond[n])
            assert float(got[n][0]) == float(cond[n]), (n, got[n], cond[n])
            assert got[n][1] == src[n], (n, got[n], src[n])
        else:
            assert got[n][0] == "unknown", (n, got[n])


# ---- conditions from the control data ----

def test_conditions_gain_key_form():
    d = harness.tmpdir()
    raw = simulate(os.path.join(d, "raw"), "--acq-rate", "2.2", "--gain-setting", "1", "--integration-time", "15",
                   "--bias-voltage", "200", modules="1,3")
    got = dry_run_conditions(raw)
    assert got["Memory cells"] == ("4", f"control:{DEV}/bunchStructure.nPulses"), got
    assert got["Acquisition rate"] == ("2.2", f"control:{DEV}/bunchStructure.repetitionRate"), got
    assert got["Gain setting"] == ("1", f"control:{DEV}/gain"), got
    assert got["Gain mode"] == ("0", f"control:{DEV}/gainModeIndex"), got
    assert got["Integration time"] == ("15", f"control:{DEV}/integrationTime"), got
    assert got["Sensor Bias Voltage"] == ("200", f"control:{HV}/channels.U1.measurementSenseVoltage"), got
    check_against_ref(got, ref_conditions(raw, [1, 3]))
    # The correction records them (provenance, report) and the constants agree.
    out = os.path.join(d, "out")
    rep = os.path.join(d, "report.json")
    p = correct(1, raw, out, "--constants-folder", os.path.join(raw, "constants"), "--report", rep, *CORR_OPTS)
    assert "Sensor Bias Voltage" in p.stdout and "control:" in p.stdout, p.stdout
    pv = provenance(corr(out, 3))
    assert pv["conditions"] == {"Memory cells": 4, "Acquisition rate": 2.2, "Gain setting": 1, "Gain mode": 0,
                                "Integration time": 15, "Sensor Bias Voltage": 200}, pv["conditions"]
    assert pv["conditions_source"]["Gain setting"] == f"control:{DEV}/gain", pv["conditions_source"]
    assert pv["conditions_check"] == {"ignore_conditions": "false", "warnings": ""}, pv["conditions_check"]
    with open(rep) as f:
        r = json.load(f)
    assert r["conditions"]["Acquisition rate"] == {"value": 2.2,
                                                   "source": f"control:{DEV}/bunchStructure.repetitionRate"}, r
    assert r["conditions"]["Sensor Bias Voltage"]["value"] == 200, r


def test_conditions_setupr_form():
    d = harness.tmpdir()
    raw = simulate(os.path.join(d, "raw"), "--control", "setupr", "--gain-setting", "1")
    got = dry_run_conditions(raw)
    assert got["Gain setting"] == ("1", f"control:{DEV}/setupr"), got
    check_against_ref(got, ref_conditions(raw, [0, 1]))
    # setupr with a pattern that maps to no gain setting is an error naming it
    ctl = os.path.join(raw, "r0001", "RAW-R0001-AGIPD1MCTRL00-S00000.h5")
    with h5py.File(ctl, "r+") as f:
        v = f[f"CONTROL/{DEV}/setupr/value"]
        v[...] = 16
    p = correct(1, raw, os.path.join(d, "out"), "--constants-folder", os.path.join(raw, "constants"), check=False)
    assert p.returncode == 2, p
    assert "setupr 16" in p.stderr and DEV in p.stderr, p.stderr


def test_conditions_fallbacks():
    d = harness.tmpdir()
    raw = simulate(os.path.join(d, "raw"), "--control", "none", "--acq-rate", "2.2", cells=40)
    got = dry_run_conditions(raw)
    assert got["Memory cells"] == ("64", "fallback"), got           # cellIds up to 39
    assert got["Acquisition rate"] == ("2.2", "fallback"), got      # pulseIds 2 apart
    assert got["Gain mode"] == ("0", "fallback"), got
    for n in ("Gain setting", "Integration time", "Sensor Bias Voltage"):
        assert got[n] == ("unknown", None), got
    check_against_ref(got, ref_conditions(raw, [0, 1]))
    # --cells selects the frames the fallback looks at
    got = dry_run_conditions(raw, "--cells", "0:30")
    assert got["Memory cells"] == ("32", "fallback"), got
    # The simulated constants say 40 cells: refused (fallback 64), then given on the command line.
    out = os.path.join(d, "out")
    p = correct(1, raw, out, "--constants-folder", os.path.join(raw, "constants"), check=False)
    assert p.returncode == 1 and "Memory cells" in p.stderr and "run 64, constant 40" in p.stderr, p.stderr
    assert not os.path.exists(corr(out, 0)) and not os.path.exists(corr(out, 1))
    correct(1, raw, out, "--constants-folder", os.path.join(raw, "constants"), "--mem-cells", "40")
    pv = provenance(corr(out, 0))
    assert pv["conditions"]["Memory cells"] == 40 and pv["conditions_source"]["Memory cells"] == "command line"
    assert "Gain setting" not in pv["conditions"] and "Sensor Bias Voltage" not in pv["conditions"], pv


def test_overrides_win():
    d = harness.tmpdir()
    raw = simulate(os.path.join(d, "raw"))
    over = ["--mem-cells", "352", "--acq-rate", "4.5", "--gain-setting", "1", "--gain-mode", "fixed-low",
            "--integration-time", "20", "--bias-voltage", "500"]
    got = dry_run_conditions(raw, *over)
    want = {"Memory cells": "352", "Acquisition rate": "4.5", "Gain setting": "1", "Gain mode": "3",
            "Integration time": "20", "Sensor Bias Voltage": "500"}
    for n in NAMES:
        assert got[n] == (want[n], "command line"), (n, got[n])
    ref = ref_conditions(raw, [0, 1], overrides={"Memory cells": 352, "Acquisition rate": 4.5,
                                                 "Gain setting": 1, "Gain mode": 3, "Integration time": 20,
                                                 "Sensor Bias Voltage": 500})
    check_against_ref(got, ref)
    # An override of a key that would be an error (changing during the run) rescues the run.
    raw2 = simulate(os.path.join(d, "raw2"), "--control-change", "gainModeIndex")
    p = harness.run([harness.CORRECT, "--in-folder", raw2, "--run", "1", "--dry-run", "--constants-folder", "/x"],
                    check=False)
    assert p.returncode == 2 and "gainModeIndex" in p.stderr and "changes during the run" in p.stderr, p.stderr
    assert DEV in p.stderr, p.stderr
    got = dry_run_conditions(raw2, "--gain-mode", "adaptive")
    assert got["Gain mode"] == ("0", "command line"), got


def test_fixed_gain_run_from_gain_mode_index():
    d = harness.tmpdir()
    raw = simulate(os.path.join(d, "raw"), "--gain-mode", "2")
    got = dry_run_conditions(raw)
    assert got["Gain mode"] == ("2", f"control:{DEV}/gainModeIndex"), got
    consts = os.path.join(raw, "constants")
    for np_ in (1, 3):
        a, b = os.path.join(d, f"auto{np_}"), os.path.join(d, f"given{np_}")
        pa = correct(np_, raw, a, "--constants-folder", consts, *CORR_OPTS)
        assert "corrected as fixed-medium" in pa.stdout, pa.stdout
        correct(np_, raw, b, "--constants-folder", consts, "--gain-mode", "fixed-medium", *CORR_OPTS)
        for m in (0, 1):
            same_bytes(corr(a, m), corr(b, m), m)
            assert (image(corr(a, m), m)["gain"] == 1).all()
            assert provenance(corr(a, m))["parameters"]["gain-mode"] == "fixed-medium"


# ---- constants from the calibration database ----

def test_yaml_store_equals_constants_folder():
    d = harness.tmpdir()
    raw = simulate(os.path.join(d, "raw"), "--caldb", "--caldb-dims-order", "cell,slow_scan,fast_scan,gain")
    yml = os.path.join(raw, "caldb", "calibration_metadata.yml")
    with open(yml) as f:
        meta = yaml.safe_load(f)
    for np_ in (1, 3):
        a, b = os.path.join(d, f"folder{np_}"), os.path.join(d, f"store{np_}")
        correct(np_, raw, a, "--constants-folder", os.path.join(raw, "constants"), *CORR_OPTS)
        correct(np_, raw, b, "--calibration-metadata", yml, *CORR_OPTS)
        for m in (0, 1):
            same_bytes(corr(a, m), corr(b, m), m)
            pv = provenance(corr(b, m))
            ent = meta["retrieved-constants"][f"AGIPD{m:02d}"]
            assert pv["constants"]["physical_name"] == ent["physical-name"], pv["constants"]
            for name in ("Offset", "ThresholdsDark", "BadPixelsDark", "SlopesPC", "BadPixelsPC", "SlopesFF",
                         "BadPixelsFF"):
                pc = pv["per_constant"][name]
                c = ent["constants"][name]
                assert pc["pdu"] == ent["physical-name"], pc
                assert pc["file"].endswith(c["path"]), (pc, c)
                assert pc["dataset"] == c["dataset"], (pc, c)
                assert pc["ccv_id"] == str(c["ccv_id"]), (pc, c)
                assert pc["creation_time"] == str(c["creation-time"]), (pc, c)
                assert len(pc["crc32"]) == 8 and pc["size_bytes"] == os.path.getsize(pc["file"])
            assert "Noise" not in pv["per_constant"]          # not used by the correction
    # The reference reads the store the same way (dims honoured).
    K = R.read_caldb(yml, 1)
    with h5py.File(os.path.join(raw, "constants", "AGIPD01.h5"), "r") as f:
        assert np.array_equal(np.transpose(f["Offset"][()]).astype(np.float32), K["Offset"].astype(np.float32))


def test_facility_command_line():
    """The seed command of the issue (raw folder holding rNNNN/, --sequences
    wider than the run's, xfel-calibrate's multi-word options) plus a store."""
    d = harness.tmpdir()
    raw = simulate(os.path.join(d, "raw"), "--caldb", modules="0,3", trains=3, cells=6)
    yml = os.path.join(raw, "caldb", "calibration_metadata.yml")
    out = os.path.join(d, "out")
    p = correct(3, raw, out, "--karabo-id", KID, "--karabo-id-control", "SPB_IRU_AGIPD1M1",
                "--karabo-da-control", "AGIPD1MCTRL00", "--sequences", "0",
                "--calibration-metadata", yml, "--karabo-da", "AGIPD00", "AGIPD03", "--max-pulses", "0", "6", "2",
                run=1)
    assert "2 file(s) corrected" in p.stdout, p.stdout
    ref = os.path.join(d, "ref")
    correct(1, raw, ref, "--constants-folder", os.path.join(raw, "constants"), "--modules", "0,3",
            "--cells", "0:6:2")
    for m in (0, 3):
        same_bytes(corr(out, m), corr(ref, m), m)
        with h5py.File(corr(out, m), "r") as f:
            cells = f[f"INSTRUMENT/{KID}/DET/{m}CH0:xtdf/image/cellId"][()]
        assert set(cells.tolist()) == {0, 2, 4}, cells


# ---- refusals ----

def store_variant(d, raw, name, edit):
    """A copy of the calibration metadata (paths into the original store via
    --caldb-root) that edit(meta, root, work) may change; returns its path."""
    yml = os.path.join(raw, "caldb", "calibration_metadata.yml")
    with open(yml) as f:
        meta = yaml.safe_load(f)
    work = os.path.join(d, name)
    os.makedirs(work)
    edit(meta, os.path.join(raw, "caldb"), work)
    path = os.path.join(work, "calibration_metadata.yml")
    with open(path, "w") as f:
        yaml.safe_dump(meta, f)
    return path


def copy_constant(meta, root, work, module, name):
    """Copy module's constant file into work; the YAML then points there
    (absolute path).  Returns the copy's path and dataset."""
    c = meta["retrieved-constants"][f"AGIPD{module:02d}"]["constants"][name]
    dst = os.path.join(work, f"{name}-{module}.h5")
    shutil.copy(os.path.join(root, c["path"]), dst)
    c["path"] = dst
    return dst, c["dataset"]


def expect_refused(np_, raw, out, yml, module, words, extra=()):
    p = correct(np_, raw, out, "--calibration-metadata", yml, "--caldb-root", os.path.join(raw, "caldb"),
                *CORR_OPTS, *extra, check=False)
    assert p.returncode == 1, (p.returncode, p.stderr)
    for w in words:
        assert w in p.stderr, (w, p.stderr)
    assert not os.path.exists(corr(out, module)), "refused module has a CORR file"
    other = 1 - module
    assert os.path.exists(corr(out, other)), p.stderr
    image(corr(out, other), other)                     # complete and readable
    assert not [f for f in os.listdir(out) if f.endswith(".part")]
    return p


def test_refusals_caldb():
    d = harness.tmpdir()
    raw = simulate(os.path.join(d, "raw"), "--caldb")
    n = [0]

    def case(edit, words, np_=3, module=1, extra=()):
        n[0] += 1
        yml = store_variant(d, raw, f"v{n[0]}", edit)
        return expect_refused(np_, raw, os.path.join(d, f"out{n[0]}"), yml, module, words, extra)

    # module missing from the YAML
    case(lambda m, r, w: m["retrieved-constants"].pop("AGIPD01"), ["AGIPD01", "calibration_metadata.yml"])
    # constant missing from the YAML
    case(lambda m, r, w: m["retrieved-constants"]["AGIPD00"]["constants"].pop("SlopesPC"),
         ["AGIPD00", "SlopesPC", "calibration_metadata.yml"], np_=1, module=0)

    # missing file
    def gone(m, r, w):
        m["retrieved-constants"]["AGIPD01"]["constants"]["Offset"]["path"] = "xfel/cal/nowhere/cal.0.h5"
    case(gone, ["module 1", "Offset", "nowhere/cal.0.h5"])

    # missing dataset
    def no_ds(m, r, w):
        m["retrieved-constants"]["AGIPD01"]["constants"]["BadPixelsDark"]["dataset"] = "/NO_SUCH_PDU/BadPixelsDark/0"
    case(no_ds, ["module 1", "BadPixelsDark", "/NO_SUCH_PDU/BadPixelsDark/0/data"], np_=1)

    # wrong shape
    def bad_shape(m, r, w):
        p, ds = copy_constant(m, r, w, 1, "Offset")
        with h5py.File(p, "r+") as f:
            del f[ds + "/data"]
            f[ds + "/data"] = np.zeros((128, 256, 4, 3))
    case(bad_shape, ["module 1", "Offset", "Offset-1.h5", "(128, 256, 4, 3)"])

    # an axis order that cannot be mapped
    def bad_dims(m, r, w):
        p, ds = copy_constant(m, r, w, 1, "ThresholdsDark")
        with h5py.File(p, "r+") as f:
            f[ds + "/data"].attrs["dims"] = ["cell", "cell", "fast_scan", "gain"]
    case(bad_dims, ["module 1", "ThresholdsDark", "cell, cell, fast_scan, gain", "ThresholdsDark-1.h5"], np_=1)

    # conditions of a constant that differ from the run's
    def other_cells(m, r, w):
        p, ds = copy_constant(m, r, w, 1, "Offset")
        with h5py.File(p, "r+") as f:
            f[ds].attrs["Memory cells"] = 352
    p = case(other_cells, ["module 1", "Offset", "Memory cells", "run 4", "constant 352"])
    # ... a warning with --ignore-conditions, recorded in the provenance
    yml = os.path.join(d, f"v{n[0]}", "calibration_metadata.yml")
    out = os.path.join(d, "ignored")
    rep = os.path.join(d, "ignored.json")
    p = correct(3, raw, out, "--calibration-metadata", yml, "--caldb-root", os.path.join(raw, "caldb"), *CORR_OPTS,
                "--ignore-conditions", "--report", rep)
    assert "warning" in p.stderr and "Memory cells" in p.stderr, p.stderr
    # ... in the run's report too, for each file of that module
    with open(rep) as f:
        files = json.load(f)["files"]
    assert files and all(fr["status"] == "corrected" for fr in files), files
    for fr in files:
        w = fr["warning"]
        if fr["module"] == 1:
            assert "Offset" in w and "constant 352" in w and "--ignore-conditions" in w, fr
        else:
            assert w == "", fr
    pv = provenance(corr(out, 1))
    assert pv["conditions_check"]["ignore_conditions"] == "true"
    assert "Offset" in pv["conditions_check"]["warnings"] and "constant 352" in pv["conditions_check"]["warnings"]
    assert provenance(corr(out, 0))["conditions_check"]["warnings"] == ""

    # a bias voltage within 5 V is accepted, 6 V off is not (SlopesPC does not depend on Gain mode)
    def bias(v, gm):
        def edit(m, r, w):
            p, ds = copy_constant(m, r, w, 1, "SlopesPC")
            with h5py.File(p, "r+") as f:
                f[ds].attrs["Sensor Bias Voltage"] = v
                f[ds].attrs["Gain mode"] = gm
        return edit
    yml = store_variant(d, raw, "bias-ok", bias(305.0, 3))
    correct(1, raw, os.path.join(d, "bias-ok-out"), "--calibration-metadata", yml, "--caldb-root",
            os.path.join(raw, "caldb"), *CORR_OPTS)
    case(bias(306.0, 0), ["module 1", "SlopesPC", "Sensor Bias Voltage", "run 300", "constant 306"], np_=1)


def test_refusals_constants_folder_conditions():
    d = harness.tmpdir()
    raw = simulate(os.path.join(d, "raw"))
    consts = os.path.join(d, "consts")
    shutil.copytree(os.path.join(raw, "constants"), consts)
    with h5py.File(os.path.join(consts, "AGIPD00.h5"), "r+") as f:
        f.attrs["gain_setting"] = np.int32(1)
    for np_ in (1, 3):
        out = os.path.join(d, f"out{np_}")
        p = correct(np_, raw, out, "--constants-folder", consts, check=False)
        assert p.returncode == 1, p.stderr
        for w in ("module 0", "AGIPD00.h5", "Gain setting", "run 0", "constant 1"):
            assert w in p.stderr, (w, p.stderr)
        assert not os.path.exists(corr(out, 0)) and os.path.exists(corr(out, 1))


def test_refusals_control_data():
    d = harness.tmpdir()
    for key in ("integrationTime", "bias"):
        raw = simulate(os.path.join(d, key), "--control-change", key)
        out = os.path.join(d, "out-" + key)
        for np_ in (1, 3):
            p = correct(np_, raw, out, "--constants-folder", os.path.join(raw, "constants"), check=False)
            assert p.returncode == 2, (key, p.stderr)
            assert "changes during the run" in p.stderr, p.stderr
            assert (DEV if key != "bias" else HV) in p.stderr, p.stderr
            assert not os.path.exists(out) or not [f for f in os.listdir(out) if f.startswith("CORR")]
    # nPulses changing is not an error: the largest value counts
    raw = simulate(os.path.join(d, "np"), "--control-change", "nPulses")
    assert dry_run_conditions(raw)["Memory cells"][0] == "4"
    # an unreadable value
    raw = simulate(os.path.join(d, "str"))
    ctl = os.path.join(raw, "r0001", "RAW-R0001-AGIPD1MCTRL00-S00000.h5")
    with h5py.File(ctl, "r+") as f:
        n = f[f"CONTROL/{DEV}/gainModeIndex/value"].shape[0]
        del f[f"CONTROL/{DEV}/gainModeIndex/value"]
        f[f"CONTROL/{DEV}/gainModeIndex/value"] = np.array([b"adaptive"] * n)
    p = correct(3, raw, os.path.join(d, "out-str"), "--constants-folder", os.path.join(raw, "constants"),
                check=False)
    assert p.returncode == 2 and "gainModeIndex" in p.stderr and "unreadable" in p.stderr, p.stderr
    # a file that is not YAML calibration metadata
    bad = os.path.join(d, "bad.yml")
    with open(bad, "w") as f:
        f.write("retrieved-constants: [unclosed\n")
    p = correct(1, os.path.join(d, "np"), os.path.join(d, "out-bad"), "--calibration-metadata", bad, check=False)
    assert p.returncode == 2 and "bad.yml" in p.stderr and "YAML" in p.stderr, p.stderr


harness.main(globals())
