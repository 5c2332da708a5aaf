"""Named configs: plain Python functions returning a `research.config.Config`.

The mapping below is the whole list; add a module and a line to add a config.
`load_config(name_or_path)` is what the command lines call: a name of this list, or a
JSON config file (`research.config.load_config_file`).
"""
import os

from research import config as config_lib
from research.configs import (deeplabv3_ade20k, deeplabv3_cityscapes, deeplabv3_mobilenetv2_voc,
                              deeplabv3_voc, deeplabv3_voc_aug, deeplabv3plus_voc, demo, demo_mobile,
                              demo_v3plus, smoke, unet_voc)

NAMED_CONFIGS = {
    "deeplabv3_voc": deeplabv3_voc.get_config,
    "deeplabv3_voc_aug": deeplabv3_voc_aug.get_config,
    "deeplabv3_mobilenetv2_voc": deeplabv3_mobilenetv2_voc.get_config,
    "deeplabv3_cityscapes": deeplabv3_cityscapes.get_config,
    "deeplabv3_ade20k": deeplabv3_ade20k.get_config,
    "deeplabv3plus_voc": deeplabv3plus_voc.get_config,
    "unet_voc": unet_voc.get_config,
    "demo": demo.get_config,
    "demo_mobile": demo_mobile.get_config,
    "demo_v3plus": demo_v3plus.get_config,
    "smoke": smoke.get_config,
}


def load_config(name_or_path):
    """A checked `Config`: the named config `name_or_path`, or the JSON file at that path.

    Raises ValueError for a name that is neither listed nor a path to a .json file (the
    message lists the names), and what `research.config.load_config_file` raises for a
    file (missing, not JSON, unknown keys, bad values: each naming the file).
    """
    if name_or_path in NAMED_CONFIGS:
        return config_lib.check_config(NAMED_CONFIGS[name_or_path]())
    if name_or_path.endswith(".json") or os.path.sep in name_or_path:
        return config_lib.load_config_file(name_or_path)
    raise ValueError(f"unknown config {name_or_path!r}: use one of "
                     f"{', '.join(sorted(NAMED_CONFIGS))} or a path to a .json file")
