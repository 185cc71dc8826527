import pytest

from mcit.config import load_config
from mcit.errors import ConfigError


def test_defaults_and_overrides_are_typed():
    config = load_config(
        None,
        ["train.lr=3e-4", "train.epochs=2", "data.order=[a, b]", "model.backbone.tiny={seed: 3}"],
    )
    assert config.train.lr == 3e-4
    assert config.train.epochs == 2.0 and isinstance(config.train.epochs, float)
    assert config.data.order == ["a", "b"]
    assert config.model.backbone.tiny == {"seed": 3}
    assert config.run_name == "coin-mini-finetune-lora"


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 1e-4\n  learning_rate: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "train" in message and "learning_rate" in message


def test_wrong_type_names_the_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"train\.batch_size: 'many' is not a int"):
        load_config(path)


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_unparsable_yaml_is_one_line_with_its_place(tmp_path):
    # PyYAML's own message spans four lines with a caret drawing; the error says it in one.
    with pytest.raises(ConfigError) as err:
        load_config(None, ['method.args={"r": 4'])
    assert str(err.value) == (
        "override 'method.args={\"r\": 4': cannot parse the value "
        "(line 1, column 8: expected ',' or '}', but got '<stream end>')"
    )
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: [1e-4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: invalid YAML (line 3, column 1: expected ',' or ']', but got '<stream end>')"
    )


def test_a_json_config_is_read_as_json(tmp_path):
    # Valid JSON indented with tabs is not valid YAML: read as YAML, it would be refused.
    path = tmp_path / "run.json"
    path.write_text('{\n\t"name": "j",\n\t"train": {"lr": 3e-4}\n}\n')
    config = load_config(path)
    assert config.name == "j" and config.train.lr == 3e-4
    # A JSON mistake is worded in JSON's terms, whole: the line, the column and the reason.
    path.write_text('{"train": {"lr": 3e-4,}}\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: not valid JSON (line 1, column 23: "
        "Expecting property name enclosed in double quotes)"
    )
    path.write_text('{"train": {"lr": 3e-4}, "run": {"out": "x"}}\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: the top level: unknown key(s) ['run']; known: [")


def test_every_shipped_config_loads():
    from pathlib import Path

    from mcit.methods.base import method_names

    configs = sorted(Path(__file__).parents[1].glob("configs/**/*.yaml"))
    configs = [c for c in configs if "accelerate" not in c.parts]
    assert configs, "no configs shipped"
    for path in configs:
        config = load_config(path)
        assert config.method.name in method_names(), path
