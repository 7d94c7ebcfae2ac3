"""TrainConfig is the one source of the training settings: the CLI and the network's config come from it."""
from __future__ import annotations

from dataclasses import fields

import pytest

from gnn_market.model import ModelConfig
from gnn_market.train import build_parser, config_from_args
from gnn_market.training.config import TrainConfig
from gnn_market.training.folds import model_config_of


def _actions() -> dict[str, object]:
    return {a.dest: a for a in build_parser()._actions}


def test_every_cli_field_is_a_flag_with_its_help_and_default():
    actions = _actions()
    for f in fields(TrainConfig):
        if not f.metadata["cli"]:
            assert f.name not in actions, f.name
            continue
        action = actions[f.name]
        assert action.help and action.help == f.metadata["help"], f.name
        assert action.option_strings, f.name
    assert config_from_args(build_parser().parse_args([])) == TrainConfig()  # no flags: every default


def test_flags_set_their_field():
    args = ["--hidden", "48", "--heads", "3", "--window", "50", "--weight-decay", "0.001", "--no-context",
            "--no-class-weights", "--encoder-selection", "--seeds", "3", "1"]
    cfg = config_from_args(build_parser().parse_args(args))
    assert (cfg.hidden, cfg.heads, cfg.window, cfg.weight_decay) == (48, 3, 50, 0.001)
    assert (cfg.context, cfg.class_weighted, cfg.select_encoder, cfg.seeds) == (False, False, True, [3, 1])


def test_help_shows_every_valued_default():
    text = " ".join(build_parser().format_help().split("options:", 1)[1].split())  # the option entries
    for flag, default in (("--context, --no-context", "True"), ("--window WINDOW", "100"), ("--layers LAYERS", "2")):
        assert flag in text
        after = text.split(flag, 1)[1]
        assert f"(default: {default})" in after.split(" --", 1)[0], flag


def test_model_settings_fill_the_model_config_by_name():
    cfg = TrainConfig(hidden=48, heads=3, layers=3, dropout=0.2, lookback=6, context=False, edge_gain=2.0,
                      current_skip=True, context_inputs=True, lead_lag=False)
    mc = model_config_of(cfg, in_channels=7)
    shared = {f.name for f in fields(ModelConfig)} - {"in_channels", "edge_dim"}
    assert shared <= {f.name for f in fields(TrainConfig)}  # a new model field must be a training setting too
    for name in shared:
        assert getattr(mc, name) == getattr(cfg, name), name
    assert (mc.in_channels, mc.edge_dim) == (7, 1)  # lead_lag off: the correlation only


@pytest.mark.parametrize("argv", [["--window", "1"], ["--weight-decay", "-1"]])
def test_new_flags_are_checked(argv):
    from gnn_market.errors import DataError

    with pytest.raises(DataError):
        config_from_args(build_parser().parse_args(argv))
