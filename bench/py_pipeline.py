#!/usr/bin/python3
"""What users run today: the AGIPD correction in the facility's Python style.

    py_pipeline.py --in-folder RUN_DIR --constants-folder DIR --out-folder OUT
                   [--processes N] [--threads T] [--batch-frames B] [FILE ...]

A multiprocessing Pool of N processes with module-affine scheduling: the
files are dealt out so that each process works on one module's files (or
several modules' files one module after the other) and loads each module's
constants once; with more processes than modules a module's files are split
over several processes.  h5py reads,
NumPy correction with the default switches (SPEC section 4 steps 1, 3 and 8:
gain stage from ThresholdsDark, offset, BadPixelsDark mask plus the NaN and
out-of-range flags), then gain and mask byte-shuffled with a NumPy view and
transpose (the layout of HDF5's shuffle filter), deflated with zlib level 1 in
a thread pool (concurrent.futures; zlib releases the GIL) and written with
h5py's ``write_direct_chunk`` into chunked datasets that declare
shuffle + deflate (no fletcher32: the facility's pipeline dropped it).  The
float32 data goes through a plain h5py write (chunks of one frame, no filter).

The output files have the CORR layout of SPEC section 5 (less the provenance
group and fletcher32), so run_bench.py can compare their values with the
corrector's.  Prints one JSON line with the wall time, the frames and, per
process, seconds per phase and the peak RSS.
"""
import argparse
import concurrent.futures
import glob
import json
import multiprocessing
import os
import re
import resource
import sys
import time
import zlib

T_IMPORT0 = time.perf_counter()
import h5py  # noqa: E402  (import time is part of what users pay)
import numpy as np  # noqa: E402

ROWS, COLS = 512, 128
BP_VALUE_IS_NAN = np.uint32(1 << 11)
BP_VALUE_OUT_OF_RANGE = np.uint32(1 << 12)
KARABO_ID = "SPB_DET_AGIPD1M-1"
NAME_RE = re.compile(r"RAW-R(\d{4})-AGIPD(\d{2})-S(\d{5})\.h5$")

_consts_cache = {}
_args = None


def load_constants(folder, module):
    """ThresholdsDark[...,0:2], Offset, BadPixelsDark of one module, in C
    order (gain, cell, 512, 128), float32 / uint32; one module kept."""
    if module in _consts_cache:
        return _consts_cache[module]
    _consts_cache.clear()
    with h5py.File(os.path.join(folder, f"AGIPD{module:02d}.h5"), "r") as f:
        thr = f["ThresholdsDark"][()]
        off = f["Offset"][()]
        bpd = f["BadPixelsDark"][()]
    # (128, 512, C, k) -> (k, C, 512, 128), converted to float32 first.
    thr = np.ascontiguousarray(thr[..., :2].astype(np.float32).transpose(3, 2, 1, 0))
    off = np.ascontiguousarray(off.astype(np.float32).transpose(3, 2, 1, 0))
    bpd = np.ascontiguousarray(bpd.astype(np.uint32).transpose(3, 2, 1, 0))
    _consts_cache[module] = (thr, off, bpd)
    return _consts_cache[module]


def correct(raw, cells, thr, off, bpd):
    """raw (n, 2, 512, 128) uint16 -> data float32, gain uint8, mask uint32."""
    analog = raw[:, 0].astype(np.float32)
    digital = raw[:, 1].astype(np.float32)
    gain = (digital > thr[0][cells]).astype(np.uint8)
    gain[digital > thr[1][cells]] = 2
    data = analog - np.choose(gain, (off[0][cells], off[1][cells], off[2][cells]))
    mask = np.choose(gain, (bpd[0][cells], bpd[1][cells], bpd[2][cells]))
    bad = ~np.isfinite(data)
    mask[bad] |= BP_VALUE_IS_NAN
    data[bad] = 0
    big = np.abs(data) > 1e7
    mask[big] |= BP_VALUE_OUT_OF_RANGE
    data[big] = 0
    return data, gain, mask


