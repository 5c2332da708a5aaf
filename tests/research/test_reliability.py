"""Reliability: killed training processes resume with nothing lost; a folder of
bad files gets a clear message per file from every entry point; untrusted files are data.

Kill and resume. Real `python -m research.train` processes, launched and checked by
research.reliability (the same launches and checks as scripts/chaos_resume.py's 20-run
chaos measurement):
- fast (one chain of four launches in one workdir): SIGKILL while train_log.csv's new
  version is written but not yet renamed -> SIGTERM to the resumed process -> SIGINT to
  the next one -> a clean launch finishes. Each stop leaves a consistent state; the
  finished run is checked on its own (`check_consistent_finish`: the learning-rate,
  plateau and early-stop state equal what the rules give for the logged values, so a
  resume that lost any of it shows) and against the rows computed before the kill;
- slow (--run-slow): a mini chaos run against an uninterrupted reference run (every
  value compared), every kill kind at least once (kill points step, checkpoint,
  atomic_replace, export; a timer SIGKILL from outside). The fast chain leaves the
  reference out: it would cost a fifth training run.
SIGTERM/SIGINT in-process and NaN handling are tested in tests/research/test_train.py.

The bad-input corpus (tests/research/bad_corpus.py) through make_dataset (with and
without skip_bad), validate_voc and its command line, research.evaluate (fails naming
the file; a run whose config has skip_bad scores exactly the good images),
research.predict (--skip-bad writes every good mask at its displayed size and names
every bad file), the training command line (names the file) and make_synthetic_voc's
output validation (catches a file corrupted after writing).

Untrusted files. Archive extraction: tests/scripts/test_download_voc.py (path traversal,
absolute paths, links pointing outside or through other links, device files, FIFOs,
all refused before anything is written). Config files: here (command lines) and
tests/research/test_config.py (load_config). Atomic writes: tests/research/test_fileio.py
and the kill tests here.
"""
import csv
import glob
import io
import json
import logging
import os
import signal
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
import keras
from PIL import Image

from research import config as config_lib
from research import configs
from research import evaluate as evaluate_lib
from research import export as export_lib
from research import predict as predict_lib
from research import train as train_lib
from research.data import pipeline, synthetic, validate, voc
from research.fileio import atomic_write_json
from research.reliability import chaos, verify
from tests.helpers import command_line_errors
from tests.research import bad_corpus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The chaos config without the export and TensorBoard pictures (a few seconds less per
# launch); the slow test keeps them.
FAST_SETS = chaos.CHAOS_SETS + ("export_best=false", "tensorboard_images=0")
LAUNCH_TIMEOUT = 300


# =================================================================================
# Kill and resume.
# =================================================================================
def _stage(workdir, result):
    """What a launch left: the launch, the consistency check (facts or the error), files."""
    try:
        facts = verify.check_interrupted(workdir, result)
    except verify.VerificationError as e:
        facts = e
    csv_path = os.path.join(workdir, "train_log.csv")
    return types.SimpleNamespace(
        launch=result, facts=facts, checkpoint=verify.latest_checkpoint(workdir),
        csv=open(csv_path, encoding="utf-8").read() if os.path.exists(csv_path) else None,
        temp_csvs={path: open(path, encoding="utf-8").read()   # read now: the next launch removes them
                   for path in sorted(glob.glob(os.path.join(workdir, ".train_log.*.tmp.csv")))})


@pytest.fixture(scope="module")
def kill_chain(synthetic_voc_root, tmp_path_factory):
    """One workdir through SIGKILL, SIGTERM, SIGINT and a clean finish."""
    workdir = str(tmp_path_factory.mktemp("kill_chain") / "run")
    stages = {}

    def run(name, kill):
        result = chaos.launch(workdir, synthetic_voc_root, kill, sets=FAST_SETS, timeout=LAUNCH_TIMEOUT)
        stages[name] = _stage(workdir, result)
        if stages[name].checkpoint:
            stages[name].history = verify.read_checkpoint(stages[name].checkpoint)["loop_state"]["history"]

    # Kill points "atomic_replace", in order: config.json (1), train_log.csv as of the
    # (absent) checkpoint (2), the CSV after ckpt-2 (3), the CSV after ckpt-3, the end of
    # epoch 1 (4): killed with the new CSV written to its temporary file, not renamed.
    run("sigkill", chaos.Kill("point", point="atomic_replace", count=4))
    run("sigterm", chaos.Kill("sigterm", delay=0.0))   # right after its first step
    run("sigint", chaos.Kill("sigint", delay=0.0))
    run("final", None)
    try:
        finished = verify.check_consistent_finish(workdir)
    except verify.VerificationError as e:
        finished = e
    return types.SimpleNamespace(stages=stages, finished=finished, workdir=workdir)


def _ok(stage):
    assert not isinstance(stage.facts, Exception), f"{stage.facts}\n{stage.launch.tail()}"
    return stage.facts


@pytest.mark.slow
def test_sigkill_during_the_csv_write_leaves_the_old_csv_and_a_good_checkpoint(kill_chain):
    stage = kill_chain.stages["sigkill"]
    assert stage.launch.returncode == -signal.SIGKILL, stage.launch.tail()
    facts = _ok(stage)
    # Epoch 1 finished and is in ckpt-3; the kill came between writing the new CSV and
    # renaming it: train_log.csv is still the previous version (header only, whole),
    # and the complete new version lies in its temporary file.
    assert stage.checkpoint.endswith("ckpt-3")
    assert facts["csv_rows"] == 0
    assert stage.csv == ",".join(train_lib.CSV_COLUMNS) + "\n"
    [text] = stage.temp_csvs.values()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["epoch"] for r in rows] == ["1"]


