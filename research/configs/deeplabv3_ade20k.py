"""The reference recipe: DeepLab v3 (ResNet-50) on ADE20K (SceneParsing), 150 classes.

Data: `python scripts/prepare_ade20k.py --ade-root data/ADEChallengeData2016 --out
data/ade20k_folder` turns the release into the folder dataset this config reads (0,
"other objects", becomes the ignore label; 1..150 become 0..149; 20,210 train images;
the 2,000 validation images are this project's `val` and `test` subsets, its halves:
evaluate both, their confusion matrices in metrics.json add up to the whole set).

Recipe, after mmsegmentation's `deeplabv3_r50-d8_512x512_80k_ade20k`: each image scaled
by a random factor in 0.5-2.0, a 512 x 512 random crop (padded with the mean and the
ignore label), flip; batch 16 (theirs: 4 per GPU on 4 GPUs); SGD with momentum 0.9 and
weight decay 5e-4, a poly learning rate (power 0.9) from 0.01, 80k iterations; plain
cross-entropy. The final evaluation runs on val at each image's own size with a sliding
window of 512 x 512 every 342 pixels, at output stride 8.

Published numbers, ADE20K val (2,000 images), NOT measured here (this project has had
no GPU):
  - mmsegmentation DeepLab v3 R-50-D8, 512 x 512, 80k iterations: 42.42 mIoU (43.28
    with multi-scale + flip test-time augmentation); 160k iterations: 42.66 (44.09).
Differences from the reference: their scale jitter starts from each image resized to
fit 2048 x 512 and they evaluate the whole image at that size (here: the image's own
size and a sliding window, since whole-image evaluation resizes to a square); training
at output stride 16 and evaluating at 8 ("D8" trains at 8); Keras' ImageNet ResNet-50
without their auxiliary FCN head; the poly schedule decays to 0 (theirs to 1e-4); colour
jitter instead of their photometric distortion. One GPU with 16 crops of 512 px needs
about 30-40 GB at float32.
"""
from research.config import Config
from research.configs.schedule_80k import schedule_80k_fields


def get_config():
    return Config(
        name="deeplabv3_ade20k",
        dataset="folder",
        data_root="data/ade20k_folder",
        num_classes=150,
        model="deeplab_v3",
        output_stride=16,
        eval_output_stride=8,
        weights="imagenet",
        input_size=(512, 512),
        batch_size=16,
        eval_batch_size=8,
        eval_window=(512, 512),
        eval_stride=(342, 342),
        **schedule_80k_fields(),
    )