def shuffle_deflate(frame):
    """HDF5's shuffle (bytes of element i: byte b goes to b*n + i), zlib 1."""
    if frame.dtype.itemsize > 1:
        frame = frame.reshape(-1).view(np.uint8).reshape(-1, frame.dtype.itemsize).T
    return zlib.compress(np.ascontiguousarray(frame).tobytes(), 1)


def correct_file(path):
    t_start = time.perf_counter()
    ph = dict(consts=0.0, read=0.0, correct=0.0, compress=0.0, write=0.0)
    m = NAME_RE.search(os.path.basename(path))
    run, module, seq = int(m.group(1)), int(m.group(2)), int(m.group(3))
    src = f"{KARABO_ID}/DET/{module}CH0:xtdf"
    t = time.perf_counter()
    thr, off, bpd = load_constants(_args.constants_folder, module)
    ph["consts"] += time.perf_counter() - t
    out_path = os.path.join(_args.out_folder, f"CORR-R{run:04d}-AGIPD{module:02d}-S{seq:05d}.h5")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=_args.threads)
    t = time.perf_counter()
    with h5py.File(path, "r") as fin, h5py.File(out_path, "w") as fout:
        img = fin[f"INSTRUMENT/{src}/image"]
        idx = fin[f"INDEX/{src}/image"]
        train_ids = fin["INDEX/trainId"][()]
        first, count = idx["first"][()], idx["count"][()]
        # Frame selection: frames of trains with a non-zero trainId.
        valid = train_ids != 0
        keep = np.zeros(img["data"].shape[0], bool)
        for f0, c in zip(first[valid], count[valid]):
            keep[f0:f0 + c] = True
        kept = np.flatnonzero(keep)
        n = len(kept)
        per_frame = {k: img[k][()][:, 0][kept] for k in ("cellId", "pulseId", "trainId", "status", "length")}
        cells = per_frame["cellId"].astype(np.intp)
        kept_count = np.array([keep[f0:f0 + c].sum() for f0, c in zip(first[valid], count[valid])],
                              dtype=np.uint64)
        kept_first = np.concatenate([[0], np.cumsum(kept_count)[:-1]]).astype(np.uint64)

        for k in ("trainId", "timestamp", "flag"):
            fout[f"INDEX/{k}"] = fin[f"INDEX/{k}"][()][valid]
        fout[f"INDEX/{src}/image/first"] = kept_first
        fout[f"INDEX/{src}/image/count"] = kept_count
        oimg = fout.require_group(f"INSTRUMENT/{src}/image")
        for k, v in per_frame.items():
            oimg[k] = v
        chunk = (1, ROWS, COLS)
        dset = oimg.create_dataset("data", (n, ROWS, COLS), np.float32, chunks=chunk)
        gset = oimg.create_dataset("gain", (n, ROWS, COLS), np.uint8, chunks=chunk, shuffle=True,
                                   compression="gzip", compression_opts=1)
        mset = oimg.create_dataset("mask", (n, ROWS, COLS), np.uint32, chunks=chunk, shuffle=True,
                                   compression="gzip", compression_opts=1)
        for k in ("runNumber", "sequenceNumber"):
            fout[f"METADATA/{k}"] = np.array([run if k == "runNumber" else seq], np.uint32)
        ph["write"] += time.perf_counter() - t

        raw_data = img["data"]
        B = _args.batch_frames
        for k0 in range(0, n, B):
            k1 = min(n, k0 + B)
            t = time.perf_counter()
            r0, r1 = kept[k0], kept[k1 - 1] + 1
            raw = raw_data[r0:r1]
            if r1 - r0 != k1 - k0:
                raw = raw[kept[k0:k1] - r0]
            t2 = time.perf_counter()
            data, gain, mask = correct(raw, cells[k0:k1], thr, off, bpd)
            t3 = time.perf_counter()
            gz = list(pool.map(shuffle_deflate, gain))
            mz = list(pool.map(shuffle_deflate, mask))
            t4 = time.perf_counter()
            dset[k0:k1] = data
            for i in range(k1 - k0):
                gset.id.write_direct_chunk((k0 + i, 0, 0), gz[i])
                mset.id.write_direct_chunk((k0 + i, 0, 0), mz[i])
            t5 = time.perf_counter()
            ph["read"] += t2 - t
            ph["correct"] += t3 - t2
            ph["compress"] += t4 - t3
            ph["write"] += t5 - t4
        t = time.perf_counter()
    ph["write"] += time.perf_counter() - t     # the close
    pool.shutdown()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return dict(file=os.path.basename(path), frames=int(n), pid=os.getpid(), seconds=time.perf_counter() - t_start,
                phases=ph, peak_mb=rss_mb)


