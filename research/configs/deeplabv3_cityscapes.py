"""The reference recipe: DeepLab v3 (ResNet-50) on Cityscapes, fine annotations, 19 classes.

Data: `python scripts/prepare_cityscapes.py --cityscapes-root data/cityscapes --out
data/cityscapes_folder` turns the release (leftImg8bit/ + gtFine/) into the folder
dataset this config reads (2,975 train images; the 500 val images are this project's
`val` and `test` subsets, halves of Cityscapes val: evaluate both, their confusion
matrices in metrics.json add up to the whole set).

Recipe, after mmsegmentation's `deeplabv3_r50-d8_769x769_80k_cityscapes`: each
2048 x 1024 photo scaled by a random factor in 0.5-2.0, a 769 x 769 random crop
(padded with the mean and the ignore label), flip; batch 8 (theirs: 2 per GPU on 4
GPUs); SGD with momentum 0.9 and weight decay 5e-4, a poly learning rate (power 0.9)
from 0.01, 80k iterations; plain cross-entropy. The final evaluation runs on val at full
resolution with a sliding window of 769 x 769 every 513 pixels (their test setting),
at output stride 8.

Published numbers, Cityscapes val, NOT measured here (this project has had no GPU):
  - mmsegmentation DeepLab v3 R-50-D8, 769 x 769, 80k iterations: 79.89 mIoU
    (81.06 with multi-scale + flip test-time augmentation); 512 x 1024 crops: 79.32
    (80.57);
  - DeepLab v3 paper (Chen et al. 2017), ResNet-101: 81.3 on the Cityscapes test
    server, trained with the coarse annotations as well.
Differences from the references: training at output stride 16 and evaluating at 8
(the paper's practice; mmsegmentation's "D8" trains at 8), Keras' ImageNet ResNet-50
(theirs has a deep stem) without their auxiliary FCN head, the poly schedule decays to 0
(theirs to 1e-4), no "at most 75 % of a crop is one class" rule in the crop, colour
jitter instead of their photometric distortion, BatchNorm synchronized only across this
run's replicas. One GPU with 8 crops of 769 px needs about 30-40 GB at float32.
"""
from research.config import Config
from research.configs.schedule_80k import schedule_80k_fields


def get_config():
    return Config(
        name="deeplabv3_cityscapes",
        dataset="folder",
        data_root="data/cityscapes_folder",
        num_classes=19,
        model="deeplab_v3",
        output_stride=16,
        eval_output_stride=8,
        weights="imagenet",
        input_size=(769, 769),
        batch_size=8,
        eval_batch_size=4,
        eval_window=(769, 769),
        eval_stride=(513, 513),
        **schedule_80k_fields(),
    )
