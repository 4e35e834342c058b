"""params.yaml validation: the repo's file loads; every mistake is one ConfigError line naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from unmix.config import Config, DataConfig, SetConfig, load_config, parse_config
from unmix.errors import ConfigError, UnmixError

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

VALID = {
    "data": {
        "source": "shapes",
        "path": None,
        "shapes_train": 100,
        "shapes_test": 50,
        "seed": 0,
        "n_train": 40,
        "n_valid": 20,
        "n_test": 20,
    },
    "tracking": {"enabled": False, "uri": None, "experiment": "unmix"},
    "figures": {"n_pairs": 4, "dpi": 100},
    "sets": {
        "seed": {
            "arch": "seed",
            "mix": "quarter_sum",
            "loss": "fixed",
            "epochs": 2,
            "batch_size": 8,
            "lr": 0.0005,
            "seed": 0,
            "validate_every": 1,
            "log_images_every": 1,
        },
        "mean_pit": {"mix": "mean", "loss": "pit"},
    },
}


@pytest.fixture
def raw() -> dict:
    return copy.deepcopy(VALID)


def config_error(raw: dict) -> str:
    """The message of the ConfigError parse_config raises, checked to be one line."""
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- valid input -----------------------------------------------------------------------------------------


def test_repo_params_file_loads_with_both_sets():
    config = load_config(REPO_PARAMS)
    assert isinstance(config, Config)
    assert {"seed", "mean_pit"} <= set(config.sets)
    assert all(isinstance(s, SetConfig) for s in config.sets.values())
    assert config.set("seed") is config.sets["seed"]


def test_valid_mapping_parses_to_typed_frozen_config(raw):
    config = parse_config(raw)
    assert config.data == DataConfig(
        source="shapes", path=None, shapes_train=100, shapes_test=50, seed=0, n_train=40, n_valid=20, n_test=20
    )
    assert config.tracking.enabled is False
    assert config.figures.n_pairs == 4
    assert config.set("seed").batch_size == 8
    with pytest.raises(AttributeError):
        config.data.n_train = 1  # frozen


def test_omitted_set_fields_take_defaults(raw):
    mean_pit = parse_config(raw).set("mean_pit")
    assert (mean_pit.mix, mean_pit.loss) == ("mean", "pit")
    assert mean_pit.epochs == SetConfig().epochs
    assert mean_pit.arch == "seed"


def test_integer_lr_is_accepted_as_float(raw):
    raw["sets"]["seed"]["lr"] = 1
    lr = parse_config(raw).set("seed").lr
    assert lr == 1.0 and isinstance(lr, float)


def test_imagefolder_with_path_is_valid(raw):
    raw["data"] |= {"source": "imagefolder", "path": "/some/root"}
    assert parse_config(raw).data.path == "/some/root"


def test_load_config_reads_a_yaml_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("sets:\n  only:\n    epochs: 3\n")
    config = load_config(path)
    assert list(config.sets) == ["only"]
    assert config.set("only").epochs == 3


# --- unknown keys ----------------------------------------------------------------------------------------


def test_unknown_top_level_key(raw):
    raw["trainig"] = {}
    message = config_error(raw)
    assert "trainig: unknown key" in message
    assert "data, distributed, figures, resume, sets, tracking" in message


def test_unknown_key_in_data(raw):
    raw["data"]["n_trian"] = 5
    message = config_error(raw)
    assert "data.n_trian: unknown key" in message
    assert "n_train" in message


def test_unknown_set_field(raw):
    raw["sets"]["seed"]["learning_rate"] = 0.1
    message = config_error(raw)
    assert "sets.seed.learning_rate: unknown key" in message
    assert "lr" in message


def test_non_mapping_section(raw):
    raw["data"] = 5
    assert "data: expected a mapping, got int" in config_error(raw)


def test_non_mapping_top_level():
    assert "expected a mapping" in config_error(["data"])


def test_bad_set_name(raw):
    raw["sets"]["has space"] = {}
    assert "sets.has space: set names must be" in config_error(raw)


# --- wrong types -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("sets.seed", "epochs", "ten", "sets.seed.epochs: expected an integer, got 'ten'"),
        ("sets.seed", "epochs", 2.5, "sets.seed.epochs: expected an integer, got 2.5"),
        ("sets.seed", "lr", "fast", "sets.seed.lr: expected a number, got 'fast'"),
        ("sets.seed", "lr", float("nan"), "sets.seed.lr: expected a number, got nan"),
        ("tracking", "enabled", "yes", "tracking.enabled: expected true or false, got 'yes'"),
        ("tracking", "enabled", 1, "tracking.enabled: expected true or false, got 1"),
        ("tracking", "experiment", "", "tracking.experiment: expected a non-empty string, got ''"),
        ("data", "n_train", "1000", "data.n_train: expected an integer, got '1000'"),
    ],
)
def test_wrong_type_names_key_and_expectation(raw, section, key, value, expected):
    node = raw
    for part in section.split("."):
        node = node[part]
    node[key] = value
    assert expected in config_error(raw)


@pytest.mark.parametrize(
    ("section", "key", "expected"),
    [
        ("sets.seed", "epochs", "sets.seed.epochs: expected an integer, got True"),
        ("sets.seed", "batch_size", "sets.seed.batch_size: expected an integer, got True"),
        ("sets.seed", "lr", "sets.seed.lr: expected a number, got True"),
        ("data", "seed", "data.seed: expected an integer, got True"),
    ],
)
def test_bool_is_not_accepted_as_a_number(raw, section, key, expected):
    node = raw
    for part in section.split("."):
        node = node[part]
    node[key] = True
    assert expected in config_error(raw)


# --- choices ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "choices"),
    [
        ("sets.seed", "arch", "vae", "seed, unet"),
        ("sets.seed", "schedule", "cosine", "constant, onecycle"),
        ("sets.seed", "mix", "sum", "quarter_sum, mean, half_difference"),
        ("sets.seed", "loss", "mse", "fixed, pit"),
        ("sets.seed", "device", "gpu", "auto, cpu, cuda"),
        ("data", "source", "mnist", "shapes, cifar10, imagefolder"),
    ],
)
def test_unknown_choice_lists_the_options(raw, section, key, value, choices):
    node = raw
    for part in section.split("."):
        node = node[part]
    node[key] = value
    assert f"{section}.{key}: expected one of {choices}, got {value!r}" in config_error(raw)


# --- ranges ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("sets.seed", "epochs", 0, "sets.seed.epochs: expected a value >= 1, got 0"),
        ("sets.seed", "epochs", -3, "sets.seed.epochs: expected a value >= 1, got -3"),
        ("sets.seed", "lr", 0, "sets.seed.lr: expected a value > 0.0, got 0.0"),
        ("sets.seed", "lr", -0.1, "sets.seed.lr: expected a value > 0.0, got -0.1"),
        ("sets.seed", "batch_size", 1, "sets.seed.batch_size: expected a value >= 2, got 1"),
        ("sets.seed", "validate_every", 0, "sets.seed.validate_every: expected a value >= 1, got 0"),
        ("data", "n_train", 0, "data.n_train: expected a value >= 2, got 0"),
        ("data", "n_train", -5, "data.n_train: expected a value >= 2, got -5"),
    ],
)
def test_out_of_range_value_names_key_and_bound(raw, section, key, value, expected):
    node = raw
    for part in section.split("."):
        node = node[part]
    node[key] = value
    assert expected in config_error(raw)


def test_lr_just_above_zero_is_accepted(raw):
    raw["sets"]["seed"]["lr"] = 1e-12
    assert parse_config(raw).set("seed").lr == 1e-12


def test_negative_data_seed_is_a_config_error(raw):
    raw["data"]["seed"] = -1
    assert "data.seed: expected a value >= 0, got -1" in config_error(raw)


def test_lr_written_without_a_dot_is_still_a_number(raw):
    # PyYAML (YAML 1.1) reads 5e-4 as the string "5e-4".
    raw["sets"]["seed"]["lr"] = "5e-4"
    assert parse_config(raw).set("seed").lr == 5e-4


# --- sets ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sets", [{}, None])
def test_empty_or_missing_sets(raw, sets):
    raw["sets"] = sets
    assert "sets: expected a mapping of at least one named parameter set" in config_error(raw)


def test_sets_absent(raw):
    del raw["sets"]
    assert "sets: expected a mapping" in config_error(raw)


def test_unknown_set_name_lists_known_sets(raw):
    config = parse_config(raw)
    with pytest.raises(ConfigError) as caught:
        config.set("nope")
    message = str(caught.value)
    assert "\n" not in message
    assert "sets.nope: no such parameter set; known: seed, mean_pit" in message


# --- consistency between keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["imagefolder", "cifar10"])
@pytest.mark.parametrize("absent", [True, False])
def test_file_sources_need_a_path(raw, source, absent):
    raw["data"]["source"] = source
    if absent:
        del raw["data"]["path"]  # else: path: null
    message = config_error(raw)
    assert f"data.path: required for data.source={source}" in message


def test_empty_path_is_rejected_as_an_empty_string(raw):
    raw["data"] |= {"source": "cifar10", "path": ""}
    assert "data.path: expected a non-empty string, got ''" in config_error(raw)


def test_shapes_train_must_hold_train_plus_valid(raw):
    raw["data"] |= {"shapes_train": 59, "n_train": 40, "n_valid": 20}  # 40 + 20 = 60 > 59
    message = config_error(raw)
    assert "data.n_train + data.n_valid = 60" in message
    assert "59" in message and "data.shapes_train" in message


def test_shapes_train_exactly_train_plus_valid_is_fine(raw):
    raw["data"] |= {"shapes_train": 60, "n_train": 40, "n_valid": 20}
    assert parse_config(raw).data.shapes_train == 60


def test_shapes_test_must_hold_n_test(raw):
    raw["data"] |= {"shapes_test": 19, "n_test": 20}
    message = config_error(raw)
    assert "data.n_test = 20" in message and "data.shapes_test" in message


def test_figure_pairs_must_fit_in_test_pairs(raw):
    raw["data"]["n_test"] = 9  # 9 // 2 = 4 pairs
    raw["figures"]["n_pairs"] = 5
    message = config_error(raw)
    assert "figures.n_pairs = 5" in message
    assert "4 test pairs" in message and "data.n_test = 9" in message


def test_figure_pairs_equal_to_test_pairs_is_fine(raw):
    raw["data"]["n_test"] = 9
    raw["figures"]["n_pairs"] = 4
    assert parse_config(raw).figures.n_pairs == 4


# --- files -----------------------------------------------------------------------------------------------


def test_invalid_yaml_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("sets: [unclosed\n  seed: {\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: not valid YAML (")


def test_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: params file not found"


def test_errors_from_a_file_name_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("sets:\n  seed:\n    epochs: ten\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: sets.seed.epochs: expected an integer, got 'ten'"


def test_config_error_is_an_unmix_error():
    assert issubclass(ConfigError, UnmixError)


def test_unet_fields_are_validated(raw):
    raw["sets"]["seed"].update(arch="unet", width=16, depth=2, consistency=True, flip=True, fresh_pairs=False)
    config = parse_config(raw).set("seed")
    assert (config.width, config.depth, config.consistency, config.flip, config.fresh_pairs) == (
        16,
        2,
        True,
        True,
        False,
    )
    raw["sets"]["seed"]["depth"] = 5
    assert "sets.seed.depth: expected a value <= 4, got 5" in config_error(raw)
    raw["sets"]["seed"].update(depth=2, consistency="yes")
    assert "sets.seed.consistency: expected true or false, got 'yes'" in config_error(raw)


def test_attention_needs_coarsest_channels_that_split_into_heads(raw):
    raw["sets"]["seed"].update(arch="unet", width=5, depth=1, attention=True)
    assert config_error(raw) == (
        "params.yaml: sets.seed.attention: the 10 channels of the coarsest scale "
        "(width · 2^depth) cannot be split into 4 attention heads; use a width divisible by 2"
    )
    raw["sets"]["seed"]["width"] = 6
    assert parse_config(raw).set("seed").attention is True
    raw["sets"]["seed"].update(arch="seed", width=5)  # width and attention shape the unet only
    assert parse_config(raw).set("seed").arch == "seed"


def test_processes_must_each_get_a_pair_of_every_batch(raw):
    raw["distributed"] = {"processes": 3}
    raw["sets"]["seed"]["batch_size"] = 4
    message = config_error(raw)
    assert message.startswith(
        "params.yaml: sets.seed.batch_size = 4: 2 pairs per step cannot be shared by "
        "distributed.processes = 3; expected at least 6"
    ), message
    raw["distributed"] = {"processes": 0}
    assert "distributed.processes: expected a value >= 1, got 0" in config_error(raw)


def test_training_levers_are_off_by_default(raw):
    config = parse_config(raw).set("seed")
    assert (config.optimizer, config.low_res_epochs) == ("adam", 0)
    raw["sets"]["seed"].update(arch="unet", optimizer="muon", muon_lr=0.1, low_res_epochs=1)
    config = parse_config(raw).set("seed")
    assert (config.optimizer, config.muon_lr, config.low_res_epochs) == ("muon", 0.1, 1)


def test_a_teacher_is_off_by_default_and_needs_a_share_of_the_loss(raw):
    config = parse_config(raw).set("seed")
    assert (config.teacher, config.teacher_weight) == (None, 0.5)
    raw["sets"]["seed"].update(teacher="models/long.pt", teacher_weight=0)
    assert config_error(raw) == (
        "params.yaml: sets.seed.teacher_weight = 0: the teacher models/long.pt would be loaded and run "
        "for nothing; expected a weight > 0, or teacher: null"
    )
    raw["sets"]["seed"]["teacher_weight"] = 1
    assert parse_config(raw).set("seed").teacher_weight == 1.0
    raw["sets"]["seed"].update(arch="unet", teacher_weight=0.5, low_res_epochs=1)  # teaches 32×32 epochs
    assert parse_config(raw).set("seed").low_res_epochs == 1
    raw["sets"]["seed"].update(teacher=None, teacher_weight=0)  # no teacher: the weight is never read
    assert parse_config(raw).set("seed").teacher is None


def test_muon_needs_the_unet(raw):
    raw["sets"]["seed"]["optimizer"] = "muon"
    assert config_error(raw) == (
        "params.yaml: sets.seed.optimizer: muon steps the convolutions that feed a BatchNorm; "
        "arch seed has none (use arch unet)"
    )
    raw["sets"]["seed"].update(optimizer="adam", muon_lr=0.5)  # muon_lr alone changes nothing
    assert parse_config(raw).set("seed").muon_lr == 0.5


def test_low_res_epochs_need_the_unet_at_most_depth_3_and_full_size_epochs(raw):
    raw["sets"]["seed"]["low_res_epochs"] = 1
    assert config_error(raw) == "params.yaml: sets.seed.low_res_epochs = 1: arch seed takes 32×32 images only"
    raw["sets"]["seed"].update(arch="unet", depth=4)
    assert config_error(raw) == (
        "params.yaml: sets.seed.low_res_epochs = 1: depth 4 halves 16×16 pairs down to 1×1; expected depth <= 3"
    )
    raw["sets"]["seed"].update(depth=3, low_res_epochs=2)  # epochs: 2
    assert config_error(raw) == (
        "params.yaml: sets.seed.low_res_epochs = 2: expected fewer than epochs = 2; the rest train at 32×32"
    )
    raw["sets"]["seed"]["low_res_epochs"] = -1
    assert "sets.seed.low_res_epochs: expected a value >= 0, got -1" in config_error(raw)
