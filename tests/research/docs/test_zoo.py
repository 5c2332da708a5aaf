"""research/docs/zoo.py: the model zoo from fake saved artifacts in a temporary repository root.

A figure lands in a config's row only when the measured network is that config's network,
and every figure names its artifact's provenance in a footnote.
"""
import json
import os

import pytest

from research import config as config_lib
from research import results
from research.configs import load_config
from research.docs import generate, result_tables, zoo

NAMES = ("deeplabv3_voc", "deeplabv3_voc_aug", "deeplabv3_mobilenetv2_voc", "unet_voc", "demo", "demo_mobile",
         "demo_v3plus")


@pytest.fixture
def configs():
    return {name: load_config(name) for name in NAMES}


def row_of(text, name):
    """The cells of `name`'s row in the zoo's first (size and speed) or second table."""
    rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def save(root, machine, name, body, command="python x", date="2026-12-01T10:00:00+00:00"):
    path = results.results_path(name, machine, root=str(root))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    provenance = {"machine": machine, "tensorflow": "2.21.0", "commit": "abcdef0", "date": date, "command": command}
    with open(path, "w") as f:
        json.dump({"provenance": provenance, **body}, f, sort_keys=True)   # as write_results writes


def save_bench(root, machine, benchmarks):
    folder = os.path.join(str(root), results.BASELINES_DIR, machine, "Linux-CPython-3.11-64bit")
    os.makedirs(folder, exist_ok=True)
    run = {"machine_info": {"tensorflow": "2.21.0", "command": "make bench"},
           "commit_info": {"id": "0123456789abcdef", "dirty": False}, "datetime": "2026-12-01T10:00:00+00:00",
           "benchmarks": benchmarks}
    with open(os.path.join(folder, "0001_x.json"), "w") as f:
        json.dump(run, f)


def step_case(model, seconds, batch=2, **case):
    case = {"model": model, "trainer": "custom", "onednn": True, "xla": False, **case}
    if batch != 2:
        case["batch"] = batch
    info = {"case": case, "steps_per_call": 3, "items_per_call": 3 * batch}
    if "memory" in case:
        info["peak_rss_bytes"] = case.pop("memory")
    return {"group": f"train step {model} 384px batch {batch}", "name": "test_train_step", "param": "x",
            "fullname": "benchmarks/bench_train_step.py::test_train_step[x]", "extra_info": info,
            "stats": {"min": 3 * seconds}}


def comparison_row(run, config, model, batch="8 x 1", test=0.5):
    return {"run": run, "config": config, "model": model, "backbone": "resnet50", "batch": batch,
            "bn_policy": "sync", "epochs": 3, "steps": 2100, "train_seconds": 400.0, "final_val_mean_iou": 0.6,
            "best_val_mean_iou": 0.6, "test_mean_iou": test,
            "at_budget": {"epoch": 3, "seconds": 400.0, "val_mean_iou": 0.6}}


def test_without_artifacts_every_measured_cell_says_not_measured(tmp_path, configs):
    text = zoo.model_zoo(str(tmp_path), configs)
    demo = row_of(text, "demo")
    assert demo[0][:4] == ["`demo`", "deeplab_v3, aspp, OS16", "resnet50 (blocks 2-2-2-2, width 16)", "128x128"]
    assert demo[0][4:] == ["not measured"] * 7 and demo[1][1:] == ["not measured"] * 2
    assert row_of(text, "deeplabv3_voc")[0][2] == "resnet50"          # the full network: no blocks shown
    assert "No saved artifact measured any of these networks yet." in text and "[1]" not in text


def test_counts_of_the_newest_summary_attach_to_current_rows_only(tmp_path, configs):
    summary = {"config": "demo", "model": "deeplab_v3", "backbone": "resnet50", "head": "aspp", "output_stride": 16,
               "input_size": [128, 128], "parameters": 2878997, "gflops": 0.4123}
    stale = dict(summary, config="demo_mobile", input_size=[96, 96])      # the config changed since
    command = "python -m research.models --json"
    save(tmp_path, "vm-A", "models", {"rows": [dict(summary, parameters=1)]}, command, "2026-11-01T10:00:00+00:00")
    save(tmp_path, "vm-B", "models", {"rows": [summary, stale]}, command, "2026-12-01T10:00:00+00:00")
    text = zoo.model_zoo(str(tmp_path), configs)
    assert row_of(text, "demo")[0][4:6] == ["2,878,997 [1]", "0.41 [1]"]          # vm-B's, the newer
    assert row_of(text, "demo_mobile")[0][4:6] == ["not measured", "not measured"]
    assert ("- [1] Measured on `vm-B`, TensorFlow 2.21.0, commit abcdef0, 2026-12-01 10:00 UTC, by "
            "`python -m research.models --json`. Artifact: `benchmarks/results/vm-B/models.json`.") in text


