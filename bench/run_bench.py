#!/usr/bin/python3
"""make bench: agipd-correct against the facility's Python pipeline and an honest floor.

Generates a synthetic run with bin/agipd-simulate (raw files in the DAQ's
layout: image/data chunked one frame a chunk), then measures side by side,
BENCH_REPS times each, interleaved (rep 1 of every case, then rep 2, ...):

  collective   mpirun -np N bin/agipd-correct (parallel HDF5, default writer)
  serial       the same with --writer serial (one writer per file)
  python       bench/py_pipeline.py, N processes, module-affine (each process
               loads a module's constants once)
  floor        mpirun -np N bin/bench_floor: raw frames read as the corrector
               reads them (mapped, page faults included), float32 written
               uncompressed with per-rank POSIX writes, gain/mask of the
               corrector's own output shuffled + deflated (ISA-L) +
               fletcher32: all measured at N ranks, nothing estimated
  floor-zlib   the same floor with stock zlib (the seed's world)
  io variants  collective with other MPI-IO components or hints
               (BENCH_IO_VARIANTS)
  1 file       collective, serial and floor on one file with all ranks
  constants    (352 cells) the constants phase on a 352-cell run, beside
               reading the constants file once from the page cache
  schedule     --schedule groups against --schedule rounds at the most ranks
               on a run of uneven files (one more sequence per module, its
               last one of a quarter of the trains: agipd-simulate
               --last-trains)

for every output folder (BENCH_OUT_DIR: a RAM-backed folder first, the local
disk second), and writes bench/results/bench.{txt,json,png}.

Environment:
  BENCH_WORKLOAD  small (default: 2 modules x 2 sequences x 10 trains x 64
                  cells, constants-heavy) or production (2 x 2 x 64 trains x
                  64 cells, 16,384 frames, 4.3 GB raw)
  BENCH_MODULES, BENCH_SEQUENCES, BENCH_TRAINS, BENCH_CELLS  override the
                  workload's sizes
  BENCH_CONTIGUOUS=1  simulate the old contiguous raw layout instead
  BENCH_RANKS     (1..cores, e.g. "1,2,4" or "1-4"; beyond the cores mpirun
                  oversubscribes)
  BENCH_PYTHON_RANKS  the Python pipeline's process counts (default: BENCH_RANKS)
  BENCH_REPS      (3) clean repetitions wanted per case
  BENCH_LOAD_LIMIT (0.2) cores of other processes' CPU during a run above
                  which the repetition is loaded: it is repeated (up to
                  BENCH_LOAD_RETRIES, default 3, extra runs per rep), and a
                  repetition still loaded is marked and left out of the
                  medians (a case with only loaded reps is marked LOADED)
  BENCH_OUT_DIR   comma-separated output folders, each a column of cases
                  (default "/dev/shm,<work>/out": RAM-backed, then local disk)
  BENCH_IO_VARIANTS  comma-separated extra collective cases at 2 ranks (or
                  the most): romio321 (OMPI_MCA_io=romio321), ompio,
                  fcoll=NAME (OMPI_MCA_fcoll=NAME: individual, two_phase,
                  dynamic, dynamic_gen2, vulcan), info=KEY=VAL[;KEY=VAL]
                  (agipd-correct --mpi-info KEY=VAL,...), batch=N (--batch-frames N),
                  independent, collective-transfers (--io-transfer independent or
                  collective)
  BENCH_CONSTS352 (1) the 352-cell constants case (1 module, 2 trains, a 3.1
                  GB constants file); 0 leaves it out; BENCH_CONSTS_CELLS
                  sets its cells (smaller for smoke runs)
  BENCH_TAIL_FRAMES (0: off) a file of that many frames (1 module, 64 cells)
                  corrected at every rank count, for the gain/mask tail: the
                  'gather' phase of rank 0 per chunk (try 20000), at BENCH_TAIL_RANKS
                  (default: BENCH_RANKS; beyond the cores mpirun oversubscribes)
  BENCH_UNEVEN    (1) the schedule case on uneven files; 0 leaves it out
  BENCH_DIR       (a new folder under build/, removed at the end; a given folder
                  is kept, and a run simulated there with the same size is reused)
  BENCH_OUT       (bench/results)
  BENCH_QUIET_WAIT (0: before each run, wait up to this many seconds for
                  other processes to leave the cores)
  BENCH_ALLOW_DIRTY=1  run on a modified checkout (git describe --dirty) or
                  one outside git:
                  refused otherwise; the results are then marked DIRTY and
                  are not for the README (smoke runs only)

`run_bench.py --report-only results/bench.json` redoes the statistics, text
and plot from the measurements stored in an earlier bench.json.

Timing: every time is wall clock from launch to exit of the program
(mpirun and MPI start-up, Python start-up and imports included); the phase
columns come from inside the programs.  The floor's time leaves out the
loading of its gain/mask fixture (bench_floor's "setup": inflating the
corrector's CORR file, not floor work).  No program fsyncs; after each run
the benchmark calls sync(2) outside the timed region (sync_s).  The page
cache is never dropped: raw files and constants are read warm from memory.
"""
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
BIN = os.path.join(TOP, "bin")
PY = "/usr/bin/python3"
FRAME_RAW_BYTES = 2 * 2 * 512 * 128          # analog + digital, uint16
FRAME_GM_BYTES = 512 * 128 * (1 + 4)        # gain uint8 + mask uint32
PHASES = ["consts", "read", "correct", "compress", "write", "gather", "wait"]
AGIPD1M_FPS = 352 * 10 * 16                  # frames/s of AGIPD1M: 352 cells x 10 Hz x 16 modules
WORKLOADS = {"small": dict(modules=2, sequences=2, trains=10, cells=64),
             "production": dict(modules=2, sequences=2, trains=64, cells=64)}

sys.path.insert(0, HERE)


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def parse_ranks(s, cores):
    if not s.strip():
        return list(range(1, cores + 1))
    out = set()
    for part in s.replace(" ", "").split(","):
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        elif part:
            out.add(int(part))
    return sorted(n for n in out if n > 0)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- running

