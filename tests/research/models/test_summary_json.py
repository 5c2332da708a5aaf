"""`python -m research.models --json`: one row per named config, with its provenance."""
from research import results
from research.docs import result_tables
from research.models.__main__ import main


def test_json_saves_a_row_per_named_config(tmp_path, monkeypatch, capsys):
    from research import configs

    monkeypatch.setattr(configs, "NAMED_CONFIGS", {"smoke": configs.NAMED_CONFIGS["smoke"]})
    path = str(tmp_path / "models.json")
    main(["--json", path])
    assert capsys.readouterr().out.strip() == f"result: {path}"      # no --summary: nothing else
    saved = results.read_results(path)
    assert saved["provenance"]["command"] == f"python -m research.models --json {path}"
    (row,) = saved["rows"]
    assert row["config"] == "smoke" and row["input_size"] == [32, 32] and row["output_stride"] == 16
    assert row["parameters"] == row["trainable"] + row["non_trainable"] > 0
    assert 0 < row["gflops"] < 1
    assert "| `smoke` | deeplab_v3 | resnet50 | aspp | 16 | 32x32 |" in result_tables.models_table(saved)
