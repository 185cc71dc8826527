"""The command line: data generation/validation and clear one-line errors, no tracebacks."""

import json

from mcit.cli import main


def test_data_generate_then_validate(tmp_path, capsys):
    out = tmp_path / "cm"
    assert (
        main(
            [
                "data",
                "generate",
                "coin-mini",
                "--out",
                str(out),
                "--size",
                "6,3",
                "--order",
                "gqa,vizwiz",
            ]
        )
        == 0
    )
    assert json.loads((out / "gqa" / "train.json").read_text())[0]["conversations"][0][
        "value"
    ].startswith("<image>\n")
    assert main(["data", "validate", str(out)]) == 0
    report = capsys.readouterr().out
    assert "gqa" in report and "vizwiz" in report


def test_validate_names_file_record_and_field(tmp_path, capsys):
    out = tmp_path / "cm"
    main(["data", "generate", "coin-mini", "--out", str(out), "--size", "6,3", "--order", "gqa"])
    train = out / "gqa" / "train.json"
    records = json.loads(train.read_text())
    records[2]["conversations"][1]["value"] = ""
    del records[4]["image"]
    train.write_text(json.dumps(records))
    assert main(["data", "validate", str(out)]) == 2  # as `mcit run` exits for bad data
    report = capsys.readouterr().out
    assert "train.json" in report
    assert "record index 2" in report and "conversations[1].value" in report
    assert "record index 4" in report


def test_run_with_bad_config_is_one_clear_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  lr: fast\n")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mcit run: error:") and str(config) in err and "train.lr" in err
    assert "Traceback" not in err


def test_run_with_unknown_method_and_missing_benchmark(tmp_path, capsys):
    assert main(["run", "method.name=nope", f"output_dir={tmp_path}"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["run", f"data.benchmark={tmp_path / 'missing'}", f"output_dir={tmp_path}"]) == 2
    assert "not a registered benchmark" in capsys.readouterr().err
