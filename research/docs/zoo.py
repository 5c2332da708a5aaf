"""The model zoo (docs/model_zoo.md): every named config with what was measured of it, from
saved artifacts only.

A figure goes into a config's row only when the network it was measured on IS the
config's network (`network`: the same model, backbone, head, output stride, blocks, width,
ASPP and number of classes); every other cell says "not measured". Each figure carries a
footnote mark, and the footnotes name the artifact and its provenance (machine,
TensorFlow, commit, date, command). Where several machines measured a figure, the cell
lists one per machine.

Sources:
  parameters, GFLOPs   the newest models.json of any machine (`python -m research.models
                       --json`): counts, the same on every machine; a row whose recorded
                       network or input size is not the config's any more is left out
  CPU train step,      each machine's latest `make bench` run: benchmarks/bench_train_step.py's
  peak memory          cases of the project's default step on a CPU (custom loop, oneDNN on,
                       XLA off, nothing switched off; `bench_tables.is_default_case`), which
                       build the named config `case["config"]` (default `deeplabv3_voc`) with
                       `model=case["model"]` at `case["size"]` (default: the group's "<N>px")
                       and the batch in extra_info; minimum seconds per step, and the worker's
                       peak memory over the steps (`extra_info["peak_rss_bytes"]`) where the
                       run recorded it
  TFLite latency       each machine's tflite.json latency rows (scripts/tflite_report.py: mean
                       ms per frame) and its latest `make bench` run's bench_tflite.py cases
                       (minimum ms), both on the networks of `TFLITE_NETWORKS`
                       (research.export_tflite.full_size_model); the measured size nearest
                       the config's input, 1 and 2 interpreter threads
  mIoU, embedded data  demo.json (`make demo`) for its config, and the rows of every
                       compare_<name>.json (scripts/compare_runs.py) that are a named config's
                       own run: its config's name, network, batch x accumulate_steps and
                       bn_policy (files written before results recorded the network: model
                       and backbone instead of the network)
Results record the network they measured (`research.config.network_of`).
Nothing here reads real-dataset mIoU or GPU figures: the zoo says "not measured" there.
"""
import dataclasses
import glob
import os
import re

from research import config as config_lib
from research import provenance as provenance_lib
from research import results as results_lib
from research.docs import bench_tables, result_tables, tables

NOT_MEASURED = "not measured"
FULL_BACKBONES = {"resnet50": ((3, 4, 6, 3), 64), "mobilenet_v2": ((1, 2, 3, 4, 3, 3, 1), 32)}
# bench_train_step builds this named config unless a case names another.
BENCH_TRAIN_STEP_CONFIG = "deeplabv3_voc"
# The networks scripts/tflite_report.py times, by its rows' "backbone": those of
# research.export_tflite.full_size_model (DeepLab v3 at output stride 16, 21 classes).
TFLITE_NETWORKS = {
    "resnet50": config_lib.Config(),
    "mobilenet_v2": config_lib.Config(backbone="mobilenet_v2", backbone_blocks=(1, 2, 3, 4, 3, 3, 1),
                                      backbone_width=32, head="light"),
}


def network(config):
    """The network of a `Config` as a hashable tuple of (field, value): equal tuples build
    the same network (the same weights' shapes and the same computation per image)."""
    return recorded_network(config_lib.network_of(config))


def recorded_network(fields):
    """`network`'s tuple from a results file's "network" record ({field: value}), in
    field-name order (results files are written with sorted keys)."""
    return tuple(sorted((name, tuple(value) if isinstance(value, list) else value) for name, value in fields.items()))


@dataclasses.dataclass(frozen=True)
class Figure:
    """One measured value for a cell: its text and where it comes from."""
    text: str
    artifact: str        # the file's path relative to the repository root
    provenance: dict     # research/provenance.py's block


class Footnotes:
    """Numbered marks, one per artifact, in the order the cells cite them."""

    def __init__(self):
        self._numbers, self._notes = {}, []

    def mark(self, figure):
        """The mark "[n]" of `figure`'s artifact, numbered at the artifact's first citation."""
        if figure.artifact not in self._numbers:
            self._numbers[figure.artifact] = len(self._numbers) + 1
            self._notes.append(f"[{self._numbers[figure.artifact]}] "
                               f"{provenance_lib.provenance_line(figure.provenance)} "
                               f"Artifact: `{figure.artifact}`.")
        return f"[{self._numbers[figure.artifact]}]"

    def cell(self, figures):
        """A cell: its figures with their marks, one per line, or "not measured"."""
        return "<br>".join(f"{f.text} {self.mark(f)}" for f in figures) or NOT_MEASURED

    def markdown(self):
        """The footnotes as a Markdown list, in number order."""
        return "\n".join(f"- {note}" for note in self._notes)


def results_artifact(machine, name):
    """benchmarks/results/<machine>/<name>.json, with "/" separators (a footnote's path)."""
    return "/".join((results_lib.RESULTS_DIR.replace(os.sep, "/"), machine, f"{name}.json"))