def cpu_busy_s():
    """Busy CPU seconds of the whole machine so far (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return (sum(v[:8]) - idle) / hz
    except (OSError, ValueError):
        return float("nan")


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_timed(cmd, env, timeout=3600):
    """Run cmd; returns (stdout, then stderr, process wall s, cpu s of ours,
    foreign load in cores: busy CPU of other processes during the run).
    Two pipes: mpirun forwards the ranks' stdout and stderr as they come, so
    in one stream a progress line could land inside the summary."""
    busy0, ours0, t0 = cpu_busy_s(), children_cpu_s(), time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    wall = time.perf_counter() - t0
    busy, ours = cpu_busy_s() - busy0, children_cpu_s() - ours0
    out = p.stdout + ("" if p.stdout.endswith("\n") or not p.stdout else "\n") + p.stderr
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}\n{out[-3000:]}")
    return out, wall, ours, max(0.0, busy - ours) / wall if wall > 0 else 0.0


def wait_for_quiet(limit_s, threshold=0.25):
    """Wait (at most limit_s) until other processes use under `threshold`
    cores over one second; returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        b = cpu_busy_s()
        time.sleep(1.0)
        if cpu_busy_s() - b < threshold:
            break
    return time.perf_counter() - t0


def mpi_cmd(n, cores):
    cmd = ["mpirun", "-np", str(n)]
    if n > cores:
        cmd.append("--oversubscribe")
    return cmd


def mpi_env(n, cores):
    e = dict(os.environ)
    e.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    if n > cores:
        e["OMPI_MCA_mpi_yield_when_idle"] = "1"
    return e


# ---------------------------------------------------------------- parsing

def parse_table(text, header_word="rank"):
    """The per-rank table: a header line starting with 'rank', then one line
    per rank; returns a list of {column: float}."""
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        cols = ln.split()
        if cols and cols[0] == header_word and len(cols) > 2 and "frames" in cols:
            rows = []
            for ln2 in lines[i + 1:]:
                v = ln2.split()
                if len(v) != len(cols) or not v[0].isdigit():
                    break
                rows.append({c: float(x) for c, x in zip(cols, v)})
            if rows:
                return rows
    return []


SUMMARY_RE = re.compile(r"(\d+) frames in ([\d.]+) s \(([\d.]+) frames/s, ([\d.]+) GB/s of raw data\) "
                        r"on (\d+) rank")


def parse_corrector(text):
    m = SUMMARY_RE.search(text)
    if not m:
        raise RuntimeError("no summary line in agipd-correct's output:\n" + text[-2000:])
    rows = parse_table(text)
    ranks = []
    for r in rows:
        ph = {k: r.get(k, 0.0) for k in PHASES}
        if "compress" not in r and "gz-s" in r:
            # Older table: gz-s (filtering) counted inside write.
            ph["compress"] = r["gz-s"]
            ph["write"] = r.get("write", 0.0) - r["gz-s"]
        ranks.append(dict(frames=r.get("frames", 0.0), phases=ph, peak_mb=r.get("peak-MB", 0.0)))
    out = dict(frames=int(m.group(1)), internal_s=float(m.group(2)), ranks=ranks)
    if not ranks:
        out["text_tail"] = text[-3000:]
    g = re.search(r"gain\+mask: ([\d.]+) MB compressed to ([\d.]+) MB", text)
    if g:
        out["gm_mb_in"], out["gm_mb_out"] = float(g.group(1)), float(g.group(2))
    return out


def parse_floor(text):
    m = SUMMARY_RE.search(text)
    if not m:
        raise RuntimeError("no summary line in bench_floor's output:\n" + text[-2000:])
    ranks = []
    for r in parse_table(text):
        ph = dict.fromkeys(PHASES, 0.0)
        ph["read"] = r["read"]
        ph["correct"] = r["convert"]                 # uint16 -> float32 only
        ph["compress"] = r.get("compress", 0.0)
        ph["write"] = r["write"] + r["close"]       # open (raw file, buffers) is in "other"
        ph["wait"] = r["wait"]
        ranks.append(dict(frames=r["frames"], phases=ph, peak_mb=r["peak-MB"], setup=r.get("setup", 0.0)))
    return dict(frames=int(m.group(1)), internal_s=float(m.group(2)), ranks=ranks,
                setup_s=max((x["setup"] for x in ranks), default=0.0))


def parse_python(text, n):
    js = [ln for ln in text.splitlines() if ln.startswith("{")]
    if not js:
        raise RuntimeError("no JSON line in py_pipeline's output:\n" + text[-2000:])
    d = json.loads(js[-1])
    ranks = []
    for p in d["per_process"]:
        ph = dict.fromkeys(PHASES, 0.0)
        ph.update(p["phases"])
        ranks.append(dict(frames=p["frames"], phases=ph, peak_mb=p["peak_mb"]))
    while len(ranks) < n:                               # idle workers
        ranks.append(dict(frames=0, phases=dict.fromkeys(PHASES, 0.0), peak_mb=0.0))
    return dict(frames=d["frames"], internal_s=d["wall_s"], ranks=ranks, main_peak_mb=d["main_peak_mb"],
                threads=d["threads"])


# ---------------------------------------------------------------- statistics

def stats(v):
    v = [x for x in v if x is not None]
    if not v:
        return None
    med = statistics.median(v)
    return dict(median=med, min=min(v), max=max(v), spread=(max(v) - min(v)) / med if med else 0.0, n=len(v))


