"""`demo` with the DeepLab v3+ decoder: the same data, backbone, ASPP, schedule and budget.

Only the model differs (`model="deeplab_v3_plus"`): the demo's ResNet (2 blocks per stage,
width 16) gives the decoder conv2's 64-channel stride-4 output (32 x 32 at 128 px),
projected to 48 channels and joined with the ASPP output upsampled x4; the decoder's two
3x3 convs have the ASPP's 128 channels (`aspp_filters`; 256 in the paper, where ASPP has
256 too), so the decoder stays in proportion to the demo's narrow network.
"""
from research.configs import demo


def get_config():
    return demo.get_config().replace(name="demo_v3plus", model="deeplab_v3_plus")
