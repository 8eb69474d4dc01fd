"""The run configuration: one flat, typed record whose defaults are the paper's hyperparameters.

`load_config(path, overrides)` reads an optional YAML file, applies `key=value` overrides
(values parsed as YAML, `env_args.NAME=value` for environment parameters), and validates
everything before any training starts; a bad value raises `ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ficomm.envs.base import ConfigError

# Environment-dependent defaults: the paper's backend and budget for each environment.
DEFAULT_BACKEND = {"predator_prey": "native", "3s_vs_5z": "sc2"}
DEFAULT_BUDGET = {"predator_prey": 1_000_000, "3s_vs_5z": 3_000_000}
SHARE_CHOICES = ("ps", "nps")
TARGET_UNROLL_CHOICES = ("zero_start", "shifted")
WANDB_MODES = ("offline", "online", "disabled")
DEVICE_CHOICES = ("cpu", "cuda")
KERNEL_CHOICES = ("auto", "fused", "torch")  # see ficomm.nets.QNet


@dataclass
class Config:
    """One training run. Defaults reproduce the authors' code (spec sections 2, 3 and 7)."""

    env: str = "predator_prey"
    backend: str | None = None  # None -> DEFAULT_BACKEND[env]
    env_args: dict = field(default_factory=dict)  # passed to make_env (e.g. penalty=-0.5)
    share: str = "nps"  # ps: one network for all agents; nps: one per agent
    comm: bool = True
    hidden: int = 64
    msg_hidden: int = 64
    msg_dim: int = 10
    own_message: bool = True  # NPS+COMM feeds each agent its own message (the paper's scheme)
    seed: int = 0
    budget: int | None = None  # env steps; None -> DEFAULT_BUDGET[env]
    eval_interval: int = 10_000
    eval_episodes: int = 20
    buffer_size: int = 5000  # episodes
    batch_size: int = 32  # episodes
    lr: float = 5e-4
    rms_alpha: float = 0.99
    rms_eps: float = 1e-8
    gamma: float = 0.99
    grad_clip: float = 10.0
    target_update: int = 200  # gradient steps
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_anneal: int = 50_000  # env steps
    timelimit_terminal: bool = True  # authors' quirk; false bootstraps at truncation
    target_unroll: str = "zero_start"  # authors' quirk; "shifted" reuses the full unroll
    device: str = "cpu"
    threads: int = 1
    kernel: str = "auto"  # auto: compiled CPU kernel where it builds, else torch; fused; torch
    out: str = "runs/default"
    wandb_mode: str = "offline"
    wandb_project: str = "ficomm"
    wandb_entity: str | None = None
    wandb_group: str | None = None  # None -> the configuration without the seed
    preset: str | None = None  # the workflow preset that asked for this run (a W&B label only)
    wandb_tags: list = field(default_factory=list)

    @property
    def method(self) -> str:
        """The paper's label: PS+IQL, PS+IQL+COMM, NPS+IQL or NPS+IQL+COMM."""
        return f"{self.share.upper()}+IQL" + ("+COMM" if self.comm else "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def learning_dict(self) -> dict[str, Any]:
        """The fields that determine the learning curve (no output or logging settings)."""
        d = self.to_dict()
        # kernel: the same math in another implementation (rounding only), like threads
        for key in ("out", "threads", "kernel", "wandb_mode", "wandb_project", "wandb_entity"):
            d.pop(key)
        for key in ("wandb_group", "wandb_tags", "preset"):
            d.pop(key)
        return d

    def config_hash(self) -> str:
        """A stable hash of the learning-relevant fields (resume refuses a different config)."""
        blob = json.dumps(self.learning_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def group_name(self) -> str:
        """The configuration without the seed (the W&B group): env, backend, method, hidden,
        then every other learning key whose value differs from its default, so that runs that
        learn differently never share a group."""
        if self.wandb_group:
            return self.wandb_group
        defaults = Config(env=self.env)
        _resolve_env_defaults(defaults)
        named = {"env", "backend", "share", "comm", "hidden", "seed", "env_args"}
        mine, base = self.learning_dict(), defaults.learning_dict()
        extra = "".join(
            f"-{k}={mine[k]}" for k in sorted(mine) if k not in named and mine[k] != base[k]
        )
        extra += "".join(f"-{k}={v}" for k, v in sorted(self.env_args.items()))
        return f"{self.env}-{self.backend}-{self.method}-h{self.hidden}{extra}"

    def run_name(self) -> str:
        """The W&B run name: the configuration and the seed (unique within a project)."""
        return f"{self.group_name()}-s{self.seed}"


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# Expected type of each field (the dataclass annotations are strings under __future__).
_TYPES: dict[str, tuple[type, ...]] = {
    "env": (str,),
    "backend": (str, type(None)),
    "env_args": (dict,),
    "share": (str,),
    "comm": (bool,),
    "hidden": (int,),
    "msg_hidden": (int,),
    "msg_dim": (int,),
    "own_message": (bool,),
    "seed": (int,),
    "budget": (int, type(None)),
    "eval_interval": (int,),
    "eval_episodes": (int,),
    "buffer_size": (int,),
    "batch_size": (int,),
    "lr": (float,),
    "rms_alpha": (float,),
    "rms_eps": (float,),
    "gamma": (float,),
    "grad_clip": (float,),
    "target_update": (int,),
    "eps_start": (float,),
    "eps_end": (float,),
    "eps_anneal": (int,),
    "timelimit_terminal": (bool,),
    "target_unroll": (str,),
    "device": (str,),
    "threads": (int,),
    "kernel": (str,),
    "out": (str,),
    "wandb_mode": (str,),
    "wandb_project": (str,),
    "wandb_entity": (str, type(None)),
    "wandb_group": (str, type(None)),
    "wandb_tags": (list,),
    "preset": (str, type(None)),
}
assert set(_TYPES) == set(_FIELDS)


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(_FIELDS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{key}: unknown config key{hint} (known keys: {', '.join(_FIELDS)})")


def _coerce(key: str, value: Any) -> Any:
    """Check a value's type; ints are accepted where floats are expected, nothing else."""
    types = _TYPES[key]
    if isinstance(value, str) and (float in types or int in types):
        try:  # PyYAML reads 1e-3 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if int in types and isinstance(value, float) and value.is_integer():
        # 1e6 in YAML is a float; accept integral floats for counts.
        return int(value)
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"{key}: expected {_type_names(types)}, got the boolean {value!r}")
    if not isinstance(value, types):
        raise ConfigError(
            f"{key}: expected {_type_names(types)}, got {type(value).__name__} {value!r}"
        )
    if key == "wandb_tags":
        return [str(t) for t in value]
    return value


def _type_names(types: tuple[type, ...]) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return " or ".join(names.get(t, t.__name__) for t in types if t is not type(None))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings -> dict; values are parsed as YAML (so 1e-4, true, [a, b] work)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{item!r}: overrides must look like key=value (e.g. share=ps)")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key}: cannot parse value {raw!r}: {exc}") from None
        if isinstance(value, str) and value.lower() in ("none", "null"):
            value = None
        if key.startswith("env_args."):
            out.setdefault("env_args", {})[key.split(".", 1)[1]] = value
        else:
            out[key] = value
    return out


def make_config(values: dict[str, Any]) -> Config:
    """Build and validate a Config from a flat dict (unknown keys and bad values raise)."""
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _FIELDS:
            raise _unknown_key(key)
        if value is None and type(None) not in _TYPES[key]:
            raise ConfigError(f"{key}: a value is required ({_type_names(_TYPES[key])})")
        kwargs[key] = _coerce(key, value) if value is not None else None
    cfg = Config(**kwargs)
    _resolve_env_defaults(cfg)
    validate(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read an optional YAML config, apply key=value overrides, validate."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values")
        values.update(loaded)
    extra = parse_overrides(overrides or [])
    if "env_args" in extra and isinstance(values.get("env_args"), dict):
        extra["env_args"] = {**values["env_args"], **extra["env_args"]}
    values.update(extra)
    return make_config(values)


def _resolve_env_defaults(cfg: Config) -> None:
    if cfg.env in DEFAULT_BACKEND:
        if cfg.backend is None:
            cfg.backend = DEFAULT_BACKEND[cfg.env]
        if cfg.budget is None:
            cfg.budget = DEFAULT_BUDGET[cfg.env]


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def validate(cfg: Config) -> None:
    """Impossible values fail here, before anything is built, naming the field."""
    from ficomm.envs import ENV_NAMES, backends_for

    _check(
        cfg.env in ENV_NAMES, "env", f"unknown environment {cfg.env!r}; choose one of {ENV_NAMES}"
    )
    _check(
        cfg.backend in backends_for(cfg.env),
        "backend",
        f"{cfg.backend!r} cannot run {cfg.env!r}; choose one of {backends_for(cfg.env)}",
    )
    _check(cfg.share in SHARE_CHOICES, "share", f"must be 'ps' or 'nps', got {cfg.share!r}")
    for key in ("hidden", "msg_hidden", "msg_dim", "eval_episodes", "buffer_size", "batch_size"):
        _check(getattr(cfg, key) >= 1, key, f"must be a positive integer, got {getattr(cfg, key)}")
    for key in ("eval_interval", "target_update", "eps_anneal", "threads"):
        _check(getattr(cfg, key) >= 1, key, f"must be a positive integer, got {getattr(cfg, key)}")
    _check(cfg.budget >= 1, "budget", f"must be a positive number of env steps, got {cfg.budget}")
    _check(
        cfg.budget >= cfg.eval_interval,
        "budget",
        f"{cfg.budget} is below eval_interval={cfg.eval_interval}: the run would evaluate only "
        "the untrained policy; raise budget or lower eval_interval",
    )
    _check(cfg.seed >= 0, "seed", f"must be a non-negative integer, got {cfg.seed}")
    _check(cfg.lr > 0, "lr", f"must be positive, got {cfg.lr}")
    _check(0 < cfg.rms_alpha < 1, "rms_alpha", f"must lie in (0, 1), got {cfg.rms_alpha}")
    _check(cfg.rms_eps > 0, "rms_eps", f"must be positive, got {cfg.rms_eps}")
    _check(0 <= cfg.gamma <= 1, "gamma", f"must lie in [0, 1], got {cfg.gamma}")
    _check(cfg.grad_clip > 0, "grad_clip", f"must be positive, got {cfg.grad_clip}")
    for key in ("eps_start", "eps_end"):
        _check(0 <= getattr(cfg, key) <= 1, key, f"must lie in [0, 1], got {getattr(cfg, key)}")
    _check(cfg.eps_end <= cfg.eps_start, "eps_end", "must not exceed eps_start")
    _check(
        cfg.target_unroll in TARGET_UNROLL_CHOICES,
        "target_unroll",
        f"must be one of {TARGET_UNROLL_CHOICES}, got {cfg.target_unroll!r}",
    )
    _check(
        cfg.device in DEVICE_CHOICES,
        "device",
        f"must be 'cpu' or 'cuda', got {cfg.device!r}",
    )
    _check(
        cfg.kernel in KERNEL_CHOICES,
        "kernel",
        f"must be one of {KERNEL_CHOICES}, got {cfg.kernel!r}",
    )
    _check(
        not (cfg.kernel == "fused" and cfg.device == "cuda"),
        "kernel",
        "'fused' is the compiled CPU kernel; with device=cuda use kernel=auto or torch",
    )
    _check(
        cfg.wandb_mode in WANDB_MODES,
        "wandb_mode",
        f"must be one of {WANDB_MODES}, got {cfg.wandb_mode!r}",
    )
    _check(bool(cfg.out), "out", "a run directory is required (out=DIR)")
    for key in cfg.env_args:
        _check(isinstance(key, str) and key != "", "env_args", f"bad parameter name {key!r}")


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