def summarize(case, reps):
    """Median over the clean reps of every number of a case (all reps, and
    the case marked loaded, when none is clean)."""
    n = case["ranks"]
    s = {k: case[k] for k in ("name", "kind", "ranks", "files")}
    s.update(variant=case.get("variant", ""), fs=case.get("fs", ""), out_dir=case.get("out_dir", ""))
    clean = [r for r in reps if not r.get("loaded")]
    s["reps_total"], s["reps_clean"] = len(reps), len(clean)
    s["loaded"] = not clean
    use = clean or reps
    s["frames"] = use[0]["frames"]
    # time: launch to exit; the floor without its fixture loading (setup)
    s["wall_s"] = stats([r["wall_s"] for r in use])
    s["time"] = stats([r["wall_s"] - r.get("setup_s", 0.0) for r in use])
    s["internal_s"] = stats([r["internal_s"] for r in use])
    s["sync_s"] = stats([r["sync_s"] for r in use])
    s["cpu_s"] = stats([r["cpu_s"] for r in use])
    s["foreign_load_cores"] = stats([r["foreign_load"] for r in use])
    s["foreign_load_all_reps"] = [round(r["foreign_load"], 2) for r in reps]
    ph = {}
    tabled = [r for r in use if r["ranks"]]
    if len(tabled) < len(use):
        log(f"{case['name']}: {len(use) - len(tabled)} rep(s) without the per-rank table: phases from the others")
    tabled = tabled or [dict(r, ranks=[dict(phases={k: 0.0 for k in PHASES})]) for r in use]
    for k in PHASES:
        ph[k] = statistics.median([sum(x["phases"][k] for x in r["ranks"]) / n for r in tabled])
    s["phases_mean_per_rank"] = ph
    s["phases_max_rank"] = {k: statistics.median([max(x["phases"][k] for x in r["ranks"]) for r in tabled])
                            for k in PHASES}
    t = s["time"]["median"]
    s["time_s"] = t
    s["best_s"] = s["time"]["min"]
    s["other_s"] = max(0.0, t - sum(ph.values()))
    s["frames_per_s"] = s["frames"] / t if t else 0.0
    s["frames_per_s_per_core"] = s["frames_per_s"] / n
    s["cores_for_agipd1m"] = AGIPD1M_FPS / s["frames_per_s_per_core"] if s["frames_per_s_per_core"] else None
    s["raw_GBps"] = s["frames"] * FRAME_RAW_BYTES / t / 1e9 if t else 0.0
    peaks = [max(x.get("peak_mb", 0.0) for x in r["ranks"]) for r in tabled]
    nodes = [sum(x.get("peak_mb", 0.0) for x in r["ranks"]) + r.get("main_peak_mb", 0.0) for r in tabled]
    s["peak_mb_rank"] = max(peaks)
    s["peak_mb_node"] = max(nodes)
    if "gm_mb_in" in use[0]:
        comp = statistics.median([sum(x["phases"]["compress"] for x in r["ranks"]) for r in use])
        s["insitu_compress_GBps_per_core"] = use[0]["gm_mb_in"] / 1e3 / comp if comp else None
        s["gm_ratio"] = use[0]["gm_mb_in"] / use[0]["gm_mb_out"] if use[0]["gm_mb_out"] else None
    if case["kind"] == "constants":
        s["consts_read_once_s"] = stats([r["consts_read_once_s"] for r in use])
    return s


# ---------------------------------------------------------------- main

def git_revision():
    """git describe --always --dirty of the checkout, or 'unknown'."""
    try:
        p = subprocess.run(["git", "-C", TOP, "describe", "--always", "--dirty", "--abbrev=12"],
                           capture_output=True, text=True, timeout=30)
        return p.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def fs_label(path):
    """'shm' for a RAM-backed folder (tmpfs), else 'disk'."""
    try:
        best, typ = "", ""
        for ln in open("/proc/mounts"):
            f = ln.split()
            if len(f) >= 3 and os.path.realpath(path).startswith(f[1].rstrip("/") + "/") and len(f[1]) > len(best):
                best, typ = f[1], f[2]
        return "shm" if typ in ("tmpfs", "ramfs") else "disk"
    except OSError:
        return "disk"


def io_variant(spec):
    """(label, env additions, extra agipd-correct args) of a BENCH_IO_VARIANTS entry."""
    if spec in ("romio321", "ompio"):
        return spec, {"OMPI_MCA_io": spec}, []
    if spec.startswith("fcoll="):
        return spec, {"OMPI_MCA_fcoll": spec[6:]}, []
    if spec.startswith("info="):
        return spec, {}, ["--mpi-info", spec[5:].replace(";", ",")]
    if spec in ("independent", "collective-transfers"):
        return spec, {}, ["--io-transfer", spec.split("-")[0]]
    if spec.startswith("batch=") and spec[6:].isdigit():
        return spec, {}, ["--batch-frames", spec[6:]]
    raise SystemExit(f"run_bench: unknown BENCH_IO_VARIANTS entry {spec!r}")


def main():
    """Run the benchmark; output folders under BENCH_OUT_DIR (RAM-backed:
    they hold memory) are removed even when a run fails."""
    scratches = []
    try:
        run(scratches)
    finally:
        for d in scratches:
            shutil.rmtree(d, ignore_errors=True)