def test_train_step_figures_go_to_every_config_with_the_measured_network(tmp_path, configs):
    save_bench(tmp_path, "vm-A", [
        step_case("deeplab_v3", 2.0, memory=3 * 2 ** 30),
        step_case("deeplab_v3", 7.5, batch=8),                       # no memory recorded
        step_case("deeplab_v3", 9.0, atrous="keras"),                # one optimization off: not the default
        {**step_case("deeplab_v3", 9.0), "extra_info": {**step_case("deeplab_v3", 9.0)["extra_info"],
                                                         "case": {"model": "deeplab_v3", "trainer": "fit",
                                                                  "onednn": True}}},
        step_case("unet", 2.5),
        step_case("deeplab_v3", 1.0, config="demo"),                 # a case built from another config
    ])
    text = zoo.model_zoo(str(tmp_path), configs)
    for name in ("deeplabv3_voc", "deeplabv3_voc_aug"):             # the same network, other input sizes
        cells = row_of(text, name)[0]
        assert cells[6] == "2.00 s (384 px, batch 2) [1]<br>7.50 s (384 px, batch 8) [1]"
        assert cells[7] == "3.00 GiB (384 px, batch 2) [1]"
    assert row_of(text, "unet_voc")[0][6:8] == ["2.50 s (384 px, batch 2) [1]", "not measured"]
    assert row_of(text, "demo")[0][6] == "1.00 s (384 px, batch 2) [1]"
    for name in ("deeplabv3_mobilenetv2_voc", "demo_v3plus", "demo_mobile"):
        assert row_of(text, name)[0][6] == "not measured"
    assert ("- [1] Measured on `vm-A`, TensorFlow 2.21.0, commit 0123456, 2026-12-01 10:00 UTC, by `make bench`. "
            "Artifact: `benchmarks/baselines/vm-A/Linux-CPython-3.11-64bit/0001_x.json`.") in text


def test_tflite_latency_of_the_measured_networks_at_the_nearest_size(tmp_path, configs):
    latency = [("mobilenet_v2", size, mode, 1000, ms, ms / 2) for size, ms in ((257, 10.0), (513, 40.0))
               for mode in ("none", "float16", "int8")]
    latency.append(("resnet50", 513, "int8", 1000, 200.0, 120.0))
    save(tmp_path, "vm-A", "tflite", results.tflite_results(latency, []), "python scripts/tflite_report.py --json")
    text = zoo.model_zoo(str(tmp_path), configs)
    mobile = row_of(text, "deeplabv3_mobilenetv2_voc")[0]            # 384 px: 257 is the nearer size
    assert mobile[8:10] == ["10.0 / 5.0 ms (257 px, mean) [1]", "10.0 / 5.0 ms (257 px, mean) [1]"]
    assert row_of(text, "demo_mobile")[0][8:10] == ["not measured", "not measured"]   # width 16, not 32
    assert row_of(text, "deeplabv3_voc_aug")[0][8:10] == ["not measured", "200.0 / 120.0 ms (513 px, mean) [1]"]
    assert "Artifact: `benchmarks/results/vm-A/tflite.json`." in text


def test_tflite_latency_of_a_saved_bench_run(tmp_path, configs):
    def timed(size, mode, threads, seconds):
        return {"group": "tflite", "name": "test_tflite", "param": "x", "extra_info": {"items_per_call": 1},
                "params": {"backbone": "mobilenet_v2", "size": size, "mode": mode, "threads": threads},
                "fullname": "benchmarks/bench_tflite.py::test_tflite[x]", "stats": {"min": seconds}}

    save_bench(tmp_path, "vm-A", [timed(513, "int8", 1, 0.08), timed(513, "int8", 2, 0.04),
                                  timed(257, "none", 1, 0.02)])
    text = zoo.model_zoo(str(tmp_path), configs)
    mobile = row_of(text, "deeplabv3_mobilenetv2_voc")[0]
    assert mobile[8:10] == ["20.0 / - ms (257 px, min) [1]", "80.0 / 40.0 ms (513 px, min) [1]"]
    assert "by `make bench`. Artifact: `benchmarks/baselines/vm-A/" in text


def test_miou_only_from_runs_of_the_config_itself(tmp_path, configs):
    demo = {"config": "demo", "model": {"source": "export", "step": 2100},
            "test": {"images": 120, "pixel_accuracy": 0.9, "mean_accuracy": 0.7, "mean_iou": 0.6045},
            "majority_class": {"name": "background", "pixel_accuracy": 0.7, "mean_accuracy": 0.05, "mean_iou": 0.03},
            "training": {}, "wall_seconds": None}
    save(tmp_path, "vm-A", "demo", demo, "make demo")
    save(tmp_path, "vm-A", "compare_decoder", {"budget_seconds": 400.0, "runs": [
        comparison_row("demo", "demo", "deeplab_v3", test=0.6045),
        comparison_row("demo_v3plus", "demo_v3plus", "deeplab_v3_plus", test=0.6312)]})
    save(tmp_path, "vm-A", "compare_accumulation", {"budget_seconds": 400.0, "runs": [
        comparison_row("demo_b4x2", "demo", "deeplab_v3", batch="4 x 2", test=0.59)]})
    save(tmp_path, "vm-B", "compare_decoder", {"budget_seconds": 400.0, "runs": [
        comparison_row("demo_v3plus", "demo_v3plus", "deeplab_v3", test=0.1)]})   # another model: not its run
    text = zoo.model_zoo(str(tmp_path), configs)
    assert row_of(text, "demo")[1][1:] == ["0.6045 (test, 120 images) [1]", "not measured"]
    assert row_of(text, "demo_v3plus")[1][1] == "0.6312 (test, run `demo_v3plus`) [2]"
    assert "0.5900" not in text and "0.1000" not in text
    assert "Artifact: `benchmarks/results/vm-A/compare_decoder.json`." in text


