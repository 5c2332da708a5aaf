"""`make demo`: DeepLab v3 trained from scratch on the embedded VOC-format dataset.

Sized to finish on 2 CPU cores in about ten minutes: small inputs, few epochs, no
ImageNet weights (they cannot be downloaded on the project's machines).
"""
from research.config import Config


def get_config():
    return Config(
        name="demo",
        voc_root="data/synthetic/VOCdevkit/VOC2012",
        model="deeplab_v3",
        output_stride=16,
        weights=None,
        input_size=(128, 128),
        resize_to_before_crop=(148, 148),
        batch_size=8,
        eval_batch_size=8,
        learning_rate=1e-3,
        epochs=8,
        plateau_patience=2,
        early_stop_patience=4,
        checkpoint_every_steps=100,
        log_every_steps=10,
    )
