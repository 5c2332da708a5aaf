"""`make bench-check` on a machine without a saved run: one line saying what to do, non-zero
exit; and scripts/check_speedups.py's floors, node ids and JSON file (benchmarks/speedups.py,
with fake benchmark reports: no benchmark runs here)."""
import datetime
import json
import os
import shutil
import subprocess

import pytest

from research import provenance, results

from benchmarks import speedups

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
    environ = {"PATH": "/bin", "TF_ENABLE_ONEDNN_OPTS": "1"}                 # as after `import research`
    assert speedups.benchmark_environment(environ, user_onednn=None) == {"PATH": "/bin"}
    assert speedups.benchmark_environment(environ, user_onednn="0")["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert speedups.checks(False, user_onednn=None)["loss"][3:] == ("TF's default here (oneDNN off)", "off")
    assert speedups.checks(True, user_onednn="0")["confusion"][3:] == ("yours: TF_ENABLE_ONEDNN_OPTS=0", "off")


def test_each_floor_is_70_percent_of_the_lowest_ratio_measured_for_it():
    measured = {("train", "on"): {"AMD": [2.2, 1.9], "Intel": [2.5]}}
    assert speedups.floor_of(("train", "on"), measured) == 1.33               # 0.7 x 1.9, rounded down
    for key, by_cpu in speedups.MEASURED.items():
        lowest = min(r for ratios in by_cpu.values() for r in ratios)
        assert speedups.floor_of(key) == pytest.approx(0.7 * lowest, abs=0.01) and speedups.floor_of(key) < lowest
    # Floors go by the baseline's oneDNN setting: TF's default on this CPU, and the other one.
    on_intel, on_amd = speedups.checks(True, user_onednn=None), speedups.checks(False, user_onednn=None)
    assert on_intel["train_defaults"][2] == on_amd["train_forced"][2] == speedups.floor_of(("train", "on"))
    assert on_intel["atrous_r18_forced"][2] == on_amd["atrous_r18"][2] == speedups.floor_of(("atrous_r18", "off"))
    assert on_intel["train_defaults"][0].endswith("fit-onednn_on]") and on_amd["train_defaults"][0].endswith(
        "fit-onednn_off]")


def _benchmark_node_ids():
    """Every node id of the benchmarks the checks use, read from their parametrize marks."""
    from benchmarks import bench_atrous, bench_confusion, bench_losses, bench_train_step

    ids = set()
    for module, test in ((bench_atrous, "test_atrous"), (bench_confusion, "test_confusion"),
                         (bench_losses, "test_loss"), (bench_train_step, "test_train_step")):
        [mark] = [m for m in getattr(module, test).pytestmark if m.name == "parametrize"]
        name = module.__name__.split(".")[-1]
        ids |= {f"benchmarks/{name}.py::{test}[{param.id}]" for param in mark.args[1]}
    return ids


@pytest.mark.parametrize("degrade", [None, *speedups.DEGRADES])
@pytest.mark.parametrize("tf_default", [False, True])
def test_every_check_names_benchmarks_that_exist(tf_default, degrade):
    existing = _benchmark_node_ids()
    table = speedups.checks(tf_default, user_onednn=None, degrade=degrade)
    assert sorted(table) == sorted(speedups.NAMES)
    for name, (baseline, fast, *_) in table.items():
        assert baseline in existing and fast in existing, name
    plain = speedups.checks(tf_default, user_onednn=None)
    changed = sorted(name for name in table if table[name][1] != plain[name][1])
    expected = {None: [], "atrous=keras": ["atrous_r18", "atrous_r18_forced", "train_defaults", "train_forced"],
                "loss=reference": ["loss", "train_defaults", "train_forced"]}
    assert changed == expected[degrade]
    assert all(table[name][0] == plain[name][0] for name in table)            # baselines never change


def _report(seconds):
    """A pytest-benchmark JSON report holding these minimum times (s per call)."""
    return {"benchmarks": [{"fullname": node, "stats": {"min": value, "mean": value * 2},
                            "extra_info": {"steps_per_call": 3} if "train_step" in node else {}}
                           for node, value in seconds.items()]}


def _fake_run(monkeypatch, per_call, status=0):
    """check_speedups with fake benchmarks (min seconds per call by node) and TF's default off."""
    monkeypatch.setattr(speedups, "tf_default_onednn", lambda: False)
    monkeypatch.setattr(speedups, "USER_ONEDNN", None)       # started without TF_ENABLE_ONEDNN_OPTS
    asked = []

    def run_benchmarks(node_ids, json_path):
        asked.append(sorted(node_ids))
        return speedups.seconds_per_step(_report({n: s for n, s in per_call.items() if n in node_ids})), status

    monkeypatch.setattr(speedups, "run_benchmarks", run_benchmarks)
    return asked


def test_ratios_floors_and_the_json_file(tmp_path, monkeypatch, capsys):
    table = speedups.checks(False, user_onednn=None)
    fit_off, custom = table["train_defaults"][:2]
    confusion_reference, confusion_fast = table["confusion"][:2]
    floor = table["train_defaults"][2]
    asked = _fake_run(monkeypatch, {fit_off: 3 * 12.0, custom: 3 * 2.0,                 # 6x: ok
                                    confusion_reference: 0.05, confusion_fast: 0.05})   # 1x: below floor
    out = tmp_path / "results" / "speedups.json"
    assert speedups.main(["--only", "train_defaults,confusion", "--json", str(out)]) == 1
    assert asked == [sorted([fit_off, custom, confusion_reference, confusion_fast])]
    printed = capsys.readouterr().out
    assert "below floor: confusion" in printed and "BELOW FLOOR" in printed and str(out) in printed
    written = json.loads(out.read_text())
    assert sorted(written) == ["checks", "provenance"]
    facts = written["provenance"]
    assert facts["machine"] == provenance.machine_id() and facts["command"] == (
        f"python scripts/check_speedups.py --only train_defaults,confusion --json {out}")
    assert facts["tensorflow"].startswith("2.") and facts["date"].startswith(datetime.date.today().isoformat())
    assert facts["commit"]
    assert written["checks"] == {
        "train_defaults": {"ratio": pytest.approx(6.0), "floor": floor, "passed": True, "fast_seconds": 2.0,
                           "baseline_seconds": 12.0, "onednn_baseline": "off"},
        "confusion": {"ratio": 1.0, "floor": table["confusion"][2], "passed": False, "fast_seconds": 0.05,
                      "baseline_seconds": 0.05, "onednn_baseline": "off"}}
    assert os.listdir(out.parent) == ["speedups.json"]                      # written atomically: no temp left


def test_a_benchmark_that_did_not_run_fails_its_check_and_is_still_written(tmp_path, monkeypatch):
    table = speedups.checks(False, user_onednn=None)
    loss_reference, _ = table["loss"][:2]
    _fake_run(monkeypatch, {loss_reference: 0.2}, status=1)                 # the fused loss's case crashed
    out = tmp_path / "speedups.json"
    assert speedups.main(["--only", "loss", "--json", str(out)]) == 1
    record = json.loads(out.read_text())["checks"]["loss"]
    assert record["ratio"] is None and record["passed"] is False and record["baseline_seconds"] == 0.2


def test_a_degraded_run_goes_to_its_own_file_and_says_so(monkeypatch, capsys):
    table = speedups.checks(False, user_onednn=None, degrade="atrous=keras")
    keras_r18, degraded = table["atrous_r18"][:2]
    assert degraded == keras_r18                                             # Keras against Keras
    default = speedups.json_path_for("atrous=keras")
    machine = provenance.machine_id()
    assert default == os.path.join(ROOT, "benchmarks", "results", machine, "speedups-degrade-atrous-keras.json")
    assert speedups.json_path_for() == os.path.join(ROOT, "benchmarks", "results", machine, "speedups.json")
    written = {}
    monkeypatch.setattr(results, "write_results", lambda path, saved, command: written.update(
        path=path, saved=saved, command=command) or path)
    _fake_run(monkeypatch, {keras_r18: 2.0})
    assert speedups.main(["--only", "atrous_r18", "--degrade", "atrous=keras"]) == 1
    assert written["path"] == default and written["saved"]["degrade"] == "atrous=keras"
    checks = written["saved"]["checks"]
    assert checks["atrous_r18"]["ratio"] == 1.0 and not checks["atrous_r18"]["passed"]
    assert "degraded: the fast sides run with atrous=keras" in capsys.readouterr().out