@pytest.mark.slow   # builds both full-size networks twice (about 12 s); a drift check of one table
def test_the_tflite_networks_are_those_the_report_times():
    pytest.importorskip("tensorflow")
    import numpy as np

    from research import build
    from research.export_tflite import full_size_model

    def shapes(model):
        return sorted(tuple(np.shape(w)) for w in model.weights)

    for backbone, config in zoo.TFLITE_NETWORKS.items():
        built = build.build_model(config.replace(atrous="keras"), pretrained=False)
        assert shapes(built) == shapes(full_size_model(backbone)), backbone


def test_the_comparison_blocks_read_compare_runs_schema(tmp_path):
    for block, name in (("compare-accumulation", "compare_accumulation"), ("compare-decoder", "compare_decoder")):
        missing = generate.BLOCKS[block](str(tmp_path))
        assert missing.startswith("No saved ") and "\n" not in missing
        assert f"`{result_tables.COMMANDS[name]}` saves one (benchmarks/results/<machine>/{name}.json)." in missing
    rows = [comparison_row("demo", "demo", "deeplab_v3", test=0.6045),
            dict(comparison_row("demo_b4x2", "demo", "deeplab_v3", batch="4 x 2", test=None), at_budget=None)]
    save(tmp_path, "vm-A", "compare_accumulation", {"budget_seconds": 1234.4, "runs": rows},
         "python scripts/compare_runs.py runs/demo runs/demo_b4x2 --name accumulation --json")
    text = generate.BLOCKS["compare-accumulation"](str(tmp_path))
    assert "by `python scripts/compare_runs.py runs/demo runs/demo_b4x2 --name accumulation --json`." in text
    assert "Equal training time: 1,234 s" in text
    assert ("| `demo` | `demo` | deeplab_v3 | resnet50 | 8 x 1 | sync | 3 | 2,100 | 400 | 0.6000 (epoch 3) "
            "| 0.6000 | 0.6000 | 0.6045 |") in text
    assert "| `demo_b4x2` | `demo` | deeplab_v3 | resnet50 | 4 x 2 | sync | 3 | 2,100 | 400 | - |" in text
    assert text.rstrip().endswith("| 0.6000 | 0.6000 | - |")


def test_a_figure_of_another_network_than_the_configs_is_left_out(tmp_path, configs):
    # The config's blocks, width or ASPP changed after the measurement: same model,
    # backbone, head, stride and size, another network.
    demo = configs["demo"]
    other = config_lib.network_of(demo.replace(backbone_width=32, aspp_filters=64))
    summary = {"config": "demo", "model": "deeplab_v3", "backbone": "resnet50", "head": "aspp",
               "output_stride": 16, "input_size": [128, 128], "parameters": 2878997, "gflops": 0.4123}
    save(tmp_path, "vm-A", "models", {"rows": [dict(summary, network=other)]}, "python -m research.models --json")
    result = {"config": "demo", "network": other, "model": {"source": "export", "step": 2100},
              "test": {"images": 120, "pixel_accuracy": 0.9, "mean_accuracy": 0.7, "mean_iou": 0.6045},
              "majority_class": {"name": "background", "pixel_accuracy": 0.7, "mean_accuracy": 0.05,
                                 "mean_iou": 0.03}, "training": {}, "wall_seconds": None}
    save(tmp_path, "vm-A", "demo", result, "make demo")
    save(tmp_path, "vm-A", "compare_decoder", {"budget_seconds": 400.0, "runs": [
        dict(comparison_row("demo", "demo", "deeplab_v3", test=0.7), network=other)]})
    text = zoo.model_zoo(str(tmp_path), configs)
    assert row_of(text, "demo")[0][4:6] == ["not measured", "not measured"]
    assert row_of(text, "demo")[1][1] == "not measured"
    # Recorded as the config is today: shown.
    save(tmp_path, "vm-A", "models", {"rows": [dict(summary, network=config_lib.network_of(demo))]},
         "python -m research.models --json")
    assert zoo.model_zoo(str(tmp_path), configs).count("2,878,997") == 1
