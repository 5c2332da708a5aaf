"""`python -m research.models`: --help and --summary."""
import pytest

from research.models.__main__ import main


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    assert "--summary" in capsys.readouterr().out


def test_summary_prints_parameter_counts(capsys):
    main(["--summary", "--input-size", "64", "--num-classes", "21"])
    lines = capsys.readouterr().out.splitlines()
    rows = {line[:30].strip(): line[30:].split() for line in lines[1:]}
    # DeepLab v3 by hand: ResNet-50 without top 23,587,712 (keras.applications), plus
    # ASPP: 1x1 2048*256 + three 3x3 9*2048*256 + pool 1x1 2048*256 + projection
    # 1280*256 = 15,532,032 conv weights (no biases), BN 6 x 4 x 256 = 6,144, classifier
    # 256*21 + 21 = 5,397: 39,131,285. Non-trainable: BN moving statistics,
    # 53,120 in ResNet-50 and 3,072 in the head.
    for label in ("deeplab_v3 (output stride 16)", "deeplab_v3 (output stride 8)"):
        total, trainable, frozen, *shape = rows[label]
        assert (total, trainable, frozen) == ("39,131,285", "39,075,093", "56,192")
        assert " ".join(shape) == "(None, 64, 64, 21)"
    # U-Net decoder by hand, 3x3 convs without bias, (input channels) x 9 x filters:
    # (2048+1024)*9*256 + 256*9*256 + (256+512)*9*128 + 128*9*128 + (128+256)*9*64
    # + 64*9*64 + (64+64)*9*32 + 32*9*32 + 32*9*16 + 16*9*16 = 9,010,944; BN
    # 2 x (256+128+64+32+16) x 4 = 3,968; classifier 16*21 + 21 = 357: with ResNet-50,
    # 32,602,981. Non-trainable: 53,120 + 2 x 496 x 2 = 55,104.
    total, trainable, frozen, *shape = rows["unet"]
    assert (total, trainable, frozen) == ("32,602,981", "32,547,877", "55,104")
    assert " ".join(shape) == "(None, 64, 64, 21)"
