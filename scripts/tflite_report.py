"""The "On the device" table: size, latency and accuracy of every TFLite export mode.

    python scripts/tflite_report.py [--voc-root data/synthetic/VOCdevkit/VOC2012]
        [--mobile-run runs/demo_mobile] [--resnet-run runs/demo] [--epochs 6]
        [--latency-sizes 257 513] [--frames 20] [--skip-resnet-latency] [--workdir runs/tflite_report]
        [--json [PATH]]

Two parts, printed as Markdown tables with the date and the machine
(scripts/machine_id.py), and with --json saved with their provenance for `make docs`
(research/results.py):

1. Latency: full-size DeepLab v3 on ImageNet-sized backbones (ResNet-50 + ASPP, MobileNetV2
   + light head; OS16) with RANDOM weights (latency does not depend on them), converted in
   every mode at each --latency-sizes; file size and mean ms per frame over --frames frames
   with 1 and 2 interpreter threads (LiteRT, XNNPACK).
2. Accuracy: small models trained on the embedded dataset (`demo_mobile` and `demo`, with
   --epochs epochs unless --mobile-run / --resnet-run name trained runs), exported in every
   mode at their input size (with logits); test mIoU of each file (research.evaluate
   --tflite) against the float Keras model on the same images, and the share of a
   photograph's pixels (an embedded test JPEG at its own size) whose class equals the
   Keras model's: on the same uint8 frame the file gets (what conversion and
   quantization change), and through research.export.predict_masks (float resize; adds
   the rounding of the resized frame to uint8, see export_tflite.device_frame).

Goals: MobileNetV2 int8 257x257 <= 15 ms/frame on 1 thread and <= 10 ms on 2;
int8 loses <= 1.0 point of test mIoU, float16 <= 0.1; agreement float32 >= 99.9%, int8 >= 97%.
"""
import argparse
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from research import provenance, results  # noqa: E402

MODES = ("none", "float16", "dynamic", "int8")


def latency_rows(sizes, frames, backbones):
    """[(backbone, size, mode, bytes, ms 1 thread, ms 2 threads)] for random full-size models."""
    import tempfile

    from research import export_tflite as et

    rows = []
    for backbone in backbones:
        model = et.full_size_model(backbone)
        for size in sizes:
            rng = np.random.default_rng(0)
            frame = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            calibration = [rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8) for _ in range(4)]
            for mode in MODES:
                data = et.convert(model, (size, size), mode, calibration=calibration)
                with tempfile.NamedTemporaryFile(suffix=".tflite") as file:
                    file.write(data)
                    file.flush()
                    times = [time_frames(et.TFLiteModel(file.name, num_threads=t), frame, frames)
                             for t in (1, 2)]
                rows.append((backbone, size, mode, len(data), *times))
                print(f"  latency {backbone} {size} {mode}: {times[0]:.1f} / {times[1]:.1f} ms",
                      file=sys.stderr, flush=True)
    return rows


def time_frames(model, frame, frames):
    """Mean milliseconds per `model.run(frame)` after two warm-up calls."""
    for _ in range(2):
        model.run(frame)
    start = time.perf_counter()
    for _ in range(frames):
        model.run(frame)
    return 1000 * (time.perf_counter() - start) / frames


def trained_run(name, workdir, voc_root, epochs):
    """A run of the named config trained on voc_root for `epochs` of 300 steps, its best
    model exported (kept if already there), whatever the config's own budget and export
    setting are."""
    from research import configs
    from research import train

    if os.path.isfile(os.path.join(workdir, "export", "model.keras")):
        return workdir
    config = configs.load_config(name).replace(voc_root=voc_root, epochs=epochs, steps_per_epoch=300,
                                                  export_best=True)
    train.train_and_evaluate(config, workdir)
    return workdir


