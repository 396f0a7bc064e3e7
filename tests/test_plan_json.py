"""bin/plan_efficiency --json prints the plan agipd-correct runs (the same
file -> ranks assignment and frame ranges as --dry-run prints), and
jobs/scaling_report.py takes its model's plan from it, from the source tree
and from an installed layout."""
import importlib.util
import json
import os
import re
import shutil

import harness

PLAN = os.path.join(harness.BIN, "plan_efficiency")
REPORT = os.path.join(harness.TOP, "jobs", "scaling_report.py")
PY = "/usr/bin/python3"

FILE_RE = re.compile(r"^  AGIPD(\d\d) S(\d{5}): (\d+) frames in (\d+) trains, ranks (\d+)-(\d+)$")
RANK_RE = re.compile(r"^    rank (\d+): (?:frames (\d+)-(\d+) \(|no frames)")

_DATA = []


def data():
    """A small simulated run: 2 modules x 3 sequences x 2 trains x 16 cells."""
    if not _DATA:
        d = harness.tmpdir()
        harness.run([harness.SIMULATE, "--out-folder", d, "--modules", "0-1", "--sequences", "3", "--trains", "2",
                     "--cells", "16", "--no-truth"], timeout=120)
        _DATA.append(d)
    return _DATA[0]


def plan_json(ranks, files, extra=()):
    """The tool's plan of files [(module, frames, trains)] on ranks."""
    cmd = [PLAN, "--json", "--ranks", str(ranks), "--frames", ",".join(str(f[1]) for f in files),
           "--trains", ",".join(str(f[2]) for f in files), "--modules", ",".join(str(f[0]) for f in files),
           *extra]
    return json.loads(harness.run(cmd).stdout)


def dry_run(d, np_, extra=()):
    """--dry-run's plan: files [(module, frames, trains)] in the plan's file
    order (module, sequence), and
    per round [(file index, rank0, nranks, [(first, end) per rank])]."""
    out = harness.mpirun(np_, [harness.CORRECT, "--in-folder", d, "--out-folder", os.path.join(d, "out"),
                               "--run", "1", "--constants-folder", os.path.join(d, "constants"), "--dry-run",
                               *extra], timeout=120).stdout
    files, rounds = {}, []
    for line in out.splitlines():
        if re.match(r"^round \d+:$", line):
            rounds.append([])
            continue
        m = FILE_RE.match(line)
        if m:
            r0, r1 = int(m.group(5)), int(m.group(6))
            key = (int(m.group(1)), int(m.group(2)))    # (module, sequence): the plan's file order
            files[key] = (int(m.group(1)), int(m.group(3)), int(m.group(4)))
            rounds[-1].append([key, r0, r1 - r0 + 1, []])
            continue
        m = RANK_RE.match(line)
        if m:
            g = rounds[-1][-1]
            assert int(m.group(1)) == g[1] + len(g[3]), line
            g[3].append((int(m.group(2)), int(m.group(3)) + 1) if m.group(2) else None)
    assert files and rounds, out
    index = {k: i for i, k in enumerate(sorted(files))}
    for rd in rounds:
        for g in rd:
            g[0] = index[g[0]]
    return [files[k] for k in sorted(files)], rounds


def test_json_plan_equals_dry_run():
    d = data()
    cases = [(1, []), (3, []), (4, []), (3, ["--sequences", "0"]), (3, ["--modules", "0", "--sequences", "1"]),
             (3, ["--writer", "serial"])]
    for np_, extra in cases:
        files, rounds = dry_run(d, np_, extra)
        # One machine: agipd-correct's node is all its ranks.
        j = plan_json(np_, files, ["--ranks-per-node", str(np_)] + (["--serial"] if "serial" in extra else []))
        # The corrector's default schedule: fixed groups, no lockstep but
        # with a single round.
        assert j["nfiles"] == len(files) and j["nranks"] == np_, (np_, extra, j)
        assert j["lockstep"] is (j["nrounds"] == 1), (np_, extra, j)
        assert j["nrounds"] == len(rounds), (np_, extra, j["nrounds"], rounds)
        for rd, want in zip(j["rounds"], rounds):
            got = [(g["file"], g["rank0"], g["nranks"]) for g in rd["groups"]]
            assert got == [tuple(w[:3]) for w in want], (np_, extra, got, want)
            for g, w in zip(rd["groups"], want):
                ranges = [tuple(r) if r[0] < r[1] else None for r in g["ranges"]]
                assert ranges == w[3], (np_, extra, g, w)
        if extra == ["--modules", "0", "--sequences", "1"]:
            # One file of 2 trains on 3 ranks: a rank without frames.
            assert rounds[0][0][3].count(None) == 1, rounds
        print("  %d rank(s) %s: %d file(s), %d round(s): the same plan" % (np_, " ".join(extra), len(files),
                                                                           len(rounds)))


