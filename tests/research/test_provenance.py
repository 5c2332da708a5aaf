"""research/provenance.py and research/results.py: where a number comes from, saved beside it."""
import json
import re
import subprocess
import sys

import pytest

from research import provenance, results


def test_machine_id_is_file_name_safe_and_stable():
    machine = provenance.machine_id()
    assert re.fullmatch(r"[A-Za-z0-9-]+", machine) and machine.endswith("cpu")
    assert machine == provenance.machine_id()


@pytest.mark.slow   # starts processes
def test_machine_id_script_prints_the_same_id_with_any_python():
    out = subprocess.run([sys.executable, "scripts/machine_id.py"], capture_output=True, text=True, check=True,
                         timeout=120)
    assert out.stdout.strip() == provenance.machine_id()
    folder = subprocess.run([sys.executable, "scripts/machine_id.py", "--benchmark-folder"], capture_output=True,
                            text=True, check=True, timeout=120)
    assert folder.stdout.strip() == provenance.benchmark_folder()


def test_provenance_block_names_machine_software_commit_date_and_command():
    block = provenance.provenance("python x.py --json")
    assert set(block) == set(provenance.PROVENANCE_KEYS)
    assert block["command"] == "python x.py --json" and block["machine"] == provenance.machine_id()
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", block["tensorflow"])
    assert re.fullmatch(r"([0-9a-f]{7,}(\+dirty)?|unknown)", block["commit"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", block["date"])
    line = provenance.provenance_line(dict(block, date="2026-11-29T17:50:06+00:00", commit="abc1234"))
    assert line.endswith("commit abc1234, 2026-11-29 17:50 UTC, by `python x.py --json`.")


def test_git_commit_outside_a_checkout_is_unknown(tmp_path):
    assert provenance.git_commit(str(tmp_path)) == "unknown"


def test_command_line_quotes_arguments():
    assert (provenance.command_line("python scripts/ablate.py", ["--set", "input_size=[64, 64]"])
            == "python scripts/ablate.py --set 'input_size=[64, 64]'")


def test_results_round_trip_with_provenance(tmp_path):
    path = results.results_path("demo", "vm-X", root=str(tmp_path))
    assert path == str(tmp_path / "benchmarks" / "results" / "vm-X" / "demo.json")
    results.write_results(path, {"value": float("nan"), "rows": [1]}, "make demo")
    saved = results.read_results(path)
    assert saved["value"] is None and saved["rows"] == [1]          # NaN saved as null
    assert saved["provenance"]["command"] == "make demo"


def test_a_results_file_without_provenance_is_named(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"provenance": {"machine": "m"}, "rows": []}))
    with pytest.raises(ValueError, match=f"^{path}: the provenance block lacks tensorflow, commit, date, command"):
        results.read_results(str(path))
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"^{path}: not valid JSON"):
        results.read_results(str(path))


def test_json_argument_alone_means_this_machines_results_file():
    import argparse

    parser = argparse.ArgumentParser()
    results.add_json_argument(parser, "demo")
    assert parser.parse_args([]).json is None
    assert parser.parse_args(["--json"]).json == results.results_path("demo")
    assert parser.parse_args(["--json", "x.json"]).json == "x.json"


def test_demo_results_from_a_runs_files():
    history = [{"epoch": "1", "step": "700", "val_mean_iou": "0.5", "epoch_seconds": "130",
                "images_per_second": "43.1"},
               {"epoch": "2", "step": "1400", "val_mean_iou": "0.58", "epoch_seconds": "120",
                "images_per_second": "46.7"}]
    metrics = {"model": {"source": "export", "step": 1400}, "num_images": 120, "pixel_accuracy": 0.9,
               "mean_accuracy": 0.7, "mean_iou": 0.6}
    majority = {"class": 0, "pixel_accuracy": 0.7, "mean_accuracy": 0.05, "mean_iou": 0.03}
    saved = results.demo_results("demo", history, metrics, majority, "background", 400.0)
    assert saved["test"] == {"images": 120, "pixel_accuracy": 0.9, "mean_accuracy": 0.7, "mean_iou": 0.6}
    assert saved["training"] == {"epochs": 2, "steps": 1400, "seconds": 250.0, "images_per_second_last_epoch": 46.7,
                                 "best_val_mean_iou": 0.58, "best_epoch": 2}
    assert saved["majority_class"]["name"] == "background" and saved["model"]["source"] == "export"
    from research.docs import result_tables

    table = result_tables.demo_table(saved)
    assert "| `demo` (export, step 1400) | 120 | 0.9000 | 0.7000 | **0.6000** | 1,400 steps in 4.2 min" in table
    assert "| majority class everywhere (background) | 120 | 0.7000 | 0.0500 | 0.0300 | - | - |" in table
