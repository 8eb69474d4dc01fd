"""Bad input fails before training, naming the field; good input resolves to the paper."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from ficomm.config import Config, load_config, make_config, with_added_defaults
from ficomm.envs.base import ConfigError


def test_defaults_are_the_papers_hyperparameters():
    cfg = load_config(None, [])
    assert (cfg.env, cfg.backend, cfg.budget) == ("predator_prey", "native", 1_000_000)
    assert (cfg.hidden, cfg.msg_hidden, cfg.msg_dim) == (64, 64, 10)
    assert (cfg.buffer_size, cfg.batch_size, cfg.target_update) == (5000, 32, 200)
    assert (cfg.lr, cfg.rms_alpha, cfg.rms_eps, cfg.gamma, cfg.grad_clip) == (
        5e-4,
        0.99,
        1e-8,
        0.99,
        10.0,
    )
    assert (cfg.eps_start, cfg.eps_end, cfg.eps_anneal) == (1.0, 0.05, 50_000)
    assert (cfg.eval_interval, cfg.eval_episodes) == (10_000, 20)
    assert cfg.timelimit_terminal is True and cfg.target_unroll == "zero_start"
    assert cfg.own_message is True and cfg.device == "cpu" and cfg.wandb_mode == "offline"
    assert load_config(None, ["env=3s_vs_5z"]).budget == 3_000_000


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("share: ps\ncomm: false\nhidden: 32\nenv_args: {penalty: -0.5}\n")
    cfg = load_config(
        path, ["hidden=128", "lr=1e-3", "env_args.step_cost=-0.02", "wandb_tags=[a, b]"]
    )
    assert (cfg.share, cfg.comm, cfg.hidden, cfg.lr) == ("ps", False, 128, 1e-3)
    assert cfg.env_args == {"penalty": -0.5, "step_cost": -0.02}
    assert cfg.wandb_tags == ["a", "b"]
    assert cfg.method == "PS+IQL"


@pytest.mark.parametrize(
    "override,field,words",
    [
        ("hiden=32", "hiden", "did you mean 'hidden'"),
        ("budjet=100", "budjet", "did you mean 'budget'"),
        ("hidden=0", "hidden", "positive"),
        ("hidden=abc", "hidden", "integer"),
        ("hidden=1.5", "hidden", "integer"),
        ("comm=maybe", "comm", "true/false"),
        ("share=both", "share", "'ps' or 'nps'"),
        ("device=tpu", "device", "'cpu' or 'cuda'"),
        ("budget=5000", "budget", "eval_interval"),
        ("lr=-1", "lr", "positive"),
        ("gamma=1.5", "gamma", "[0, 1]"),
        ("target_unroll=forward", "target_unroll", "zero_start"),
        ("wandb_mode=sometimes", "wandb_mode", "offline"),
        ("env=pong", "env", "unknown environment"),
        ("backend=sc2", "backend", "cannot run"),
        ("eps_end=0.9", "eps_end", "eps_start"),
        ("eval_episodes=0", "eval_episodes", "positive"),
        ("seed=-3", "seed", "non-negative"),
        ("channel=tarmac", "channel", "'concat' or 'attention'"),
    ],
)
def test_bad_values_name_the_field(override, field, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["eps_start=0.5"] + [override] if field == "eps_end" else [override])
    msg = str(err.value)
    assert msg.startswith(f"{field}:"), msg
    assert words in msg, msg


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["hidden"])
    (tmp_path / "u.yaml").write_text("shar: ps\n")
    with pytest.raises(ConfigError, match="did you mean 'share'"):
        load_config(tmp_path / "u.yaml")


def test_hash_ignores_output_settings_but_not_learning_settings():
    a = make_config({"out": "x", "wandb_mode": "disabled"})
    b = make_config({"out": "y", "threads": 2})
    c = make_config({"seed": 1})
    assert a.config_hash() == b.config_hash() != c.config_hash()
    assert a.group_name() == c.group_name() == "predator_prey-native-NPS+IQL+COMM-h64"
    assert isinstance(a, Config)


@pytest.mark.parametrize("raw,value", [("-1e-2", -0.01), ("1e-3", 0.001), ("+2E1", 20.0)])
def test_env_args_numbers_parse_like_top_level_keys(raw, value):
    """YAML 1.1 reads an exponent without a dot as a string; env_args get the same number
    parsing as top-level keys, and the environment accepts the value."""
    from ficomm.envs import make_env

    cfg = load_config(None, [f"env_args.step_cost={raw}", f"lr={raw.lstrip('-+')}"])
    assert cfg.env_args["step_cost"] == pytest.approx(value)
    assert isinstance(cfg.env_args["step_cost"], float)
    assert cfg.lr == pytest.approx(abs(value))
    make_env(cfg.env, cfg.backend, seed=0, **cfg.env_args)  # no "must be a finite number"
    assert (
        make_config({"env_args": {"step_cost": raw}}).env_args["step_cost"]
        == cfg.env_args["step_cost"]
    )


def test_help_lists_every_key_with_its_help(capsys):
    from ficomm.config import KEYS
    from ficomm.train import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, f in KEYS.items():
        assert f"\n  {name}=" in out, name
        assert f.metadata["help"] in out, name


def test_docs_key_table_is_generated_from_the_declarations():
    """docs/training.md holds exactly the table `keys_markdown()` derives from the keys."""
    from pathlib import Path

    from ficomm.config import keys_markdown

    page = (Path(__file__).parents[2] / "docs" / "training.md").read_text()
    assert keys_markdown() in page, "regenerate the table: python -m ficomm.config --markdown"


def test_learning_flag_decides_hash_and_identity():
    from ficomm.analysis.aggregate import _NOT_CONFIG_IDENTITY
    from ficomm.config import LEARNING_KEYS, NON_LEARNING_KEYS

    assert set(_NOT_CONFIG_IDENTITY) == set(NON_LEARNING_KEYS)
    assert {"kernel", "device", "threads", "out"} <= set(NON_LEARNING_KEYS)
    assert "lr" in LEARNING_KEYS and "budget" in LEARNING_KEYS
    a = load_config(None, ["kernel=torch", "threads=2", "wandb_tags=[x]", "preset=p"])
    assert a.config_hash() == load_config(None, []).config_hash()
    assert a.config_hash() != load_config(None, ["lr=1e-3"]).config_hash()


REPO = Path(__file__).parents[2]


def test_shipped_runs_keep_their_config_hash_and_identity():
    """Every run under replication/runs (most written before `channel` existed) gives the
    config_hash its run_info.json holds, and the default group name and method label."""
    stored = sorted((REPO / "replication" / "runs").rglob("config.yaml"))
    assert stored
    assert any("channel" not in yaml.safe_load(p.read_text()) for p in stored)
    for path in stored:
        values = yaml.safe_load(path.read_text())
        assert values.get("channel", "concat") == "concat"
        info = json.loads((path.parent / "run_info.json").read_text())
        cfg = make_config(values)
        assert cfg.config_hash() == info["config_hash"], path
        assert cfg.method == info["method"] and "channel" not in cfg.group_name(), path
        assert with_added_defaults(values)["channel"] == "concat"


def test_added_key_is_hashed_only_away_from_its_default():
    base = load_config(None, [])
    blob = {**base.learning_dict(), "device": base.device}
    del blob["channel"]  # the hash of a config that never had the key
    old = hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()
    assert base.config_hash() == old[:16]
    att = load_config(None, ["channel=attention"])
    assert att.config_hash() != base.config_hash()
    assert att.method == "NPS+IQL+ATT" and att.group_name().endswith("NPS+IQL+ATT-h64")
    assert load_config(None, ["share=ps", "channel=attention"]).method == "PS+IQL+ATT"


def test_resume_diff_reads_a_missing_added_key_as_its_default(tmp_path):
    from ficomm.train import _config_diff

    old = load_config(None, [])
    text = yaml.safe_dump({k: v for k, v in old.to_dict().items() if k != "channel"})
    ckpt = {"records": {"config.yaml": text}}
    assert _config_diff(tmp_path, load_config(None, ["lr=1e-3"]), ckpt) == ["lr"]
    assert _config_diff(tmp_path, load_config(None, ["channel=attention"]), ckpt) == ["channel"]