def test_json_totals_agree():
    # Several nodes, several modules, more files than ranks.
    files = [(m, 64, 4) for m in range(3) for _ in range(5)]
    for ranks, rpn in ((4, 2), (6, 4), (7, 3), (16, 4)):
        # Fixed groups (the default): a group loads on each node it spans
        # where its module changes; the totals add up the same way.
        g = plan_json(ranks, files, ["--ranks-per-node", str(rpn)])
        assert g["lockstep"] is (g["nrounds"] == 1), g
        assert sum(rd["loads"] for rd in g["rounds"]) == g["loads"] > 0, g
        last, want = {}, 0
        for rd in ([] if g["lockstep"] else g["rounds"]):
            for x in rd["groups"]:
                loads = files[x["file"]][0] != last.get(x["rank0"])
                last[x["rank0"]] = files[x["file"]][0]
                assert x["loading_ranks"] == (x["nranks"] if loads else 0), (x, g)
                want += loads * ((x["rank0"] + x["nranks"] - 1) // rpn - x["rank0"] // rpn + 1)
        assert g["lockstep"] or g["loads"] == want, (g["loads"], want)
        # The lockstep rounds (--schedule rounds): a node's ranks share.
        j = plan_json(ranks, files, ["--ranks-per-node", str(rpn), "--policy", "balanced"])
        groups = [g for rd in j["rounds"] for g in rd["groups"]]
        assert sorted(g["file"] for g in groups) == list(range(len(files))), j
        assert sum(rd["loads"] for rd in j["rounds"]) == j["loads"] > 0, j
        for rd in j["rounds"]:
            busy = sorted(r for g in rd["groups"] for r in range(g["rank0"], g["rank0"] + g["nranks"]))
            assert len(busy) == len(set(busy)) and set(busy) <= set(range(ranks)), rd
            assert (rd["loads"] > 0) == any(g["loading_ranks"] for g in rd["groups"]), rd
            for g in rd["groups"]:
                assert 0 <= g["loading_ranks"] <= g["nranks"], g
                r = g["ranges"]
                assert len(r) == g["nranks"] and r[0][0] == 0 and r[-1][1] == files[g["file"]][1], g
                assert all(a[1] == b[0] for a, b in zip(r, r[1:])), g
        # The first round loads every (node, module) pair it holds.
        first = j["rounds"][0]
        pairs = {(r // rpn, files[g["file"]][0]) for g in first["groups"]
                 for r in range(g["rank0"], g["rank0"] + g["nranks"])}
        assert first["loads"] == len(pairs), (first, pairs)
        assert sum(g["loading_ranks"] for g in first["groups"]) == sum(g["nranks"] for g in first["groups"])


def test_json_efficiency_equals_text_mode():
    # The text mode plans with the frames: --weigh-frames is the same plan.
    for ranks, nfiles, frames, last, every in ((96, 160, 3520, 3520, 1), (10, 33, 3520, 1000, 4), (5, 3, 10, 10, 1)):
        text = harness.run([PLAN, str(ranks), str(nfiles), str(frames), str(last), str(every)]).stdout
        fr = [last if every > 1 and (i + 1) % every == 0 else frames for i in range(nfiles)]
        for pol in ("rounds", "balanced"):
            j = json.loads(harness.run([PLAN, "--json", "--ranks", str(ranks), "--policy", pol, "--weigh-frames",
                                        "--frames", ",".join(map(str, fr))]).stdout)
            want = "%-8s %d ranks, %d files: %d round(s), efficiency %.1f %%" % (
                pol, ranks, nfiles, j["nrounds"], 100 * j["efficiency"])
            assert want in text.splitlines(), (want, text)
            assert abs(j["time"] * j["efficiency"] - sum(fr) / ranks) < 1e-6 * sum(fr), j


def test_json_usage_errors():
    for bad in (["--ranks", "0", "--frames", "1"], ["--ranks", "2"], ["--ranks", "2", "--frames", "1,,2"],
                ["--ranks", "2", "--frames", "1,2", "--modules", "0"], ["--ranks", "2", "--frames", "1", "--policy",
                                                                         "fastest"]):
        p = harness.run([PLAN, "--json", *bad], check=False)
        assert p.returncode == 2 and "usage" in p.stderr and not p.stdout, (bad, p)


def load_report_module():
    spec = importlib.util.spec_from_file_location("scaling_report", REPORT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_model_not_lockstep():
    # Groups of ranks (rank0, nranks) doing their files back to back: the
    # slowest set's sum, not the rounds' slowest groups.
    sr = load_report_module()
    plan = {"lockstep": False, "rounds": [
        {"loads": 1, "groups": [{"rank0": 0, "nranks": 2, "loading_ranks": 2, "ranges": [[0, 10], [10, 20]]},
                                {"rank0": 2, "nranks": 1, "loading_ranks": 0, "ranges": [[0, 30]]}]},
        {"loads": 0, "groups": [{"rank0": 0, "nranks": 2, "loading_ranks": 0, "ranges": [[0, 15], [15, 20]]}]}]}
    # ranks 0-1: (10 + 15) * 2 + 5 (one load); rank 2: 30 * 2.
    assert abs(sr.cpu_time(plan, 2.0, 5.0) - 60.0) < 1e-9
    assert abs(sr.cpu_time(plan, 2.0, 40.0) - 90.0) < 1e-9
    plan["lockstep"] = True
    # Rounds: max(20, 60) + 5, then 30.
    assert abs(sr.cpu_time(plan, 2.0, 5.0) - 95.0) < 1e-9


def fixture(reports=False):
    """A scaling-benchmark folder: runs at 1 and 3 ranks on one node, and
    the 3-rank log once more as if on 2 nodes; with reports, each run's
    --report JSON is in runs.tsv too, as jobs/scaling.sbatch writes it."""
    d = data()
    s = harness.tmpdir()
    os.mkdir(os.path.join(s, "runs"))
    rows = ["ranks\tnodes\tranks_per_node\trepeat\tlauncher\trc\twall_s\tlog" + ("\treport" if reports else "")]
    for np_ in (1, 3):
        rep = ["--report", os.path.join(s, "runs", "r%d.json" % np_)] if reports else []
        p = harness.mpirun(np_, [harness.CORRECT, "--in-folder", d, "--out-folder", os.path.join(s, "out"), "--run",
                                 "1", "--constants-folder", os.path.join(d, "constants"), "--overwrite", *rep],
                           timeout=180)
        with open(os.path.join(s, "runs", "r%d.log" % np_), "w") as f:
            f.write(p.stdout + p.stderr)
        rows.append("%d\t1\t%d\t1\tmpirun\t0\t%.3f\truns/r%d.log" % (np_, np_, 3.0 + np_, np_)
                    + ("\truns/r%d.json" % np_ if reports else ""))
    rows.append("3\t2\t2\t1\tmpirun\t0\t7.000\truns/r3.log" + ("\truns/r3.json" if reports else ""))
    with open(os.path.join(s, "runs.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    return d, s


def run_report(report, d, s, env=None, extra=()):
    return harness.run([PY, report, s, "--run", "1", "--raw-folder", d, "--constants-folder",
                        os.path.join(d, "constants"), "--out-folder", os.path.join(s, "out"), "--sequences", "3",
                        "--nodes", "1,2,4", *extra], timeout=300, env=env, check=False)


def test_scaling_report_uses_the_plan():
    d, s = fixture()
    env = {"PATH": "/usr/bin:/bin", "AGIPD_PLAN_EFFICIENCY": ""}
    p = run_report(REPORT, d, s, env)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(os.path.join(s, "scaling.json")) as f:
        res = json.load(f)
    files = [(0, 32, 2)] * 3 + [(1, 32, 2)] * 3
    assert sorted((m["ranks"], m["nodes"]) for m in res["measurements"]) == [(1, 1), (3, 1), (3, 2)]
    for m in res["measurements"]:
        # seconds per constants load: the ranks' consts seconds over their
        # loads in the tool's plan.
        j = plan_json(m["ranks"], files, ["--ranks-per-node", str(m["ranks_per_node"])])
        rank_loads = sum(g["loading_ranks"] for rd in j["rounds"] for g in rd["groups"])
        consts = m["mean_rank_phase_s"]["consts"] * m["ranks"]
        assert rank_loads > 0 and abs(m["seconds_per_constants_load"] * rank_loads - consts) < 1e-9, (m, j)
    fr = res["model"]["full_run"]
    full = [(mm, 250 * 352, 250) for mm in range(16) for _ in range(3)]
    for pr in fr["predictions"]:
        j = plan_json(pr["ranks"], full, ["--ranks-per-node", str(pr["ranks_per_node"])])
        assert pr["rounds"] == j["nrounds"], (pr, j["nrounds"])
    with open(os.path.join(s, "scaling.txt")) as f:
        txt = f.read()

    # Installed: PREFIX/share/agipd-correct/jobs and PREFIX/bin, as make install lays them out.
    prefix = harness.tmpdir()
    jobs = os.path.join(prefix, "share", "agipd-correct", "jobs")
    os.makedirs(jobs)
    os.makedirs(os.path.join(prefix, "bin"))
    shutil.copy(REPORT, jobs)
    shutil.copy(PLAN, os.path.join(prefix, "bin"))
    p = run_report(os.path.join(jobs, "scaling_report.py"), d, s, env)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(os.path.join(s, "scaling.json")) as f:
        assert json.load(f) == res
    with open(os.path.join(s, "scaling.txt")) as f:
        assert f.read() == txt

    # Without the tool the report says so instead of guessing a plan.
    os.remove(os.path.join(prefix, "bin", "plan_efficiency"))
    p = run_report(os.path.join(jobs, "scaling_report.py"), d, s, env)
    assert p.returncode == 2 and "plan_efficiency not found" in p.stderr, p
    p = run_report(os.path.join(jobs, "scaling_report.py"), d, s, dict(env, AGIPD_PLAN_EFFICIENCY=PLAN))
    assert p.returncode == 0, p.stdout + p.stderr
    p = run_report(REPORT, d, s, env, ["--plan-tool", os.path.join(prefix, "bin", "plan_efficiency")])
    assert p.returncode == 2 and "plan_efficiency not found" in p.stderr, p


def test_scaling_report_reads_the_json_report():
    """The launcher forwards the ranks' stdout and stderr as they come, so a
    progress line may land inside the summary line in the run's log; the
    report takes its figures from the run's --report JSON instead."""
    d, s = fixture(reports=True)
    for name in ("r1.log", "r3.log"):
        path = os.path.join(s, "runs", name)
        with open(path) as f:
            log = f.read()
        i = log.index("agipd-correct 0.")
        with open(path, "w") as f:
            f.write(log[:i + 20] + "[    0.2 s] files 6/6, frames 192/192 (100%)\n" + log[i + 20:])
    p = run_report(REPORT, d, s)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(os.path.join(s, "scaling.json")) as f:
        res = json.load(f)
    assert res["failed_runs"] == [], res["failed_runs"]
    assert sorted((m["ranks"], m["nodes"]) for m in res["measurements"]) == [(1, 1), (3, 1), (3, 2)]
    for m in res["measurements"]:
        with open(os.path.join(s, "runs", "r%d.json" % m["ranks"])) as f:
            j = json.load(f)
        assert m["frames"] == j["frames"] == 192 and m["program_s"] == j["seconds"], (m, j)
        consts = sum(r["constants_s"] for r in j["ranks"]) / j["n_ranks"]
        assert abs(m["mean_rank_phase_s"]["consts"] - consts) < 1e-9, (m, consts)

    # Without the reports the broken log counts as a failed run, and says why.
    with open(os.path.join(s, "runs.tsv")) as f:
        rows = [line.rsplit("\t", 1)[0] for line in f.read().splitlines()]
    with open(os.path.join(s, "runs.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    p = run_report(REPORT, d, s)
    assert p.returncode == 1 and "no successful run" in p.stderr, p

    # A report that is not there: a failed run, named with its cause.
    d, s = fixture(reports=True)
    os.remove(os.path.join(s, "runs", "r3.json"))
    p = run_report(REPORT, d, s)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(os.path.join(s, "scaling.json")) as f:
        res = json.load(f)
    assert sorted((f["ranks"], f["nodes"], f["why"]) for f in res["failed_runs"]) == [
        (3, 1, "no report runs/r3.json"), (3, 2, "no report runs/r3.json")], res["failed_runs"]
    with open(os.path.join(s, "scaling.txt")) as f:
        assert "failed: 3 rank(s) on 1 node(s), repeat 1: no report runs/r3.json" in f.read()


harness.main(globals())
