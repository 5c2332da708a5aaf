"""The DeepLab v3+ paper's recipe: ResNet-50 DeepLab v3+ (OS16) on VOC 2012 + SBD (`train_aug`).

DeepLab v3+ (Chen et al. 2018) trains as DeepLab v3 does (`deeplabv3_voc_aug`, whose
recipe this one takes unchanged otherwise): the 10,582-image `train_aug` list, 513 x 513
crops after a random 0.5-2.0 scale with flips, batch 16, SGD with momentum 0.9 and weight
decay 1e-4, a poly learning rate (power 0.9) for 30k iterations, BatchNorm trained
("fine-tuned") at output stride 16, evaluation at output stride 8 at each image's full
resolution. The paper's initial learning rate is 0.007 (`deeplabv3_voc_aug` keeps
mmsegmentation's 0.01). The decoder: the ASPP output upsampled x4 and concatenated with
conv2's 256-channel output projected to 48 channels, two 3x3 convs of 256, the
classifier, upsampled x4 (`research.models.deeplab_v3_plus`).

Differences from the paper: ResNet-50 with Keras' ImageNet weights (the paper: ResNet-101
and Xception-65, pretrained on ImageNet and, for its best numbers, COCO and JFT); plain
3x3 convolutions in the decoder (the Xception model's separable ones are its speed
variant); no multi-grid.

Expectations on a GPU (NOT measured here; this project has had no GPU): mmsegmentation's
DeepLab v3+ R50-D8 (output stride 8 in training, deep stem, SyncBN over 4 GPUs), 512 x 512
crops on VOC 2012 + aug, mIoU on val: 75.93 after 20k iterations (77.50 with multi-scale +
flip test-time augmentation), 76.81 after 40k (their DeepLab v3 row is quoted in
`deeplabv3_voc_aug`). This config's ResNet-50 v1 at output stride 16 is closest to those rows.

Memory: as `deeplabv3_voc_aug` plus the decoder's stride-4 activations (about 20-40 GB at
float32 for batch 16 of 513 px crops on one GPU). Where the batch does not fit, train a
smaller batch with BatchNorm frozen at the ImageNet statistics (`--set bn_policy=frozen`):
statistics of 2-4 crops are too noisy to train BatchNorm with.
"""
from research.configs import deeplabv3_voc_aug


def get_config():
    return deeplabv3_voc_aug.get_config().replace(
        name="deeplabv3plus_voc",
        model="deeplab_v3_plus",
        learning_rate=0.007,
    )
