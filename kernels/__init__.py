"""Performance kernels for segmentation training: each has a plain `reference_*` twin.

- `atrous_conv2d`, `AtrousConv2D`: exact, fast dilated 3x3 convolution (kernels/atrous.py)
- `ce_dice_loss`: fused class-weighted cross-entropy + dice loss (kernels/losses.py)
- `confusion_matrix`, `segmentation_metrics`: exact, XLA-compatible metrics (kernels/confusion.py)
"""
from kernels.atrous import AtrousConv2D, atrous_conv2d, reference_atrous_conv2d
