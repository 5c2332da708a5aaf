"""`make bench-check` on a machine without a saved run: one line saying what to do, non-zero exit."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_bench_check_without_a_saved_run_says_how_to_make_one(tmp_path):
    storage = tmp_path / "baselines" / "some-machine"
    done = subprocess.run(["make", "--no-print-directory", "bench-check", f"BENCH_STORAGE={storage}",
                           "MACHINE=some-machine"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "no saved benchmark run for machine some-machine" in lines[0] and "make bench" in lines[0]
    assert not os.path.exists(storage)  # nothing ran
