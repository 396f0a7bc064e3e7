"""What the processes of a run really took from the constants files, and
which shared-memory segments they mapped, per node (host name): the records
of bin/iotrace.so (tests/iotrace.c), an LD_PRELOAD library.

    d = harness.tmpdir()
    cmd = iotrace.wrap(d) + [harness.CORRECT, ...]     # as each rank's command
    ...run it...
    t = iotrace.Trace(d, exclude=[data folder])
    t.taken(host, module)    bytes read + mapped of AGIPDmm.h5 on that host
    t.segments(host)         {segment: set of pids} of the host's large shared mappings

Nothing here asks agipd-correct what it did: the counts are of system calls
and of resident pages of mappings, seen from inside each process by the
library.
"""
import os
import re

import harness

LIB = os.path.join(harness.BIN, "iotrace.so")
MATCH = "/AGIPD"   # constants files: <folder>/AGIPDmm.h5


def need():
    if not os.path.exists(LIB):
        raise harness.Skip(f"{LIB} not built (make tests)")


def wrap(d, match=MATCH):
    """The prefix that runs a command with the library, records into d."""
    need()
    env = ["env", f"LD_PRELOAD={LIB}", f"AGIPD_IOTRACE_DIR={d}", f"AGIPD_IOTRACE_MATCH={match}"]
    if os.environ.get("AGIPD_SANITIZER", "").find("asan") >= 0:
        # the library is not instrumented and comes before libasan
        env.append("ASAN_OPTIONS=" + os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    return env


class Trace:
    def __init__(self, d, exclude=()):
        self.files = []      # (host, pid, path, opens, read, mapped)
        self.shm = []        # (host, pid, path, id, length, resident)
        for name in sorted(os.listdir(d)):
            if not name.startswith("iotrace."):
                continue
            with open(os.path.join(d, name)) as f:
                for line in f:
                    p = line.split()
                    if p[0] == "file" and len(p) == 7:
                        self.files.append((p[1], int(p[2]), p[3], int(p[4]), int(p[5]), int(p[6])))
                    elif p[0] == "shm" and len(p) == 7:
                        if any(p[3].startswith(x) for x in exclude):
                            continue   # a mapping of an input file (raw data), not shared memory
                        self.shm.append((p[1], int(p[2]), p[3], p[4], int(p[5]), int(p[6])))

    def hosts(self):
        return sorted({r[0] for r in self.files} | {r[0] for r in self.shm})

    def _of(self, module):
        pat = re.compile(r"AGIPD%02d\.h5$" % module)
        return [r for r in self.files if pat.search(r[2])]

    def pids(self, host, module):
        """Processes on host that opened module's constants file."""
        return {r[1] for r in self._of(module) if r[0] == host}

    def hosts_of(self, module):
        return sorted({r[0] for r in self._of(module)})

    def taken(self, host, module):
        """Bytes of module's constants file read and mapped on host."""
        return sum(r[4] + r[5] for r in self._of(module) if r[0] == host)

    def per_pid(self, module):
        """{(host, pid): bytes taken} for module's constants file."""
        out = {}
        for r in self._of(module):
            out[(r[0], r[1])] = out.get((r[0], r[1]), 0) + r[4] + r[5]
        return out

    def segments(self, host, min_len=0):
        """{segment id: set of pids mapping it} of host's shared mappings."""
        out = {}
        for r in self.shm:
            if r[0] == host and r[4] >= min_len:
                out.setdefault(r[3], set()).add(r[1])
        return out

    def describe(self):
        return "\n".join(["constants files (host pid path opens read mapped):"] +
                         ["  %s %d %s %d %d %d" % r for r in self.files] +
                         ["shared mappings (host pid path id length resident):"] +
                         ["  %s %d %s %s %d %d" % r for r in self.shm])


def check_nodes(t, nodes):
    """Problems with "each node loads a module's constants once" in trace t
    of a run on `nodes` nodes: every node took constants; on each node, the
    ranks that took a module's constants (2 or more) all map one shared
    segment; a module's file was opened as often on each node with the same
    number of ranks on it.  Returns (problems, summary)."""
    bad, summary = [], []
    hosts = t.hosts()
    if len(hosts) != nodes:
        bad.append("constants taken on %d host(s) %s, expected %d" % (len(hosts), hosts, nodes))
    modules = sorted({int(re.search(r"AGIPD(\d\d)\.h5$", r[2]).group(1)) for r in t.files
                      if re.search(r"AGIPD(\d\d)\.h5$", r[2])})
    for m in modules:
        opens_by_k, parts = {}, []
        for h in t.hosts_of(m):
            pids = t.pids(h, m)
            segs = [s for s, p in t.segments(h).items() if pids <= p]
            if len(pids) > 1 and not segs:
                bad.append("module %d on %s: %d ranks but no shared segment mapped by all" % (m, h, len(pids)))
            opens_by_k.setdefault(len(pids), set()).add(sum(r[3] for r in t._of(m) if r[0] == h))
            parts.append("%s x%d%s" % (h, len(pids), " shared" if len(pids) > 1 and segs else ""))
        for k, o in opens_by_k.items():
            if len(o) > 1:
                bad.append("module %d: nodes with %d rank(s) on it opened it a different number of times: %s" % (
                    m, k, sorted(o)))
        summary.append("AGIPD%02d: %s" % (m, ", ".join(parts)))
    return bad, "; ".join(summary)


if __name__ == "__main__":
    # iotrace.py DIR NODES [EXCLUDE...]: check_nodes on a trace folder.
    import sys
    tr = Trace(sys.argv[1], exclude=sys.argv[3:])
    problems, summary = check_nodes(tr, int(sys.argv[2]))
    for p in problems:
        print(p)
    print(summary)
    sys.exit(1 if problems else 0)
