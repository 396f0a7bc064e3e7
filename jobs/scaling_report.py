#!/usr/bin/python3
"""jobs/scaling_report.py - table, JSON, plot and model of an agipd-correct
scaling benchmark (the results folder of jobs/scaling.sbatch).

    /usr/bin/python3 jobs/scaling_report.py DIR [--fs-bandwidth-gbs B] [...]

Reads DIR/runs.tsv and each run's --report JSON it names (per rank, frames
and seconds in consts/read/correct/write/wait; a folder without them: the
summary that agipd-correct prints, from the run's log), the
raw files (frames and trains per file, bytes), the constants and the outputs
(bytes), and writes DIR/scaling.txt, DIR/scaling.json and DIR/scaling.png.

THE MODEL.  agipd-correct's plan is a pure function of (files, ranks): files
go in rounds of at most P; in a round the P ranks split into one contiguous
group per file; a group splits its file's trains evenly; ranks of one node
working on one module load its constants once (kept while they stay on it);
every round ends together.  The model takes that plan for a workload from
bin/plan_efficiency --json, which computes it with agipd-correct's own plan
function (src/run/plan.c; found with --plan-tool, $AGIPD_PLAN_EFFICIENCY, bin/
of the source tree or of the installation, or PATH), and prices it with
per-rank rates measured by the benchmark:

  t_frame = (read + correct + write seconds) / frames        per rank
  t_load  = consts seconds / constants loads of the ranks (from the plan)

  T_cpu(P, N) = sum over rounds of [ t_load * (cells / cells measured) if the
                round loads constants ] + max over groups of
                (largest share of a file's frames in the group) * t_frame
                (a plan whose rounds do not end together: the slowest
                fixed group of ranks, summed over its files)
  T_io(N)     = bytes / min(B_fs, N * B_node), where bytes = raw read +
                CORR written + constants read, scaled per frame and per cell
  T(P, N)     = T_fixed + max(T_cpu, T_io)

The rates are taken from the measurement with the same ranks per node
(ppn = ceil(P/N)), or the nearest larger one, since ranks of a node share its
memory bandwidth; beyond the largest measured ppn they are extrapolated
(flagged).  T_fixed (launch, MPI start-up, discovery) is the median of
wall - busiest rank's phases.  B_fs is the file system's aggregate bandwidth
(read + write, GB/s): pass the site's figure; the default is the rate the
I/O phases reached here (read + write - compression seconds), a lower bound.
B_node is one node's link (default 12.5 GB/s, 100 Gb/s).  The check table
compares the model with each measurement.
"""
import argparse
import glob
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys

PIXELS = 512 * 128
MODULES_AGIPD1M = 16


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The model is described at the top of this file.",
    )
    p.add_argument("dir", help="results folder of jobs/scaling.sbatch (runs.tsv, runs/)")
    p.add_argument("--run", type=int, default=None, help="run number of the benchmark run")
    p.add_argument("--raw-folder", default=None, help="the benchmark run's input folder")
    p.add_argument("--constants-folder", default=None, help="its constants folder")
    p.add_argument("--out-folder", default=None, help="its output folder (CORR files of the last run)")
    p.add_argument("--fs-bandwidth-gbs", type=float, default=None,
                   help="aggregate file-system bandwidth, read + write, GB/s [default: measured here]")
    p.add_argument("--node-bandwidth-gbs", type=float, default=12.5,
                   help="one node's link to the file system, GB/s [default: 12.5]")
    p.add_argument("--modules", type=int, default=MODULES_AGIPD1M,
                   help="modules of the full run to size [default: 16, AGIPD1M]")
    p.add_argument("--sequences", type=int, default=20, help="sequence files per module [default: 20]")
    p.add_argument("--trains", type=int, default=250, help="trains per sequence file [default: 250]")
    p.add_argument("--cells", type=int, default=352, help="frames (memory cells) per train [default: 352]")
    p.add_argument("--nodes", default="1,2,4,8,16,32", help="node counts of the sizing table")
    p.add_argument("--ranks-per-node", default=None,
                   help="ranks per node of the sizing table [default: the measured ones]")
    p.add_argument("--plan-tool", default=None,
                   help="bin/plan_efficiency, which computes agipd-correct's plan [default: "
                        "$AGIPD_PLAN_EFFICIENCY, else bin/ of the source tree or installation, else PATH]")
    p.add_argument("--target-minutes", type=float, default=None,
                   help="also name the smallest allocation that finishes within this time")
    return p.parse_args(argv)


# ---------------------------------------------------------------- inputs