@pytest.mark.slow
def test_the_next_launch_removes_the_killed_writes_leftover(kill_chain):
    [temp] = kill_chain.stages["sigkill"].temp_csvs
    resumed = kill_chain.stages["sigterm"]
    assert resumed.temp_csvs == {}
    assert any("removed 1 leftover(s) of interrupted writes: " + os.path.basename(temp) in line
               for line in resumed.launch.lines), resumed.launch.tail()


def _stopped(stage, name):
    assert stage.launch.returncode == 130, stage.launch.tail()
    facts = _ok(stage)   # includes: the "stopped by" line names a checkpoint at that step
    assert any(f"received {name}: stopping after this step" in line for line in stage.launch.lines)
    assert stage.checkpoint.endswith(f"ckpt-{facts['stopped_at_step']}")
    return facts["stopped_at_step"]


@pytest.mark.slow
def test_sigterm_to_a_training_process_checkpoints_the_step_and_exits_130(kill_chain):
    step = _stopped(kill_chain.stages["sigterm"], "SIGTERM")
    assert any("resumed from" in line and "ckpt-3: step 3" in line
               for line in kill_chain.stages["sigterm"].launch.lines)
    assert step > 3                      # it trained before stopping


@pytest.mark.slow
def test_sigint_to_a_training_process_checkpoints_the_step_and_exits_130(kill_chain):
    before = kill_chain.stages["sigterm"].facts["stopped_at_step"]
    step = _stopped(kill_chain.stages["sigint"], "SIGINT")
    assert any("resumed from" in line and f"ckpt-{before}: step {before}" in line
               for line in kill_chain.stages["sigint"].launch.lines)
    assert step > before


