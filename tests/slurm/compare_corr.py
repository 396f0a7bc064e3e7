#!/usr/bin/python3
"""tests/slurm/compare_corr.py REF OUT [--modules LIST] [--sequences LIST]

Exit 0 when OUT holds the same CORR files as REF (restricted to the given
modules and sequences) and every dataset of each (data, gain and mask
included) has the same dtype, shape and bytes (NaN payloads included); the
creation and update dates are skipped.  Compares dataset contents, not file
bytes: chunking, compression and layout may differ.
No half-written .part file may be left in OUT.  Prints one line per problem.
"""
import argparse
import glob
import os
import re
import sys

import h5py
import numpy as np

SKIP = {"METADATA/creationDate", "METADATA/updateDate"}


def expand(lst):
    if not lst:
        return None
    out = set()
    for part in lst.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def corr_files(folder, modules, sequences):
    files = {}
    for p in glob.glob(os.path.join(folder, "CORR-R*-AGIPD*-S*.h5")):
        m = re.search(r"AGIPD(\d\d)-S(\d{5})\.h5$", p)
        if not m:
            continue
        if modules is not None and int(m.group(1)) not in modules:
            continue
        if sequences is not None and int(m.group(2)) not in sequences:
            continue
        files[os.path.basename(p)] = p
    return files


def datasets(h):
    names = []
    h.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(n for n in names if n not in SKIP)


def same(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    ap.add_argument("out")
    ap.add_argument("--modules")
    ap.add_argument("--sequences")
    a = ap.parse_args()
    mods, seqs = expand(a.modules), expand(a.sequences)
    ref, out = corr_files(a.ref, mods, seqs), corr_files(a.out, mods, seqs)
    bad = []
    if not ref:
        bad.append("%s: no CORR files to compare with" % a.ref)
    for n in sorted(set(ref) - set(out)):
        bad.append("%s: missing" % os.path.join(a.out, n))
    for n in sorted(set(out) - set(ref)):
        bad.append("%s: not in the reference" % os.path.join(a.out, n))
    for p in glob.glob(os.path.join(a.out, ".*.part")):
        bad.append("%s: partial output left behind" % p)
    ndata = 0
    for n in sorted(set(ref) & set(out)):
        with h5py.File(ref[n], "r") as r, h5py.File(out[n], "r") as o:
            dr, do = datasets(r), datasets(o)
            if dr != do:
                bad.append("%s: datasets differ: only in reference %s, only here %s" % (
                    n, sorted(set(dr) - set(do)), sorted(set(do) - set(dr))))
            for part in ("image/data", "image/gain", "image/mask"):
                if not any(x.endswith(part) for x in dr):
                    bad.append("%s: no %s dataset" % (n, part))
            for d in sorted(set(dr) & set(do)):
                ndata += 1
                if not same(r[d][()], o[d][()]):
                    bad.append("%s: %s differs" % (n, d))
    for b in bad:
        print(b)
    print("compared %d file(s), %d dataset(s): %s" % (len(set(ref) & set(out)), ndata,
                                                     "equal" if not bad else "%d problem(s)" % len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
