#!/usr/bin/python3
"""make bench: agipd-correct against the facility's Python pipeline and the I/O floor.

Generates a synthetic run with bin/agipd-simulate, then measures side by
side, BENCH_REPS times each, interleaved (rep 1 of every case, then rep 2, ...)
so that a burst of load from elsewhere spreads over all cases:

  collective   mpirun -np N bin/agipd-correct (parallel HDF5, default writer)
  serial       the same with --writer serial (one writer per file)
  python       bench/py_pipeline.py, N processes (what users run today)
  floor        mpirun -np N bin/bench_floor: read raw + write float32, no
               correction, no gain/mask; plus stock zlib level 1 on the
               shuffled gain/mask (bin/bench_compress, one core) divided by N
  1 file       collective, serial and floor on one file with all ranks

and writes bench/results/bench.{txt,json,png}.  Environment:

  BENCH_MODULES (2)  BENCH_SEQUENCES (2)  BENCH_TRAINS (10)  BENCH_CELLS (64)
  BENCH_RANKS   (1..cores, e.g. "1,2,4" or "1-4"; beyond the cores mpirun oversubscribes)
  BENCH_REPS    (3)
  BENCH_DIR     (a new folder under build/, removed at the end; a given folder
                 is kept, and a run simulated there with the same size is reused)
  BENCH_OUT     (bench/results)
  BENCH_QUIET_WAIT (0: before each run, wait up to this many seconds for
                 other processes to leave the cores; the 'load' column says
                 how busy the machine was during each case)

`run_bench.py --report-only results/bench.json` redoes the statistics, text
and plot from the measurements stored in an earlier bench.json.

Timing: every time excludes fsync.  Neither agipd-correct nor the other
programs fsync their outputs; after each measured run the benchmark calls
sync(2) outside the timed region (its duration is recorded as sync_s), so one
run's dirty pages are not flushed during the next one.  The page cache is
never dropped: raw files and constants are read warm from memory, and the
written files may still be in the page cache when the clock stops.
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
    """Run cmd; returns (stdout+stderr, process wall s, cpu s of ours,
    foreign load in cores: busy CPU of other processes during the run)."""
    busy0, ours0, t0 = cpu_busy_s(), children_cpu_s(), time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    wall = time.perf_counter() - t0
    busy, ours = cpu_busy_s() - busy0, children_cpu_s() - ours0
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}\n{p.stdout[-3000:]}")
    return p.stdout, wall, ours, max(0.0, busy - ours) / wall if wall > 0 else 0.0


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
        if cols and cols[0] == header_word and len(cols) > 2:
            rows = []
            for ln2 in lines[i + 1:]:
                v = ln2.split()
                if len(v) != len(cols) or not v[0].isdigit():
                    break
                rows.append({c: float(x) for c, x in zip(cols, v)})
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
        ph["write"] = r["open"] + r["write"] + r["close"]
        ph["wait"] = r["wait"]
        ranks.append(dict(frames=r["frames"], phases=ph, peak_mb=r["peak-MB"]))
    return dict(frames=int(m.group(1)), internal_s=float(m.group(2)), ranks=ranks)


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


def summarize(case, reps, zlib_s_per_frame):
    """Median over reps of every number of a case."""
    n = case["ranks"]
    s = dict(name=case["name"], kind=case["kind"], ranks=n, files=case["files"])
    s["frames"] = reps[0]["frames"]
    s["wall_s"] = stats([r["wall_s"] for r in reps])
    s["internal_s"] = stats([r["internal_s"] for r in reps])
    s["sync_s"] = stats([r["sync_s"] for r in reps])
    s["cpu_s"] = stats([r["cpu_s"] for r in reps])
    s["foreign_load_cores"] = stats([r["foreign_load"] for r in reps])
    ph = {}
    for k in PHASES:
        ph[k] = statistics.median([sum(x["phases"][k] for x in r["ranks"]) / n for r in reps])
    if case["kind"] == "floor":
        # Stock zlib on the gain/mask of these frames, shared by the N ranks.
        ph["compress"] = zlib_s_per_frame * s["frames"] / n
    s["phases_mean_per_rank"] = ph
    s["phases_max_rank"] = {k: statistics.median([max(x["phases"][k] for x in r["ranks"]) for r in reps])
                            for k in PHASES}
    t = s["internal_s"]["median"]
    if case["kind"] == "floor":
        s["floor_s"] = stats([r["internal_s"] + zlib_s_per_frame * r["frames"] / n for r in reps])
        t = s["floor_s"]["median"]
    s["time_s"] = t                       # the time used for the ratios (see notes)
    s["best_s"] = (s["floor_s"] if case["kind"] == "floor" else s["internal_s"])["min"]
    s["other_s"] = max(0.0, t - sum(ph.values()))
    s["frames_per_s"] = s["frames"] / t if t else 0.0
    s["raw_GBps"] = s["frames"] * FRAME_RAW_BYTES / t / 1e9 if t else 0.0
    peaks = [max(x["peak_mb"] for x in r["ranks"]) for r in reps]
    nodes = [sum(x["peak_mb"] for x in r["ranks"]) + r.get("main_peak_mb", 0.0) for r in reps]
    s["peak_mb_rank"] = max(peaks)
    s["peak_mb_node"] = max(nodes)
    if "gm_mb_in" in reps[0]:
        comp = statistics.median([sum(x["phases"]["compress"] for x in r["ranks"]) for r in reps])
        s["insitu_compress_GBps_per_core"] = reps[0]["gm_mb_in"] / 1e3 / comp if comp else None
        s["gm_ratio"] = reps[0]["gm_mb_in"] / reps[0]["gm_mb_out"] if reps[0]["gm_mb_out"] else None
    return s


# ---------------------------------------------------------------- main

def main():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cfg = dict(modules=env_int("BENCH_MODULES", 2), sequences=env_int("BENCH_SEQUENCES", 2),
               trains=env_int("BENCH_TRAINS", 10), cells=env_int("BENCH_CELLS", 64),
               ranks=parse_ranks(os.environ.get("BENCH_RANKS", ""), cores), reps=env_int("BENCH_REPS", 3),
               cores=cores)
    out_dir = os.environ.get("BENCH_OUT") or os.path.join(HERE, "results")
    given_dir = os.environ.get("BENCH_DIR", "").strip()
    if given_dir:
        work = os.path.abspath(given_dir)
        os.makedirs(work, exist_ok=True)
    else:
        os.makedirs(os.path.join(TOP, "build"), exist_ok=True)
        work = tempfile.mkdtemp(prefix="bench-", dir=os.path.join(TOP, "build"))
    os.makedirs(out_dir, exist_ok=True)
    # A snapshot of the programs: a rebuild during the benchmark must not
    # change what is measured.
    global BIN
    snap = os.path.join(work, "bin")
    os.makedirs(snap, exist_ok=True)
    for exe in ("agipd-correct", "agipd-simulate", "bench_floor", "bench_compress"):
        if not os.access(os.path.join(BIN, exe), os.X_OK):
            sys.exit(f"run_bench: {BIN}/{exe} missing: run make first")
        shutil.copy2(os.path.join(BIN, exe), os.path.join(snap, exe))
    BIN = snap
    t_bench0 = time.perf_counter()
    maxn = max(cfg["ranks"])
    log(f"{cfg['modules']} module(s) x {cfg['sequences']} sequence(s) x {cfg['trains']} train(s) x "
        f"{cfg['cells']} cells; ranks {cfg['ranks']}; {cfg['reps']} rep(s); {cores} core(s); work {work}")

    # 1. The run (reused when BENCH_DIR holds one of the same size).
    stamp = os.path.join(work, "bench-sim.json")
    sim_key = {k: cfg[k] for k in ("modules", "sequences", "trains", "cells")}
    run_dir = os.path.join(work, "r0001")
    sim_s = None
    if not (os.path.exists(stamp) and json.load(open(stamp)) == sim_key):
        for d in ("r0001", "constants"):
            shutil.rmtree(os.path.join(work, d), ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([os.path.join(BIN, "agipd-simulate"), "--out-folder", work,
                        "--modules", f"0-{cfg['modules'] - 1}", "--sequences", str(cfg["sequences"]),
                        "--trains", str(cfg["trains"]), "--cells", str(cfg["cells"]), "--no-truth"],
                       check=True, stdout=subprocess.DEVNULL)
        sim_s = time.perf_counter() - t0
        json.dump(sim_key, open(stamp, "w"))
        log(f"simulated the run in {sim_s:.1f} s")
    raw_files = sorted(os.path.join(run_dir, f) for f in os.listdir(run_dir) if f.startswith("RAW-"))
    raw_bytes = sum(os.path.getsize(f) for f in raw_files)
    consts_dir = os.path.join(work, "constants")
    consts_bytes = sum(os.path.getsize(os.path.join(consts_dir, f)) for f in os.listdir(consts_dir))
    one_file = raw_files[:1]
    m0 = re.search(r"AGIPD(\d\d)-S(\d{5})", one_file[0])
    os.sync()

    scratch = os.path.join(work, "out")

    def corrector_cmd(n, writer, single):
        cmd = mpi_cmd(n, cores) + [os.path.join(BIN, "agipd-correct"), "--in-folder", work, "--out-folder",
                                   scratch, "--run", "1", "--constants-folder", consts_dir, "--overwrite",
                                   "--writer", writer]
        if single:
            cmd += ["--modules", str(int(m0.group(1))), "--sequences", str(int(m0.group(2)))]
        return cmd, mpi_env(n, cores)

    def floor_cmd(n, files):
        return mpi_cmd(n, cores) + [os.path.join(BIN, "bench_floor"), scratch] + files, mpi_env(n, cores)

    def python_cmd(n):
        return [PY, os.path.join(HERE, "py_pipeline.py"), "--in-folder", run_dir, "--constants-folder",
                consts_dir, "--out-folder", scratch, "--processes", str(n)], dict(os.environ)

    cases = []
    for n in cfg["ranks"]:
        cases.append(dict(name=f"collective x{n}", kind="collective", ranks=n, files=len(raw_files),
                          cmd=corrector_cmd(n, "collective", False), parse=parse_corrector))
    for n in cfg["ranks"]:
        cases.append(dict(name=f"serial x{n}", kind="serial", ranks=n, files=len(raw_files),
                          cmd=corrector_cmd(n, "serial", False), parse=parse_corrector))
    for n in cfg["ranks"]:
        cases.append(dict(name=f"python x{n}", kind="python", ranks=n, files=len(raw_files), cmd=python_cmd(n),
                          parse=lambda t, n=n: parse_python(t, n)))
    for n in cfg["ranks"]:
        cases.append(dict(name=f"floor x{n}", kind="floor", ranks=n, files=len(raw_files),
                          cmd=floor_cmd(n, raw_files), parse=parse_floor))
    for kind in ("collective", "serial", "floor"):
        cmd = floor_cmd(maxn, one_file) if kind == "floor" else corrector_cmd(maxn, kind, True)
        cases.append(dict(name=f"1 file: {kind} x{maxn}", kind=kind, ranks=maxn, files=1, one_file=True, cmd=cmd,
                          parse=parse_floor if kind == "floor" else parse_corrector))

    def fresh_scratch():
        shutil.rmtree(scratch, ignore_errors=True)
        os.makedirs(scratch)

    # 2. Warm-up (not counted): the corrector at all ranks; its first CORR
    #    file is the reference for bench_compress and for the Python output.
    fresh_scratch()
    cmd, env = corrector_cmd(maxn, "collective", False)
    run_timed(cmd, env)
    ref_dir = os.path.join(work, "ref")
    shutil.rmtree(ref_dir, ignore_errors=True)
    os.makedirs(ref_dir)
    ref_name = os.path.basename(one_file[0]).replace("RAW-", "CORR-")
    shutil.move(os.path.join(scratch, ref_name), os.path.join(ref_dir, ref_name))
    os.sync()
    log("warm-up done; compression on one core (bench_compress)")
    out, _, _, _ = run_timed([os.path.join(BIN, "bench_compress"), os.path.join(ref_dir, ref_name)], dict(os.environ))
    comp = json.loads(out[out.index("{"):])
    # CPU seconds of the thread: the cost on one core even when other
    # processes share it.
    zlib_s_per_frame = comp["zlib"]["deflate_cpu_s"] / (comp["zlib"]["chunks"] / 2)

    # 3. The measurements, interleaved.
    results = {c["name"]: [] for c in cases}
    py_check = None
    quiet_wait = env_int("BENCH_QUIET_WAIT", 0)
    waited = 0.0
    for rep in range(cfg["reps"]):
        for c in cases:
            fresh_scratch()
            os.sync()
            waited += wait_for_quiet(quiet_wait)
            cmd, env = c["cmd"]
            text, wall, cpu, foreign = run_timed(cmd, env)
            t0 = time.perf_counter()
            os.sync()
            sync_s = time.perf_counter() - t0
            r = c["parse"](text)
            r.update(wall_s=wall, sync_s=sync_s, cpu_s=cpu, foreign_load=foreign, loadavg=os.getloadavg()[0])
            results[c["name"]].append(r)
            log(f"rep {rep + 1}/{cfg['reps']}  {c['name']:<24} {r['frames']:6d} frames  "
                f"{r['internal_s']:7.2f} s inside, {wall:7.2f} s wall, sync {sync_s:5.2f} s, "
                f"other load {foreign:4.2f} cores")
            if c["kind"] == "python" and py_check is None:
                py_check = compare_outputs(os.path.join(ref_dir, ref_name), os.path.join(scratch, ref_name))
                log(f"python output vs corrector: {py_check}")
    shutil.rmtree(scratch, ignore_errors=True)

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
            time_used="ratios use each program's own wall clock (from after start-up to the end: "
                      "agipd-correct's summary, bench_floor's barrier-to-barrier time, py_pipeline's "
                      "pool time); wall_s is launch-to-exit (mpirun / interpreter start included)",
            floor="floor time = bench_floor read+write time at N ranks + stock zlib level 1 (compress2) "
                  "seconds for the run's gain+mask, measured on one core by bench_compress, / N",
            phases="seconds per phase: mean over ranks (processes), median over reps; other = time - "
                   "sum of phases (start-up, constants sharing, idle ranks)",
            peak_memory="peak RSS (ru_maxrss) per rank; per node = the sum over ranks (and the Python "
                        "pipeline's parent), an upper bound",
            foreign_load="busy CPU of other processes on the machine during a run, in cores (/proc/stat "
                         "minus our children's CPU time); above ~0.2 the numbers are disturbed"),
        compression=comp, python_check=py_check,
        cases=[{k: c[k] for k in ("name", "kind", "ranks", "files")} for c in cases], raw=results)
    write_outputs(report, out_dir)
    log(f"wrote {out_dir}/bench.txt, bench.json, bench.png in {total_s:.0f} s")
    if not given_dir:
        shutil.rmtree(work, ignore_errors=True)


def write_outputs(report, out_dir):
    """Statistics, ratios, then bench.json, bench.txt and bench.png."""
    comp, cfg = report["compression"], report["config"]
    zlib_s_per_frame = comp["zlib"]["deflate_cpu_s"] / (comp["zlib"]["chunks"] / 2)
    cases = [{k: c[k] for k in ("name", "kind", "ranks", "files")} for c in report["cases"]]
    report["cases"] = [summarize(c, report["raw"][c["name"]], zlib_s_per_frame) for c in cases]
    by = {s["name"]: s for s in report["cases"]}
    report["ratios"] = compute_ratios(cfg, by, comp, max(cfg["ranks"]))
    with open(os.path.join(out_dir, "bench.json"), "w") as f:
        json.dump(report, f, indent=1)
    text = format_text(report)
    with open(os.path.join(out_dir, "bench.txt"), "w") as f:
        f.write(text)
    import plot_bench
    plot_bench.plot(report, os.path.join(out_dir, "bench.png"))
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


def compute_ratios(cfg, by, comp, maxn):
    n2 = 2 if 2 in cfg["ranks"] else maxn

    def t(name):
        return by[name]["time_s"] if name in by else None

    def tb(name):                          # fastest rep: the least disturbed
        return by[name]["best_s"] if name in by else None

    def ratio(a, b):
        return a / b if a and b else None

    out = []

    def add(key, label, value, target, op, detail, best=None):
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        out.append(dict(key=key, label=label, value=value, target=target, op=op, met=met, detail=detail,
                        best_reps=best))

    def med(name, key):
        return by.get(name, {}).get(key, {}).get("median")

    add("python_speedup", f"Python pipeline time / corrector time, {n2} ranks",
        ratio(t(f"python x{n2}"), t(f"collective x{n2}")), 10.0, ">=",
        f"py_pipeline with {n2} processes vs agipd-correct (collective) on {n2} ranks; launch-to-exit "
        f"{fmt(ratio(med(f'python x{n2}', 'wall_s'), med(f'collective x{n2}', 'wall_s')))}x; CPU seconds "
        f"{fmt(ratio(med(f'python x{n2}', 'cpu_s'), med(f'collective x{n2}', 'cpu_s')))}x",
        ratio(tb(f"python x{n2}"), tb(f"collective x{n2}")))
    fl = by.get(f"floor x{n2}")
    co = by.get(f"collective x{n2}")
    add("vs_floor", f"corrector time / floor time, {n2} ranks", ratio(t(f"collective x{n2}"), t(f"floor x{n2}")),
        1.0, "<=",
        "floor = read+write " + (f"{fl['internal_s']['median']:.2f} s + zlib {fl['phases_mean_per_rank']['compress']:.2f} s"
                                 if fl else "n/a") +
        (f"; without the constants phase ({co['phases_mean_per_rank']['consts']:.2f} s) the ratio is "
         f"{fmt(ratio(t(f'collective x{n2}') - co['phases_mean_per_rank']['consts'], t(f'floor x{n2}')), 2)}"
         if co and fl else ""), ratio(tb(f"collective x{n2}"), tb(f"floor x{n2}")))
    a = comp["agipd"]
    z = comp["zlib"]
    add("compress_GBps", "gain/mask shuffle+deflate+fletcher32, GB/s per core", a["GBps_total_cpu"], 2.0, ">=",
        f"per CPU second (wall: {a['GBps_total']:.2f}); {a['encoder']} level 1 ratio {a['ratio']:.1f}; stock zlib "
        f"level 1 + fletcher32: {z['GBps_total_cpu']:.2f} GB/s, ratio {z['ratio']:.1f}; "
        f"{a['encoder']} is {a['GBps_total_cpu'] / z['GBps_total_cpu']:.1f}x as fast and its output "
        f"{z['ratio'] / a['ratio']:.2f}x the size of zlib's")
    add("scaling", f"speed-up {n2} ranks vs 1 rank (collective)",
        ratio(t("collective x1"), t(f"collective x{n2}")) if n2 != 1 else None, 1.85 if n2 == 2 else 0.925 * n2, ">=",
        f"target {'1.85x' if n2 == 2 else f'{0.925 * n2:.2f}x (92.5% efficiency)'}; serial writer "
        f"{fmt(ratio(t('serial x1'), t(f'serial x{n2}')))}x, Python {fmt(ratio(t('python x1'), t(f'python x{n2}')))}x, "
        f"floor {fmt(ratio(t('floor x1'), t(f'floor x{n2}')))}x",
        ratio(tb("collective x1"), tb(f"collective x{n2}")) if n2 != 1 else None)
    one_c, one_s = by.get(f"1 file: collective x{maxn}"), by.get(f"1 file: serial x{maxn}")
    add("collective_vs_serial", f"serial / collective time, 1 file on {maxn} ranks",
        ratio(one_s and one_s["time_s"], one_c and one_c["time_s"]) if maxn > 1 else None, 2.5, ">=",
        "files fewer than ranks: the serial writer leaves ranks idle",
        ratio(tb(f"1 file: serial x{maxn}"), tb(f"1 file: collective x{maxn}")) if maxn > 1 else None)
    return out


def fmt(v, nd=2):
    return "n/a" if v is None else f"{v:.{nd}f}"


def format_text(rep):
    cfg = rep["config"]
    L = []
    L.append("agipd-correct benchmark  (make bench; bench/run_bench.py)")
    L.append(f"run: {cfg['modules']} module(s) x {cfg['sequences']} sequence(s) = {rep['raw_files']} raw files, "
             f"{cfg['trains']} trains x {cfg['cells']} cells = {rep['frames']} frames, raw "
             f"{rep['raw_bytes'] / 1e9:.3f} GB, constants {rep['constants_bytes'] / 1e9:.3f} GB")
    m = rep["machine"]
    L.append(f"machine: {m['cores']} core(s) {m['cpu']}, {m['mem_gb']:.0f} GB, Linux {m['kernel']}; "
             f"{rep['software']}")
    L.append(f"reps: {cfg['reps']} per case, interleaved; ranks {cfg['ranks']}; total {rep['bench_s']:.0f} s")
    L.append("")
    hdr = (f"{'case':<24} {'time s':>7} {'[min-max]':>13} {'wall s':>7} {'fr/s':>6} {'GB/s':>5}  "
           + " ".join(f"{p[:7]:>7}" for p in PHASES) + f" {'other':>6}  {'MB/rk':>6} {'MB/nd':>6} {'cpu s':>6} "
           f"{'sync':>5} {'load':>4}")
    L.append(hdr)
    L.append("-" * len(hdr))
    for s in rep["cases"]:
        tt = s["floor_s"] if s["kind"] == "floor" else s["internal_s"]
        ph = s["phases_mean_per_rank"]
        L.append(f"{s['name']:<24} {s['time_s']:7.2f} {tt['min']:6.2f}-{tt['max']:<6.2f} {s['wall_s']['median']:7.2f} "
                 f"{s['frames_per_s']:6.0f} {s['raw_GBps']:5.2f}  "
                 + " ".join(f"{ph[p]:7.2f}" for p in PHASES)
                 + f" {s['other_s']:6.2f}  {s['peak_mb_rank']:6.0f} {s['peak_mb_node']:6.0f} "
                   f"{s['cpu_s']['median']:6.2f} {s['sync_s']['median']:5.2f} "
                   f"{s['foreign_load_cores']['median']:4.2f}")
    L.append("")
    L.append("time: the program's own clock, median of reps (floor: read+write + zlib/N); wall: launch to exit;")
    L.append("phases: seconds, mean over ranks; MB/rk, MB/nd: peak RSS per rank, summed per node;")
    L.append("cpu s: CPU seconds of all the run's processes (MPI ranks spin while they wait);")
    L.append("sync: sync(2) after the run, not in the time; load: other processes' CPU during the run, cores.")
    L.append("floor: 'correct' is the uint16->float32 cast, 'compress' is stock zlib level 1 / N (estimated);")
    L.append("python: 'compress' is waiting for the zlib thread pool.")
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
    ins = [s for s in rep["cases"] if s.get("insitu_compress_GBps_per_core")]
    if ins:
        L.append("  in the corrector (compress column): " + ", ".join(
            f"{s['name']} {s['insitu_compress_GBps_per_core']:.2f}" for s in ins) + " GB/s per core")
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
    busy = [s["name"] for s in rep["cases"] if s["foreign_load_cores"]["median"] > 0.2]
    if busy:
        L.append(f"WARNING: other processes used CPU during: {', '.join(busy)} (see 'load'); "
                 "those times are disturbed.")
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
