"""The book's U-Net baseline: ResNet-50 encoder (ImageNet), same data and schedule as DeepLab v3."""
from research.configs import deeplabv3_voc


def get_config():
    return deeplabv3_voc.get_config().replace(name="unet_voc", model="unet")
