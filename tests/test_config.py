"""params.yaml loading: profiles resolve, the committed file is the tiny profile, bad files fail
with a message that names the key."""

from pathlib import Path

import pytest
import yaml

from anomseer.config import ParamsError, load_params, profile_dict, write_params

ROOT = Path(__file__).resolve().parents[1]


def test_committed_params_yaml_is_the_resolved_tiny_profile():
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == profile_dict("tiny"), "params.yaml drifted: run `anomseer params --profile tiny`"


@pytest.mark.parametrize("profile", ["tiny", "smoke", "paper"])
def test_every_profile_resolves_and_validates(tmp_path, profile):
    path = write_params(profile, tmp_path / "params.yaml")
    params = load_params(path)
    assert params.profile == profile
    assert params.data.train_per_family >= 1


def test_smoke_inherits_tiny_and_shrinks_it():
    tiny, smoke = profile_dict("tiny"), profile_dict("smoke")
    assert smoke["data"]["train_per_family"] < tiny["data"]["train_per_family"]
    assert smoke["expert"] == tiny["expert"]


def _write(tmp_path, data):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_is_named(tmp_path):
    data = profile_dict("smoke")
    data["data"]["train_per_famly"] = 3
    with pytest.raises(ParamsError, match=r"data\.train_per_famly"):
        load_params(_write(tmp_path, data))


def test_wrong_type_is_named(tmp_path):
    data = profile_dict("smoke")
    data["data"]["eval_seed"] = "forty-two"
    with pytest.raises(ParamsError, match=r"data\.eval_seed"):
        load_params(_write(tmp_path, data))


def test_out_of_range_value_is_named(tmp_path):
    data = profile_dict("smoke")
    data["data"]["train_per_family"] = 0
    with pytest.raises(ParamsError, match=r"'data'.*train_per_family"):
        load_params(_write(tmp_path, data))


def test_corrupt_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="no params file"):
        load_params(tmp_path / "nope.yaml")
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(bad)


def test_unknown_profile_and_section(tmp_path):
    data = profile_dict("smoke")
    data["profile"] = "huge"
    with pytest.raises(ParamsError, match="'profile'"):
        load_params(_write(tmp_path, data))
    data = profile_dict("smoke")
    data["trainer"] = {}
    with pytest.raises(ParamsError, match="'trainer'"):
        load_params(_write(tmp_path, data))
