"""Configs: named configs load, JSON files are data, overrides are type-checked."""
import json

import pytest

from research import config as config_lib
from research import configs


@pytest.mark.parametrize("name", sorted(configs.NAMED_CONFIGS))
def test_named_configs_are_valid(name):
    config = configs.load_config(name)
    assert config.name == name
    assert config.monitor in ("val_loss", "val_mean_iou")


def test_book_recipe_values():
    config = configs.load_config("deeplabv3_voc")
    assert config.input_size == (384, 384) and config.resize_to_before_crop == (444, 444)
    assert (config.epochs, config.plateau_patience, config.early_stop_patience) == (25, 3, 6)
    assert config.plateau_factor == 0.1 and config.monitor == "val_loss"
    assert configs.load_config("unet_voc").model == "unet"


def test_overrides_parse_json_and_strings():
    config = config_lib.apply_overrides(
        configs.load_config("smoke"),
        ["input_size=[64, 48]", "resize_to_before_crop=[72, 56]", "model=unet", "weights=null",
         "jit_compile=true", "learning_rate=1"])
    assert config.input_size == (64, 48)
    assert config.model == "unet" and config.weights is None and config.jit_compile is True
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)


@pytest.mark.parametrize("override, message", [
    ("bogus=1", "unknown config key 'bogus'"),
    ("batch_size=two", "batch_size must be an integer"),
    ("model=segformer", "model must be one of deeplab_v3, deeplab_v3_plus, unet"),
    ("bn_policy=freeze", "bn_policy must be one of sync, train, frozen"),
    ("output_stride=32", "output_stride must be 8 or 16"),
    ("input_size=[64]", "input_size must be two positive integers"),
    ("augmentation=1", "augmentation must be true or false"),
    ("noequals", "is not key=value"),
    ("aspp_rates=[]", "aspp_rates must be a list of positive integers"),
    ("aspp_rates=[6, 0]", "aspp_rates must be a list of positive integers"),
    ("aspp_rates=[1.5]", "aspp_rates must be a list of positive integers"),
    ("aspp_filters=0", "aspp_filters must be positive"),
    # each of these used to pass, then failed late (NaN loss, a traceback inside tf.data)
    # or silently did something else (0 steps: a full epoch; -1: no step, ckpt-0 rewritten)
    ("learning_rate=NaN", "learning_rate must be a positive number; got nan"),
    ("learning_rate=0", "learning_rate must be a positive number"),
    ("weight_decay=NaN", "weight_decay must be a number >= 0; got nan"),
    ("steps_per_epoch=0", "steps_per_epoch must be a positive integer or null"),
    ("steps_per_epoch=-1", "steps_per_epoch must be a positive integer or null"),
    ("eval_steps=0", "eval_steps must be a positive integer or null"),
    ("plateau_factor=2", r"plateau_factor must be in \(0, 1\]"),
    ("nan_lr_factor=0", r"nan_lr_factor must be in \(0, 1\]"),
    ("tensorboard_images=-3", "tensorboard_images must be a number >= 0"),
    ("min_learning_rate=-1", "min_learning_rate must be a number >= 0"),
    ('profile_steps=["a", 2]', "profile_steps must be \\[first, last\\], integers"),
    ("profile_steps=[5, 2]", "0 <= first <= last"),
    # refused at the start of training before; an ablation grid would find out mid-grid
    ("monitor=val_miou", "monitor 'val_miou' is not a train_log.csv column"),
    ("input_size=[64, 64]", r"resize_to_before_crop \[40, 40\] is smaller than input_size \[64, 64\]"),
    ("resize_to_before_crop=null", "augmentation=true without scale_range needs resize_to_before_crop"),
])
def test_bad_overrides_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        config_lib.apply_overrides(configs.load_config("smoke"), [override])


def test_json_file_round_trip_and_errors(tmp_path):
    config = configs.load_config("demo").replace(batch_size=3)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config.to_dict()))
    assert configs.load_config(str(path)) == config
    # A run's config.json (config + runtime) also loads.
    run = tmp_path / "config.json"
    run.write_text(json.dumps({"config": config.to_dict(), "runtime": {"device": "cpu"}}))
    assert configs.load_config(str(run)) == config
    bad = tmp_path / "bad.json"
    bad.write_text('{"batch_size": 2, "colour": "red"}')
    with pytest.raises(ValueError, match=r"bad.json: unknown config keys: colour"):
        configs.load_config(str(bad))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        configs.load_config(str(broken))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        configs.load_config(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="unknown config 'nope'"):
        configs.load_config("nope")


def test_python_config_files_are_not_executed(tmp_path):
    marker = tmp_path / "executed"
    code = tmp_path / "evil.py"
    code.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    with pytest.raises(ValueError):
        configs.load_config(str(code))
    assert not marker.exists()


