#!/usr/bin/python3
"""Plot bench/results/bench.json (written by run_bench.py) as a PNG.

    plot_bench.py [bench.json [bench.png]]

Three panels: time per phase per configuration (stacked bars, whiskers from
the fastest to the slowest repetition), speed-up against ranks, and the
targets (measured value over target: right of the line is met).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PHASES = ["consts", "read", "correct", "compress", "write", "gather", "wait", "other"]
COLORS = {"consts": "#9e9e9e", "read": "#4e79a7", "correct": "#59a14f", "compress": "#f28e2b",
          "write": "#e15759", "gather": "#b07aa1", "wait": "#edc948", "other": "#d7d7d7"}
KIND_STYLE = {"collective": ("#1f77b4", "o", "agipd-correct, collective"),
              "serial": ("#ff7f0e", "s", "agipd-correct, --writer serial"),
              "python": ("#2ca02c", "^", "Python pipeline (h5py/NumPy)"),
              "floor": ("#7f7f7f", "D", "floor (measured: mapped read, ISA-L or zlib, POSIX write)"),
              "constants": ("#9467bd", "v", "agipd-correct, 352-cell constants"),
              "tail": ("#8c564b", "x", "agipd-correct, gain/mask tail file"),
              "schedule": ("#17becf", "P", "agipd-correct, --schedule on uneven files")}


def plot(rep, path):
    cases = rep["cases"]
    fig = plt.figure(figsize=(15, 10.5), dpi=100)
    gs = fig.add_gridspec(2, 2, height_ratios=[1.35, 1], width_ratios=[1, 1.15], hspace=0.32, wspace=0.28)
    ax = fig.add_subplot(gs[0, :])
    cfg = rep["config"]
    fig.suptitle(f"agipd-correct benchmark: {rep['raw_files']} raw files, {rep['frames']} frames "
                 f"({rep['raw_bytes'] / 1e9:.2f} GB raw), {cfg['cores']} cores, median of {cfg['reps']} reps",
                 fontsize=14, fontweight="bold")

    # 1. Time per phase, stacked.
    names = [c["name"] for c in cases][::-1]
    rows = cases[::-1]
    left = [0.0] * len(rows)
    for p in PHASES:
        w = [(c["other_s"] if p == "other" else c["phases_mean_per_rank"].get(p, 0.0)) for c in rows]
        if not any(x > 0.005 for x in w):
            continue
        bars = ax.barh(names, w, left=left, color=COLORS[p], edgecolor="white", linewidth=0.5, label=p)
        left = [a + b for a, b in zip(left, w)]
    # Lines between groups of configurations, labels in the group's colour.
    for i in range(1, len(rows)):
        if rows[i]["kind"] != rows[i - 1]["kind"] or rows[i]["files"] != rows[i - 1]["files"]:
            ax.axhline(i - 0.5, color="#888888", lw=0.8, ls=":")
    for lbl, c in zip(ax.get_yticklabels(), rows):
        lbl.set_color(KIND_STYLE[c["kind"]][0])
        lbl.set_fontweight("bold")
    tmax = max(max(c["time_s"], (c.get("time") or c.get("floor_s") or c["internal_s"])["max"]) for c in rows)
    for i, c in enumerate(rows):
        t = c.get("time") or c.get("floor_s") or c["internal_s"]
        ax.plot([t["min"], t["max"]], [i, i], color="black", lw=1.2)
        ax.plot([t["min"]] * 2, [i - 0.15, i + 0.15], color="black", lw=1.2)
        ax.plot([t["max"]] * 2, [i - 0.15, i + 0.15], color="black", lw=1.2)
        ax.text(max(c["time_s"], t["max"]) + tmax * 0.01, i,
                f"{c['time_s']:.2f} s  {c['frames_per_s']:.0f} frames/s  {c['raw_GBps']:.2f} GB/s  "
                f"{c['peak_mb_rank']:.0f} MB/rank", va="center", fontsize=9)
    ax.set_xlim(0, tmax * 1.55)
    ax.set_xlabel("seconds (mean over ranks per phase; whisker: fastest to slowest rep)")
    ax.set_title("Time per phase", loc="left", fontsize=12)
    ax.legend(ncol=len(PHASES), loc="lower left", bbox_to_anchor=(0.0, 1.06), fontsize=9, frameon=False,
              borderaxespad=0.0, handlelength=1.5)
    ax.set_title("launch to exit; the floor measured, not estimated", loc="right", fontsize=9, color="#555555")
    ax.grid(axis="x", alpha=0.3)
    for lbl in ax.get_yticklabels():
        lbl.set_fontsize(10)

    # 2. Speed-up against ranks.
    ax2 = fig.add_subplot(gs[1, 0])
    ranks = cfg["ranks"]
    for j, (kind, (col, mk, label)) in enumerate(KIND_STYLE.items()):
        if kind in ("constants", "tail"):
            continue
        pts = sorted((c["ranks"], c["time_s"], c["frames_per_s"]) for c in cases
                     if c["kind"] == kind and not c["name"].startswith("1 file") and not c.get("variant")
                     and c.get("fs", "") in ("", cases[0].get("fs", "")))
        if not pts:
            continue
        base = next((t for n, t, _ in pts if n == 1), pts[0][1] * pts[0][0])
        xs = [n for n, _, _ in pts]
        ys = [base / t for _, t, _ in pts]
        ax2.plot(xs, ys, marker=mk, color=col, label=label, lw=2, ms=7)
        for x, y, (_, _, fps) in zip(xs, ys, pts):
            ax2.annotate(f"{fps:.0f}/s", (x, y), textcoords="offset points", xytext=(8, 10 - 8 * j), fontsize=8,
                         color=col)
    ax2.plot([1, max(ranks)], [1, max(ranks)], ls="--", color="black", lw=1, label="ideal")
    ax2.set_xticks(ranks)
    ax2.set_xlabel("ranks (processes)")
    ax2.set_ylabel("speed-up over 1 rank")
    ax2.set_title("Speed-up against ranks (labels: frames/s)", loc="left", fontsize=12)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="upper left")

    # 3. Targets.
    ax3 = fig.add_subplot(gs[1, 1])
    rs = [r for r in rep["ratios"]][::-1]
    labels, vals, cols, texts = [], [], [], []
    for r in rs:
        v = r["value"]
        if v is None:
            score, col, txt = 0.0, "#cccccc", "n/a"
        else:
            score = v / r["target"] if r["op"] == ">=" else r["target"] / v
            col = "#2ca02c" if r["met"] else "#d62728"
            txt = f"{v:.2f} (target {r['op']} {r['target']:g}) {'met' if r['met'] else 'NOT met'}"
        labels.append(short_label(r["key"]))
        vals.append(score)
        cols.append(col)
        texts.append(txt)
    ax3.barh(labels, vals, color=cols)
    ax3.axvline(1.0, color="black", lw=1.5)
    hi = max([1.5] + [v * 1.1 for v in vals])
    for i, (v, t) in enumerate(zip(vals, texts)):
        ax3.text(0.02 * hi, i, t, va="center", fontsize=9, color="black",
                 bbox=dict(facecolor="white", alpha=0.75, edgecolor="none", pad=1))
    ax3.set_xlim(0, hi)
    ax3.set_xlabel("measured / target (right of the line: met)")
    ax3.set_title("Targets", loc="left", fontsize=12)
    ax3.grid(axis="x", alpha=0.3)

    notes = ("time = launch to exit (MPI and Python start-up included), median of clean reps, no fsync; page cache "
             "not dropped.  floor = bench_floor, measured: mapped reads, ISA-L (or zlib) gain/mask, POSIX writes.")
    fig.text(0.01, 0.005, notes, fontsize=8, color="#444444")
    busy = [c for c in cases if c["foreign_load_cores"]["median"] > 0.2]
    if busy:
        worst = max(c["foreign_load_cores"]["median"] for c in busy)
        fig.text(0.5, 0.935, f"WARNING: other processes used up to {worst:.1f} of {cfg['cores']} cores during "
                 f"{len(busy)} of {len(cases)} configurations: times are disturbed", ha="center", fontsize=11,
                 color="#d62728", fontweight="bold")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def short_label(key):
    return {"python_speedup": "vs Python pipeline",
            "vs_floor": "time / floor",
            "compress_GBps": "compress GB/s/core",
            "scaling": "2 vs 1 rank",
            "collective_vs_serial": "collective vs serial\n(1 file)"}.get(key, key)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "results", "bench.json")
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.splitext(src)[0] + ".png"
    plot(json.load(open(src)), dst)
    print(dst)
