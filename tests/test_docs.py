"""The documentation comes from the option table: --help, docs/ and README agree."""
import os
import re

import harness


def options():
    out = harness.run([harness.CORRECT, "--help"]).stdout
    return re.findall(r"^\s+--([a-z0-9-]+)", out, re.M)


def test_help_grouped_with_defaults():
    out = harness.run([harness.CORRECT, "--help"]).stdout
    for group in ("Input and output:", "Operating conditions:", "Correction:", "Parallel I/O:", "Run control:"):
        assert group in out, group
    assert "[default: 0.15]" in out and "[default: SPB_IRU_AGIPD1M1]" in out
    assert "Exit status" in out


def test_docs_generated_from_table():
    gen = harness.run([harness.CORRECT, "--help-markdown"]).stdout
    with open(os.path.join(harness.TOP, "docs", "agipd-correct.md")) as f:
        assert f.read() == gen, "docs/agipd-correct.md is stale: run `make docs`"


def test_readme_options_generated():
    """README's option tables are those of the option table (make docs)."""
    gen = harness.run([harness.CORRECT, "--help-markdown"]).stdout
    tables = gen.split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
    with open(os.path.join(harness.TOP, "README.md")) as f:
        readme = f.read()
    begin, end = "<!-- options: begin", "<!-- options: end"
    assert begin in readme and end in readme, "README.md lost its option-table markers"
    block = readme.split(begin, 1)[1].split("\n", 1)[1].split(end, 1)[0]
    assert block.strip() == tables.strip(), "README.md's option tables are stale: run `make docs`"


def test_readme_lists_every_option():
    with open(os.path.join(harness.TOP, "README.md")) as f:
        readme = f.read()
    missing = [o for o in options() if f"--{o}" not in readme and o not in ("help", "version")]
    assert not missing, f"README.md does not document: {missing}"
    assert "make check" in readme and "make demo" in readme


def test_version():
    out = harness.run([harness.CORRECT, "--version"]).stdout
    assert re.match(r"agipd-correct \d+\.\d+\.\d+ \(git ", out), out


def test_make_install():
    d = harness.tmpdir()
    harness.run(["make", "-s", "-C", harness.TOP, "install", f"PREFIX={d}"], timeout=300)
    for b in ("agipd-correct", "agipd-simulate", "plan_efficiency"):
        p = os.path.join(d, "bin", b)
        assert os.access(p, os.X_OK), p
    jobs = os.path.join(d, "share", "agipd-correct", "jobs")
    assert os.path.exists(os.path.join(jobs, "correct.sbatch"))
    assert os.path.exists(os.path.join(d, "share", "doc", "agipd-correct", "agipd-correct.md"))
    out = harness.run([os.path.join(d, "bin", "agipd-correct"), "--version"]).stdout
    assert "agipd-correct" in out


harness.main(globals())