def accuracy_rows(label, workdir, voc_root):
    """[(model, mode, bytes, test mIoU, delta vs Keras in points, photo agreement with the
    Keras model on the same uint8 frame, and with research.export.predict_masks)]."""
    import tensorflow as tf
    from PIL import Image

    from research import evaluate, export
    from research import export_tflite as et

    quiet = dict(samples=0, hardest=0, voc_root=voc_root)
    keras_report = evaluate.evaluate(workdir, out_dir=os.path.join(workdir, "eval_report_keras"), **quiet)
    model, facts = export.load_export(os.path.join(workdir, "export"))
    ids = sorted(os.listdir(os.path.join(voc_root, "JPEGImages")))
    photo = np.asarray(Image.open(os.path.join(voc_root, "JPEGImages", ids[-1])).convert("RGB"))
    expected = export.predict_masks(model, photo[None], facts["input_size"]).numpy()
    frame = et.device_frame(photo, facts["input_size"]).astype(np.float32)
    same_frame = np.argmax(tf.image.resize(model(frame[None], training=False), photo.shape[:2]).numpy(), -1)
    rows = [(label, "Keras float32", None, keras_report["mean_iou"], 0.0, 1.0, 1.0)]
    for mode in MODES:
        path = et.export_tflite(workdir, mode, logits=True, voc_root=voc_root)
        report = evaluate.evaluate(workdir, tflite=path, out_dir=os.path.join(workdir, f"eval_report_{mode}"),
                                   **quiet)
        masks = et.TFLiteModel(path).masks(photo[None])
        rows.append((label, mode, os.path.getsize(path), report["mean_iou"],
                     100 * (report["mean_iou"] - keras_report["mean_iou"]),
                     float((masks == same_frame).mean()), float((masks == expected).mean())))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voc-root", default="data/synthetic/VOCdevkit/VOC2012",
                        help="the embedded dataset (made with scripts/make_synthetic_voc.py if missing)")
    parser.add_argument("--workdir", default="runs/tflite_report", help="where trained runs go")
    parser.add_argument("--mobile-run", default=None, help="a trained demo_mobile run to use")
    parser.add_argument("--resnet-run", default=None, help="a trained demo run to use")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the runs trained here (default 6)")
    parser.add_argument("--latency-sizes", type=int, nargs="+", default=[257, 513],
                        help="square input sizes timed (default 257 513)")
    parser.add_argument("--frames", type=int, default=20, help="frames timed per file (default 20)")
    parser.add_argument("--skip-resnet-latency", action="store_true",
                        help="time MobileNetV2 only (ResNet-50's conversions take minutes)")
    parser.add_argument("--skip-accuracy", action="store_true", help="latency table only")
    results.add_json_argument(parser, "tflite")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from research import cli

    command = provenance.command_line("python scripts/tflite_report.py", argv)
    return cli.run_main(lambda: report(args, command))


def report(args, command):
    """Prints both tables for the command line's arguments; with --json saves them
    (`command` made them)."""

    started = time.time()
    if not args.skip_accuracy and not os.path.isdir(args.voc_root):
        from research.data.synthetic import make_synthetic_voc

        root = args.voc_root.split("/VOCdevkit")[0]
        make_synthetic_voc(root, 240, 120, seed=0)
    print(f"## On the device: {datetime.date.today()}, machine {provenance.machine_id()}\n")
    backbones = ("mobilenet_v2",) if args.skip_resnet_latency else ("mobilenet_v2", "resnet50")
    print("| model (random weights) | size | mode | file MB | ms/frame 1 thread | ms/frame 2 threads |")
    print("|---|---|---|---|---|---|")
    latency = latency_rows(args.latency_sizes, args.frames, backbones)
    for backbone, size, mode, size_bytes, one, two in latency:
        print(f"| DeepLab v3 {backbone} | {size}x{size} | {mode} | {size_bytes / 1e6:.1f} | {one:.1f} | {two:.1f} |",
              flush=True)
    accuracy = []
    if not args.skip_accuracy:
        runs = (("demo_mobile (MobileNetV2)", "demo_mobile", args.mobile_run),
                ("demo (ResNet)", "demo", args.resnet_run))
        print("\n| trained on the embedded dataset | file | file MB | test mIoU | vs Keras (points) "
              "| photo pixels = Keras, same uint8 frame | = Keras, float resize (predict_masks) |")
        print("|---|---|---|---|---|---|---|")
        for label, name, given in runs:
            workdir = given or trained_run(name, os.path.join(args.workdir, name), args.voc_root, args.epochs)
            rows = accuracy_rows(label, workdir, args.voc_root)
            accuracy += rows
            for row_label, mode, size_bytes, miou, delta, frame, floats in rows:
                size_text = "-" if size_bytes is None else f"{size_bytes / 1e6:.2f}"
                print(f"| {row_label} | {mode} | {size_text} | {miou:.4f} | {delta:+.2f} | {100 * frame:.2f}% "
                      f"| {100 * floats:.2f}% |", flush=True)
    print(f"\n(wall time {time.time() - started:.0f} s)")
    if args.json:
        print(f"result: {results.write_results(args.json, results.tflite_results(latency, accuracy), command)}")


if __name__ == "__main__":
    sys.exit(main())
