"""`python -m research.models`: --help, --summary and --json."""
import contextlib
import io
import json
import os

import pytest

from research.models.__main__ import config_summary, main


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "--summary" in out and "--json" in out


@pytest.fixture(scope="module")
def summary_lines():
    """The --summary table at 64 px, printed once for the tests below (it builds 11 models)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["--summary", "--input-size", "64", "--num-classes", "21"])
    return out.getvalue().splitlines()


def summary_rows(lines):
    """{label: [total, trainable, non-trainable, GFLOPs@257, GFLOPs@513, *shape]}."""
    return {line[:40].strip(): line[40:].split() for line in lines[1:]}


@pytest.mark.slow
def test_summary_prints_parameter_counts(summary_lines):
    rows = summary_rows(summary_lines)
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
    # DeepLab v3+ adds the decoder: 1x1 256*48 (conv2's 256 channels) + 3x3 9*(256+48)*256
    # + 3x3 9*256*256 = 1,302,528 conv weights, BN 4 x (48+256+256) = 2,240 (half of them
    # moving statistics): 40,436,053, of which 56,192 + 1,120 non-trainable.
    for label in ("deeplab_v3_plus (output stride 16)", "deeplab_v3_plus (output stride 8)"):
        total, trainable, frozen, *shape = rows[label]
        assert (total, trainable, frozen) == ("40,436,053", "40,378,741", "57,312")
        assert " ".join(shape) == "(None, 64, 64, 21)"
    # U-Net decoder by hand, 3x3 convs without bias, (input channels) x 9 x filters:
    # (2048+1024)*9*256 + 256*9*256 + (256+512)*9*128 + 128*9*128 + (128+256)*9*64
    # + 64*9*64 + (64+64)*9*32 + 32*9*32 + 32*9*16 + 16*9*16 = 9,010,944; BN
    # 2 x (256+128+64+32+16) x 4 = 3,968; classifier 16*21 + 21 = 357: with ResNet-50,
    # 32,602,981. Non-trainable: 53,120 + 2 x 496 x 2 = 55,104.
    total, trainable, frozen, *shape = rows["unet"]
    assert (total, trainable, frozen) == ("32,602,981", "32,547,877", "55,104")
    assert " ".join(shape) == "(None, 64, 64, 21)"


@pytest.mark.slow
def test_summary_lists_mobilenet_v2_with_flops(summary_lines):
    assert "GFLOPs@257" in summary_lines[0] and "GFLOPs@513" in summary_lines[0]
    rows = summary_rows(summary_lines)
    # Keras' MobileNetV2 1.0 without top is 2,257,984 parameters; the DeepLab backbone
    # leaves out its Conv_1 (320*1280) and Conv_1_bn (4*1280): 1,843,264. Light head:
    # 1x1 320*256 + pool 320*256 + projection 512*256 + BN 3*4*256 + classifier 256*21+21.
    total, _, _, gflops_257, gflops_513, *_ = rows["deeplab_v3 mobilenet_v2 light (OS16)"]
    assert total == f"{1_843_264 + 2 * 320 * 256 + 512 * 256 + 3 * 4 * 256 + 256 * 21 + 21:,}"
    # About 4x the pixels, about 4x the FLOPs; OS8 costs more than OS16.
    assert 3.5 < float(gflops_513) / float(gflops_257) < 4.5
    assert float(rows["deeplab_v3 mobilenet_v2 light (OS8)"][3]) > float(gflops_257)
    assert float(rows["deeplab_v3 mobilenet_v2 aspp (OS16)"][3]) > float(gflops_257)
    # v3+ on MobileNetV2: block 2's 24 channels projected to 48, then the same decoder.
    v3 = int(rows["deeplab_v3 mobilenet_v2 aspp (OS16)"][0].replace(",", ""))
    v3_plus = int(rows["deeplab_v3_plus mobilenet_v2 (OS16)"][0].replace(",", ""))
    assert v3_plus - v3 == 24 * 48 + 9 * (256 + 48) * 256 + 9 * 256 * 256 + 4 * (48 + 256 + 256)
    # The decoder's 3x3 convs run at stride 4: 256 * 304 * 9 + 256 * 256 * 9 multiply-adds
    # per stride-4 pixel, 65 x 65 of them at 257 px (SAME padding: ceil(257 / 4)).
    decoder_gflops = 2 * 65 * 65 * 9 * 256 * (304 + 256) / 1e9
    added = float(rows["deeplab_v3_plus mobilenet_v2 (OS16)"][3]) - float(rows["deeplab_v3 mobilenet_v2 aspp (OS16)"][3])
    assert added == pytest.approx(decoder_gflops, abs=0.1)


def test_json_has_every_asked_config_with_provenance(tmp_path, capsys):
    path = tmp_path / "zoo" / "models.json"
    main(["--json", str(path), "--configs", "smoke", "demo_v3plus"])
    assert capsys.readouterr().out.strip() == f"result: {path}"
    summary = json.loads(path.read_text())
    assert os.listdir(path.parent) == ["models.json"]                     # atomic: no temporaries
    provenance = summary["provenance"]
    assert set(provenance) == {"machine", "tensorflow", "commit", "date", "command"}
    assert provenance["command"] == f"python -m research.models --json {path} --configs smoke demo_v3plus"
    assert provenance["machine"] and provenance["tensorflow"].count(".") >= 1
    rows = {row["config"]: row for row in summary["rows"]}
    assert set(rows) == {"smoke", "demo_v3plus"}
    plus = rows["demo_v3plus"]
    assert (plus["model"], plus["backbone"], plus["head"], plus["input_size"]) == (
        "deeplab_v3_plus", "resnet50", "aspp", [128, 128])
    # `demo` (2,878,997 parameters) plus the decoder over conv2's 64 channels, 128-channel
    # 3x3 convs (the demo's aspp_filters): 64*48 + 9*(128+48)*128 + 9*128*128 + 4*(48+128+128).
    decoder = 64 * 48 + 9 * (128 + 48) * 128 + 9 * 128 * 128 + 4 * (48 + 128 + 128)
    assert plus["parameters"] == 2_878_997 + decoder
    assert plus["gflops"] > 0 and plus["gflops_eval"] is None and plus["bn_policy"] == "sync"


def test_config_summary_counts_eval_output_stride_and_frozen_batchnorm():
    from research.configs import load_config

    smoke = load_config("smoke")
    row = config_summary(smoke.replace(eval_output_stride=8))
    assert row["gflops_eval"] > row["gflops"] > 0                  # OS8 costs more than OS16
    frozen = config_summary(smoke.replace(bn_policy="frozen"))
    assert frozen["parameters"] == row["parameters"]
    assert frozen["trainable"] < row["trainable"]   # gamma, beta
    unet = config_summary(smoke.replace(model="unet"))
    assert unet["head"] is unet["output_stride"] is unet["eval_output_stride"] is None
