"""A tiny run for tests: reduced ResNet, 32 px inputs, a few steps per epoch."""
from research.config import Config


def get_config():
    return Config(
        name="smoke",
        voc_root="data/synthetic/VOCdevkit/VOC2012",
        model="deeplab_v3",
        weights=None,
        backbone_blocks=(1, 1, 1, 1),
        backbone_width=8,
        input_size=(32, 32),
        resize_to_before_crop=(40, 40),
        batch_size=2,
        eval_batch_size=2,
        learning_rate=1e-3,
        epochs=2,
        steps_per_epoch=3,
        eval_steps=2,
        checkpoint_every_steps=2,
        log_every_steps=1,
        tensorboard_images=1,
        precision="float32",
        jit_compile=False,
    )
