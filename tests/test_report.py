"""Run report, progress, --config: what a user sees of a run."""
import json
import os

import h5py

import harness

SRC = "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf/image/"


def setup():
    d = harness.tmpdir()
    harness.run([harness.SIMULATE, "--out-folder", d, "--modules", "0-1", "--sequences", "2", "--trains", "3",
                 "--cells", "8", "--no-truth", "--edge-cases", "uneven-trains"], timeout=120)
    return d


def correct(d, out, np_=2, extra=(), check=True):
    return harness.mpirun(np_, [harness.CORRECT, "--in-folder", d, "--out-folder", out, "--run", "1",
                                "--constants-folder", os.path.join(d, "constants"), *extra],
                          timeout=120, check=check)


def test_json_report_totals_agree_with_files():
    d = setup()
    out = os.path.join(d, "out")
    rep = os.path.join(d, "report.json")
    p = correct(d, out, 3, ["--report", rep])
    with open(rep) as f:
        r = json.load(f)
    assert r["files_corrected"] == 4 and r["files_failed"] == 0 and r["exit_status"] == 0
    total = 0
    for fr in r["files"]:
        assert fr["status"] == "corrected"
        with h5py.File(fr["output"], "r") as h:
            n = h[SRC.format(fr["module"]) + "data"].shape[0]
            assert n == fr["frames"], (fr, n)
            assert os.path.getsize(fr["output"]) == fr["output_bytes"]
            total += n
    assert r["frames"] == total
    assert sum(q["frames"] for q in r["ranks"]) == total
    assert len(r["ranks"]) == 3
    assert r["gain_mask"]["bytes_in"] == total * 512 * 128 * 5
    assert r["gain_mask"]["ratio"] > 1
    assert r["parameters"]["rel-gain"] == "false" and r["parameters"]["run"] == "1"
    # the human summary says the same
    assert f"{total} frames" in p.stdout and "4 file(s) corrected" in p.stdout
    assert "rank" in p.stdout and "gz-chunks" in p.stdout


def test_failed_file_in_report():
    d = setup()
    bad = os.path.join(d, "r0001", "RAW-R0001-AGIPD01-S00001.h5")
    with open(bad, "wb") as f:
        f.write(b"not hdf5")
    out = os.path.join(d, "out")
    rep = os.path.join(d, "report.json")
    p = correct(d, out, 2, ["--report", rep], check=False)
    assert p.returncode == 1, p.returncode
    with open(rep) as f:
        r = json.load(f)
    failed = [x for x in r["files"] if x["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["module"] == 1 and failed[0]["sequence"] == 1
    assert "not an HDF5 file" in failed[0]["error"] and "RAW-R0001-AGIPD01-S00001.h5" in failed[0]["error"]
    assert r["files_corrected"] == 3 and r["exit_status"] == 1
    assert "RAW-R0001-AGIPD01-S00001.h5" in p.stderr


def test_config_file_and_override():
    d = setup()
    cfg = os.path.join(d, "run.conf")
    with open(cfg, "w") as f:
        f.write("# a config file\nrun = 1\nmodules = 0\nrel-gain = true\nphoton-energy = 9.3\n"
                "data-dtype = float16\nff-gain = false\n")
    out = os.path.join(d, "out")
    rep = os.path.join(d, "report.json")
    harness.mpirun(1, [harness.CORRECT, "--config", cfg, "--in-folder", d, "--out-folder", out,
                       "--constants-folder", os.path.join(d, "constants"), "--photon-energy", "12",
                       "--report", rep, "--quiet"], timeout=120)
    with open(rep) as f:
        r = json.load(f)
    prm = r["parameters"]
    assert prm["modules"] == "0" and prm["rel-gain"] == "true" and prm["data-dtype"] == "float16"
    assert prm["photon-energy"] == "12", prm["photon-energy"]      # the command line wins
    assert prm["ff-gain"] == "false"
    assert {x["module"] for x in r["files"]} == {0}
    with h5py.File(r["files"][0]["output"], "r") as h:
        assert h[SRC.format(0) + "data"].dtype == "float16"
        a = h["METADATA/calibration/parameters"].attrs
        assert a["photon-energy"] in (b"12", "12") and a["rel-gain"] in (b"true", "true")


def test_bad_config_key():
    d = setup()
    cfg = os.path.join(d, "bad.conf")
    with open(cfg, "w") as f:
        f.write("run = 1\nno-such-option = 3\n")
    p = harness.run([harness.CORRECT, "--config", cfg, "--in-folder", d, "--out-folder", d + "/o",
                     "--constants-folder", d], check=False)
    assert p.returncode == 2 and "bad.conf:2" in p.stderr and "no-such-option" in p.stderr


def test_progress_and_quiet():
    d = setup()
    p = correct(d, os.path.join(d, "out"), 2)
    assert "files 4/4" in p.stderr and "frames/s" in p.stderr and "ETA" in p.stderr
    assert "\r" not in p.stderr           # not a terminal: whole lines, no carriage returns
    q = correct(d, os.path.join(d, "out2"), 2, ["--quiet"])
    assert q.stdout == "" and q.stderr == ""


def test_provenance_in_file():
    d = setup()
    out = os.path.join(d, "out")
    correct(d, out, 2, ["--common-mode"])
    with h5py.File(os.path.join(out, "CORR-R0001-AGIPD00-S00000.h5"), "r") as h:
        a = h["METADATA/calibration"].attrs
        for k in ("program", "version", "git_revision", "command_line", "start_time", "end_time", "n_ranks",
                  "raw_file", "raw_index_sha256"):
            assert k in a, k
        assert int(a["n_ranks"]) == 2
        assert b"--common-mode" in bytes(a["command_line"])
        c = h["METADATA/calibration/constants"].attrs
        assert "crc32" in c and "path" in c and "memory_cells" in c
        import zlib
        with open(os.path.join(d, "constants", "AGIPD00.h5"), "rb") as f:
            assert c["crc32"].decode() == "%08x" % zlib.crc32(f.read())
        prm = h["METADATA/calibration/parameters"].attrs
        assert prm["common-mode"] in (b"true", "true") and prm["cm-n-itr"] in (b"4", "4")


harness.main(globals())
