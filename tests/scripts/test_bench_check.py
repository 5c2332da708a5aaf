"""`make bench-check` on a machine without a saved run: one line saying what to do, non-zero exit."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("saved", ["nothing", "another python"])
def test_bench_check_without_a_saved_run_says_how_to_make_one(tmp_path, saved):
    storage = tmp_path / "baselines" / "some-machine"
    if saved == "another python":   # pytest-benchmark compares only with this Python's folder
        (storage / "Linux-CPython-2.7-64bit").mkdir(parents=True)
        (storage / "Linux-CPython-2.7-64bit" / "0001_old.json").write_text("{}")
    done = subprocess.run(["make", "--no-print-directory", "bench-check", f"BENCH_STORAGE={storage}",
                           "MACHINE=some-machine"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "no saved benchmark run for machine some-machine" in lines[0] and "make bench" in lines[0]
    assert sorted(p.name for p in storage.rglob("*")) == (   # nothing ran, nothing written
        [] if saved == "nothing" else ["0001_old.json", "Linux-CPython-2.7-64bit"])


def test_check_speedups_runs_the_benchmarks_with_the_users_onednn_setting():
    """Importing `research` sets TF_ENABLE_ONEDNN_OPTS=1 in check_speedups' process; the
    in-process confusion/loss benchmarks must not inherit it as 'TF's default'."""
    import runpy

    script = runpy.run_path(os.path.join(ROOT, "scripts", "check_speedups.py"))
    environ = {"PATH": "/bin", "TF_ENABLE_ONEDNN_OPTS": "1"}                 # as after `import research`
    assert script["benchmark_environment"](environ, user_onednn=None) == {"PATH": "/bin"}
    assert script["benchmark_environment"](environ, user_onednn="0")["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert script["checks"](False, user_onednn=None)["loss"][3] == "TF's default here (oneDNN off)"
    assert script["checks"](True, user_onednn="0")["confusion"][3] == "yours: TF_ENABLE_ONEDNN_OPTS=0"