@pytest.mark.slow
def test_the_resumed_run_finishes_with_its_state_whole(kill_chain):
    final = kill_chain.stages["final"]
    assert final.launch.returncode == 0, final.launch.tail()
    finished = kill_chain.finished
    assert not isinstance(finished, Exception), str(finished)
    path, ckpt, rows = finished
    # What was checked is worth checking: the learning rate dropped twice (the second
    # drop only in the checkpoint), early stopping ended the 4-epoch config after epoch 3,
    # and the best epoch is not the last.
    state = ckpt["loop_state"]
    assert path.endswith("ckpt-9") and state["stopped_early"] and state["epoch"] == 3
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 3), (2, 6), (3, 9)]
    assert [r["learning_rate"] for r in rows] == pytest.approx([1e-3, 1e-3, 1e-4])
    assert ckpt["learning_rate"] == pytest.approx(1e-5)
    assert state["best_epoch"] == 1 and state["early_stop_wait"] == 2
    # Epoch 1 was computed by the launch that was killed: its row is kept exactly.
    assert state["history"][0] == kill_chain.stages["sigkill"].history[0]


def test_a_lost_plateau_or_early_stop_state_would_be_caught(tmp_path):
    config = config_lib.apply_overrides(configs.load_config("smoke"), list(FAST_SETS))
    rates = [float(np.float32(1e-3))]                       # a float32 variable, times 0.1
    for _ in range(2):
        rates.append(float(np.float32(rates[-1] * 0.1)))
    rows = [{"epoch": e, "step": 3 * e, "learning_rate": lr, "val_loss": v}
            for e, lr, v in ((1, rates[0], 2.0), (2, rates[0], 1.9), (3, rates[1], 1.8))]
    state, learning_rate = verify.replay_schedules(rows, config)
    assert state.stopped_early and state.best_epoch == 1 and learning_rate == rates[2]
    rows[2]["learning_rate"] = rates[0]                     # as if the plateau wait was reset
    with pytest.raises(verify.VerificationError, match="epoch 3: learning rate .* the plateau rule gives"):
        verify.replay_schedules(rows, config)


def test_train_log_checks_catch_torn_and_duplicated_rows(tmp_path):
    header = ",".join(train_lib.CSV_COLUMNS)
    row = ",".join(["1", "3"] + ["0.5"] * (len(train_lib.CSV_COLUMNS) - 3) + ["0"])
    good = tmp_path / "good.csv"
    good.write_text(f"{header}\n{row}\n")
    assert len(verify.read_train_log(str(good))) == 1
    for name, text, message in (
            ("torn", f"{header}\n{row[:-9]}", "does not end with a newline"),
            ("short", f"{header}\n{row[:-9]}\n", "torn row"),
            ("duplicated", f"{header}\n{row}\n{row}\n", "duplicated or missing"),
            ("header", f"epoch,step\n{row}\n", "header is"),
            ("value", f"{header}\n{row.replace('0.5', 'x', 1)}\n", "is not a number")):
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        with pytest.raises(verify.VerificationError, match=message):
            verify.read_train_log(str(path))


@pytest.mark.slow
def test_random_kills_mini_chaos(synthetic_voc_root, tmp_path):
    """Every kill kind at least once, two to three kills per run; each run must end equal
    to the uninterrupted reference (the chaos config, export included). Seeded random
    plans are scripts/chaos_resume.py's (`test_random_plans_are_seeded_and_valid`): a
    launch here costs a TensorFlow start, so the plans are the fewest that land every kind."""
    ref_dir, ref_launch = chaos.run_reference(str(tmp_path), synthetic_voc_root)
    reference = verify.Reference.from_workdir(ref_dir)
    assert reference.export_info["epoch"] == 1
    windows = chaos.Windows(ref_launch)
    plans = [
        [chaos.Kill("point", point="export", count=1), chaos.Kill("point", point="checkpoint", count=2)],
        [chaos.Kill("timer", fraction=0.3), chaos.Kill("point", point="step", count=2),
         chaos.Kill("point", point="atomic_replace", count=3)],
    ]
    landed = set()
    for number, plan in enumerate(plans):
        workdir = str(tmp_path / f"run{number}")
        launches = chaos.resume_until_done(workdir, synthetic_voc_root, plan, max_launches=len(plan) + 3,
                                           windows=windows)
        verify.check_finished(workdir, reference)
        landed |= {r.kill.label for r in launches if r.landed}
    assert {"export", "checkpoint", "step", "timer", "atomic_replace"} <= landed


