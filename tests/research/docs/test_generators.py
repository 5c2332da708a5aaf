"""research/docs: markers, the config and command-line references, and the measured tables
generated from saved artifacts (written here into a temporary repository root)."""
import argparse
import json
import os

import pytest

from research import results
from research.docs import bench_tables, cli_reference, config_reference, generate, markers, result_tables


# ---------------------------------------------------------------------------------
# Markers.
# ---------------------------------------------------------------------------------
PAGE = """# Title

<!-- begin generated: one -->
old content
<!-- end generated: one -->

text between

<!-- begin generated: two -->
<!-- end generated: two -->
"""


def test_fill_replaces_only_the_blocks_and_keeps_the_markers():
    filled = markers.fill(PAGE, lambda name: f"| {name} |")
    assert "old content" not in filled and "text between" in filled
    assert "<!-- begin generated: one -->\n\n| one |\n\n<!-- end generated: one -->" in filled
    assert "<!-- begin generated: two -->\n\n| two |\n\n<!-- end generated: two -->" in filled
    assert markers.fill(filled, lambda name: f"| {name} |") == filled      # idempotent


@pytest.mark.parametrize("text,message", [
    ("<!-- begin generated: a -->\n", "page:1: block 'a' has no end marker"),
    ("<!-- end generated: a -->\n", "page:1: 'end generated: a' without its begin marker"),
    ("<!-- begin generated: a -->\n<!-- begin generated: b -->\n", "page:2: block 'b' begins inside block 'a'"),
    ("<!-- begin generated: a -->\n<!-- end generated: a -->\n<!-- begin generated: a -->\n"
     "<!-- end generated: a -->\n", "page:3: block 'a' appears twice"),
])
def test_bad_markers_are_named_with_their_line(text, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        markers.block_names(text, "page")


def test_an_unknown_block_is_an_error_naming_the_page(tmp_path):
    (tmp_path / "README.md").write_text("<!-- begin generated: nope -->\n<!-- end generated: nope -->\n")
    with pytest.raises(ValueError, match="README.md: unknown generated block 'nope'"):
        generate.regenerate(str(tmp_path), write=False)


# ---------------------------------------------------------------------------------
# The config reference.
# ---------------------------------------------------------------------------------
SOURCE = '''
class Config:
    """Doc."""

    name: str = "x"                # the label

    # --- Data ---------------------------------------------------------------
    size: tuple = (1, 2)           # (h, w) of the input;
                                   # continued here
    seed: int = 0                  # the seed
'''


def test_field_docs_read_comments_continuations_and_sections():
    assert config_reference.field_docs(SOURCE) == [
        ("General", "name", "the label"),
        ("Data", "size", "(h, w) of the input; continued here"),
        ("Data", "seed", "the seed")]


def test_a_field_without_a_comment_is_an_error_naming_it():
    with pytest.raises(ValueError, match="field 'bare' has no comment"):
        config_reference.field_docs(SOURCE + "    bare: int = 1\n")


def test_config_reference_lists_types_defaults_choices_and_resume():
    table = config_reference.fields_table()
    assert '| `optimizer` | `"adam"` or `"sgd"` | `"adam"` |' in table
    assert "| `input_size` | list | `[384, 384]` |" in table
    assert "| `total_steps` | int or null | `null` |" in table
    row = next(line for line in table.splitlines() if line.startswith("| `epochs` |"))
    assert row.endswith("| yes |")                       # RESUMABLE_FIELDS
    named = config_reference.named_configs_table()
    assert "| `unet_voc` | The book's U-Net baseline" in named and '`model="unet"`' in named


# ---------------------------------------------------------------------------------
# The command-line reference.
# ---------------------------------------------------------------------------------
def test_capture_parser_returns_the_parser_before_anything_runs():
    ran = []

    def main(argv=None):
        parser = argparse.ArgumentParser(description="Do a thing.")
        parser.add_argument("--out", required=True, help="where (default %(default)s)")
        parser.add_argument("--n", type=int, default=3, help="how many")
        parser.parse_args(argv)
        ran.append(True)

    parser = cli_reference.capture_parser(main, "thing.py")
    assert not ran and [a.dest for a in cli_reference.options(parser)] == ["out", "n"]
    parser.prog = "python thing.py"
    section = cli_reference.command_section("python thing.py", parser)
    assert "python thing.py --out OUT [--n N]" in section
    assert "| `--out OUT` | - | **required**; where (default None) |" in section
    assert "| `--n N` | `3` | how many |" in section
    assert parser.parse_args(["--out", "x"]).n == 3         # parsing works again afterwards


def test_a_main_that_parses_nothing_is_named():
    with pytest.raises(ValueError, match="tool.py: main\\(\\) did not parse arguments"):
        cli_reference.capture_parser(lambda argv=None: 0, "tool.py")


def test_commands_are_found_not_listed():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    modules = [c for c, _ in cli_reference.module_commands(root)]
    assert "python -m research.train" in modules and "python -m research.models" in modules
    assert "python -m research.docs.cli_reference" not in modules
    assert "python scripts/make_docs.py" in [c for c, _ in cli_reference.script_commands(root)]


# ---------------------------------------------------------------------------------
# Tables from saved pytest-benchmark runs.
# ---------------------------------------------------------------------------------
def bench(name, group, seconds, case=None, **info):
    extra = {"items_per_call": 6, **info}
    if case:
        extra.update(case=case, steps_per_call=3)
    return {"group": group, "name": f"test_x[{name}]", "param": name, "params": {},
            "fullname": f"benchmarks/{'bench_train_step.py' if case else 'bench_losses.py'}::test_x[{name}]",
            "extra_info": extra, "stats": {"min": seconds}}


def save_run(root, machine, number, benchmarks, **machine_info):
    folder = os.path.join(root, results.BASELINES_DIR, machine, "Linux-CPython-3.11-64bit")
    os.makedirs(folder, exist_ok=True)
    run = {"machine_info": machine_info, "commit_info": {"id": "0123456789abcdef", "dirty": False},
           "datetime": "2026-11-29T17:50:06+00:00", "benchmarks": benchmarks}
    with open(os.path.join(folder, f"{number:04d}_x.json"), "w") as f:
        json.dump(run, f)


def train_cases(custom_seconds):
    group = "train step deeplab_v3 384px batch 2"
    return [bench("deeplab_v3-fit-onednn_off", group, 30.0, dict(model="deeplab_v3", trainer="fit", onednn=False)),
            bench("deeplab_v3-fit-onednn_on", group, 12.0, dict(model="deeplab_v3", trainer="fit", onednn=True)),
            bench("deeplab_v3-custom-onednn_on-xla_off", group, custom_seconds,
                  dict(model="deeplab_v3", trainer="custom", onednn=True, xla=False))]


def test_each_machines_latest_run_is_shown_named(tmp_path):
    root = str(tmp_path)
    save_run(root, "vm-A", 1, train_cases(9.0))
    save_run(root, "vm-A", 2, train_cases(6.0), tensorflow="2.21.0", command="make bench")   # the latest
    save_run(root, "vm-B", 1, train_cases(3.0))
    text = bench_tables.per_machine(root, "bench_train_step.py", bench_tables.train_step_summary)
    sections = text.split("Measured on ")[1:]
    assert [s.split("`")[1] for s in sections] == ["vm-A", "vm-B"]
    assert "TensorFlow 2.21.0, commit 0123456, 2026-11-29 17:50 UTC, by `make bench`." in sections[0]
    assert "| 2.00 | 10.00 | 4.00 | 5.00x | 2.00x |" in sections[0]          # 6 s / 3 steps
    assert "TensorFlow (not recorded)" in sections[1] and "| 1.00 | 10.00 | 4.00 | 10.00x | 4.00x |" in sections[1]
    full = bench_tables.per_machine(root, "bench_train_step.py", bench_tables.train_step_table)
    assert "**deeplab_v3 custom loop, oneDNN on, XLA off (project default on CPU)**" in full


def test_a_run_of_some_benchmark_files_leaves_the_others_at_the_run_before(tmp_path):
    # `make bench BENCH_FLAGS='-k loss'` saves a run of the loss benchmarks only.
    root = str(tmp_path)
    save_run(root, "vm-A", 1, train_cases(6.0))
    save_run(root, "vm-A", 2, [bench("reference-plain", "ce+dice", 0.4), bench("fused-plain", "ce+dice", 0.1)])
    train = bench_tables.per_machine(root, "bench_train_step.py", bench_tables.train_step_summary)
    assert "| 2.00 | 10.00 | 4.00 | 5.00x | 2.00x |" in train
    assert "| ce+dice | `fused-plain` |" in bench_tables.per_machine(root, "bench_losses.py", bench_tables.loss_table)
    [(_, _, path, _)] = bench_tables.saved_runs(root, "bench_train_step.py")
    assert os.path.basename(path).startswith("0001")


def test_a_run_of_some_cases_of_a_file_leaves_that_files_table_at_the_whole_run_before(tmp_path):
    # `-k loss` also selects the train-step benchmark's reference-loss case: that run
    # measured bench_train_step.py in part, which its machine_info says.
    root = str(tmp_path)
    save_run(root, "vm-A", 1, train_cases(6.0))
    save_run(root, "vm-A", 2, train_cases(4.0)[2:], partial_files=["bench_train_step.py"])
    [(_, _, path, _)] = bench_tables.saved_runs(root, "bench_train_step.py")
    assert os.path.basename(path).startswith("0001")
    # With only partial runs of a file, the latest of them gives its table.
    save_run(root, "vm-B", 1, train_cases(6.0)[:1], partial_files=["bench_train_step.py"])
    save_run(root, "vm-B", 2, train_cases(6.0)[1:], partial_files=["bench_train_step.py"])
    paths = {machine: os.path.basename(path) for machine, _, path, _ in bench_tables.saved_runs(root, "bench_train_step.py")}
    assert paths["vm-B"].startswith("0002")


def test_a_saved_benchmark_run_names_the_files_it_measured_in_part():
    from benchmarks import conftest

    class Config:
        stash = pytest.Stash()
        invocation_params = type("Params", (), {"args": ("benchmarks", "benchmarks/bench_tflite.py::test_x[a]")})

    class Item:
        def __init__(self, path):
            self.config, self.path = Config, path

    conftest.pytest_deselected([Item("/repo/benchmarks/bench_train_step.py")])
    conftest.pytest_deselected([])
    assert conftest.partial_files(Config) == ["bench_tflite.py", "bench_train_step.py"]


def test_train_step_table_compares_with_fit_at_the_same_batch_and_shows_memory(tmp_path):
    root = str(tmp_path)
    batch8 = bench("deeplab_v3-custom-onednn_on-xla_off-bn_policy_frozen-batch_8", "train step batch 8", 12.0,
                   dict(model="deeplab_v3", trainer="custom", onednn=True, xla=False, batch=8, bn_policy="frozen"),
                   peak_rss_bytes=3 * 2 ** 30)
    save_run(root, "vm-A", 1, train_cases(6.0) + [batch8])
    lines = bench_tables.per_machine(root, "bench_train_step.py", bench_tables.train_step_table).splitlines()
    assert next(line for line in lines if line.startswith("| case |")).endswith("| peak memory (GiB) |")
    assert "| **deeplab_v3 custom loop, oneDNN on, XLA off (project default on CPU)** | 2.00 | 1.000 | 5.00x | 2.00x | - | - | - |" in lines
    # Batch 8 against `fit` at batch 2 would be no comparison: no ratio.
    assert "| deeplab_v3 custom loop, oneDNN on, XLA off, batch 8; bn_policy frozen | 4.00 | 0.500 | - | - | - | - | 3.00 |" in lines


def test_speed_ups_are_against_the_groups_baseline(tmp_path):
    root = str(tmp_path)
    save_run(root, "vm-A", 1, [bench("reference-plain", "ce+dice", 0.4), bench("fused-plain", "ce+dice", 0.1)])
    text = bench_tables.per_machine(root, "bench_losses.py", bench_tables.loss_table)
    assert "| ce+dice | `fused-plain` | 0.1000 | 60.0 | 4.00x |" in text


def test_a_missing_benchmark_is_one_line_with_its_command(tmp_path):
    text = bench_tables.per_machine(str(tmp_path), "bench_tflite.py", bench_tables.tflite_table)
    assert text == ("No saved benchmark run with bench_tflite.py yet: `make bench` saves one "
                    "(benchmarks/baselines/<machine>/).")


# ---------------------------------------------------------------------------------
# Tables from saved results.
# ---------------------------------------------------------------------------------
def test_missing_results_are_one_line_with_their_command(tmp_path):
    for name, render in (("demo", result_tables.demo_table), ("speedups", result_tables.speedups_table)):
        text = result_tables.per_machine(str(tmp_path), name, "thing", render)
        assert text.startswith("No saved thing yet: `") and result_tables.COMMANDS[name] in text
        assert "\n" not in text


def test_speedups_table_reads_the_check_speedups_schema(tmp_path):
    path = results.results_path("speedups", "vm-A", root=str(tmp_path))
    results.write_results(path, {"checks": {
        "loss": {"ratio": 1.75, "floor": 1.5, "passed": True, "fast_seconds": 0.11, "baseline_seconds": 0.2,
                 "onednn_baseline": False},
        "atrous_r18": {"ratio": 4.0, "floor": 10.0, "passed": False, "fast_seconds": 0.2,
                       "baseline_seconds": 0.8, "onednn_baseline": "on"}}}, "python scripts/check_speedups.py")
    text = generate.BLOCKS["speedups"](str(tmp_path))
    assert "by `python scripts/check_speedups.py`." in text
    assert "| `loss` | oneDNN off | 0.2000 | 0.1100 | 1.75x | 1.5x | ok |" in text
    assert "| `atrous_r18` | oneDNN on | 0.8000 | 0.2000 | 4.00x | 10.0x | **below floor** |" in text


def test_models_shows_the_newest_file_of_any_machine(tmp_path):
    row = {"config": "smoke", "model": "deeplab_v3", "backbone": "resnet50", "head": "aspp", "output_stride": 16,
           "input_size": [32, 32], "parameters": 1234567, "trainable": 1234000, "non_trainable": 567,
           "gflops": 0.0213}
    for machine in ("vm-A", "vm-B"):
        path = results.results_path("models", machine, root=str(tmp_path))
        results.write_results(path, {"rows": [row]}, f"python -m research.models --json  # {machine}")
    text = generate.BLOCKS["models"](str(tmp_path))
    assert text.count("Measured on") == 1
    assert "| `smoke` | deeplab_v3 | resnet50 | aspp | 16 | 32x32 | 1,234,567 | 567 | 0.02 | - |" in text


def test_models_show_the_flops_at_the_evaluation_output_stride(tmp_path):
    row = {"config": "deeplabv3_voc_aug", "model": "deeplab_v3", "backbone": "resnet50", "head": "aspp",
           "output_stride": 16, "eval_output_stride": 8, "input_size": [513, 513], "parameters": 39131285,
           "trainable": 39075093, "non_trainable": 56192, "gflops": 99.2359, "gflops_eval": 331.5082}
    path = results.results_path("models", "vm-A", root=str(tmp_path))
    results.write_results(path, {"rows": [row]}, "python -m research.models --json")
    assert "| 56,192 | 99.24 | 331.51 (OS8) |" in generate.BLOCKS["models"](str(tmp_path))


def test_ablation_table_shows_the_noise_floor_and_failed_cells(tmp_path):
    rows = [{"cell": "seed-0", "axis": "seed", "overrides": "seed=0", "steps": 400, "final_val_mean_iou": 0.2,
             "best_val_mean_iou": 0.21, "best_step": 320, "images_per_second": 37.5, "status": "trained"},
            {"cell": "xla-on", "axis": "xla", "overrides": "jit_compile=true", "steps": 400,
             "status": "failed: deterministic=true cannot run with jit_compile=true on CPU"}]
    saved = results.ablation_results(rows, "Base: config `demo`.", (0.17, 0.2, 3))
    results.write_results(results.results_path("ablation", "vm-A", root=str(tmp_path)), saved, "python ablate")
    text = generate.BLOCKS["ablation"](str(tmp_path))
    assert "Base: config `demo`." in text and "between 0.1700 and 0.2000" in text and "(spread 0.0300)" in text
    assert "| seed | seed-0 | `seed=0` | 0.2000 | 0.2100 (320) | 37.5 | trained |" in text
    assert "| xla | xla-on | `jit_compile=true` | - | - (-) | - | failed |" in text


def test_tflite_accuracy_table(tmp_path):
    saved = results.tflite_results([("mobilenet_v2", 257, "int8", 2_500_000, 21.6, 11.2)],
                                   [("demo", "Keras float32", None, 0.6045, 0.0, 1.0, 1.0),
                                    ("demo", "int8", 5_200_000, 0.6037, -0.08, 0.9981, 0.9979)])
    assert saved["latency"][0]["ms_per_frame_2_threads"] == 11.2
    results.write_results(results.results_path("tflite", "vm-A", root=str(tmp_path)), saved, "python tflite")
    text = generate.BLOCKS["tflite-accuracy"](str(tmp_path))
    assert "| demo | Keras float32 | - | 0.6045 | 0.00 points | 100.00% | 100.00% |" in text
    assert "| demo | int8 | 5.20 | 0.6037 | -0.08 points | 99.81% | 99.79% |" in text


def test_memory_peak_table_shows_sides_and_largest_tensors():
    peak = {"peak_bytes": 3 * 2 ** 30, "peak_seconds": 2.5, "backward_start_seconds": 2.0,
            "by_side": {"before": 2 ** 29, "forward": 2 ** 31, "backward": 2 ** 29},
            "largest": {"forward": [{"op": "deeplab_v3/conv1_bn/FusedBatchNormV3", "shape": "[8,192,192,64]",
                                     "bytes": 72 * 2 ** 20}],
                        "backward": [{"op": "Pad_47", "shape": "[192,24,2048]", "bytes": 39 * 2 ** 20}]}}
    results = {"runs": {"current": {"summary": {"of": "step_batch8"},
                                    "runs": {"step_batch8": {"alive_at_peak": peak}}}}}
    text = result_tables.memory_peak_table(results)
    assert text.startswith("The peak, 3.00 GiB in the pool, comes 2.50 s into a profiled step (the step, "
                           "batch 8), 0.50 s after its backward began.")
    assert "| made in the forward (nearly all kept for the backward) | 2.00 |" in text
    backward, forward = text.index("made in the backward then:"), text.index("kept from the forward then:")
    assert backward < text.index("| `Pad_47` | `[192,24,2048]` | 39.0 |") < forward
    assert forward < text.index("| `deeplab_v3/conv1_bn/FusedBatchNormV3` | `[8,192,192,64]` | 72.0 |")
    del results["runs"]["current"]["runs"]["step_batch8"]["alive_at_peak"]
    assert result_tables.memory_peak_table(results).startswith("Not measured")


def test_regenerate_writes_only_changed_pages(tmp_path):
    root = str(tmp_path)
    os.makedirs(tmp_path / "docs")
    (tmp_path / "docs" / "a.md").write_text("# A\n\n<!-- begin generated: bench-loss -->\n"
                                            "<!-- end generated: bench-loss -->\n")
    (tmp_path / "docs" / "b.md").write_text("# B, no blocks\n")
    assert generate.regenerate(root, write=False) == ["docs/a.md"]
    assert "bench-loss -->\n<!-- end" in (tmp_path / "docs" / "a.md").read_text()      # not written
    assert generate.regenerate(root) == ["docs/a.md"]
    assert "No saved benchmark run with bench_losses.py yet" in (tmp_path / "docs" / "a.md").read_text()
    assert generate.regenerate(root) == []
