"""The data folder as every command line takes it: a folder one level too high gets a
"did you mean" hint, and `train_subset="train_aug"` selects the augmented train list."""
import json
import logging
import os

import pytest

from research import config as config_lib
from research import configs
from research import evaluate, fit_baseline
from research import train as train_lib
from research.data import sbd, validate, voc
from research.tools import show_batch
from tests.helpers import command_line_errors
from tests.research.data import sbd_files, voc_files


@pytest.fixture
def data(tmp_path):
    """DATA holding VOCdevkit/VOC2012 (and SBD, prepared into train_aug), as
    download_voc.py --data-dir DATA leaves it; returns (DATA, voc_root)."""
    voc_root, sbd_root, _ = sbd_files.make_tiny_world(tmp_path / "data")
    sbd.prepare_train_aug(sbd_root, voc_root, progress=False, log=lambda line: None)
    return str(tmp_path / "data"), voc_root


def test_read_split_hints_the_voc_root_below(data):
    folder, voc_root = data
    for given in (folder, os.path.join(folder, "VOCdevkit")):
        with pytest.raises(FileNotFoundError, match=f"did you mean {voc_root}\\?"):
            voc.read_split(given, "train")
        assert voc.voc_root_below(given) == voc_root
    assert voc.voc_root_below(voc_root) is None
    voc.check_voc_root(voc_root)                            # a VOC root passes


def test_validator_hints_the_voc_root_below(data, capsys):
    folder, voc_root = data
    report = validate.validate_voc(folder, progress=False)
    assert [(p.kind, p.path) for p in report.problems] == [("wrong_root", folder)]
    assert validate.main([folder, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"did you mean {voc_root}?" in out and "train.txt does not exist" not in out


def test_training_and_evaluation_hint_the_voc_root_below(data, tmp_path, caplog, capsys):
    folder, voc_root = data
    caplog.set_level(logging.ERROR, logger="research")
    workdir = str(tmp_path / "run")
    assert train_lib.main(["--config", "smoke", "--workdir", workdir, "--set", f"voc_root={folder}"]) == 1
    assert any(f"did you mean {voc_root}?" in error for error in command_line_errors(caplog, capsys))
    caplog.clear()
    # evaluation checks the folder before it loads any model
    config = configs.load_config("smoke").replace(voc_root=voc_root)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump({"config": config.to_dict(), "runtime": {}}, f)
    assert evaluate.main(["--workdir", workdir, "--voc-root", folder]) == 1
    assert f"did you mean {voc_root}?" in capsys.readouterr().err


def test_train_subset_selects_train_aug(data, tmp_path, caplog, capsys):
    _, voc_root = data
    config = configs.load_config("smoke").replace(voc_root=voc_root)
    with pytest.raises(ValueError, match="train_subset must be one of train, train_aug"):
        config.replace(train_subset="val")
    assert "train_subset" not in config_lib.RESUMABLE_FIELDS
    aug = config.replace(train_subset="train_aug", batch_size=1, steps_per_epoch=None)
    _, _, steps = fit_baseline.make_datasets(aug)
    assert steps == len(sbd_files.TRAIN_AUG)                 # not the 2 ids of train.txt
    # the training loop sizes its epochs from the same list (6 > 5 ids: refused by name)
    caplog.set_level(logging.ERROR, logger="research")
    assert train_lib.main(["--config", "smoke", "--workdir", str(tmp_path / "run"), "--set",
                           f"voc_root={voc_root}", "--set", "train_subset=train_aug",
                           "--set", "batch_size=6"]) == 1
    assert any("the train_aug split has 5 images, fewer than one step's 6 (batch_size x accumulate_steps)" in error
               for error in command_line_errors(caplog, capsys))
    # a VOC val id in train_aug.txt stops training: never a silent leak
    voc_files.write_split(voc_root, "train_aug", sbd_files.TRAIN_AUG + ["d"])
    caplog.clear()
    assert train_lib.main(["--config", "smoke", "--workdir", str(tmp_path / "run2"), "--set",
                           f"voc_root={voc_root}", "--set", "train_subset=train_aug"]) == 1
    assert any("would leak evaluation images into training" in error for error in command_line_errors(caplog, capsys))


def test_show_batch_takes_train_aug(data, tmp_path, capsys):
    _, voc_root = data
    main = show_batch.main
    out = str(tmp_path / "batch.png")
    assert main(["--voc-root", voc_root, "--out", out, "--subset", "train_aug", "--batch-size", "2",
                 "--input-size", "32", "--warm-batches", "1"]) == 0
    assert "train_aug 5" in capsys.readouterr().out and os.path.isfile(out)