def test_random_plans_are_seeded_and_valid():
    # The chaos run's plans (scripts/chaos_resume.py): the same seed gives the same plan,
    # each of 1..max_kills kills of the weighted kinds, point counts within a launch's passes.
    plans = [chaos.random_plan(seed, run, 3) for seed in range(3) for run in range(20)]
    assert plans == [chaos.random_plan(seed, run, 3) for seed in range(3) for run in range(20)]
    assert len({repr(plan) for plan in plans}) > 40
    kinds = set()
    for plan in plans:
        assert 1 <= len(plan) <= 3
        for kill in plan:
            kinds.add(kill.kind if kill.kind != "point" else f"point:{kill.point}")
            if kill.kind == "point":
                assert 1 <= kill.count <= chaos.POINT_PASSES[kill.point]
    assert kinds == set(chaos.KIND_WEIGHTS)


# =================================================================================
# The bad-input corpus.
# =================================================================================
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return bad_corpus.build_corpus(tmp_path_factory.mktemp("corpus"))


def pointwise_model():
    """A 1x1 convolution with random weights: predictions vary with colour."""
    images = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(images)
    logits = keras.layers.Conv2D(voc.NUM_CLASSES, 1, kernel_initializer=keras.initializers.RandomNormal(0, 3, seed=0),
                                 bias_initializer=keras.initializers.RandomNormal(0, 1, seed=1))(x)
    return keras.Model(images, logits)


@pytest.fixture(scope="module")
def model():
    return pointwise_model()


def write_run(workdir, model, voc_root, **changes):
    """A run folder as training leaves it: config.json and export/ (model.keras, export.json)."""
    config = configs.load_config("smoke").replace(voc_root=voc_root, **changes)
    os.makedirs(os.path.join(workdir, "export"), exist_ok=True)
    atomic_write_json(os.path.join(workdir, "config.json"), {"config": config.to_dict(), "runtime": {}})
    model.save(os.path.join(workdir, "export", "model.keras"))
    atomic_write_json(os.path.join(workdir, "export", "export.json"),
                      {"input_size": list(config.input_size), "num_classes": voc.NUM_CLASSES, "info": {}})
    return str(workdir)


def voc_view(folder, corpus, train_ids, val_ids=()):
    """A VOC root sharing the corpus's files with split lists of our own."""
    root = str(folder)
    os.makedirs(os.path.join(root, "ImageSets", "Segmentation"), exist_ok=True)
    for sub in ("JPEGImages", "SegmentationClass"):
        os.symlink(os.path.join(corpus.voc_root, sub), os.path.join(root, sub))
    bad_corpus.voc_files.write_split(root, "train", train_ids)
    bad_corpus.voc_files.write_split(root, "val", list(val_ids) or ["unused"])
    return root


def _train_ids(corpus):
    return voc.read_id_list(voc.split_file(corpus.voc_root, "train"))


def test_corpus_holds_every_kind(corpus):
    kinds = corpus.kinds()
    for breaker in ("truncated_jpeg", "truncated_png", "empty_jpeg", "empty_png", "mask_palette", "rgb_mask",
                    "mask_16bit", "mask_size_differs", "text_as_jpeg", "bomb_jpeg", "bomb_png"):
        assert f"bad sample: {breaker}" in kinds
    for photo in ("exif_rotated_jpeg", "grayscale_jpeg", "cmyk_jpeg", "rgba_png_named_jpg"):
        assert f"good sample: photo {photo}" in kinds
    ids = _train_ids(corpus)
    assert any(" " in i and not i.isascii() for i in ids)            # spaces and unicode
    assert any(" " in p.name for p in corpus.good_photos) and any(not p.name.isascii() for p in corpus.good_photos)
    print(f"\nbad-input corpus: {len(corpus.files())} files, {len(kinds)} kinds "
          f"({len(corpus.bad)} bad samples, {len(corpus.good)} good samples, "
          f"{len(corpus.bad_photos)} bad photos, {len(corpus.good_photos)} good photos)")