SUMMARY_RE = re.compile(
    r"^agipd-correct \S+: run (\d+): (\d+) file\(s\) corrected, (\d+) skipped, (\d+) failed.*?; "
    r"(\d+) frames in ([0-9.]+) s .* on (\d+) rank\(s\)")
FILE_RE = re.compile(r"^\s+AGIPD(\d\d) S(\d{5})\s+corrected\s+(\d+) frames")
# Columns of the per-rank table that are not seconds of a phase.
NOT_PHASES = {"rank", "frames", "peak-MB", "gz-frames", "gz-chunks", "gz-MB", "gz-s"}


def parse_log(path):
    """The summary of one agipd-correct run: totals, files and per-rank rows
    (a dict per rank keyed by the table's own header, so new columns count)."""
    res = {"files": [], "ranks": [], "summary": None, "launch": "", "columns": []}
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    head = None
    for line in lines:
        if line.startswith("agipd-job: launch:"):
            res["launch"] = line
        m = SUMMARY_RE.match(line)
        if m:
            res["summary"] = {
                "run": int(m.group(1)), "corrected": int(m.group(2)), "skipped": int(m.group(3)),
                "failed": int(m.group(4)), "frames": int(m.group(5)), "seconds": float(m.group(6)),
                "ranks": int(m.group(7)),
            }
            continue
        m = FILE_RE.match(line)
        if m:
            res["files"].append({"module": int(m.group(1)), "seq": int(m.group(2)), "frames": int(m.group(3))})
            continue
        parts = line.split()
        if parts[:2] == ["rank", "frames"]:
            head = parts
            res["columns"] = parts
            continue
        if head:
            if len(parts) == len(head) and parts[0].isdigit():
                try:
                    res["ranks"].append(dict(zip(head, [float(x) for x in parts])))
                    continue
                except ValueError:
                    pass
            head = None
    return res


# The text table's columns, from the --report JSON's per-rank keys.
REPORT_COLUMNS = [("rank", "rank", 1), ("frames", "frames", 1), ("consts", "constants_s", 1),
                  ("read", "read_s", 1), ("correct", "correct_s", 1), ("compress", "compress_s", 1),
                  ("write", "write_s", 1), ("gather", "gather_s", 1), ("wait", "wait_s", 1),
                  ("gz-chunks", "gz_chunks", 1), ("gz-MB", "gz_bytes_out", 1e-6),
                  ("peak-MB", "peak_rss_mb", 1)]


def parse_report(path, launch=""):
    """The same as parse_log from the run's --report JSON, which rank 0
    writes whole: the log mixes the ranks' stdout and stderr as the launcher
    forwards them, and a line of one may land inside a line of the other."""
    with open(path) as f:
        j = json.load(f)
    res = {"files": [], "ranks": [], "launch": launch, "columns": [c for c, _, _ in REPORT_COLUMNS]}
    n = {s: sum(1 for x in j["files"] if x["status"] == s) for s in ("corrected", "skipped", "failed")}
    res["summary"] = {
        "run": int(j["parameters"]["run"]), "corrected": n["corrected"], "skipped": n["skipped"],
        "failed": n["failed"], "frames": int(j["frames"]), "seconds": float(j["seconds"]),
        "ranks": int(j["n_ranks"]),
    }
    res["files"] = [{"module": x["module"], "seq": x["sequence"], "frames": x["frames"]}
                    for x in j["files"] if x["status"] == "corrected"]
    res["ranks"] = [{c: float(r[k]) * scale for c, k, scale in REPORT_COLUMNS} for r in j["ranks"]]
    return res


def launch_line(path):
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("agipd-job: launch:"):
                return line.rstrip("\n")
    return ""


def phase_names(m):
    """The phase columns of a run's table, in order: consts ... wait."""
    return [c for c in m["columns"] if c not in NOT_PHASES]


def read_runs(d):
    rows = []
    with open(os.path.join(d, "runs.tsv")) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.strip():
                rows.append(dict(zip(head, line.rstrip("\n").split("\t"))))
    out = []
    for r in rows:
        log = os.path.join(d, r["log"])
        m = {
            "P": int(r["ranks"]), "nodes": int(r["nodes"]), "ppn": int(r["ranks_per_node"]),
            "repeat": int(r["repeat"]), "launcher": r["launcher"], "rc": int(r["rc"]),
            "wall_s": float(r["wall_s"]), "log": r["log"],
        }
        rep = os.path.join(d, r["report"]) if r.get("report") else ""
        parsed = {"summary": None, "ranks": [], "files": [], "launch": "", "columns": []}
        if rep and os.path.exists(rep):
            try:
                parsed = parse_report(rep, launch_line(log) if os.path.exists(log) else "")
            except (OSError, ValueError, KeyError, TypeError) as e:
                m["why"] = "unreadable report %s: %s" % (r["report"], e)
        elif not rep and os.path.exists(log):
            parsed = parse_log(log)
        m.update(parsed)
        if "why" not in m:
            m["why"] = ("status %d" % m["rc"] if m["rc"] else
                        "no report %s" % r["report"] if rep and not os.path.exists(rep) else
                        "no summary in the log" if not m["summary"] or not m["ranks"] else "")
        out.append(m)
    return out