def test_resume_differences_ignore_observation_fields():
    a = configs.load_config("smoke")
    b = a.replace(epochs=9, log_every_steps=5)
    assert config_lib.resume_differences(a, b) == []
    c = a.replace(learning_rate=0.5, batch_size=4)
    assert config_lib.resume_differences(a, c) == ["batch_size", "learning_rate"]
    # fewer val batches: the val_* values that LR-on-plateau and early stopping compare
    assert config_lib.resume_differences(a, a.replace(eval_steps=1)) == ["eval_steps"]


def test_monitor_mode():
    config = configs.load_config("smoke")
    assert config_lib.monitor_mode(config) == "min"
    assert config_lib.monitor_mode(config.replace(monitor="val_mean_iou")) == "max"
    assert config_lib.monitor_mode(config.replace(monitor="val_loss", monitor_mode="max")) == "max"


def test_optimizer_impl_is_a_checked_resumable_choice():
    config = configs.load_config("smoke")
    assert config.optimizer_impl == "fused"
    # Both implementations keep the same checkpoint variables: a run may resume with either.
    assert config_lib.resume_differences(config, config.replace(optimizer_impl="keras")) == []
    with pytest.raises(ValueError, match="optimizer_impl must be one of fused, keras"):
        config.replace(optimizer_impl="fast")


@pytest.mark.parametrize("overrides, message", [
    (["dataset=folder"], 'dataset "folder" needs data_root'),
    (["data_root=/x"], 'data_root is read only with dataset "folder"'),
    (["dataset=folder", "data_root=/x", "train_subset=train_aug"], "train_subset 'train_aug' is VOC's"),
    (["dataset=coco"], "dataset must be one of voc, folder"),
    (["eval_mode=tiles"], "eval_mode must be one of whole, slide"),
    (["eval_window=[32]"], "eval_window must be two positive integers"),
    (["eval_stride=[40,8]"], "eval_stride [40, 8] is larger than the window [32, 32]"),
])
def test_data_and_sliding_window_fields_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_lib.apply_overrides(configs.load_config("smoke"), overrides)


def test_runs_saved_before_the_data_fields_load_as_voc():
    data = configs.load_config("smoke").to_dict()
    for name in ("dataset", "data_root", "eval_mode", "eval_window", "eval_stride"):
        del data[name]
    config = config_lib.config_from_dict(data)
    assert (config.dataset, config.data_root, config.eval_mode) == ("voc", None, "whole")
    # How the final evaluation runs may change on resume; which data is read may not.
    changed = config.replace(eval_mode="slide", eval_window=(64, 64), eval_stride=(32, 32))
    assert config_lib.resume_differences(config, changed) == []
    assert config_lib.resume_differences(config, config.replace(voc_root="/elsewhere")) == ["voc_root"]


def test_reference_recipes_for_cityscapes_and_ade20k():
    cityscapes = configs.load_config("deeplabv3_cityscapes")
    assert (cityscapes.dataset, cityscapes.num_classes, cityscapes.input_size) == ("folder", 19, (769, 769))
    assert (cityscapes.eval_mode, cityscapes.eval_window, cityscapes.eval_stride) == ("slide", (769, 769), (513, 513))
    ade = configs.load_config("deeplabv3_ade20k")
    assert (ade.num_classes, ade.input_size, ade.batch_size) == (150, (512, 512), 16)
    for config in (cityscapes, ade):
        assert config.lr_schedule == "poly" and config.epochs * config.steps_per_epoch == 80_000


def test_v3_plus_takes_the_deeplab_fields_and_unet_keeps_its_checks():
    smoke = configs.load_config("smoke")
    mobile = dict(backbone="mobilenet_v2", backbone_blocks=(1,) * 7)
    plus = smoke.replace(model="deeplab_v3_plus", head="light", output_stride=8, eval_output_stride=16, **mobile)
    assert (plus.model, plus.head, plus.backbone) == ("deeplab_v3_plus", "light", "mobilenet_v2")
    with pytest.raises(ValueError, match="backbone mobilenet_v2 is for models deeplab_v3, deeplab_v3_plus only"):
        smoke.replace(model="unet", **mobile)
    with pytest.raises(ValueError, match="head must be one of aspp, light"):
        smoke.replace(model="deeplab_v3_plus", head="none")
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        smoke.replace(model="deeplab_v3_plus", output_stride=4)


def test_bn_policy_defaults_to_sync_and_does_not_change_on_resume():
    config = configs.load_config("smoke")
    assert config.bn_policy == "sync"
    assert all(configs.load_config(name).bn_policy == "sync" for name in configs.NAMED_CONFIGS)
    # "frozen" changes the trainable variables (the optimizer slots a checkpoint holds),
    # every policy what a step computes: not a field a resumed run may change.
    for policy in ("train", "frozen"):
        assert config_lib.resume_differences(config, config.replace(bn_policy=policy)) == ["bn_policy"]
