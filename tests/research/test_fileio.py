"""Atomic writes: the target is either the old or the new content, never partial."""
import os

import pytest

from research.fileio import (atomic_directory, atomic_path, atomic_write_json, atomic_write_text,
                            remove_interrupted_writes)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            assert tmp.endswith(".keras")  # writers that pick a format by suffix still work
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_json_nan_becomes_null(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"iou": float("nan"), "xs": [1.0, float("nan")]})
    assert '"iou": null' in (tmp_path / "m.json").read_text()


def test_atomic_directory_swaps_whole_folders(tmp_path):
    target = tmp_path / "saved_model"
    with atomic_directory(target) as tmp:
        open(os.path.join(tmp, "v1"), "w").close()
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            open(os.path.join(tmp, "partial"), "w").close()
            raise RuntimeError
    assert os.listdir(target) == ["v1"]
    with atomic_directory(target) as tmp:
        open(os.path.join(tmp, "v2"), "w").close()
    assert os.listdir(target) == ["v2"]
    assert sorted(os.listdir(tmp_path)) == ["saved_model"]


def test_atomic_directory_never_replaces_a_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt exists and is not a folder"):
        with atomic_directory(target):
            pass
    assert target.read_text() == "mine" and os.listdir(tmp_path) == ["notes.txt"]


def test_outputs_get_normal_permissions(tmp_path):
    # mkstemp/mkdtemp create 0600/0700 files; outputs must be readable like open() makes them.
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "m.json", "{}")
        with atomic_directory(tmp_path / "saved") as tmp:
            pass
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.json").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "saved").st_mode & 0o777 == 0o755



def _touch(folder, *names):
    for name in names:
        open(os.path.join(folder, name), "w").close()


def test_remove_interrupted_writes_takes_only_leftovers_of_the_named_files(tmp_path):
    # What killed atomic writes leave: temporary files, a temporary folder, an old
    # folder moved aside; and things that must stay: the targets, another file's
    # temporary (maybe being written by another process right now), look-alikes.
    _touch(tmp_path, "train_log.csv", ".train_log.a1_b2.tmp.csv", ".model.x9.tmp.keras",
           ".eval.q1.tmp", ".train_log.z.tmp.csvx", "train_log.csv.bak")
    os.mkdir(tmp_path / "saved_model")
    os.mkdir(tmp_path / ".saved_model.k3.tmp")
    os.mkdir(tmp_path / "saved_model.old-m4")
    removed = remove_interrupted_writes(tmp_path, ["train_log.csv", "model.keras", "saved_model"])
    assert sorted(os.path.basename(p) for p in removed) == [
        ".model.x9.tmp.keras", ".saved_model.k3.tmp", ".train_log.a1_b2.tmp.csv", "saved_model.old-m4"]
    assert sorted(os.listdir(tmp_path)) == [
        ".eval.q1.tmp", ".train_log.z.tmp.csvx", "saved_model", "train_log.csv", "train_log.csv.bak"]


def test_remove_interrupted_writes_keeps_both_copies_of_an_interrupted_swap(tmp_path):
    # Killed between moving saved_model aside and moving the new one in: the old and
    # the new version exist only as leftovers. Without the moved-aside folder, a
    # temporary folder is a first write that never completed its rename: removed.
    os.mkdir(tmp_path / ".saved_model.k3.tmp")
    os.mkdir(tmp_path / "saved_model.old-m4")
    assert remove_interrupted_writes(tmp_path, ["saved_model"]) == []
    assert remove_interrupted_writes(tmp_path / "missing", ["saved_model"]) == []
    assert sorted(os.listdir(tmp_path)) == [".saved_model.k3.tmp", "saved_model.old-m4"]
    os.rmdir(tmp_path / "saved_model.old-m4")
    assert remove_interrupted_writes(tmp_path, ["saved_model"]) == [str(tmp_path / ".saved_model.k3.tmp")]
    assert os.listdir(tmp_path) == []
