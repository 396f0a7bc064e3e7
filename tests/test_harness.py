#!/usr/bin/python3
"""The test harness itself (tests/harness.py, tests/run.sh): a test that
raises Skip is reported SKIP on a workstation and FAIL under CI=true, where
every test must run; tests/run.sh counts a SKIP line as a failure there."""
import os
import subprocess
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = textwrap.dedent("""
    import sys
    sys.path.insert(0, %r)
    import harness

    def test_skipped():
        raise harness.Skip("no tmpfs here")

    def test_ok():
        pass

    harness.main(globals())
""") % HERE


def run_module(env):
    d = harness.tmpdir("agipd-harness-")
    path = os.path.join(d, "mod.py")
    with open(path, "w") as f:
        f.write(MODULE)
    e = {k: v for k, v in os.environ.items() if k not in ("CI", "AGIPD_NO_SKIP")}
    e.update(env)
    return subprocess.run([sys.executable, path], capture_output=True, text=True, env=e, timeout=60)


def test_skip_outside_ci():
    p = run_module({})
    if p.returncode != 0 or "SKIP test_skipped: no tmpfs here" not in p.stdout or "PASS test_ok" not in p.stdout:
        raise harness.Failed(f"exit {p.returncode}:\n{p.stdout}\n{p.stderr}")


def test_skip_fails_in_ci():
    for env in ({"CI": "true"}, {"AGIPD_NO_SKIP": "1"}):
        p = run_module(env)
        if p.returncode != 1 or "FAIL test_skipped" not in p.stdout or "SKIP" in p.stdout \
                or "PASS test_ok" not in p.stdout:
            raise harness.Failed(f"{env}: exit {p.returncode}:\n{p.stdout}\n{p.stderr}")


def test_run_sh_counts_skip_lines_in_ci():
    """A program (C or shell) printing a SKIP line fails the run under CI."""
    d = harness.tmpdir("agipd-harness-")
    os.makedirs(os.path.join(d, "tests"))
    os.makedirs(os.path.join(d, "bin"))
    with open(os.path.join(HERE, "run.sh")) as f:
        script = f.read()
    with open(os.path.join(d, "tests", "run.sh"), "w") as f:
        f.write(script)
    prog = os.path.join(d, "bin", "test_fake")
    with open(prog, "w") as f:
        f.write("#!/bin/sh\necho 'PASS fake: one'\necho 'SKIP fake: two: no root'\n")
    os.chmod(prog, 0o755)
    for env, rc, want in (({}, 0, "1 passed, 0 failed, 1 skipped"), ({"CI": "true"}, 1, "1 passed, 1 failed")):
        e = {k: v for k, v in os.environ.items() if k not in ("CI", "AGIPD_NO_SKIP", "TESTS")}
        e.update(env, TESTS="test_fake", AGIPD_TOP=d)
        p = subprocess.run(["bash", os.path.join(d, "tests", "run.sh")], capture_output=True, text=True,
                           env=e, timeout=60)
        if p.returncode != rc or want not in p.stdout:
            raise harness.Failed(f"{env}: exit {p.returncode}, expected {rc} and '{want}':\n{p.stdout}\n{p.stderr}")


harness.main(globals())
