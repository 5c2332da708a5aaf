"""The book's recipe: DeepLab v3 (OS16) on an ImageNet ResNet-50, Pascal VOC 2012.

384 x 384 random crops from 444 x 444 resizes with flip and colour jitter, Adam,
25 epochs, LR x0.1 after 3 epochs without val-loss improvement, early stop after 6.
"""
from research.config import Config


def get_config():
    return Config(
        name="deeplabv3_voc",
        voc_root="data/VOCdevkit/VOC2012",
        model="deeplab_v3",
        output_stride=16,
        weights="imagenet",
        input_size=(384, 384),
        resize_to_before_crop=(444, 444),
        batch_size=8,
        eval_batch_size=8,
        learning_rate=1e-4,
        epochs=25,
        monitor="val_loss",
        plateau_patience=3,
        plateau_factor=0.1,
        early_stop_patience=6,
    )