def test_make_dataset_names_each_bad_file_in_turn(corpus, tmp_path):
    """Without skip_bad a bad sample stops the pipeline with its file and problem; dropping
    it from the list and running again meets the next one, until only good ones remain."""
    expected = {os.path.relpath(s.path, corpus.voc_root): s for s in corpus.bad_in("train")}
    remaining, named = _train_ids(corpus), []
    for attempt in range(len(expected) + 1):
        root = voc_view(tmp_path / f"view{attempt}", corpus, remaining)
        try:
            batches = list(pipeline.make_dataset(root, "train", 4, (bad_corpus.HEIGHT, bad_corpus.WIDTH)))
        except tf.errors.InvalidArgumentError as error:
            message = pipeline.bad_file_message(error)
            hits = [r for r in expected if message.startswith(os.path.join(root, r) + ": ")]
            assert len(hits) == 1, message
            assert expected[hits[0]].phrase in message, message
            named.append(hits[0])
            remaining.remove(expected[hits[0]].image_id)
            continue
        break
    assert sorted(named) == sorted(expected)
    labels = np.concatenate([b[1].numpy() for b in batches])
    _assert_same_masks(labels, [s.mask for s in corpus.good_in("train")])


def _assert_same_masks(got, expected):
    """Each expected mask appears in `got` exactly once, and nothing else does."""
    assert len(got) == len(expected)
    unused = list(range(len(got)))
    for mask in expected:
        match = [i for i in unused if np.array_equal(got[i], mask)]
        assert match, "a good sample was lost"
        unused.remove(match[0])


def test_make_dataset_skip_bad_yields_exactly_the_good_samples(corpus, caplog):
    skipped = pipeline.SkippedSamples()
    with caplog.at_level(logging.WARNING, logger="research.data.pipeline"):
        dataset = pipeline.make_dataset(corpus.voc_root, "train", 4, (bad_corpus.HEIGHT, bad_corpus.WIDTH),
                                        skip_bad=True, skipped=skipped)
        batches = list(dataset)
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    good = corpus.good_in("train")
    _assert_same_masks(labels, [s.mask for s in good])
    for sample in good:  # converted photos (grayscale, CMYK, RGBA, EXIF...) as the reader must give
        [index] = [i for i in range(len(labels)) if np.array_equal(labels[i], sample.mask)]
        assert np.abs(images[index] - sample.image.astype(np.float32)).max() <= sample.tolerance + 1e-3, sample.image_id
    bad = corpus.bad_in("train")
    assert skipped.count == len(bad)
    assert set(skipped.problems) == {s.path for s in bad}
    for sample in bad:
        assert sample.phrase in skipped.problems[sample.path]
    counts = [r.getMessage() for r in caplog.records if "bad sample(s) of" in r.getMessage()]
    assert counts == [f"epoch 0 of 'train': skipped {len(bad)} bad sample(s) of {len(good) + len(bad)}; "
                      "see SkippedSamples.problems"]


