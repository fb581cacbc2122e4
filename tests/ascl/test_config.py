"""The experiment config: validation that names the field, JSON round trips, overrides, presets."""

import json

import pytest

from ascl.config import SPEC_VERSION, ExperimentConfig, parse_override
from ascl.config_fields import set_path
from ascl.errors import ConfigError
from ascl.presets import PRESETS, get_preset


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"attack.eps": -0.1}, "attack.eps", ">= 0"),
        ({"attack.steps": 1.5}, "attack.steps", "integer"),
        ({"model.arch": "resnet81"}, "model.arch", "did you mean 'resnet18'"),
        ({"data.dataset": "imagenet"}, "data.dataset", "unknown dataset"),
        ({"objective.neg_type": "leaking"}, "objective.neg_type", "did you mean 'leaked'"),
        ({"objective.temperature": 0}, "objective.temperature", "> 0"),
        ({"objective.distance": "l2", "objective.normalize": False}, "objective.normalize", "requires normalize"),
        ({"train.precision": "fp16"}, "train.precision", "unknown precision 'fp16'"),
        ({"attack.norm": "l3"}, "attack.norm", "unknown norm 'l3'"),
        ({"trian.epochs": 3}, "trian", "unknown config section 'trian'; did you mean 'train'"),
        ({"train.epochs.max": 3}, "train.epochs", "is a field, not a config section"),
        ({"name": "run\nfake"}, "name", "one line of printable text"),
        ({"data.data_dir": "x" * 5000}, "data.data_dir", "at most 4096 characters"),
        ({"train.batch_size": 0}, "train.batch_size", ">= 1"),
        ({"optim.milestones": [10, 5]}, "optim.milestones", "ascending"),
        ({"train.epcohs": 3}, "train.epcohs", "did you mean 'epochs'"),
        ({"device": "tpu"}, "device", "cpu"),
        ({"spec_version": 99}, "spec_version", f"spec_version {SPEC_VERSION}"),
        # what the data holds is known before it is loaded: an epoch of no step, no validation images
        ({"train.batch_size": 2048}, "train.batch_size", "more than the 1197 training images"),
        ({"data.train_subset": 10}, "train.batch_size", "more than the 10 training images"),
        ({"data.dataset": "synthetic", "data.val_size": 0}, "data.val_size", "must be >= 1"),
        ({"data.dataset": "cifar10", "data.val_size": 50_000}, "data.val_size", "none is left"),
        # JSON numbers have no bound: past a float's range, and shown bounded
        ({"optim.lr": 10**400}, "optim.lr", "a float holds (got an integer of 1329 bits)"),
        ({"optim.milestones": "x" * 10_000}, "optim.milestones", "xxxx…)"),
        # a lone surrogate (a JSON "\\ud800" escape) is no text a file or a terminal could take
        ({"data.data_dir": "data\ud800"}, "data.data_dir", "characters (got 'data\\ud800')"),
        ({"model.arch": "r" * 10_000}, "model.arch", "unknown model 'rrrr"),
    ],
)
def test_invalid_values_name_the_field(overrides, field, fragment):
    with pytest.raises(ConfigError) as info:
        get_preset("digits-ascl").with_overrides(overrides)
    assert info.value.field == field
    assert fragment in str(info.value)
    assert len(str(info.value)) < 1000


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"train.epochs": 3, "seed": 7},
        {"attack.eps": 0.05, "attack.steps": 3, "objective.temperature": 0.2},
        {"optim.milestones": [2, 4], "eval.eps_sweep": [0.01, 0.02], "name": "x"},
        {"train": {"epochs": 2}},  # a whole section: its other fields take their defaults
    ],
)
def test_overrides_rebuild_only_what_they_touch_with_the_same_result(name, overrides):
    """Only the sections a path enters are rebuilt: the result is the config a whole rebuild from
    JSON makes."""
    config = get_preset(name)
    data = config.to_dict()
    for path, value in overrides.items():
        set_path(data, path, value)
    assert config.with_overrides(overrides).to_json() == ExperimentConfig.from_dict(data).to_json()  # 1 vs 1.0 too


def test_the_whole_configs_rules_are_checked_when_one_section_changes():
    two_views = get_preset("digits-ascl").with_overrides({"objective.views": 2})
    with pytest.raises(ConfigError) as info:
        two_views.with_overrides({"objective.kind": "pgd_at"})
    assert info.value.field == "objective.views"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    config = get_preset(name)
    assert ExperimentConfig.from_dict(json.loads(config.to_json())) == config


def test_paper_recipe_matches_the_spec():
    cfg = get_preset("paper-cifar10-resnet18-ascl")
    assert (cfg.attack.eps, cfg.attack.step_size, cfg.attack.steps, cfg.attack.bn_mode) == (0.031, 0.007, 10, "train")
    o = cfg.objective
    assert (o.kind, o.neg_type, o.distance, o.temperature, o.normalize, o.views, o.combine) == (
        "ascl",
        "leaked",
        "linf",
        0.2,
        True,
        2,
        1,
    )
    assert (o.natural_weight, o.robust_weight, o.smoothness_weight, o.contrastive_weight, o.kl_reduction) == (
        0.0,
        1.0,
        2.0,
        1.0,
        "mean",
    )
    assert (cfg.model.feat_dim, cfg.model.head) == (128, "linear")
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.milestones) == (
        0.1,
        0.9,
        5e-4,
        (100, 105, 110),
    )
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.seed) == (120, 128, 20212022)
    assert get_preset("paper-cifar10-wrn34-ascl").model.arch == "wrn34_10"
    trades = get_preset("paper-cifar10-resnet18-trades")
    assert (trades.objective.natural_weight, trades.objective.robust_weight, trades.attack.init) == (1.0, 6.0, "normal")
    pgdat = get_preset("paper-cifar10-resnet18-pgdat")
    assert (pgdat.objective.natural_weight, pgdat.model.feat_dim) == (0.0, -1)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="digits-ascl"):
        get_preset("digits-acsl")


def test_parse_override_reads_json_values_and_keeps_strings():
    assert parse_override("train.epochs=3") == ("train.epochs", 3)
    assert parse_override("eval.eps_sweep=[0.1, 0.2]") == ("eval.eps_sweep", [0.1, 0.2])
    assert parse_override("model.arch=resnet18") == ("model.arch", "resnet18")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.epochs")


def test_config_is_frozen_and_overrides_copy():
    config = get_preset("digits-ascl")
    changed = config.with_overrides({"train.epochs": 2})
    assert (config.train.epochs, changed.train.epochs) == (15, 2)
    with pytest.raises(AttributeError):
        config.train.epochs = 3  # type: ignore[misc]


def test_two_views_only_for_ascl():
    with pytest.raises(ConfigError, match=r"objective\.views"):
        get_preset("digits-pgdat").with_overrides({"objective.views": 2})