def correct_files(paths):
    """One process's share: files of one module after the other (the
    constants cache holds one module)."""
    return [correct_file(p) for p in paths]


def module_affine(files, processes):
    """Deal files out to `processes` lists so that each list holds whole
    modules (fewer modules than processes: a module's files split over
    several lists), every module's files in sequence order."""
    by_mod = {}
    for f in files:
        m = NAME_RE.search(os.path.basename(f))
        by_mod.setdefault(int(m.group(2)) if m else -1, []).append(f)
    mods = sorted(by_mod)
    buckets = [[] for _ in range(processes)]
    if processes <= len(mods):
        load = [0] * processes
        for m in sorted(mods, key=lambda m: -len(by_mod[m])):
            i = load.index(min(load))          # largest module first, to the least loaded
            buckets[i].extend(by_mod[m])
            load[i] += len(by_mod[m])
    else:
        # processes per module: as even as possible, at least one each
        per = [processes // len(mods)] * len(mods)
        for i in range(processes - sum(per)):
            per[i] += 1
        b = 0
        for m, k in zip(mods, per):
            fs = by_mod[m]
            for j in range(k):
                buckets[b + j] = fs[j * len(fs) // k:(j + 1) * len(fs) // k]
            b += k
    return [sorted(x) for x in buckets if x]


def init(args):
    global _args
    _args = args


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--in-folder", required=True, help="folder with the RAW-*.h5 files")
    ap.add_argument("--constants-folder", required=True)
    ap.add_argument("--out-folder", required=True)
    ap.add_argument("--processes", type=int, default=os.cpu_count())
    ap.add_argument("--threads", type=int, default=0, help="zlib threads per process (0: cores/processes)")
    ap.add_argument("--batch-frames", type=int, default=32)
    ap.add_argument("files", nargs="*", help="raw files (default: every RAW-*.h5 in --in-folder)")
    args = ap.parse_args()
    if args.threads <= 0:
        args.threads = max(1, (os.cpu_count() or 1) // args.processes)
    files = args.files or sorted(f for f in glob.glob(os.path.join(args.in_folder, "RAW-*.h5"))
                                 if NAME_RE.search(os.path.basename(f)))   # not the control files
    if not files:
        sys.exit(f"py_pipeline: no RAW-*.h5 in {args.in_folder}")
    os.makedirs(args.out_folder, exist_ok=True)
    t0 = time.perf_counter()
    # fork: every worker inherits the imports; one task per process, each a
    # module's files (module-affine: constants loaded once per module).
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.processes, initializer=init, initargs=(args,)) as pool:
        results = [r for rs in pool.map(correct_files, module_affine(files, args.processes), chunksize=1)
                   for r in rs]
    wall = time.perf_counter() - t0
    procs = {}
    for r in results:
        p = procs.setdefault(r["pid"], dict(frames=0, seconds=0.0, peak_mb=0.0,
                                            phases=dict.fromkeys(r["phases"], 0.0)))
        p["frames"] += r["frames"]
        p["seconds"] += r["seconds"]
        p["peak_mb"] = max(p["peak_mb"], r["peak_mb"])
        for k, v in r["phases"].items():
            p["phases"][k] += v
    frames = sum(r["frames"] for r in results)
    print(json.dumps(dict(tool="py_pipeline", processes=args.processes, threads=args.threads, files=len(files),
                          frames=frames, wall_s=wall, import_s=t0 - T_IMPORT0,
                          main_peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                          per_process=list(procs.values()))))


if __name__ == "__main__":
    main()