def run(scratches):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workload = os.environ.get("BENCH_WORKLOAD", "").strip() or "small"
    if workload not in WORKLOADS:
        sys.exit(f"run_bench: BENCH_WORKLOAD must be one of {', '.join(WORKLOADS)}")
    wl = WORKLOADS[workload]
    cfg = dict(workload=workload, modules=env_int("BENCH_MODULES", wl["modules"]),
               sequences=env_int("BENCH_SEQUENCES", wl["sequences"]), trains=env_int("BENCH_TRAINS", wl["trains"]),
               cells=env_int("BENCH_CELLS", wl["cells"]), layout="contiguous" if env_int("BENCH_CONTIGUOUS", 0)
               else "daq", ranks=parse_ranks(os.environ.get("BENCH_RANKS", ""), cores), reps=env_int("BENCH_REPS", 3),
               cores=cores, load_limit=float(os.environ.get("BENCH_LOAD_LIMIT", "") or 0.2),
               load_retries=env_int("BENCH_LOAD_RETRIES", 3), consts_cells=env_int("BENCH_CONSTS_CELLS", 352),
               tail_frames=env_int("BENCH_TAIL_FRAMES", 0))
    cfg["python_ranks"] = parse_ranks(os.environ.get("BENCH_PYTHON_RANKS", ""), cores) \
        if os.environ.get("BENCH_PYTHON_RANKS", "").strip() else cfg["ranks"]
    cfg["tail_ranks"] = parse_ranks(os.environ.get("BENCH_TAIL_RANKS", ""), cores) \
        if os.environ.get("BENCH_TAIL_RANKS", "").strip() else cfg["ranks"]
    cfg["sized_as_workload"] = all(cfg[k] == wl[k] for k in wl)
    rev = git_revision()
    cfg["revision"] = rev
    cfg["dirty"] = rev.endswith("-dirty") or rev == "unknown"
    if cfg["dirty"] and not env_int("BENCH_ALLOW_DIRTY", 0):
        sys.exit(f"run_bench: the checkout is {rev}: benchmark a clean revision (commit first), or set "
                 "BENCH_ALLOW_DIRTY=1 for a smoke run whose results are marked DIRTY")
    out_dir = os.environ.get("BENCH_OUT") or os.path.join(HERE, "results")
    given_dir = os.environ.get("BENCH_DIR", "").strip()
    if given_dir:
        work = os.path.abspath(given_dir)
        os.makedirs(work, exist_ok=True)
    else:
        os.makedirs(os.path.join(TOP, "build"), exist_ok=True)
        work = tempfile.mkdtemp(prefix="bench-", dir=os.path.join(TOP, "build"))
    os.makedirs(out_dir, exist_ok=True)
    bases = [x.strip() for x in (os.environ.get("BENCH_OUT_DIR", "") or
                                 ("/dev/shm," if os.access("/dev/shm", os.W_OK) else "") +
                                 os.path.join(work, "out")).split(",") if x.strip()]
    # A snapshot of the programs: a rebuild during the benchmark must not
    # change what is measured.
    global BIN
    snap = os.path.join(work, "bin")
    os.makedirs(snap, exist_ok=True)
    for exe in ("agipd-correct", "agipd-simulate", "bench_floor", "bench_compress", "bench_kernel"):
        if not os.access(os.path.join(BIN, exe), os.X_OK):
            sys.exit(f"run_bench: {BIN}/{exe} missing: run make first")
        shutil.copy2(os.path.join(BIN, exe), os.path.join(snap, exe))
    BIN = snap
    t_bench0 = time.perf_counter()
    maxn = max(cfg["ranks"])
    n2 = 2 if 2 in cfg["ranks"] else maxn
    log(f"workload {workload}: {cfg['modules']} module(s) x {cfg['sequences']} sequence(s) x {cfg['trains']} "
        f"train(s) x {cfg['cells']} cells, {cfg['layout']} raw layout; ranks {cfg['ranks']}; {cfg['reps']} rep(s); "
        f"{cores} core(s); revision {rev}{' (DIRTY: smoke run)' if cfg['dirty'] else ''}; work {work}; "
        f"outputs to {', '.join(bases)}")

    # 1. The run (reused when BENCH_DIR holds one of the same size).
    def simulate(folder, key, args):
        stamp = os.path.join(folder, "bench-sim.json")
        if os.path.exists(stamp) and json.load(open(stamp)) == key:
            return None
        for d in ("r0001", "constants"):
            shutil.rmtree(os.path.join(folder, d), ignore_errors=True)
        os.makedirs(folder, exist_ok=True)
        t0 = time.perf_counter()
        subprocess.run([os.path.join(BIN, "agipd-simulate"), "--out-folder", folder, "--no-truth"] + args,
                       check=True, stdout=subprocess.DEVNULL)
        json.dump(key, open(stamp, "w"))
        return time.perf_counter() - t0

    sim_key = {k: cfg[k] for k in ("modules", "sequences", "trains", "cells", "layout")}
    sim_s = simulate(work, sim_key, ["--modules", f"0-{cfg['modules'] - 1}", "--sequences", str(cfg["sequences"]),
                                     "--trains", str(cfg["trains"]), "--cells", str(cfg["cells"])] +
                     (["--contiguous"] if cfg["layout"] == "contiguous" else []))
    if sim_s is not None:
        log(f"simulated the run in {sim_s:.1f} s")
    run_dir = os.path.join(work, "r0001")
    raw_files = sorted(os.path.join(run_dir, f) for f in os.listdir(run_dir) if re.match(r"RAW-R\d+-AGIPD\d\d-S", f))
    raw_bytes = sum(os.path.getsize(f) for f in raw_files)
    consts_dir = os.path.join(work, "constants")
    consts_bytes = sum(os.path.getsize(os.path.join(consts_dir, f)) for f in os.listdir(consts_dir))
    one_file = raw_files[:1]
    m0 = re.search(r"AGIPD(\d\d)-S(\d{5})", one_file[0])
    c352 = os.path.join(work, "c352")
    if env_int("BENCH_CONSTS352", 1):
        s352 = simulate(c352, dict(cells=cfg["consts_cells"], layout=cfg["layout"]),
                        ["--modules", "0", "--sequences", "1", "--trains", "2", "--cells", str(cfg["consts_cells"])] +
                        (["--contiguous"] if cfg["layout"] == "contiguous" else []))
        if s352 is not None:
            log(f"simulated the {cfg['consts_cells']}-cell run in {s352:.1f} s")
    tail_dir = os.path.join(work, "tail")
    if cfg["tail_frames"]:
        tt = -(-cfg["tail_frames"] // 64)
        st_ = simulate(tail_dir, dict(trains=tt, cells=64, layout=cfg["layout"]),
                       ["--modules", "0", "--sequences", "1", "--trains", str(tt), "--cells", "64"] +
                       (["--contiguous"] if cfg["layout"] == "contiguous" else []))
        if st_ is not None:
            log(f"simulated the {tt * 64}-frame file for the gain/mask tail in {st_:.1f} s")
    uneven_dir = os.path.join(work, "uneven")
    uneven = env_int("BENCH_UNEVEN", 1)
    if uneven:
        last = max(1, cfg["trains"] // 4)
        su = simulate(uneven_dir, dict(sim_key, last=last),
                      ["--modules", f"0-{cfg['modules'] - 1}", "--sequences", str(cfg["sequences"] + 1),
                       "--trains", str(cfg["trains"]), "--last-trains", str(last), "--cells", str(cfg["cells"])] +
                      (["--contiguous"] if cfg["layout"] == "contiguous" else []))
        if su is not None:
            log(f"simulated the uneven run (last sequence {last} train(s)) in {su:.1f} s")
    os.sync()
    ref_dir = os.path.join(work, "ref")

    def corrector_cmd(n, writer, single, scratch, extra_env=None, extra_args=(), in_folder=work, consts=consts_dir):
        cmd = mpi_cmd(n, cores) + [os.path.join(BIN, "agipd-correct"), "--in-folder", in_folder, "--out-folder",
                                   scratch, "--run", "1", "--constants-folder", consts, "--overwrite",
                                   "--writer", writer] + list(extra_args)
        if single:
            cmd += ["--modules", str(int(m0.group(1))), "--sequences", str(int(m0.group(2)))]
        env = mpi_env(n, cores)
        env.update(extra_env or {})
        return cmd, env

    def floor_cmd(n, files, scratch, zlib=False):
        return (mpi_cmd(n, cores) + [os.path.join(BIN, "bench_floor"), "--gain-from", ref_dir] +
                (["--zlib"] if zlib else []) + [scratch] + files, mpi_env(n, cores))

    def python_cmd(n, scratch):
        return [PY, os.path.join(HERE, "py_pipeline.py"), "--in-folder", run_dir, "--constants-folder",
                consts_dir, "--out-folder", scratch, "--processes", str(n)], dict(os.environ)

    cases = []
    variants = [io_variant(v.strip()) for v in os.environ.get("BENCH_IO_VARIANTS", "").split(",") if v.strip()]
    for base in bases:
        os.makedirs(base, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix="bench-out-", dir=base)
        scratches.append(scratch)
        fs = fs_label(scratch)
        tag = f" [{fs}]" if len(bases) > 1 or fs != "shm" else ""

        def add(name, kind, n, files, cmd, parse, **kw):
            cases.append(dict(name=name + tag, kind=kind, ranks=n, files=files, cmd=cmd, parse=parse, fs=fs,
                              out_dir=base, scratch=scratch, **kw))
        for n in cfg["ranks"]:
            add(f"collective x{n}", "collective", n, len(raw_files), corrector_cmd(n, "collective", False, scratch),
                parse_corrector)
        for n in cfg["ranks"]:
            add(f"serial x{n}", "serial", n, len(raw_files), corrector_cmd(n, "serial", False, scratch),
                parse_corrector)
        for n in cfg["python_ranks"]:
            add(f"python x{n}", "python", n, len(raw_files), python_cmd(n, scratch),
                lambda t, n=n: parse_python(t, n))
        for n in cfg["ranks"]:
            add(f"floor x{n}", "floor", n, len(raw_files), floor_cmd(n, raw_files, scratch), parse_floor)
        for n in cfg["ranks"]:
            add(f"floor-zlib x{n}", "floor", n, len(raw_files), floor_cmd(n, raw_files, scratch, True), parse_floor,
                variant="zlib")
        for label, env, args in variants:
            add(f"collective {label} x{n2}", "collective", n2, len(raw_files),
                corrector_cmd(n2, "collective", False, scratch, env, args), parse_corrector, variant=label)
        for kind in ("collective", "serial", "floor"):
            cmd = floor_cmd(maxn, one_file, scratch) if kind == "floor" else corrector_cmd(maxn, kind, True, scratch)
            add(f"1 file: {kind} x{maxn}", kind, maxn, 1, cmd, parse_floor if kind == "floor" else parse_corrector,
                one_file=True)
        if cfg["tail_frames"] and base == bases[0]:
            for n in cfg["tail_ranks"]:
                add(f"tail {-(-cfg['tail_frames'] // 64) * 64} frames x{n}", "tail", n, 1,
                    corrector_cmd(n, "collective", False, scratch, in_folder=tail_dir,
                                  consts=os.path.join(tail_dir, "constants")), parse_corrector)
        if uneven and base == bases[0]:
            nu = cfg["modules"] * (cfg["sequences"] + 1)
            for sched in ("groups", "rounds"):
                add(f"uneven: schedule {sched} x{maxn}", "schedule", maxn, nu,
                    corrector_cmd(maxn, "collective", False, scratch, extra_args=("--schedule", sched),
                                  in_folder=uneven_dir, consts=os.path.join(uneven_dir, "constants")),
                    parse_corrector, variant=sched)
        if env_int("BENCH_CONSTS352", 1) and base == bases[0]:
            add(f"constants {cfg['consts_cells']} cells x{maxn}", "constants", maxn, 1,
                corrector_cmd(maxn, "collective", False, scratch, in_folder=c352,
                              consts=os.path.join(c352, "constants")), parse_corrector)

    def fresh(scratch):
        shutil.rmtree(scratch, ignore_errors=True)
        os.makedirs(scratch)

    # 2. Warm-up (not counted): the corrector at all ranks; its CORR files
    #    are the floor's gain/mask and the reference for bench_compress and
    #    for the Python output.
    shutil.rmtree(ref_dir, ignore_errors=True)
    os.makedirs(ref_dir)
    cmd, env = corrector_cmd(maxn, "collective", False, ref_dir)
    run_timed(cmd, env)
    ref_name = os.path.basename(one_file[0]).replace("RAW-", "CORR-")
    os.sync()
    log("warm-up done; compression on one core (bench_compress)")
    out, _, _, _ = run_timed([os.path.join(BIN, "bench_compress"), os.path.join(ref_dir, ref_name)], dict(os.environ))
    comp = json.loads(out[out.index("{"):])
    log("the correction kernel alone on one core (bench_kernel)")
    kout, _, _, _ = run_timed([os.path.join(BIN, "bench_kernel"), str(cfg["cells"]), "1"], dict(os.environ))
    comp["kernel_text"] = kout.strip()

    def consts_read_once(folder):
        """Seconds to read every constants file of folder once, from the page
        cache (read twice; the second read is timed)."""
        files = [os.path.join(folder, f) for f in os.listdir(folder)]
        for timed in (False, True):
            t0 = time.perf_counter()
            for f in files:
                with open(f, "rb", buffering=0) as fh:
                    while fh.read(1 << 24):
                        pass
            if timed:
                return time.perf_counter() - t0

    # 3. The measurements, interleaved; a loaded run is repeated.
    results = {c["name"]: [] for c in cases}
    py_check = None
    quiet_wait = env_int("BENCH_QUIET_WAIT", 0)
    waited = 0.0
    for rep in range(cfg["reps"]):
        for c in cases:
            for attempt in range(cfg["load_retries"] + 1):
                fresh(c["scratch"])
                os.sync()
                waited += wait_for_quiet(quiet_wait)
                cmd, env = c["cmd"]
                text, wall, cpu, foreign = run_timed(cmd, env)
                t0 = time.perf_counter()
                os.sync()
                sync_s = time.perf_counter() - t0
                r = c["parse"](text)
                r.update(wall_s=wall, sync_s=sync_s, cpu_s=cpu, foreign_load=foreign, loadavg=os.getloadavg()[0],
                         attempt=attempt, loaded=foreign > cfg["load_limit"])
                if c["kind"] == "constants":
                    r["consts_read_once_s"] = consts_read_once(os.path.join(c352, "constants"))
                results[c["name"]].append(r)
                log(f"rep {rep + 1}/{cfg['reps']}  {c['name']:<30} {r['frames']:6d} frames  "
                    f"{wall - r.get('setup_s', 0.0):7.2f} s launch-to-exit{' - setup' if 'setup_s' in r else ''}, "
                    f"{r['internal_s']:7.2f} s inside, sync {sync_s:5.2f} s, other load {foreign:4.2f} cores"
                    f"{'  LOADED' if r['loaded'] else ''}")
                if c["kind"] == "python" and py_check is None:
                    py_check = compare_outputs(os.path.join(ref_dir, ref_name), os.path.join(c["scratch"], ref_name))
                    log(f"python output vs corrector: {py_check}")
                if not r["loaded"]:
                    break
    for scratch in scratches:
        shutil.rmtree(scratch, ignore_errors=True)
    # The raw measurements first: a failure below leaves them to
    # run_bench.py --report-only.
    with open(os.path.join(out_dir, "measurements.json"), "w") as f:
        json.dump(dict(config=cfg, results=results), f, default=str)

    total_s = time.perf_counter() - t_bench0
    report = dict(
        config=cfg, work_dir=work, raw_files=len(raw_files), raw_bytes=raw_bytes, constants_bytes=consts_bytes,
        frames=results[cases[0]["name"]][0]["frames"], simulate_s=sim_s, bench_s=total_s, quiet_wait_s=waited,
        machine=dict(cores=cores, cpu=cpu_model(), kernel=platform.release(), mem_gb=mem_gb(),
                     python=platform.python_version()),
        software=software_versions(comp),
        timing_notes=dict(
            fsync="excluded: no program fsyncs; sync(2) runs after each measured run, outside the timing "
                  "(sync_s)",
            page_cache="not dropped: inputs are read warm from the page cache; outputs may still be in it",
            time_used="every time is wall clock from launch to exit (mpirun and MPI start-up, Python start-up "
                      "and imports included); the floor's leaves out its fixture loading (setup)",
            floor="floor = bench_floor at N ranks, all measured: mapped raw reads with their page faults, "
                  "uint16->float32, gain/mask shuffle+deflate+fletcher32 of the corrector's own output "
                  "(ISA-L; floor-zlib: stock zlib), float32 + compressed chunks written with per-rank POSIX "
                  "writes",
            phases="seconds per phase: mean over ranks (processes), median over clean reps; other = time - "
                   "sum of phases (start-up, constants sharing, idle ranks)",
            peak_memory="peak RSS (ru_maxrss) per rank; per node = the sum over ranks (and the Python "
                        "pipeline's parent), an upper bound",
            foreign_load=f"busy CPU of other processes on the machine during a run, in cores (/proc/stat "
                         f"minus our children's CPU time); above {cfg['load_limit']} a rep is loaded: repeated "
                         f"(up to {cfg['load_retries']} times), and left out of the medians"),
        compression=comp, python_check=py_check,
        cases=[{k: c.get(k, "") for k in ("name", "kind", "ranks", "files", "variant", "fs", "out_dir")}
               for c in cases], raw=results)
    write_outputs(report, out_dir)
    log(f"wrote {out_dir}/bench.txt, bench.json, bench.png in {total_s:.0f} s")
    if not given_dir:
        shutil.rmtree(work, ignore_errors=True)


def write_outputs(report, out_dir):
    """Statistics, ratios, then bench.json, bench.txt and bench.png."""
    comp, cfg = report["compression"], report["config"]
    cases = [{k: c.get(k, "") for k in ("name", "kind", "ranks", "files", "variant", "fs", "out_dir")}
             for c in report["cases"]]
    report["cases"] = [summarize(c, report["raw"][c["name"]]) for c in cases]
    report["ratios"] = compute_ratios(cfg, report["cases"], comp, max(cfg["ranks"]))
    with open(os.path.join(out_dir, "bench.json"), "w") as f:
        json.dump(report, f, indent=1)
    text = format_text(report)
    with open(os.path.join(out_dir, "bench.txt"), "w") as f:
        f.write(text)
    try:
        import plot_bench
        plot_bench.plot(report, os.path.join(out_dir, "bench.png"))
    except Exception as exc:     # the plot is a convenience; the text and JSON are the results
        log(f"no plot: {exc!r}")
    print(text)


def compare_outputs(a, b):
    """Values of the Python pipeline's CORR file against the corrector's."""
    import h5py
    import numpy as np
    res = {}
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names = []
        fa.visit(names.append)
        for k in ("image/data", "image/gain", "image/mask", "image/cellId", "image/trainId", "image/first",
                  "image/count"):
            path = next((p for p in names if p.endswith("/" + k)), None)
            if path is None or path not in fb:
                res[k.split("/")[1]] = "missing"
                continue
            x, y = fa[path][()], fb[path][()]
            res[k.split("/")[1]] = "equal" if x.shape == y.shape and np.array_equal(x, y) else "DIFFERENT"
    return res


def compute_ratios(cfg, cases, comp, maxn):
    """The issue's targets, per output folder (file system)."""
    n2 = 2 if 2 in cfg["ranks"] else maxn
    prod = cfg.get("workload") == "production"
    out = []

    def ratio(a, b):
        return a / b if a and b else None

    def add(key, label, value, target, op, detail, best=None):
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        out.append(dict(key=key, label=label, value=value, target=target, op=op, met=met, detail=detail,
                        best_reps=best))

    for fs in dict.fromkeys(c["fs"] for c in cases if c["kind"] not in ("constants", "tail", "schedule")):
        by = {c["name"].replace(f" [{fs}]", ""): c for c in cases if c["fs"] == fs}
        sfx = f" [{fs}]"

        def t(name):
            return by[name]["time_s"] if name in by else None

        def tb(name):
            return by[name]["best_s"] if name in by else None

        co, fl, fz, py = (by.get(f"{k} x{n2}") for k in ("collective", "floor", "floor-zlib", "python"))
        add("python_speedup" + sfx, f"Python pipeline / corrector, {n2} ranks{sfx}", ratio(t(f"python x{n2}"),
            t(f"collective x{n2}")), 10.0 if prod else 6.0, ">=",
            f"py_pipeline (module-affine) with {n2} processes vs agipd-correct (collective) on {n2} ranks, launch "
            f"to exit; CPU seconds {fmt(ratio(py and py['cpu_s']['median'], co and co['cpu_s']['median']))}x",
            ratio(tb(f"python x{n2}"), tb(f"collective x{n2}")))
        detail = "n/a"
        if co and fl:
            pc, pf = co["phases_max_rank"], fl["phases_max_rank"]
            detail = ("slowest rank, corrector vs floor: " + ", ".join(
                f"{k} {pc[k]:.2f}/{pf[k]:.2f}" for k in ("read", "correct", "compress", "write")) +
                f", consts {pc['consts']:.2f}; zlib floor {fmt(fz and fz['time_s'])} s, corrector / zlib floor "
                f"{fmt(ratio(t(f'collective x{n2}'), t(f'floor-zlib x{n2}')))}")
        add("vs_floor" + sfx, f"corrector / floor (ISA-L), {n2} ranks{sfx}", ratio(t(f"collective x{n2}"),
            t(f"floor x{n2}")), 1.25, "<=", detail, ratio(tb(f"collective x{n2}"), tb(f"floor x{n2}")))
        if co and fl:
            wc, wf = co["phases_mean_per_rank"]["write"], fl["phases_mean_per_rank"]["write"]
            add("write_vs_floor" + sfx, f"write phase / floor's write of the same bytes, {n2} ranks{sfx}",
                ratio(wc, wf), 1.3, "<=", f"corrector write {wc:.2f} s (gather {co['phases_mean_per_rank']['gather']:.2f}"
                f" s beside it), floor's POSIX write {wf:.2f} s, mean per rank")
        if co:
            add("fps_per_core" + sfx, f"frames/s per core end-to-end, {n2} ranks{sfx}", co["frames_per_s_per_core"],
                2000.0, ">=", f"{co['frames_per_s']:.0f} frames/s on {n2} ranks; AGIPD1M ({AGIPD1M_FPS} frames/s) "
                f"needs {fmt(co['cores_for_agipd1m'], 0)} cores at this speed")
            pc = co["phases_mean_per_rank"]
            kern = co["frames"] / n2 / (pc["read"] + pc["correct"]) if pc["read"] + pc["correct"] else None
            add("kernel_fps" + sfx, f"correction kernel frames/s per core, reads counted{sfx}", kern, 8000.0, ">=",
                f"frames per rank / (read + correct phase): read {pc['read']:.2f} s, correct {pc['correct']:.2f} s")
        if n2 != 1:
            add("scaling" + sfx, f"speed-up {n2} ranks vs 1 rank (collective){sfx}",
                ratio(t("collective x1"), t(f"collective x{n2}")), 1.85 if n2 == 2 else 0.925 * n2, ">=",
                f"serial writer {fmt(ratio(t('serial x1'), t(f'serial x{n2}')))}x, Python "
                f"{fmt(ratio(t('python x1'), t(f'python x{n2}')))}x, floor {fmt(ratio(t('floor x1'), t(f'floor x{n2}')))}x",
                ratio(tb("collective x1"), tb(f"collective x{n2}")))
            one_c, one_s = by.get(f"1 file: collective x{maxn}"), by.get(f"1 file: serial x{maxn}")
            add("collective_vs_serial" + sfx, f"serial / collective time, 1 file on {maxn} ranks{sfx}",
                ratio(one_s and one_s["time_s"], one_c and one_c["time_s"]), 1.0, ">=",
                "files fewer than ranks: the serial writer leaves ranks idle",
                ratio(tb(f"1 file: serial x{maxn}"), tb(f"1 file: collective x{maxn}")))
    k = next((c for c in cases if c["kind"] == "constants"), None)
    if k:
        once = k["consts_read_once_s"]["median"]
        add("constants_352", f"constants phase ({cfg.get('consts_cells', 352)} cells) / reading the constants file once from the page cache",
            ratio(k["phases_max_rank"]["consts"], once), 2.0, "<=",
            f"consts phase {k['phases_max_rank']['consts']:.2f} s (slowest rank), whole file read {once:.2f} s "
            "(the needed planes are a part of it: the ratio is a lower bound)")
    a, z = comp["agipd"], comp["zlib"]
    add("compress_GBps", "gain/mask shuffle+deflate+fletcher32, GB/s per core", a["GBps_total_cpu"], 2.0, ">=",
        f"per CPU second (wall: {a['GBps_total']:.2f}); {a['encoder']} level 1 ratio {a['ratio']:.1f}; stock zlib "
        f"level 1 + fletcher32: {z['GBps_total_cpu']:.2f} GB/s, ratio {z['ratio']:.1f}")
    return out


def fmt(v, nd=2):
    return "n/a" if v is None else f"{v:.{nd}f}"


def format_text(rep):
    cfg = rep["config"]
    L = []
    L.append("agipd-correct benchmark  (make bench; bench/run_bench.py)")
    if cfg.get("dirty"):
        L.append(f"*** DIRTY: revision {cfg['revision']} is not a clean commit; a smoke run, NOT for the README ***")
    L.append(f"revision {cfg.get('revision', '?')}; workload {cfg.get('workload', '?')}"
             f"{'' if cfg.get('sized_as_workload', True) else ' (sizes overridden by BENCH_*)'}; "
             f"raw layout {cfg.get('layout', '?')}")
    L.append(f"run: {cfg['modules']} module(s) x {cfg['sequences']} sequence(s) = {rep['raw_files']} raw files, "
             f"{cfg['trains']} trains x {cfg['cells']} cells = {rep['frames']} frames, raw "
             f"{rep['raw_bytes'] / 1e9:.3f} GB, constants {rep['constants_bytes'] / 1e9:.3f} GB")
    m = rep["machine"]
    L.append(f"machine: {m['cores']} core(s) {m['cpu']}, {m['mem_gb']:.0f} GB, Linux {m['kernel']}; "
             f"{rep['software']}")
    L.append(f"reps: {cfg['reps']} clean wanted per case, interleaved; load limit {cfg.get('load_limit', 0.2)} "
             f"cores; ranks {cfg['ranks']}; total {rep['bench_s']:.0f} s")
    L.append("")
    hdr = (f"{'case':<38} {'time s':>7} {'[min-max]':>13} {'fr/s':>6} {'/core':>6} {'cores1M':>7}  "
           + " ".join(f"{p[:7]:>7}" for p in PHASES) + f" {'other':>6}  {'MB/rk':>6} {'cpu s':>6} "
           f"{'sync':>5} {'load':>4} {'clean':>5}")
    L.append(hdr)
    L.append("-" * len(hdr))
    for s in rep["cases"]:
        tt = s["time"]
        ph = s["phases_mean_per_rank"]
        c1m = s.get("cores_for_agipd1m")
        L.append(f"{s['name']:<38} {s['time_s']:7.2f} {tt['min']:6.2f}-{tt['max']:<6.2f} "
                 f"{s['frames_per_s']:6.0f} {s['frames_per_s_per_core']:6.0f} {fmt(c1m, 0):>7}  "
                 + " ".join(f"{ph[p]:7.2f}" for p in PHASES)
                 + f" {s['other_s']:6.2f}  {s['peak_mb_rank']:6.0f} {s['cpu_s']['median']:6.2f} "
                   f"{s['sync_s']['median']:5.2f} {s['foreign_load_cores']['median']:4.2f} "
                   f"{s['reps_clean']:>2}/{s['reps_total']:<2}{' LOADED' if s['loaded'] else ''}")
    L.append("")
    L.append("time: wall clock launch to exit, median of the clean reps (floor: less its fixture loading);")
    L.append("fr/s: frames per second; /core: per rank; cores1M: cores that keep up with AGIPD1M "
             f"({AGIPD1M_FPS} frames/s) at that speed;")
    L.append("phases: seconds, mean over ranks (read includes the page faults of mapped reads);")
    L.append("cpu s: CPU seconds of all the run's processes (MPI ranks spin while they wait);")
    L.append("sync: sync(2) after the run, not in the time; load: other processes' CPU during the run, cores;")
    L.append("clean: reps under the load limit / reps run (loaded reps are left out of the medians).")
    L.append("floor: 'correct' is the uint16->float32 cast, 'compress' the gain/mask encode (ISA-L; floor-zlib:")
    L.append("stock zlib), 'write' per-rank POSIX writes of the same bytes; python: 'compress' is waiting for")
    L.append("the zlib thread pool.")
    L.append("")
    c = rep["compression"]
    L.append(f"compression on one core, gain+mask of {c['frames']} frames of {os.path.basename(c['file'])} "
             "(GB/s of uncompressed bytes per CPU second; wall-clock in brackets):")
    for k in ("agipd", "zlib"):
        x = c[k]
        L.append(f"  {k:<6} {x['encoder']:<15} {x['GBps_total_cpu']:6.2f} GB/s [{x['GBps_total']:.2f}] = shuffle "
                 f"{x['GBps_shuffle_cpu']:.2f}, deflate {x['GBps_deflate_cpu']:.2f}, fletcher32 "
                 f"{x['GBps_fletcher32_of_input_cpu']:.0f}; ratio {x['ratio']:.1f}, round trip "
                 f"{'ok' if x['roundtrip_ok'] else 'FAILED'}")
    if c.get("kernel_text"):
        L.append("")
        L.extend(c["kernel_text"].splitlines())
        L.append("(frames per CPU second, synthetic constants and frames in memory: per-frame passes against a "
                 "cell's frames tile by tile)")
    if rep["python_check"]:
        L.append(f"python output vs corrector output (one file): {rep['python_check']}")
    L.append("")
    L.append("targets:")
    for r in rep["ratios"]:
        mark = "n/a" if r["met"] is None else ("met" if r["met"] else "NOT MET")
        best = "" if r["best_reps"] is None else f"; fastest reps: {fmt(r['best_reps'])}"
        L.append(f"  [{mark:^7}] {r['label']}: {fmt(r['value'])} (target {r['op']} {r['target']:g}){best}")
        L.append(f"            {r['detail']}")
    L.append("")
    n = rep["timing_notes"]
    L.append("flush: " + n["fsync"] + ".")
    L.append("cache: " + n["page_cache"] + ".")
    loaded = [s["name"] for s in rep["cases"] if s["loaded"]]
    if loaded:
        L.append(f"WARNING: every rep of {', '.join(loaded)} ran under outside load: those times are disturbed.")
    tails = [s for s in rep["cases"] if s["kind"] == "tail"]
    if tails:
        L.append("gain/mask tail (rank 0 adds every gain/mask chunk with H5Dwrite_chunk after the collective close;")
        L.append("'gather' phase of the slowest rank, per chunk = 2 per frame):")
        for s in tails:
            g = s["phases_max_rank"]["gather"]
            L.append(f"  {s['name']:<32} gather {g:6.2f} s = {g / (2 * s['frames']) * 1e6:6.1f} us a chunk, of "
                     f"{s['time_s']:.2f} s launch to exit")
    sched = {s.get("variant"): s for s in rep["cases"] if s["kind"] == "schedule"}
    if "groups" in sched and "rounds" in sched:
        g, r = sched["groups"], sched["rounds"]
        L.append(f"schedule on uneven files ({g['files']} files, {g['ranks']} ranks): groups {g['time_s']:.2f} s, "
                 f"rounds {r['time_s']:.2f} s (rounds / groups {r['time_s'] / g['time_s']:.2f})")
    if cfg.get("dirty"):
        L.append(f"*** DIRTY revision {cfg['revision']}: not for the README ***")
    return "\n".join(L) + "\n"


def cpu_model():
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def mem_gb():
    try:
        for ln in open("/proc/meminfo"):
            if ln.startswith("MemTotal"):
                return int(ln.split()[1]) / 1e6
    except OSError:
        pass
    return 0.0


def software_versions(comp):
    parts = []
    try:
        v = subprocess.run([os.path.join(BIN, "agipd-correct"), "--version"], capture_output=True, text=True)
        parts.append((v.stdout or v.stderr).strip().splitlines()[0])
    except (OSError, IndexError):
        pass
    try:
        v = subprocess.run(["mpirun", "--version"], capture_output=True, text=True)
        parts.append(v.stdout.strip().splitlines()[0])
    except (OSError, IndexError):
        pass
    parts.append(f"deflate {comp['agipd']['encoder']}, zlib {comp['zlib_version']}")
    return "; ".join(parts)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--report-only":
        # Redo the statistics, text and plot from an earlier bench.json.
        src = os.path.abspath(sys.argv[2])
        write_outputs(json.load(open(src)), os.path.dirname(src))
    elif len(sys.argv) > 1:
        sys.exit(__doc__)
    else:
        main()
