"""The layout the README describes holds: src/ is a folder per stage of the
pipeline, the library (src/) never prints and
leaves HDF5's error printing to the programs, build/libagipd.a is the
corrector alone (no simulator, preview or PNG code), every header of
include/ has its source file of the same name, the constants module stands
alone (no MPI or HDF5 in its convert part, nothing of the run in its share
part), and no function of src/ outside the kernel passes about 100 lines
without a reason listed here."""
import glob
import os
import re
import subprocess

import harness

SRC = os.path.join(harness.TOP, "src")


def library_sources():
    return [p for p in sorted(glob.glob(os.path.join(SRC, "*", "*.c")) + glob.glob(os.path.join(SRC, "*.c")))
            if not os.path.basename(p).startswith("main_")]


def source(name):
    """src/STAGE/NAME.c (a stage folder of the pipeline), or None."""
    found = glob.glob(os.path.join(SRC, "*", name + ".c"))
    return found[0] if len(found) == 1 else None


def test_src_is_the_pipeline():
    """src/ holds the program and one folder per stage of the pipeline, in
    which every library file lies (the README's architecture section)."""
    stages = {"read", "consts", "correct", "compress", "write", "run", "util"}
    dirs = {d for d in os.listdir(SRC) if os.path.isdir(os.path.join(SRC, d))}
    assert dirs == stages, "src/ folders %s, expected %s" % (sorted(dirs), sorted(stages))
    loose = [f for f in os.listdir(SRC) if f.endswith(".c") and not f.startswith("main_")]
    assert not loose, "library files outside a stage folder: %s" % loose
    with open(os.path.join(harness.TOP, "README.md")) as f:
        readme = f.read()
    missing = [d for d in sorted(stages) if "`src/%s/`" % d not in readme]
    assert not missing, "README's architecture section does not describe src/%s/" % missing


def code_of(path):
    """The file without comments and string literals."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(\\.|[^"\\\n])*"', '""', text)


def test_library_never_prints():
    said = []
    for p in library_sources():
        code = code_of(p)
        for pat in (r"\bstderr\b", r"\bstdout\b", r"\bprintf\s*\(", r"\bputs\s*\(", r"\bperror\s*\(",
                    r"\bputchar\s*\("):
            for m in re.finditer(pat, code):
                said.append("%s:%d: %s" % (os.path.basename(p), code.count("\n", 0, m.start()) + 1, m.group(0)))
    assert not said, "library code that prints:\n" + "\n".join(said)


def test_hdf5_error_printing_left_to_main():
    callers = []
    for p in library_sources():
        code = code_of(p)
        if re.search(r"\bH5Eset_auto2?\s*\(", code) and os.path.basename(p) != "err.c":
            callers.append(os.path.basename(p))
        if re.search(r"\bagipd_h5_quiet\s*\(\s*\)\s*;", code):
            callers.append(os.path.basename(p) + " (agipd_h5_quiet)")
    assert not callers, "the library sets HDF5's process-wide error printing: %s" % callers
    with open(os.path.join(SRC, "main_correct.c")) as f:
        assert "agipd_h5_quiet();" in f.read()


def test_libagipd_is_the_corrector_alone():
    lib = os.path.join(harness.TOP, "build", "libagipd.a")
    if not os.path.exists(lib):
        raise harness.Skip("build/libagipd.a not built")
    out = subprocess.run(["nm", "-g", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
    syms = re.findall(r"^[0-9a-f]+ [TDBR] (\S+)$", out, re.M)
    assert syms, "no symbols in build/libagipd.a"
    stray = [s for s in syms if re.match(r"agipd_(sim|preview|png)_", s)]
    assert not stray, "tool code in the library: %s" % stray[:10]
    bad = [s for s in syms if not (s.startswith("agipd_") or s.startswith("run_"))]
    assert not bad, "exported symbols without the library's prefixes: %s" % bad[:10]


def test_headers_match_sources():
    missing = []
    for h in sorted(glob.glob(os.path.join(harness.TOP, "include", "agipd_*.h"))):
        name = os.path.basename(h)[len("agipd_"):-2]
        if not source(name):
            missing.append(os.path.basename(h))
    assert not missing, "headers without src/STAGE/NAME.c: %s" % missing


def includes_of(path):
    """The headers a file includes (comments aside)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
    return re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', text, re.M)


def test_constants_module_layering():
    """The constants module (agipd_consts.h) stands alone: its convert part
    has neither MPI nor HDF5, its share part (agipd_consts_share.h) none of
    the run that calls it."""
    inc = os.path.join(harness.TOP, "include")
    said = []
    for p in (source("consts"), os.path.join(inc, "agipd_consts.h")):
        said += ["%s includes %s" % (os.path.basename(p), h) for h in includes_of(p)
                 if h in ("mpi.h", "hdf5.h") or h.startswith("H5")]
    for p in (source("consts_share"), os.path.join(inc, "agipd_consts_share.h")):
        code = code_of(p)
        said += ["%s includes %s" % (os.path.basename(p), h) for h in includes_of(p)
                 if h.startswith("run") or h in ("agipd_run.h", "agipd_opts.h")]
        for m in re.finditer(r"\bstruct\s+(ctx|agipd_config)\b|\brun_\w+\s*\(", code):
            said.append("%s uses %s" % (os.path.basename(p), m.group(0)))
    assert not said, "the constants module depends on what it should not:\n" + "\n".join(said)


def test_functions_short():
    # the hot kernel, kept whole
    allowed = {"agipd_correct_frame"}
    long_ones = []
    for p in library_sources():
        lines = code_of(p).split("\n")
        start = name = None
        for i, line in enumerate(lines):
            m = re.match(r"^[a-z][\w \*]*?\b(\w+)\(", line)
            if m and not line.rstrip().endswith(";") and start is None:
                start, name = i, m.group(1)
            elif line.startswith("}") and start is not None:
                if i - start + 1 > 110 and name not in allowed:
                    long_ones.append("%s:%s (%d lines)" % (os.path.basename(p), name, i - start + 1))
                start = None
    assert not long_ones, "functions over ~100 lines: %s" % long_ones


harness.main(globals())
