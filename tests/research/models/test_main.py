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
    rows = {line[:40].strip(): line[40:].split() for line in lines[1:]}
    # The FLOPs columns (257 and 513 px) come before the shape.
    rows = {label: values[:3] + values[5:] for label, values in rows.items()}
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


def test_summary_lists_mobilenet_v2_with_flops(capsys):
    main(["--summary", "--input-size", "64"])
    lines = capsys.readouterr().out.splitlines()
    assert "GFLOPs@257" in lines[0] and "GFLOPs@513" in lines[0]
    rows = {line[:40].strip(): line[40:].split() for line in lines[1:]}
    # Keras' MobileNetV2 1.0 without top is 2,257,984 parameters; the DeepLab backbone
    # leaves out its Conv_1 (320*1280) and Conv_1_bn (4*1280): 1,843,264. Light head:
    # 1x1 320*256 + pool 320*256 + projection 512*256 + BN 3*4*256 + classifier 256*21+21.
    total, _, _, gflops_257, gflops_513, *_ = rows["deeplab_v3 mobilenet_v2 light (OS16)"]
    assert total == f"{1_843_264 + 2 * 320 * 256 + 512 * 256 + 3 * 4 * 256 + 256 * 21 + 21:,}"
    # About 4x the pixels, about 4x the FLOPs; OS8 costs more than OS16.
    assert 3.5 < float(gflops_513) / float(gflops_257) < 4.5
    assert float(rows["deeplab_v3 mobilenet_v2 light (OS8)"][3]) > float(gflops_257)
    assert float(rows["deeplab_v3 mobilenet_v2 aspp (OS16)"][3]) > float(gflops_257)
