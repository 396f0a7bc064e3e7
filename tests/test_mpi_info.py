#!/usr/bin/env python3
"""MPI-IO hints of the collective writers (--mpi-info, AGIPD_MPI_INFO).

  - hints given with --mpi-info, or in the environment (here under ROMIO,
    OMPI_MCA_io=romio321), leave the CORR files' values unchanged, at 1 and
    3 ranks, and the provenance records them;
  - a malformed list is refused before any file is touched, naming the
    option or the environment variable.
"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SIM = ["--modules", "0", "--sequences", "2", "--trains", "3", "--cells", "8", "--no-truth"]
HINTS = "romio_cb_write=enable,cb_nodes=1,striping_unit=1048576"


def arrays(out):
    res = {}
    for name in sorted(os.listdir(out)):
        if name.startswith("CORR-"):
            with h5py.File(os.path.join(out, name), "r") as f:
                f.visititems(lambda k, o, n=name: res.__setitem__(f"{n}:{k}", o[()])
                             if isinstance(o, h5py.Dataset) and not k.startswith("METADATA") else None)
    if not res:
        raise harness.Failed(f"{out}: no CORR files")
    return res


def correct(sim, np_, args=(), env=None, check=True):
    out = harness.tmpdir("agipd-info-out-")
    p = harness.mpirun(np_, [harness.CORRECT, "--in-folder", sim, "--out-folder", out, "--run", "1",
                             "--constants-folder", os.path.join(sim, "constants")] + list(args), env=env,
                       check=check)
    return p, out


def test_hints_same_output():
    if not os.access(harness.CORRECT, os.X_OK):
        raise harness.Skip("binaries not built")
    sim = harness.tmpdir("agipd-info-")
    harness.run([harness.SIMULATE, "--out-folder", sim] + SIM)
    for np_ in (1, 3):
        _, plain = correct(sim, np_)
        ref = arrays(plain)
        for label, args, env in (("--mpi-info", ["--mpi-info", HINTS], None),
                                 ("AGIPD_MPI_INFO under ROMIO", [],
                                  {"AGIPD_MPI_INFO": "romio_cb_write=disable", "OMPI_MCA_io": "romio321"})):
            _, out = correct(sim, np_, args, env)
            got = arrays(out)
            if got.keys() != ref.keys() or any(not np.array_equal(got[k], ref[k], equal_nan=got[k].dtype.kind == "f")
                                               for k in ref):
                raise harness.Failed(f"{label} at {np_} rank(s): CORR values differ from a run without hints")
            want = HINTS if env is None else env["AGIPD_MPI_INFO"]
            with h5py.File(os.path.join(out, "CORR-R0001-AGIPD00-S00000.h5"), "r") as f:
                rec = f["METADATA/calibration/parameters"].attrs.get("mpi-info")
                rec = rec.decode() if isinstance(rec, bytes) else rec
            if rec != want:
                raise harness.Failed(f"{label}: provenance mpi-info {rec!r}, expected {want!r}")
            print(f"  {label}, {np_} rank(s): {len(got)} datasets identical, recorded {rec!r}")


def test_malformed_hints_refused():
    if not os.access(harness.CORRECT, os.X_OK):
        raise harness.Skip("binaries not built")
    sim = harness.tmpdir("agipd-info-")
    harness.run([harness.SIMULATE, "--out-folder", sim] + SIM)
    for args, env, word in ((["--mpi-info", "cb_nodes"], None, "--mpi-info"),
                            ([], {"AGIPD_MPI_INFO": "cb_nodes=1,=2"}, "AGIPD_MPI_INFO")):
        p, out = correct(sim, 1, args, env, check=False)
        if p.returncode == 0 or word not in p.stderr:
            raise harness.Failed(f"{args} {env}: exit {p.returncode}, stderr {p.stderr[-500:]!r}")
        if [f for f in os.listdir(out) if f.startswith("CORR-")]:
            raise harness.Failed(f"{args} {env}: CORR files written")


harness.main(globals())
