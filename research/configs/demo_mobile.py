"""`demo` on the mobile backbone: MobileNetV2 DeepLab v3 from scratch on the embedded dataset.

The demo's data, input size and schedule, with the full MobileNetV2 depth at width
multiplier 0.5 (backbone_width 16: first convolution 16 channels, features 160) and the
light head: the model that `scripts/tflite_report.py` trains, exports
and measures on the device path. BatchNorm momentum 0.9 for the same reason as `demo`.
"""
from research.configs import demo


def get_config():
    return demo.get_config().replace(
        name="demo_mobile",
        backbone="mobilenet_v2",
        backbone_blocks=(1, 2, 3, 4, 3, 3, 1),
        backbone_width=16,
        head="light",
        # The budget of the device tables (scripts/tflite_report.py): 6 x 300 steps, the
        # best model exported for conversion.
        aspp_filters=256,
        epochs=6,
        steps_per_epoch=300,
        export_best=True,
    )
