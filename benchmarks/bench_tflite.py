"""TFLite (LiteRT interpreter, XNNPACK): latency per frame of DeepLab v3 exports.

ResNet-50 and MobileNetV2 (light head) DeepLab v3 at OS16, 257x257 and 513x513, in every
quantization mode of research.export_tflite, with 1 and 2 interpreter threads. Random
weights (latency does not depend on them); int8 is calibrated on random frames, which
fixes ranges but not speed. Items are frames. File sizes go into extra_info.

Goal: MobileNetV2 int8 257x257 at most 15 ms per frame on 1 thread, 10 ms on 2.
Converting the ResNet-50 files takes minutes; `-k mobilenet` runs the mobile rows only.
The full table with mIoU: `python scripts/tflite_report.py`.
"""
import os

import numpy as np
import pytest

from benchmarks.support import record_items_per_second

BACKBONES = ("mobilenet_v2", "resnet50")
SIZES = (257, 513)
MODES = ("none", "float16", "dynamic", "int8")
THREADS = (1, 2)


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory):
    """Converted lazily: {(backbone, size, mode): path}."""
    from research import export_tflite as et

    folder = tmp_path_factory.mktemp("tflite")
    models, files = {}, {}

    def get(backbone, size, mode):
        key = (backbone, size, mode)
        if key not in files:
            if backbone not in models:
                models[backbone] = et.full_size_model(backbone)
            rng = np.random.default_rng(0)
            calibration = [rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8) for _ in range(4)]
            data = et.convert(models[backbone], (size, size), mode,
                              calibration=calibration if mode == "int8" else None)
            files[key] = str(folder / f"{backbone}_{size}_{mode}.tflite")
            with open(files[key], "wb") as f:
                f.write(data)
        return files[key]

    return get


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thread")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_tflite_latency(benchmark, tflite_files, comparison_table, backbone, size, mode, threads):
    from research.export_tflite import TFLiteModel

    path = tflite_files(backbone, size, mode)
    model = TFLiteModel(path, num_threads=threads)
    frame = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    model.run(frame)  # warm-up: XNNPACK packs weights on the first call
    group = f"tflite {backbone} {size}x{size}"
    benchmark.group = group
    benchmark.extra_info["file_bytes"] = os.path.getsize(path)
    benchmark.pedantic(lambda: model.run(frame), rounds=20 if size == 257 else 8, warmup_rounds=2)
    if benchmark.disabled:
        return
    rate = record_items_per_second(benchmark, 1)
    benchmark.extra_info["ms_per_frame"] = 1000 * benchmark.stats.stats.min
    comparison_table.append((group, f"{mode} {threads}thr", benchmark.stats.stats.min, rate,
                             mode == "none" and threads == 1))