def raw_dir_of(folder, run):
    sub = os.path.join(folder, "r%04d" % run)
    return sub if os.path.isdir(sub) else folder


def workload_from_files(raw_dir, run, logs_files):
    """Files of the benchmark run: module, seq, frames, trains, bytes."""
    files = {}
    for f in logs_files:
        files[(f["module"], f["seq"])] = {"module": f["module"], "seq": f["seq"], "frames": f["frames"],
                                          "trains": None, "bytes": None}
    pat = os.path.join(raw_dir, "RAW-R%04d-AGIPD??-S?????.h5" % run) if raw_dir else None
    try:
        import h5py  # Debian: python3-h5py
    except ImportError:
        h5py = None
    for path in sorted(glob.glob(pat)) if pat else []:
        m = re.search(r"AGIPD(\d\d)-S(\d{5})\.h5$", path)
        key = (int(m.group(1)), int(m.group(2)))
        if key not in files:
            continue  # not corrected in the benchmark (--modules, --sequences)
        e = files[key]
        e["bytes"] = os.path.getsize(path)
        if h5py is None:
            continue
        with h5py.File(path, "r") as h:
            # INDEX/<source>/image/count: frames per train; trains split the work.
            found = []
            h["INDEX"].visititems(lambda n, o: found.append(o[()]) if n.endswith("image/count") and not found
                                  else None)
            if found:
                e["trains"] = int((found[0] > 0).sum())
    for e in files.values():
        if not e["trains"]:
            e["trains"] = max(1, e["frames"])  # unknown: split by frames
    return [files[k] for k in sorted(files)]


def constants_info(folder, out_folder):
    """Cells in the constants files, cells loaded, mean file bytes."""
    info = {"cells_in_file": None, "cells_loaded": None, "bytes_per_module": None}
    sizes = [os.path.getsize(p) for p in glob.glob(os.path.join(folder or "", "AGIPD??.h5"))] if folder else []
    if sizes:
        info["bytes_per_module"] = statistics.mean(sizes)
    try:
        import h5py
    except ImportError:
        return info
    for p in sorted(glob.glob(os.path.join(out_folder or "", "CORR-*.h5")))[:1]:
        with h5py.File(p, "r") as h:
            a = h["METADATA/calibration/constants"].attrs
            for k in ("memory_cells_in_file", "memory_cells_loaded"):
                if k in a:
                    info[k.replace("memory_", "")] = int(a[k][()] if hasattr(a[k], "shape") else a[k])
    return info


def machines(d):
    """Host names and machines (kernel boot ids) of the job's nodes, from
    DIR/nodes.txt: (hosts, boot ids), both sorted, empty when unknown."""
    hosts, boots = set(), set()
    try:
        with open(os.path.join(d, "nodes.txt")) as f:
            for line in f:
                p = line.split()
                if len(p) == 2:
                    hosts.add(p[0])
                    boots.add(p[1])
    except OSError:
        pass
    return sorted(hosts), sorted(boots)


def output_bytes(out_folder):
    paths = glob.glob(os.path.join(out_folder or "", "CORR-*.h5")) if out_folder else []
    return sum(os.path.getsize(p) for p in paths), len(paths)


# ---------------------------------------------------------------- the plan

PLAN_TOOL = None  # bin/plan_efficiency, set by main()


def find_plan_tool(given):
    """bin/plan_efficiency: --plan-tool, else $AGIPD_PLAN_EFFICIENCY, else bin/
    beside jobs/ (the source tree), else PREFIX/bin of an installed
    PREFIX/share/agipd-correct/jobs, else plan_efficiency on PATH."""
    if given or os.environ.get("AGIPD_PLAN_EFFICIENCY"):
        path = given or os.environ["AGIPD_PLAN_EFFICIENCY"]
        return path if os.access(path, os.X_OK) and os.path.isfile(path) else None
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(here, "..", "bin", "plan_efficiency"),
                 os.path.join(here, "..", "..", "..", "bin", "plan_efficiency")):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.normpath(path)
    return shutil.which("plan_efficiency")


class PlanError(Exception):
    pass


_PLANS = {}


