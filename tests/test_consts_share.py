"""The constants module's share part on its own (include/agipd_consts_share.h):
agipd_consts_acquire() driven by bin/consts_share_probe with no run around
it, on 1, 2 and 3 ranks of one node and one module, over a simulated
constants folder.

  - every rank sees the same constants, the words a rank loading the same
    cells alone into private memory gets, whatever the number of ranks;
  - the ranks split the cells (each loads its share, the shares add up to
    the cells held, the loads to one) and agree on the file's CRC-32 and
    size, which are the file's;
  - a request the share already covers is kept (nothing loaded), a larger
    one reloads, one beyond the file's cells gets the file's cells;
  - errors reach every rank naming the file and the cause, and a kept
    failure gives the same error again; conditions that differ fail the
    acquisition, or become its warning with ignore_conditions.
"""
import os
import re
import zlib

import harness

PROBE = os.path.join(harness.BIN, "consts_share_probe")
LINE = re.compile(r"^call (\d+) rank (\d+) status (-?\d+) ncells (\d+) cells (\d+) crc32 ([0-9a-f]{8}) size (\d+) "
                  r"digest ([0-9a-f]{8}) last_cells (\S+) last_loads (\S+) kept (\d) private (-?\d) "
                  r"warning <(.*)> msg <(.*)>$")
_RUN = {}


def folder():
    """A simulated run's constants folder (module 0, 16 cells), made once."""
    if "d" not in _RUN:
        if not os.path.exists(PROBE):
            raise harness.Skip("bin/consts_share_probe not built (make tests)")
        d = harness.tmpdir()
        harness.run([harness.SIMULATE, "--out-folder", d, "--modules", "0", "--sequences", "1", "--trains", "2",
                     "--cells", "16", "--no-truth"], timeout=120)
        _RUN["d"] = os.path.join(d, "constants")
    return _RUN["d"]


def probe(np_, args, ok=True):
    """{call: {rank: fields}} of one probe job on np_ ranks."""
    p = harness.mpirun(np_, [PROBE] + list(map(str, args)), timeout=180, check=ok)
    calls = {}
    for line in p.stdout.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        g = m.groups()
        calls.setdefault(int(g[0]), {})[int(g[1])] = {
            "status": int(g[2]), "ncells": int(g[3]), "cells": int(g[4]), "crc32": g[5], "size": int(g[6]),
            "digest": g[7], "last_cells": float(g[8]), "last_loads": float(g[9]), "kept": int(g[10]),
            "private": int(g[11]), "warning": g[12], "msg": g[13]}
    for c, ranks in calls.items():
        assert sorted(ranks) == list(range(np_)), "call %d: lines from ranks %s of %d\n%s" % (
            c, sorted(ranks), np_, p.stdout)
    assert calls, "no output from the probe\n%s%s" % (p.stdout, p.stderr)
    return calls


def file_crc_size(path):
    with open(path, "rb") as f:
        data = f.read()
    return "%08x" % zlib.crc32(data), len(data)


def test_acquire_on_1_2_3_ranks():
    d = folder()
    crc, size = file_crc_size(os.path.join(d, "AGIPD00.h5"))
    digests = {}
    for np_ in (1, 2, 3):
        calls = probe(np_, [d, 0, 8, 16, 4, 100])
        assert sorted(calls) == [0, 1, 2, 3], calls
        for c, want_cells, want_kept in ((0, 8, 0), (1, 16, 0), (2, 16, 1), (3, 16, 1)):
            ranks = calls[c]
            for r, f in ranks.items():
                where = "np %d call %d rank %d: %s" % (np_, c, r, f)
                assert f["status"] == 0 and f["msg"] == "", where
                assert (f["ncells"], f["cells"], f["kept"]) == (want_cells, 16, want_kept), where
                assert (f["crc32"], f["size"]) == (crc, size), "%s, file %s %d" % (where, crc, size)
                assert f["warning"] == "", where
            assert len({f["digest"] for f in ranks.values()}) == 1, "ranks see different constants: %s" % ranks
            assert ranks[0]["private"] == 1, "shared constants differ from a private load: %s" % ranks[0]
            digests.setdefault(want_cells, set()).add(ranks[0]["digest"])
            loaded = [f["last_cells"] for f in ranks.values()]
            loads = sum(f["last_loads"] for f in ranks.values())
            if want_kept:
                assert loaded == [0] * np_ and loads == 0, "a kept share loaded again: %s" % ranks
            else:
                assert sum(loaded) == want_cells, "cells loaded %s, held %d" % (loaded, want_cells)
                assert abs(loads - 1) < 1e-6, "loads add up to %g" % loads
                assert np_ == 1 or max(loaded) < want_cells, "one rank loaded every cell: %s" % loaded
    assert all(len(v) == 1 for v in digests.values()), "constants differ with the number of ranks: %s" % digests


def test_missing_constants_every_rank():
    d = os.path.join(folder(), "missing")
    for np_ in (1, 3):
        calls = probe(np_, [d, 0, 8, 8], ok=False)
        assert sorted(calls) == [0, 1], calls
        for c in (0, 1):
            for r, f in calls[c].items():
                assert f["status"] == -1, f
                assert f["msg"] == "%s/AGIPD00.h5: cannot open constants file: No such file or directory" % d, f


def test_conditions():
    d = folder()
    plain = probe(2, [d, 0, 8])[0][0]["digest"]
    for r, f in probe(3, [d, 0, 8, "--bias", 12345], ok=False)[0].items():
        assert f["status"] == -1, f
        assert os.path.join(d, "AGIPD00.h5") in f["msg"] and "Sensor Bias Voltage: run 12345" in f["msg"], f
    for r, f in probe(3, [d, 0, 8, "--bias", 12345, "--ignore-conditions"])[0].items():
        assert f["status"] == 0 and f["digest"] == plain, f
        assert "Sensor Bias Voltage: run 12345" in f["warning"], f


harness.main(globals())
