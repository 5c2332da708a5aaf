"""The book's recipe on the mobile backbone: DeepLab v3 (OS16) on an ImageNet MobileNetV2.

As `deeplabv3_voc` (same data, crops and schedule), with MobileNetV2 at width multiplier
1.0 (Keras' ImageNet no-top file) and the DeepLab model zoo's light head (1x1 branch and
image pooling, no atrous branches), the configuration the zoo ships for phones; export it
with `python -m research.export_tflite`.
"""
from research.configs import deeplabv3_voc


def get_config():
    return deeplabv3_voc.get_config().replace(
        name="deeplabv3_mobilenetv2_voc",
        backbone="mobilenet_v2",
        backbone_blocks=(1, 2, 3, 4, 3, 3, 1),
        backbone_width=32,
        head="light",
    )
