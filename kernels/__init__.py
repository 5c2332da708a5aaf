"""Performance kernels for segmentation training, each beside a plain twin it is tested
against: a `reference_*` function here, or the Keras class it replaces
(`keras.layers.BatchNormalization`, `keras.optimizers.Adam` and `SGD`).

- `atrous_conv2d`, `AtrousConv2D`: exact, fast dilated convolution, stride 1, SAME
  padding (kernels/atrous.py)
- `FusedBatchNormalization`: `keras.layers.BatchNormalization` (its reference twin)
  through TF's fused batch-norm kernels, same variables and results (kernels/batchnorm.py)
- `ce_dice_loss`, `loss_normalizers`: fused class-weighted cross-entropy + dice loss with
  an analytic gradient, and its cross-replica normalizers (kernels/losses.py)
- `confusion_matrix`, `segmentation_metrics`, `StreamingConfusionMatrix`: exact,
  XLA-compatible int64 confusion matrix, its summary metrics, and a tf.distribute-aware
  accumulator (kernels/confusion.py)
- `RecomputingConv2D`: `keras.layers.Conv2D` whose backward recomputes its input
  ReLU(BatchNorm(x)) from x instead of keeping it (kernels/recompute.py;
  `AtrousConv2D(recompute_input=True)` and `RecomputingMaxPooling2D` do the same)
- `branch_link`, `BranchLink`: parallel branches reading one tensor, their backward
  passes run one at a time with a running sum of its gradient (kernels/ordering.py)
- `FusedAdam`, `FusedSGD`: Keras' Adam and SGD (momentum) with each variable's update
  in one TF kernel; same variables and checkpoints (kernels/optimizers.py)

The import name `kernels` clashes with the PyPI package of that name; do not install
both in one environment.
"""
from kernels.atrous import AtrousConv2D, atrous_conv2d, reference_atrous_conv2d
from kernels.batchnorm import FusedBatchNormalization
from kernels.confusion import (StreamingConfusionMatrix, confusion_matrix,
                               reference_confusion_matrix, segmentation_metrics)
from kernels.losses import ce_dice_loss, loss_normalizers, reference_ce_dice_loss
from kernels.optimizers import FusedAdam, FusedSGD
from kernels.ordering import BranchLink, branch_link, reference_branch_link
from kernels.recompute import RecomputingConv2D, RecomputingMaxPooling2D

__all__ = [
    "AtrousConv2D", "atrous_conv2d", "reference_atrous_conv2d",
    "FusedBatchNormalization",
    "StreamingConfusionMatrix", "confusion_matrix", "reference_confusion_matrix",
    "segmentation_metrics",
    "ce_dice_loss", "loss_normalizers", "reference_ce_dice_loss",
    "FusedAdam", "FusedSGD",
    "BranchLink", "branch_link", "reference_branch_link",
    "RecomputingConv2D", "RecomputingMaxPooling2D",
]