def test_validator_reports_every_bad_file_by_kind(corpus):
    report = validate.validate_voc(corpus.voc_root, progress=False)
    assert {(p.kind, p.path) for p in report.problems} == {(s.kind, s.path) for s in corpus.bad}
    assert report.samples_checked == len(corpus.good) + len(corpus.bad)
    # the documented command line
    result = subprocess.run([sys.executable, "-m", "research.data.validate", corpus.voc_root, "--no-progress"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert f"FAILED: {len(corpus.bad)} problem(s)" in out
    assert f"samples checked: {len(corpus.good) + len(corpus.bad)}, problems: {len(corpus.bad)}" in out
    for sample in corpus.bad:
        line = next(l for l in out.splitlines() if l.strip().startswith(sample.path + ": "))
        assert sample.phrase in line
        assert f"  {sample.kind} (" in out


def test_evaluate_fails_naming_the_first_bad_file(corpus, model, tmp_path, capsys):
    run = write_run(tmp_path / "run", model, corpus.voc_root)
    first_bad = next(s for s in corpus.bad if s.subset == "train")
    for extra in ([], ["--full-resolution"]):
        capsys.readouterr()
        assert evaluate_lib.main(["--workdir", run, "--subset", "train", *extra]) == 1
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {first_bad.path}: "), errors
        assert first_bad.phrase in errors[0] and "--skip-bad leaves bad samples out" in errors[0]
        assert not os.path.exists(os.path.join(run, "eval_train"))
    # The hint works: --skip-bad scores the good images of a run that did not skip.
    assert evaluate_lib.main(["--workdir", run, "--subset", "train", "--skip-bad", "--samples", "0",
                              "--hardest", "0"]) == 0
    with open(os.path.join(run, "eval_train", "metrics.json"), encoding="utf-8") as f:
        assert json.load(f)["num_images"] == len(corpus.good_in("train"))


def test_evaluate_with_skip_bad_scores_exactly_the_good_images(corpus, model, tmp_path, caplog):
    run = write_run(tmp_path / "run", model, corpus.voc_root, skip_bad=True)
    good_ids = [s.image_id for s in corpus.good_in("train")]
    for full_resolution in (False, True):
        with caplog.at_level(logging.WARNING):
            result = evaluate_lib.evaluate(run, subset="train", full_resolution=full_resolution,
                                           samples=0, hardest=0)
        assert result["num_images"] == len(good_ids)
        with open(os.path.join(result["output_dir"], "per_image.csv"), newline="", encoding="utf-8") as f:
            assert [r["id"] for r in csv.DictReader(f)] == [i for i in _train_ids(corpus) if i in good_ids]
        logged = caplog.text
        for sample in corpus.bad_in("train"):
            assert sample.path in logged


def _expected_mask(model, rgb):
    return export_lib.predict_masks(model, rgb[None], (32, 32)).numpy()[0]


def test_predict_skip_bad_writes_every_good_mask_and_names_every_bad_file(corpus, model, tmp_path, capsys):
    export_dir = write_run(tmp_path / "run", model, corpus.voc_root)
    out = tmp_path / "masks"
    assert predict_lib.main(["--model", export_dir, "--out", str(out), "--skip-bad", corpus.photos]) == 1
    stdout, stderr = capsys.readouterr()
    assert sorted(os.listdir(out)) == sorted(os.path.splitext(p.name)[0] + ".png" for p in corpus.good_photos)
    for photo in corpus.good_photos:
        with Image.open(out / (os.path.splitext(photo.name)[0] + ".png")) as image:
            assert image.mode == "P"
            mask = np.asarray(image)
        assert mask.shape == photo.displayed.shape[:2], photo.name          # displayed size (EXIF)
        np.testing.assert_array_equal(mask, _expected_mask(model, photo.displayed), err_msg=photo.name)
    assert f"wrote {len(corpus.good_photos)} mask(s)" in stdout
    assert f"{len(corpus.bad_photos)} image(s) failed (skipped):" in stderr
    for name, phrase in corpus.bad_photos.items():
        line = next(l for l in stderr.splitlines() if os.path.join(corpus.photos, name) + ": " in l)
        assert phrase in line, line
    assert "notes.txt" not in stdout + stderr


def test_predict_without_skip_bad_stops_before_writing_and_names_the_bad_headers(corpus, model, tmp_path, capsys):
    export_dir = write_run(tmp_path / "run", model, corpus.voc_root)
    out = tmp_path / "masks"
    assert predict_lib.main(["--model", export_dir, "--out", str(out), corpus.photos]) == 1
    stderr = capsys.readouterr().err
    assert not out.exists() or os.listdir(out) == []
    # header problems are all found before anything is predicted (truncated pixel data
    # only shows when decoding, so with --skip-bad above)
    for name in ("zero bytes.jpg", "really text.jpg", "bomb 30000x30000.png", "bomb 30000x30000.jpg"):
        assert os.path.join(corpus.photos, name) + ": " in stderr, name
    assert "use --skip-bad" in stderr


def test_training_command_line_names_a_bad_file(corpus, tmp_path, caplog, capsys):
    code = train_lib.main(["--config", "smoke", "--workdir", str(tmp_path / "run"),
                           "--set", f"voc_root={corpus.voc_root}"])
    assert code == 1
    errors = command_line_errors(caplog, capsys)
    assert len(errors) == 1 and "skip_bad=true" in errors[0]
    assert any(errors[0].startswith(s.path + ": ") for s in corpus.bad), errors


def test_int8_export_names_a_bad_calibration_file_or_calibrates_on_the_good_ones(corpus, model, tmp_path, capsys):
    from research import export_tflite

    run = write_run(tmp_path / "run", model, corpus.voc_root)
    first_bad = next(s for s in corpus.bad if s.subset == "train")
    out = tmp_path / "model.tflite"
    assert export_tflite.main(["--workdir", run, "--quantize", "int8", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {first_bad.path}: ") and first_bad.phrase in err, err
    assert "Traceback" not in err and "--skip-bad leaves bad samples out" in err and not out.exists()
    # skip_bad in the run's config (or --skip-bad): calibration reads exactly the good train images
    config = configs.load_config("smoke").replace(voc_root=corpus.voc_root, skip_bad=True)
    frames = export_tflite.representative_images(config, (24, 24), 100)
    assert len(frames) == len(corpus.good_in("train"))
    assert all(f.dtype == np.uint8 and f.shape == (1, 24, 24, 3) for f in frames)


def test_make_synthetic_voc_validation_catches_a_corrupted_output_file(tmp_path, capsys):
    main = synthetic.main                 # scripts/make_synthetic_voc.py's command line
    arguments = ["--root", str(tmp_path), "--num-train", "3", "--num-val", "2", "--seed", "3", "--no-progress"]
    assert main(arguments) == 0
    capsys.readouterr()
    voc_root = voc.voc_root_in(tmp_path)
    ids = voc.read_split(voc_root, "trainval")
    mask = voc.mask_path(voc_root, ids[0])
    data = open(mask, "rb").read()
    open(mask, "wb").write(data[:len(data) // 2])                        # truncated after writing
    photo = voc.image_path(voc_root, ids[1])
    open(photo, "wb").write(b"not a photo any more\n")                    # replaced by text
    assert main(arguments) == 1          # a re-run finds the files present and validates them
    out = capsys.readouterr().out
    assert "FAILED: the generated dataset has 2 problem(s)" in out
    assert f"samples checked: {len(ids)}, problems: 2" in out              # no good file lost
    assert f"{mask}: cannot decode the pixel data (truncated)" in out
    assert f"{photo}: not a readable image" in out


# =================================================================================
# Untrusted files: config files are data.
# =================================================================================
def test_config_files_are_never_executed_by_the_command_lines(tmp_path, capsys):
    marker = tmp_path / "executed"
    code = f"open({str(marker)!r}, 'w').write('x')\n"
    evil = tmp_path / "evil.py"
    evil.write_text(code)
    assert train_lib.main(["--config", str(evil), "--workdir", str(tmp_path / "w")]) == 1
    posing = tmp_path / "evil.json"
    posing.write_text(code)
    assert train_lib.main(["--config", str(posing), "--workdir", str(tmp_path / "w")]) == 1
    run = tmp_path / "run"                                                # a run whose config.json is code
    run.mkdir()
    (run / "config.json").write_text(code)
    assert evaluate_lib.main(["--workdir", str(run)]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    # code in a JSON string stays a string
    data = configs.load_config("smoke").to_dict()
    data["name"] = f"__import__('os').system('touch {marker}')"
    (tmp_path / "strings.json").write_text(json.dumps(data))
    assert configs.load_config(str(tmp_path / "strings.json")).name == data["name"]
    assert not marker.exists()
