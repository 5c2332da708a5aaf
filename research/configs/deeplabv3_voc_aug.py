"""The published recipe: DeepLab v3 (ResNet-50, OS16) on VOC 2012 + SBD (`train_aug`).

What the papers and reference implementations train, rather than the book's recipe
(`deeplabv3_voc`): the 10,582-image `train_aug` list (VOC train + SBD train/val, minus VOC
val), SGD with momentum 0.9 and weight decay 1e-4 on conv kernels, a poly learning rate
(power 0.9) from 0.01 at batch 16 after a short linear warmup, 30k iterations, random
scale 0.5-2.0 then a 513 x 513 crop padded with the mean (image) and the ignore label
(mask), flip, plain cross-entropy, training at output stride 16 and evaluating at
output stride 8 at each image's full resolution.

Expectations on a GPU (NOT measured here; this project has had no GPU): mIoU on
VOC 2012 val (all 1,449 images; this project's `val` and `test` subsets are its two
halves, so evaluate both):
  - DeepLab v3 paper (Chen et al. 2017), ResNet-101, OS16, single scale: 77.2
    (OS8 evaluation, which this config does, added about 1.3 there);
  - mmsegmentation DeepLab v3 R50-D8, 512 x 512 crops: 76.17 (77.42 with multi-scale +
    flip test-time augmentation: `research.evaluate --flip --scales 0.5,0.75,1,1.25,1.5,1.75`);
  - TF Model Garden DeepLab v3, dilated ResNet-101: 78.7.
This config's ResNet-50 with Keras' ImageNet weights is closest to the mmsegmentation
row (theirs has a deep stem, "D8", and SyncBN over 4-8 GPUs); expect the mid 70s. The
book's recipe on VOC train alone reports 62.

One GPU with batch 16 of 513 px crops needs about 20-40 GB at float32 (mixed precision,
the GPU default, about half). Differences from the references: synchronized BatchNorm
only across this run's replicas (`--set distribute=mirrored`), colour jitter on top
(the pipeline's augmentation always has it).
"""
from research.config import Config


def get_config():
    return Config(
        name="deeplabv3_voc_aug",
        voc_root="data/VOCdevkit/VOC2012",
        train_subset="train_aug",
        model="deeplab_v3",
        output_stride=16,
        eval_output_stride=8,
        weights="imagenet",
        input_size=(513, 513),
        resize_to_before_crop=None,            # scale from each image's own size
        scale_range=(0.5, 2.0),
        batch_size=16,
        eval_batch_size=8,
        ce_weight=1.0,                         # the papers' plain cross-entropy
        dice_weight=0.0,
        class_weighted=False,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=1e-4,
        learning_rate=0.01,
        lr_schedule="poly",
        poly_power=0.9,
        warmup_steps=500,
        epochs=30,                             # 30 x 1000 = 30k iterations, val every 1000
        steps_per_epoch=1000,
        monitor="val_mean_iou",
        early_stop_patience=1000,              # a fixed budget: never stop early
        checkpoint_every_steps=1000,
        final_eval_full_resolution=True,
    )