# ---------------------------------------------------------------------------------
# Each source: {config name: [Figure]} for the named configs `configs` ({name: Config}).
# ---------------------------------------------------------------------------------
def model_summary_figures(root, configs):
    """{name: {"parameters": Figure, "gflops": Figure}} from the newest models.json."""
    found = result_tables.newest_results(root, "models")
    if not found:
        return {}
    machine, saved = found
    artifact = results_artifact(machine, "models")
    figures = {}
    for row in saved["rows"]:
        config = configs.get(row["config"])
        if config is not None and summary_row_is_current(row, config):
            figures[row["config"]] = {
                "parameters": Figure(f"{row['parameters']:,}", artifact, saved["provenance"]),
                "gflops": Figure(tables.number(row["gflops"], 2), artifact, saved["provenance"])}
    return figures


def summary_row_is_current(row, config):
    """Whether a models.json row describes what the config builds today: its recorded
    network and input size (an older file without "network" is compared on the fields
    it records)."""
    if "network" in row:
        return (recorded_network(row["network"]) == network(config)
                and list(row["input_size"]) == list(config.input_size))
    deeplab = config.model in config_lib.DEEPLAB_MODELS
    expected = {"model": config.model, "backbone": config.backbone, "input_size": list(config.input_size),
                "head": config.head if deeplab else None, "output_stride": config.output_stride if deeplab else None,
                "num_classes": config.num_classes}
    recorded = {key: row.get(key, value) for key, value in expected.items()}
    recorded["input_size"] = list(recorded["input_size"])
    return recorded == expected


def bench_network(case, configs):
    """The network a bench_train_step case measured, or None when its config is unknown."""
    from research.configs import NAMED_CONFIGS

    name = case.get("config", BENCH_TRAIN_STEP_CONFIG)
    if name not in NAMED_CONFIGS:
        return None
    base = configs.get(name) or NAMED_CONFIGS[name]()
    return network(base.replace(model=case["model"]))


def train_step_figures(root, configs):
    """{name: {"step": [Figure], "memory": [Figure]}} from each machine's latest bench run
    of bench_train_step.py."""
    networks = {name: network(config) for name, config in configs.items()}
    figures = {}
    for machine, _, path, run in bench_tables.saved_runs(root, "bench_train_step.py"):
        artifact = os.path.relpath(path, root).replace(os.sep, "/")
        source = bench_tables.run_provenance(machine, run)
        for bench in bench_tables.benchmarks_of(run, "bench_train_step.py"):
            info = bench.get("extra_info", {})
            case = info.get("case", {})
            measured = bench_network(case, configs) if bench_tables.is_default_case(case) else None
            if measured is None:
                continue
            batch = bench_tables.train_step_batch(bench)
            size = case.get("size") or _group_size(bench.get("group") or "")
            where = f"{size} px, batch {batch}" if size else f"batch {batch}"
            step = Figure(f"{tables.number(bench_tables.seconds(bench))} s ({where})", artifact, source)
            memory = info.get("peak_rss_bytes")
            memory = memory and Figure(f"{tables.number(memory / 2 ** 30)} GiB ({where})", artifact, source)
            for name in (n for n, net in networks.items() if net == measured):
                cells = figures.setdefault(name, {"step": [], "memory": []})
                cells["step"].append(step)
                if memory:
                    cells["memory"].append(memory)
    return figures


def _group_size(group):
    match = re.search(r"(\d+)px", group)
    return int(match.group(1)) if match else None


def tflite_figures(root, configs):
    """{name: {"none": [Figure], "int8": [Figure]}} from each machine's tflite.json
    (mean ms per frame) and latest `make bench` run (bench_tflite.py: minimum ms)."""
    figures = {}
    for machine, saved in result_tables.saved_results(root, "tflite"):
        add_latency(figures, configs, saved.get("latency", []), "mean",
                    results_artifact(machine, "tflite"), saved["provenance"])
    for machine, _, path, run in bench_tables.saved_runs(root, "bench_tflite.py"):
        rows = bench_latency_rows(bench_tables.benchmarks_of(run, "bench_tflite.py"))
        add_latency(figures, configs, rows, "min", os.path.relpath(path, root).replace(os.sep, "/"),
                    bench_tables.run_provenance(machine, run))
    return figures


def bench_latency_rows(found):
    """bench_tflite.py's benchmarks as tflite.json's latency rows (ms per frame, minimum)."""
    rows = {}
    for bench in found:
        p = bench["params"]
        row = rows.setdefault((p["backbone"], p["size"], p["mode"]),
                              {"backbone": p["backbone"], "size": p["size"], "mode": p["mode"]})
        row[f"ms_per_frame_{p['threads']}_thread" + ("s" if p["threads"] > 1 else "")] = (
            1000 * bench_tables.seconds(bench))
    return list(rows.values())


