"""Constants are loaded once per node and module, shared by the node's ranks."""
import json
import os

import harness


def simulate(d, modules, sequences):
    harness.run([harness.SIMULATE, "--out-folder", d, "--modules", modules, "--sequences", str(sequences),
                 "--trains", "2", "--cells", "16", "--no-truth"], timeout=120)


def report(d, out, np_, extra=()):
    rep = os.path.join(out, "report.json")
    harness.mpirun(np_, [harness.CORRECT, "--in-folder", d, "--out-folder", out, "--run", "1",
                         "--constants-folder", os.path.join(d, "constants"), "--report", rep, "--quiet",
                         *extra], timeout=120)
    with open(rep) as f:
        return json.load(f)


def test_one_module_two_ranks_loads_once():
    d = harness.tmpdir()
    simulate(d, "0", 2)            # two files of one module: both ranks on module 0 at once
    r = report(d, os.path.join(d, "out"), 2)
    assert r["files_corrected"] == 2
    assert r["constants_cells_loaded"] == 16, r["constants_cells_loaded"]   # not 2 x 16
    assert abs(r["constants_loads"] - 1.0) < 1e-6, r["constants_loads"]
    # and the work of loading was shared: each rank took half the cells
    assert [q["constants_cells_loaded"] for q in r["ranks"]] == [8, 8]


def test_one_file_four_ranks_loads_once():
    d = harness.tmpdir()
    simulate(d, "0", 1)
    r = report(d, os.path.join(d, "out"), 4)
    assert r["constants_cells_loaded"] == 16 and abs(r["constants_loads"] - 1.0) < 1e-6


def test_two_modules_each_once():
    d = harness.tmpdir()
    simulate(d, "0-1", 2)          # 4 files, 2 ranks: two rounds, one module each
    r = report(d, os.path.join(d, "out"), 2)
    assert r["files_corrected"] == 4
    assert r["constants_cells_loaded"] == 32 and abs(r["constants_loads"] - 2.0) < 1e-6, r


def test_kept_across_rounds():
    d = harness.tmpdir()
    simulate(d, "0", 4)            # 4 files of one module on 2 ranks: 2 rounds, loaded once
    r = report(d, os.path.join(d, "out"), 2)
    assert r["files_corrected"] == 4
    assert abs(r["constants_loads"] - 1.0) < 1e-6, r["constants_loads"]


harness.main(globals())
