"""`make demo`: DeepLab v3 trained from scratch on the embedded VOC-format dataset.

Sized to finish on 2 CPU cores in about ten minutes: 128 px inputs, and a slimmer
ResNet backbone (2 blocks per stage, base width 32; the same DeepLab v3 architecture:
dilated conv5, ASPP at rates 6/12/18, output stride 16) trained from scratch, because
ImageNet weights cannot be downloaded on the project's machines and the full ResNet-50
gets only ~250 steps in ten minutes here. BatchNorm momentum 0.9: with Keras' 0.99
the moving statistics of such a short from-scratch run describe a network that no
longer exists, and inference predicts background everywhere (measured: val mean IoU
0.037 with 0.99 against 0.39 with 0.9 after the same 22 epochs).
"""
from research.config import Config


def get_config():
    return Config(
        name="demo",
        voc_root="data/synthetic/VOCdevkit/VOC2012",
        model="deeplab_v3",
        output_stride=16,
        weights=None,
        backbone_blocks=(2, 2, 2, 2),
        backbone_width=32,
        bn_momentum=0.9,
        input_size=(128, 128),
        resize_to_before_crop=(148, 148),
        batch_size=8,
        eval_batch_size=8,
        learning_rate=1e-3,
        epochs=25,
        plateau_patience=3,
        early_stop_patience=6,
        checkpoint_every_steps=100,
        log_every_steps=10,
    )
