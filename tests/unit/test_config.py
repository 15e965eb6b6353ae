from pathlib import Path

import pytest
import yaml

from al_core.config import Params, dump_params, load_params, parse_params, with_overrides
from al_core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_params_yaml_is_exactly_the_defaults():
    assert load_params(ROOT / "params.yaml") == Params()


def test_dump_round_trips():
    p = with_overrides(Params(), **{"acquisition.strategy": "margin", "seed": 7})
    assert parse_params(yaml.safe_load(dump_params(p))) == p


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError) as e:
        parse_params({"acquisition": {"batchsize": 3}})
    msg = str(e.value)
    assert "acquisition.batchsize" in msg and "batch_size" in msg and "Did you mean" in msg


def test_unknown_top_level_section():
    with pytest.raises(ConfigError, match=r"unknown key 'trainig'.*Did you mean 'training'"):
        parse_params({"trainig": {}})


def test_bad_choice_names_value_and_choices():
    with pytest.raises(ConfigError) as e:
        parse_params({"model": {"arch": "rnn"}})
    msg = str(e.value)
    assert "model.arch" in msg and "'rnn'" in msg and "cnn1d" in msg and "mlp" in msg


def test_out_of_range_value():
    with pytest.raises(ConfigError, match=r"acquisition\.batch_size = 0"):
        parse_params({"acquisition": {"batch_size": 0}})


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        parse_params({"acquisition": {"strategy": "entropi"}})
    msg = str(e.value)
    assert "entropi" in msg and "Did you mean 'entropy'" in msg and "least_confidence" in msg


def test_table_needs_a_path():
    with pytest.raises(ConfigError, match=r"dataset\.path is required"):
        parse_params({"dataset": {"name": "table"}})


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="alp init"):
        load_params(tmp_path / "params.yaml")


def test_invalid_yaml(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_auto_arch_per_dataset():
    assert Params().resolved_arch() == "cnn1d"
    assert with_overrides(Params(), **{"dataset.name": "digits"}).resolved_arch() == "cnn2d"


def test_an_empty_params_file_is_refused_not_taken_as_defaults(tmp_path):
    (tmp_path / "params.yaml").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    ("section", "key"),
    [("acquisition", "batch_size"), ("acquisition", "initial_size"), ("acquisition", "mc_samples"),
     ("dataset", "pool_size"), ("dataset", "seed"), ("stop", "window")],
)  # fmt: skip
def test_a_boolean_is_not_a_number(section, key):
    """Every section, the data sources' and the stopping rule's included."""
    data = {"stabilizing_predictions": {key: True}} if section == "stop" else {key: True}
    data = {"name": "mnist1d", **data} if section == "dataset" else data
    raw = {"acquisition": {"stop": data}} if section == "stop" else {section: data}
    with pytest.raises(ConfigError, match=f"{key} = true: expected a number"):
        parse_params(raw)


def test_a_dataset_section_without_its_name_says_so():
    with pytest.raises(ConfigError, match=r"dataset.name is missing: name the data source, one of .*mnist1d"):
        parse_params({"dataset": {"pool_size": 5}})


@pytest.mark.parametrize("path", ["../../elsewhere", "queue/../../out", ".."])
def test_a_queue_folder_cannot_leave_the_workspace(path):
    from tasks.queues import check  # the queue backend checks its path (tasks/queues/folder.py)

    with pytest.raises(ConfigError, match="leaves the workspace"):
        check(parse_params({"queue": {"path": path}}).queue)
    assert check(parse_params({"queue": {"path": "labeling/queue"}}).queue).name == "folder"
    assert check(parse_params({"queue": {"path": "/srv/queue"}}).queue).name == "folder"  # absolute: by intent