def add_latency(figures, configs, rows, statistic, artifact, provenance):
    """Adds to `figures` the float32 ("none") and int8 latency of `rows` (tflite.json's
    latency schema) to every config whose network was timed, at the size nearest its input."""
    for name, config in configs.items():
        backbone = next((b for b, net in TFLITE_NETWORKS.items() if network(net) == network(config)), None)
        for mode in ("none", "int8"):
            timed = [r for r in rows if r["backbone"] == backbone and r["mode"] == mode]
            if not timed:
                continue
            row = min(timed, key=lambda r: abs(r["size"] - config.input_size[0]))
            text = (f"{tables.number(row.get('ms_per_frame_1_thread'), 1)} / "
                    f"{tables.number(row.get('ms_per_frame_2_threads'), 1)} ms ({row['size']} px, {statistic})")
            figures.setdefault(name, {}).setdefault(mode, []).append(Figure(text, artifact, provenance))


def miou_figures(root, configs):
    """{name: [Figure]}: test mean IoU on the embedded data of the config's own runs."""
    figures = {}
    for machine, saved in result_tables.saved_results(root, "demo"):
        config, recorded = configs.get(saved["config"]), saved.get("network")
        if config is not None and (recorded is None or recorded_network(recorded) == network(config)):
            text = f"{saved['test']['mean_iou']:.4f} (test, {saved['test']['images']} images)"
            figures.setdefault(saved["config"], []).append(
                Figure(text, results_artifact(machine, "demo"), saved["provenance"]))
    pattern = os.path.join(root, results_lib.RESULTS_DIR, "*", "compare_*.json")
    for path in sorted(glob.glob(pattern)):
        saved = results_lib.read_results(path)
        artifact = os.path.relpath(path, root).replace(os.sep, "/")
        for row in saved["runs"]:
            config = configs.get(row["config"])
            if config is None or row.get("test_mean_iou") is None or not is_own_run(row, config):
                continue
            if any(f.provenance["machine"] == saved["provenance"]["machine"] for f in figures.get(row["config"], [])):
                continue      # one figure per machine: demo.json's, or the first comparison's
            figures.setdefault(row["config"], []).append(
                Figure(f"{row['test_mean_iou']:.4f} (test, run `{row['run']}`)", artifact, saved["provenance"]))
    return figures


def is_own_run(row, config):
    """Whether a compare_runs row is a run of the named config `config` as it is named:
    the same network (older files without "network": the same model and backbone) at the
    same batch x accumulate_steps and bn_policy."""
    if "network" in row and recorded_network(row["network"]) != network(config):
        return False
    return (row["model"] == config.model and row["backbone"] == config.backbone
            and row["batch"] == f"{config.batch_size} x {config.accumulate_steps}"
            and row.get("bn_policy", "sync") == config.bn_policy)


# ---------------------------------------------------------------------------------
# The block.
# ---------------------------------------------------------------------------------
def describe_backbone(config):
    """"resnet50", or with its blocks and width when it is not the full network."""
    if FULL_BACKBONES.get(config.backbone) != (tuple(config.backbone_blocks), config.backbone_width):
        blocks = "-".join(str(b) for b in config.backbone_blocks)
        return f"{config.backbone} (blocks {blocks}, width {config.backbone_width})"
    return config.backbone


def describe_model(config):
    """The model column: "deeplab_v3, aspp, OS16", or the model alone (U-Net)."""
    if config.model in config_lib.DEEPLAB_MODELS:
        return f"{config.model}, {config.head}, OS{config.output_stride}"
    return config.model


def named_configs():
    """{name: Config} of every named config, in research.configs' order."""
    from research.configs import NAMED_CONFIGS, load_config

    return {name: load_config(name) for name in NAMED_CONFIGS}


def model_zoo(root, configs=None):
    """The `model-zoo` block: two tables (size and speed; accuracy) and their footnotes."""
    configs = configs or named_configs()
    summary, steps = model_summary_figures(root, configs), train_step_figures(root, configs)
    latency, miou = tflite_figures(root, configs), miou_figures(root, configs)
    notes = Footnotes()
    speed_rows, accuracy_rows = [], []
    for name, config in configs.items():
        counted, stepped, timed = summary.get(name, {}), steps.get(name, {}), latency.get(name, {})
        speed_rows.append([
            f"`{name}`", describe_model(config), describe_backbone(config), "x".join(map(str, config.input_size)),
            notes.cell([counted["parameters"]] if counted else []), notes.cell([counted["gflops"]] if counted else []),
            notes.cell(stepped.get("step", [])), notes.cell(stepped.get("memory", [])),
            notes.cell(timed.get("none", [])), notes.cell(timed.get("int8", [])), NOT_MEASURED])
        accuracy_rows.append([f"`{name}`", notes.cell(miou.get(name, [])), NOT_MEASURED])
    speed = tables.table(["config", "model", "backbone", "input", "parameters", "GFLOPs per image",
                          "CPU train step", "CPU train step peak memory", "TFLite float32 on CPU, 1 / 2 threads",
                          "TFLite int8 on CPU, 1 / 2 threads", "GPU"], speed_rows)
    accuracy = tables.table(["config", "test mean IoU, embedded data", "mean IoU, real data (val)"],
                            accuracy_rows)
    parts = ["**Size and speed**", speed, "**Accuracy**", accuracy]
    footnotes = notes.markdown()
    return "\n\n".join(parts + (["Sources:", footnotes] if footnotes else ["No saved artifact measured any "
                                                                            "of these networks yet."]))
