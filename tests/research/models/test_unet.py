"""U-Net on reduced encoders: shapes (odd sizes too), skips, arguments."""
import keras
import pytest

from research.models import unet
from tests.research.models.conftest import TINY, random_images

HEAD = dict(num_classes=3, decoder_filters=(16, 12, 8, 8, 4))


@pytest.fixture(scope="module")
def tiny_unet():
    return unet(**HEAD, **TINY)


@pytest.mark.parametrize("height, width", [(64, 64), (96, 64), (72, 56), (65, 47), (33, 31)])
def test_logits_have_the_input_size(tiny_unet, height, width):
    logits = tiny_unet(random_images(2, height, width, 3))
    assert logits.shape == (2, height, width, 3)
    assert logits.dtype == "float32"


def test_decoder_concatenates_the_encoder_skips_from_stride_16_to_2(tiny_unet):
    skips = ["conv4_block1_out", "conv3_block1_out", "conv2_block1_out", "conv1_relu"]
    for index, skip in enumerate(skips, start=1):
        concat_inputs = tiny_unet.get_layer(f"decoder{index}_concat").input
        assert concat_inputs[1] is tiny_unet.get_layer(skip).output
    names = {layer.name for layer in tiny_unet.layers}
    assert "decoder5_upsample" in names and "decoder5_concat" not in names
    probe = keras.Model(tiny_unet.input, [tiny_unet.get_layer(f"decoder{i}_2_relu").output
                                          for i in range(1, 6)])
    sizes = [tuple(t.shape[1:]) for t in probe(random_images(1, 72, 56, 3))]
    assert sizes == [(5, 4, 16), (9, 7, 12), (18, 14, 8), (36, 28, 8), (72, 56, 4)]


def test_decoder_filters_need_five_entries():
    with pytest.raises(ValueError, match="decoder_filters"):
        unet(decoder_filters=(64, 32, 16, 8), **TINY)
