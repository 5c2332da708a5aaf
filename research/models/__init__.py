"""Segmentation models: DeepLab v3, DeepLab v3+ and U-Net (Keras 3 functional).

All map float32 RGB images [B, H, W, 3] in [0, 255] to float32 logits
[B, H, W, num_classes]; the model's first layer does the input preprocessing.

- `deeplab_v3(...)`, `deeplab_v3_plus(...)`: research/models/deeplab_v3.py
- `unet(...)`: research/models/unet.py
- `PretrainedWeightsError`: raised when `weights="imagenet"` or a weights path cannot be
  used (research/models/weights.py)

Importing this package registers the custom layers (`research>Preprocessing`,
`research>ResizeLike`, and via `kernels`, `kernels>AtrousConv2D` and
`kernels>FusedBatchNormalization`) for `keras.saving`.
"""
from research.models.deeplab_v3 import deeplab_v3, deeplab_v3_plus
from research.models.unet import unet
from research.models.weights import PretrainedWeightsError

__all__ = ["deeplab_v3", "deeplab_v3_plus", "unet", "PretrainedWeightsError"]