def plan_of(files, P, N):
    """agipd-correct's plan of the files on P ranks, ceil(P/N) per node, as
    bin/plan_efficiency --json computes it with the corrector's plan function
    (src/run/plan.c): rounds of groups {file, rank0, nranks, loading_ranks,
    ranges}, the constants loads per round and in all, lockstep or not."""
    ppn = math.ceil(P / N)
    key = (tuple((f["frames"], f["trains"], f["module"]) for f in files), P, ppn)
    if key not in _PLANS:
        cmd = [PLAN_TOOL, "--json", "--ranks", str(P), "--ranks-per-node", str(ppn), "--policy", "groups",
               "--frames", ",".join(str(f["frames"]) for f in files),
               "--trains", ",".join(str(f["trains"]) for f in files),
               "--modules", ",".join(str(f["module"]) for f in files)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PlanError("%s: %s" % (PLAN_TOOL, e))
        if p.returncode != 0:
            raise PlanError("%s --json --ranks %d ... (%d files): status %d: %s" % (
                PLAN_TOOL, P, len(files), p.returncode, p.stderr.strip()))
        _PLANS[key] = json.loads(p.stdout)
    return _PLANS[key]


def cpu_time(plan, t_frame, t_load):
    """Seconds of the plan's correction: a group takes its busiest rank's
    frames * t_frame, plus t_load when some of its ranks load constants.
    Lockstep rounds end together: the sum over rounds of the slowest group
    (plus t_load when the round loads).  Otherwise each fixed set of ranks,
    (rank0, nranks) across the rounds, does its files back to back: the
    slowest set's sum."""
    def busy(g):
        return max((b - a for a, b in g["ranges"]), default=0) * t_frame

    if plan["lockstep"]:
        t = 0.0
        for rd in plan["rounds"]:
            t += max((busy(g) for g in rd["groups"]), default=0.0) + (t_load if rd["loads"] else 0.0)
        return t
    sets = {}
    for rd in plan["rounds"]:
        for g in rd["groups"]:
            k = (g["rank0"], g["nranks"])
            sets[k] = sets.get(k, 0.0) + busy(g) + (t_load if g["loading_ranks"] else 0.0)
    return max(sets.values(), default=0.0)


def model_time(files, P, N, rates, t_fixed, bytes_per_frame, consts_bytes, cell_scale, fs_bw, node_bw):
    plan = plan_of(files, P, N)
    t_cpu = cpu_time(plan, rates["t_frame"], rates["t_load"] * cell_scale)
    loads = plan["loads"]
    frames = sum(f["frames"] for f in files)
    nbytes = frames * bytes_per_frame + loads * consts_bytes * cell_scale
    bw = min(fs_bw, N * node_bw) if fs_bw else N * node_bw
    t_io = nbytes / (bw * 1e9) if bw else 0.0
    bound = "cpu" if t_cpu >= t_io else ("fs" if fs_bw and fs_bw <= N * node_bw else "node-link")
    return {"seconds": t_fixed + max(t_cpu, t_io), "t_cpu": t_cpu, "t_io": t_io, "bound": bound,
            "rounds": plan["nrounds"], "constant_loads": loads, "bytes": nbytes}


# ---------------------------------------------------------------- analysis

def measured_rates(m, files):
    """Per-rank rates of one run: seconds per frame of the work phases (all
    but consts and wait), seconds per constants load, I/O seconds."""
    ranks = m["ranks"]
    phases = phase_names(m)
    work = [p for p in phases if p not in ("consts", "wait")]
    frames = sum(r["frames"] for r in ranks)
    busy = {p: sum(r[p] for r in ranks) for p in phases}
    io = busy.get("read", 0.0) + busy.get("write", 0.0)
    if "compress" not in phases:
        io -= sum(r.get("gz-s", 0.0) for r in ranks)  # older table: write included compression
    # Constants loads as the ranks count them: a load of a node's module
    # counts once for each of its ranks.
    plan = plan_of(files, m["summary"]["ranks"], m["nodes"])
    nload = sum(g["loading_ranks"] for rd in plan["rounds"] for g in rd["groups"])
    rates = {"t_" + p: busy[p] / frames for p in work}
    rates.update({
        "t_frame": sum(busy[p] for p in work) / frames,
        "t_load": busy.get("consts", 0.0) / nload if nload else 0.0,
        "io_seconds_per_rank": io / len(ranks),
        "peak_mb": statistics.median(r.get("peak-MB", 0.0) for r in ranks),
        "t_fixed": m["wall_s"] - max(sum(r[p] for p in phases) for r in ranks),
    })
    return rates


def rates_for_ppn(by_ppn, ppn):
    keys = sorted(by_ppn)
    for k in keys:
        if k >= ppn:
            return by_ppn[k], k, False
    return by_ppn[keys[-1]], keys[-1], ppn > keys[-1]


def consts_fields(launch_line):
    fields = 8  # adaptive gain: 2 thresholds, 3 offsets, 3 masks
    if "--gain-mode" in launch_line and "--gain-mode adaptive" not in launch_line:
        fields = 6
    if "--rel-gain" in launch_line:
        fields += 2
        if "--adjust-mg-baseline" in launch_line:
            fields += 1
    if "--ff-gain" in launch_line:
        fields += 1
    return fields


def fmt_time(s):
    if s < 120:
        return "%.1f s" % s
    if s < 7200:
        return "%.1f min" % (s / 60)
    return "%.2f h" % (s / 3600)


def main(argv):
    a = parse_args(argv)
    global PLAN_TOOL
    PLAN_TOOL = find_plan_tool(a.plan_tool)
    if not PLAN_TOOL:
        print("scaling_report: bin/plan_efficiency not found (%s): build it (make), or name it with --plan-tool "
              "or AGIPD_PLAN_EFFICIENCY" % (a.plan_tool or os.environ.get("AGIPD_PLAN_EFFICIENCY") or
                                           "not beside jobs/, nor on PATH"), file=sys.stderr)
        return 2
    try:
        return report(a)
    except PlanError as e:
        print("scaling_report: the plan: %s" % e, file=sys.stderr)
        return 1


def report(a):
    d = a.dir
    runs = read_runs(d)
    good = [m for m in runs if m["rc"] == 0 and m["summary"] and m["ranks"]]
    if not good:
        print("scaling_report: no successful run with a summary in %s/runs.tsv" % d, file=sys.stderr)
        return 1
    run = a.run if a.run is not None else good[0]["summary"]["run"]
    raw_dir = raw_dir_of(a.raw_folder, run) if a.raw_folder else None
    files = workload_from_files(raw_dir, run, good[-1]["files"])
    if not files:
        print("scaling_report: the logs name no corrected file", file=sys.stderr)
        return 1
    frames_total = sum(f["frames"] for f in files)
    cinfo = constants_info(a.constants_folder, a.out_folder)
    out_bytes, nout = output_bytes(a.out_folder)
    raw_bytes = sum(f["bytes"] or 0 for f in files)
    # Per frame: raw read + CORR written; unknown parts from the frame sizes.
    raw_pf = raw_bytes / frames_total if raw_bytes else 2 * 2 * PIXELS
    out_pf = out_bytes / frames_total if nout == len(files) and out_bytes else 4 * PIXELS + PIXELS + 4 * PIXELS
    cells_loaded = cinfo["cells_loaded"] or max(1, max(f["frames"] // max(1, f["trains"]) for f in files))
    cells_in_file = cinfo["cells_in_file"] or cells_loaded
    consts_read = (cinfo["bytes_per_module"] or 0) * cells_loaded / cells_in_file
    fields = consts_fields(good[-1]["launch"])

    # The fastest repeat of each (ranks, nodes).
    best = {}
    for m in good:
        k = (m["summary"]["ranks"], m["nodes"])
        if k not in best or m["wall_s"] < best[k]["wall_s"]:
            best[k] = m
    points = [best[k] for k in sorted(best)]
    for m in points:
        m["rates"] = measured_rates(m, files)
    by_ppn = {}
    for m in points:
        by_ppn.setdefault(m["ppn"], []).append(m["rates"])
    rates_ppn = {}
    for ppn, lst in by_ppn.items():
        rates_ppn[ppn] = {k: statistics.mean(r.get(k, 0.0) for r in lst) for k in lst[0]}
    t_fixed = statistics.median(m["rates"]["t_fixed"] for m in points)
    t_fixed = max(0.0, t_fixed)

    # File-system bandwidth: given, or what the I/O phases reached here.
    measured_fs = 0.0
    for m in points:
        io = m["rates"]["io_seconds_per_rank"]
        if io > 0:
            measured_fs = max(measured_fs, frames_total * (raw_pf + out_pf) / io / 1e9)
    fs_bw = a.fs_bandwidth_gbs if a.fs_bandwidth_gbs else measured_fs
    fs_src = "given" if a.fs_bandwidth_gbs else "measured here (a lower bound; pass --fs-bandwidth-gbs)"
    node_bw = a.node_bandwidth_gbs

    base = min(points, key=lambda m: (m["summary"]["ranks"], m["nodes"]))
    t1 = base["wall_s"]
    table = []
    for m in points:
        P = m["summary"]["ranks"]
        r, used, extra = rates_for_ppn(rates_ppn, m["ppn"])
        pred = model_time(files, P, m["nodes"], r, t_fixed, raw_pf + out_pf, consts_read, 1.0, fs_bw, node_bw)
        phases = {k: statistics.mean(x[k] for x in m["ranks"]) for k in phase_names(m)}
        table.append({
            "ranks": P, "nodes": m["nodes"], "ranks_per_node": m["ppn"], "launcher": m["launcher"],
            "wall_s": m["wall_s"], "program_s": m["summary"]["seconds"], "frames": m["summary"]["frames"],
            "frames_per_s": m["summary"]["frames"] / m["wall_s"],
            "speedup": t1 / m["wall_s"] * base["summary"]["ranks"],
            "efficiency": t1 / m["wall_s"] * base["summary"]["ranks"] / P,
            "mean_rank_phase_s": phases,
            "per_rank_seconds_per_frame": {k[2:]: v for k, v in m["rates"].items()
                                           if k.startswith("t_") and k not in ("t_load", "t_fixed")},
            "seconds_per_constants_load": m["rates"]["t_load"],
            "peak_mb_median": m["rates"]["peak_mb"],
            "model_s": pred["seconds"], "model_error": pred["seconds"] / m["wall_s"] - 1,
            "log": m["log"],
        })

    # Sizing: a full run of a.modules modules.
    full = [{"module": mm, "seq": s, "frames": a.trains * a.cells, "trains": a.trains}
            for mm in range(a.modules) for s in range(a.sequences)]
    cell_scale = a.cells / cells_loaded
    consts_mem_gb = a.cells * fields * PIXELS * 4 / 1e9
    ppns = ([int(x) for x in a.ranks_per_node.split(",")] if a.ranks_per_node else sorted(rates_ppn))
    node_counts = [int(x) for x in a.nodes.split(",")]
    r11, _, _ = rates_for_ppn(rates_ppn, 1)
    t_serial = model_time(full, 1, 1, r11, t_fixed, raw_pf + out_pf, consts_read, cell_scale, fs_bw, node_bw)
    sizing = []
    for n in node_counts:
        for ppn in ppns:
            P = n * ppn
            r, used, extra = rates_for_ppn(rates_ppn, ppn)
            pred = model_time(full, P, n, r, t_fixed, raw_pf + out_pf, consts_read, cell_scale, fs_bw, node_bw)
            # Peak RSS per rank grows with the memory cells by about twice the
            # constants in memory (the shared copy and the loader's buffers):
            # measured 0.73 GB at 64 cells, 2.06 GB at 352 (8 fields).  Shared
            # pages count in every rank's RSS: an upper bound for --mem.
            peak_gb = (rates_ppn[used]["peak_mb"] * 1048576 + 2 * (a.cells - cells_loaded) * fields * PIXELS * 4) / 1e9
            sizing.append({
                "nodes": n, "ranks_per_node": ppn, "ranks": P, "seconds": pred["seconds"],
                "speedup": t_serial["seconds"] / pred["seconds"], "bound": pred["bound"],
                "t_cpu": pred["t_cpu"], "t_io": pred["t_io"], "rounds": pred["rounds"],
                "node_hours": n * pred["seconds"] / 3600, "rates_from_ppn": used, "extrapolated": extra,
                "memory_per_rank_gb": peak_gb, "memory_per_node_gb": ppn * peak_gb,
            })
    target = None
    if a.target_minutes:
        ok = [s for s in sizing if s["seconds"] <= a.target_minutes * 60]
        if ok:
            target = min(ok, key=lambda s: (s["node_hours"], s["nodes"]))

    hosts, boots = machines(d)
    virtual = len(hosts) > 1 and len(boots) == 1
    result = {
        "nodes": {
            "hosts": hosts, "machines": len(boots),
            "virtual": virtual,
            "note": ("the %d nodes are one machine (a virtual cluster): they share its cores, memory, page "
                     "cache and file system and talk over loopback, so the measurements say nothing about "
                     "network or file-system bandwidth between real nodes, and the rates are those of this "
                     "machine" % len(hosts)) if virtual else "",
        },
        "benchmark": {
            "folder": os.path.abspath(d), "run": run, "files": len(files), "frames": frames_total,
            "modules": sorted({f["module"] for f in files}), "raw_bytes_per_frame": raw_pf,
            "corr_bytes_per_frame": out_pf, "constants_cells_loaded": cells_loaded,
            "constants_cells_in_file": cells_in_file, "constants_bytes_read_per_load": consts_read,
        },
        "measurements": table,
        "failed_runs": [{"ranks": m["P"], "nodes": m["nodes"], "repeat": m["repeat"], "rc": m["rc"],
                         "why": m["why"] or "no summary", "log": m["log"]} for m in runs if m not in good],
        "model": {
            "description": "T = T_fixed + max(T_cpu, T_io): T_cpu replays agipd-correct's plan (rounds of at most "
                           "P files, one rank group per file, train-aligned even split, constants loaded once per "
                           "node and module) priced with per-rank seconds per frame of the work phases (all but consts and wait) and "
                           "seconds per constants load measured at the same ranks per node; T_io = bytes / "
                           "min(fs_bandwidth, nodes * node_bandwidth)",
            "t_fixed_s": t_fixed,
            "fs_bandwidth_gbs": fs_bw, "fs_bandwidth_source": fs_src,
            "node_bandwidth_gbs": node_bw,
            "rates_by_ranks_per_node": {str(k): v for k, v in sorted(rates_ppn.items())},
            "full_run": {
                "modules": a.modules, "sequences": a.sequences, "trains": a.trains, "cells": a.cells,
                "files": len(full), "frames": len(full) * a.trains * a.cells,
                "constants_memory_per_module_gb": consts_mem_gb,
                "serial_seconds": t_serial["seconds"],
                "predictions": sizing, "target_minutes": a.target_minutes, "smallest_within_target": target,
            },
        },
    }
    with open(os.path.join(d, "scaling.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    write_text(os.path.join(d, "scaling.txt"), result)
    plot(os.path.join(d, "scaling.png"), result, files, rates_ppn, t_fixed, raw_pf + out_pf, consts_read, fs_bw,
         node_bw)
    sys.stdout.write(open(os.path.join(d, "scaling.txt")).read())
    return 0


def write_text(path, res):
    b, mo, fr = res["benchmark"], res["model"], res["model"]["full_run"]
    L = []
    L.append("agipd-correct scaling benchmark: run %d, %d file(s), %d frames, modules %s" % (
        b["run"], b["files"], b["frames"], ",".join(str(x) for x in b["modules"])))
    if res["nodes"]["virtual"]:
        L.append("NOTE: " + res["nodes"]["note"] + ".")
    L.append("")
    L.append("Measured (fastest repeat; seconds are wall time of the launch; phases are the mean per rank)")
    phases = list(res["measurements"][0]["mean_rank_phase_s"])
    L.append("%5s %5s %4s %8s %9s %8s %6s " % ("ranks", "nodes", "ppn", "wall-s", "frames/s", "speedup", "eff")
             + " ".join("%8s" % p for p in phases) + " %8s %7s" % ("model-s", "err"))
    for t in res["measurements"]:
        ph = t["mean_rank_phase_s"]
        L.append("%5d %5d %4d %8.2f %9.1f %8.2f %5.0f%% " % (
            t["ranks"], t["nodes"], t["ranks_per_node"], t["wall_s"], t["frames_per_s"], t["speedup"],
            100 * t["efficiency"]) + " ".join("%8.2f" % ph.get(p, 0.0) for p in phases)
            + " %8.2f %+6.0f%%" % (t["model_s"], 100 * t["model_error"]))
    for f in res["failed_runs"]:
        L.append("  failed: %d rank(s) on %d node(s), repeat %d: %s (%s)" % (
            f["ranks"], f["nodes"], f["repeat"], f["why"], f["log"]))
    L.append("")
    L.append("Model: " + mo["description"] + ".")
    L.append("  T_fixed %.2f s; file system %.2f GB/s (%s); node link %.1f GB/s" % (
        mo["t_fixed_s"], mo["fs_bandwidth_gbs"], mo["fs_bandwidth_source"], mo["node_bandwidth_gbs"]))
    work = [k for k in next(iter(mo["rates_by_ranks_per_node"].values()))
            if k.startswith("t_") and k not in ("t_frame", "t_load", "t_fixed")]
    L.append("  per rank, by ranks per node: ms per frame of %s; s per constants load (%d of %d cells)" % (
        "/".join(k[2:] for k in work), b["constants_cells_loaded"], b["constants_cells_in_file"]))
    for k, r in mo["rates_by_ranks_per_node"].items():
        L.append("    ppn %3s: %s = %6.2f ms/frame; %6.2f s/load; peak %5.0f MB/rank" % (
            k, " ".join("%6.2f" % (1e3 * r.get(w, 0.0)) for w in work), 1e3 * r["t_frame"], r["t_load"],
            r["peak_mb"]))
    L.append("  bytes per frame: raw %.0f KB read, CORR %.0f KB written" % (
        b["raw_bytes_per_frame"] / 1024, b["corr_bytes_per_frame"] / 1024))
    L.append("")
    L.append("Full run to size: %d modules x %d sequences x %d trains x %d cells = %d files, %d frames "
             "(%.2f TB raw); constants %.2f GB per module in memory" % (
                 fr["modules"], fr["sequences"], fr["trains"], fr["cells"], fr["files"], fr["frames"],
                 fr["frames"] * b["raw_bytes_per_frame"] / 1e12, fr["constants_memory_per_module_gb"]))
    L.append("  one rank: %s" % fmt_time(fr["serial_seconds"]))
    L.append("%6s %4s %6s %10s %8s %6s %9s %7s %10s %s" % (
        "nodes", "ppn", "ranks", "time", "speedup", "rounds", "bound", "node-h", "mem/node", "rates"))
    for s in fr["predictions"]:
        L.append("%6d %4d %6d %10s %8.1f %6d %9s %7.2f %7.1f GB %s" % (
            s["nodes"], s["ranks_per_node"], s["ranks"], fmt_time(s["seconds"]), s["speedup"], s["rounds"],
            s["bound"], s["node_hours"], s["memory_per_node_gb"],
            "ppn %d%s" % (s["rates_from_ppn"], " (extrapolated)" if s["extrapolated"] else "")))
    L.append("  mem/node: ranks per node x peak memory per rank at %d cells (upper bound: shared constants "
             "count in every rank); bound: what limits the time (cpu, fs, node-link)" % fr["cells"])
    if fr["target_minutes"]:
        t = fr["smallest_within_target"]
        if t:
            L.append("  cheapest within %.0f min: %d node(s) x %d ranks: %s, %.2f node-hours" % (
                fr["target_minutes"], t["nodes"], t["ranks_per_node"], fmt_time(t["seconds"]), t["node_hours"]))
        else:
            L.append("  no allocation in the table finishes within %.0f min" % fr["target_minutes"])
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def plot(path, res, files, rates_ppn, t_fixed, bpf, consts_read, fs_bw, node_bw):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("scaling_report: matplotlib missing (Debian: python3-matplotlib): no plot", file=sys.stderr)
        return
    meas = res["measurements"]
    fr = res["model"]["full_run"]
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.8))
    nodes = sorted({t["nodes"] for t in meas})
    base = meas[0]
    for n in nodes:
        pts = [t for t in meas if t["nodes"] == n]
        xs = [t["ranks"] for t in pts]
        ax[0].plot(xs, [t["wall_s"] for t in pts], "o", label="measured, %d node(s)" % n)
        ax[1].plot(xs, [t["speedup"] for t in pts], "o", label="measured, %d node(s)" % n)
        # The model over the same ranks, with the rates of each point's ppn.
        xm = sorted(set(range(max(1, min(xs)), max(xs) + 1)))
        ym = []
        for P in xm:
            r, _, _ = rates_for_ppn(rates_ppn, math.ceil(P / n))
            ym.append(model_time(files, P, n, r, t_fixed, bpf, consts_read, 1.0, fs_bw, node_bw)["seconds"])
        ax[0].plot(xm, ym, "-", label="model, %d node(s)" % n)
        ax[1].plot(xm, [base["wall_s"] * base["ranks"] / y for y in ym], "-", label="model, %d node(s)" % n)
    mx = max(t["ranks"] for t in meas)
    ax[1].plot([1, mx], [1, mx], "k:", label="ideal")
    ax[0].set(xlabel="ranks", ylabel="time (s)", title="benchmark run: %d files, %d frames" % (
        res["benchmark"]["files"], res["benchmark"]["frames"]))
    ax[1].set(xlabel="ranks", ylabel="speed-up", title="speed-up over %d rank(s)" % base["ranks"])
    for ppn in sorted({s["ranks_per_node"] for s in fr["predictions"]}):
        pts = [s for s in fr["predictions"] if s["ranks_per_node"] == ppn]
        ax[2].plot([s["nodes"] for s in pts], [s["seconds"] / 60 for s in pts], "o-",
                   label="%d ranks/node%s" % (ppn, " (extrap.)" if pts[0]["extrapolated"] else ""))
    ax[2].set_xscale("log", base=2)
    ax[2].set_yscale("log")
    ax[2].set(xlabel="nodes", ylabel="predicted time (min)",
              title="model: %d modules x %d seq x %d trains x %d cells\nFS %.1f GB/s" % (
                  fr["modules"], fr["sequences"], fr["trains"], fr["cells"], res["model"]["fs_bandwidth_gbs"]))
    for a in ax:
        a.grid(True, alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
