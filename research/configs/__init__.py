"""Named configs: plain Python functions returning a `research.config.Config`.

The mapping below is the whole list; add a module and a line to add a config.
"""
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
