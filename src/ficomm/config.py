"""The run configuration: one flat, typed record whose defaults are the paper's hyperparameters.

Every key is declared once, as a field of `Config` with its metadata (help, unit, allowed
values, bounds, whether it changes learning). Validation, the config hash, the analysis's
configuration identity, `ficomm train --help` and the key table in docs/training.md are all
derived from these declarations (`KEYS`).

`load_config(path, overrides)` reads an optional YAML file, applies `key=value` overrides
(values parsed as YAML, `env_args.NAME=value` for environment parameters), and validates
everything before any training starts; a bad value raises `ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ficomm.envs import ENV_NAMES, backends_for, env_spec
from ficomm.envs.base import ConfigError

# Bounds a key may declare, with the phrase its error message uses.
BOUNDS = {
    "positive": (lambda v: v > 0, "must be positive"),
    "at_least_1": (lambda v: v >= 1, "must be a positive integer"),
    "non_negative": (lambda v: v >= 0, "must be a non-negative integer"),
    "open_unit": (lambda v: 0 < v < 1, "must lie in (0, 1)"),
    "unit": (lambda v: 0 <= v <= 1, "must lie in [0, 1]"),
}


def key(
    default: Any,
    help: str,
    *,
    unit: str = "",
    choices: tuple | None = None,
    bound: str | None = None,
    learning: bool = True,
    added_after: str | None = None,
    pack: bool = False,
) -> Any:
    """Declare one config key: its default and everything the rest of ficomm asks about it.

    learning=False marks keys that say where or how a run executes, or how it is logged, not
    what it learns: they are left out of the config hash and of the configuration identity.
    added_after="VERSION" marks a learning key added after that release: it is hashed only
    when it differs from its default, and a stored config.yaml without it reads as the
    default (`with_added_defaults`), so the hash, W&B group and identity of older runs hold.
    pack=True marks keys that may differ between the runs of a pack (`load_pack`): they change
    no shape and no environment, so the runs stay one configuration trained side by side."""
    assert bound is None or bound in BOUNDS, bound
    meta = dict(
        help=help,
        unit=unit,
        choices=choices,
        bound=bound,
        learning=learning,
        added_after=added_after,
        pack=pack,
    )
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """One training run. Defaults reproduce the authors' code (docs/faithfulness.md)."""

    env: str = key(
        "predator_prey", "environment (the registry in ficomm.envs; docs/environments.md)"
    )
    backend: str | None = key(
        None, "simulator of the environment; default: the environment's own (docs/environments.md)"
    )
    env_args: dict = key({}, "environment parameters, e.g. env_args.penalty=-0.5")
    share: str = key(
        "nps",
        "ps: one network shared by all agents (+ agent id); nps: one per agent",
        choices=("ps", "nps"),
    )
    comm: bool = key(True, "learned messages (others' messages as inputs; under NPS detached)")
    hidden: int = key(64, "GRU width of the Q-net", bound="at_least_1")
    msg_hidden: int = key(64, "hidden width of the message net", bound="at_least_1")
    msg_dim: int = key(10, "message size", bound="at_least_1")
    own_message: bool = key(
        True, "NPS+COMM feeds each agent its own message (the paper's scheme); false: ablation"
    )
    channel: str = key(
        "concat",
        "how messages reach the Q-net (needs comm=true): concat, side by side (the paper's); "
        "attention, TarMAC-style keys, values and a query (beyond the paper; torch layers)",
        choices=("concat", "attention"),
        added_after="0.1.0",
    )
    seed: int = key(
        0, "seeds torch, numpy, Python and the environment", bound="non_negative", pack=True
    )
    budget: int | None = key(
        None,
        "training length; default: the environment's (the last episode may overshoot)",
        unit="env steps",
        bound="at_least_1",
        pack=True,
    )
    eval_interval: int = key(
        10_000,
        "greedy evaluation at step 0, then after each crossed multiple",
        unit="env steps",
        bound="at_least_1",
    )
    eval_episodes: int = key(20, "greedy episodes per evaluation", bound="at_least_1")
    intervene_every: int | None = key(
        None,
        "message interventions and signalling (comm runs) at every N-th evaluation and the "
        "final one; default: about 10 over the run; 0: never (docs/training.md)",
        unit="evaluations",
        bound="non_negative",
        learning=False,
    )
    buffer_size: int = key(5000, "FIFO replay capacity", unit="episodes", bound="at_least_1")
    batch_size: int = key(
        32, "minibatch, sampled with replacement", unit="episodes", bound="at_least_1"
    )
    lr: float = key(
        5e-4, "RMSprop learning rate, one optimiser per owner", bound="positive", pack=True
    )
    rms_alpha: float = key(0.99, "RMSprop smoothing constant", bound="open_unit", pack=True)
    rms_eps: float = key(1e-8, "RMSprop epsilon", bound="positive", pack=True)
    gamma: float = key(0.99, "discount", bound="unit", pack=True)
    grad_clip: float = key(10.0, "global-norm gradient clip per owner", bound="positive", pack=True)
    target_update: int = key(
        200,
        "hard target-network copy interval",
        unit="gradient steps",
        bound="at_least_1",
        pack=True,
    )
    eps_start: float = key(1.0, "epsilon at the first training step", bound="unit", pack=True)
    eps_end: float = key(0.05, "epsilon after annealing", bound="unit", pack=True)
    eps_anneal: int = key(
        50_000, "linear epsilon decay length", unit="env steps", bound="at_least_1", pack=True
    )
    timelimit_terminal: bool = key(
        True, "authors' quirk: the time limit is stored as terminal; false bootstraps past it"
    )
    target_unroll: str = key(
        "zero_start",
        "authors' quirk: the target net starts from a zero state at o_1; shifted reuses the "
        "full unroll over o_0..o_T",
        choices=("zero_start", "shifted"),
    )
    device: str = key(
        "cpu",
        "cuda trains on a GPU (fails before training where none is available)",
        choices=("cpu", "cuda"),
        learning=False,
    )
    threads: int = key(1, "torch CPU threads", bound="at_least_1", learning=False)
    kernel: str = key(
        "auto",
        "CPU implementation: fused (compiled kernel), torch (layers), auto (fused where it "
        "builds); same math to rounding",
        choices=("auto", "fused", "torch"),
        learning=False,
    )
    pack_learning: str = key(
        "auto",
        "how a pack's runs learn: stacked (their networks on one owner axis: one gradient step "
        "for the pack, and one acting forward on the torch layers) or per_run; auto: stacked "
        "on cuda where the runs share the learner's keys (lr, gamma, ...), per_run on the CPU "
        "(faster there, less memory); same results",
        choices=("auto", "stacked", "per_run"),
        learning=False,
    )
    out: str = key("runs/default", "the run directory", learning=False, pack=True)
    wandb_mode: str = key(
        "offline",
        "W&B mode; the WANDB_MODE environment variable wins",
        choices=("offline", "online", "disabled"),
        learning=False,
    )
    wandb_project: str = key("ficomm", "W&B project", learning=False)
    wandb_entity: str | None = key(None, "W&B entity (user or team)", learning=False)
    wandb_group: str | None = key(
        None, "W&B group; default: the configuration without the seed", learning=False
    )
    wandb_tags: list = key(
        [],
        "extra W&B tags (env, backend, method, hidden, seed, preset are always set)",
        learning=False,
    )
    preset: str | None = key(
        None, "the workflow preset that asked for this run (a W&B label)", learning=False
    )

    def listens_at(self, index: int, final: bool) -> bool:
        """Whether the index-th evaluation (0 at env step 0) runs the message interventions:
        comm runs only, every `intervene_every`-th (auto: about 10 over the run) and the
        final one."""
        every = self.intervene_every
        if every is None:
            every = max(1, round((self.budget // self.eval_interval + 1) / 10))
        return self.comm and every > 0 and (final or index % every == 0)

    @property
    def method(self) -> str:
        """The paper's label: PS+IQL, PS+IQL+COMM, NPS+IQL or NPS+IQL+COMM; the attention
        channel (beyond the paper) is PS+IQL+ATT or NPS+IQL+ATT."""
        return method_label(self.share, self.comm, self.channel)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def learning_dict(self) -> dict[str, Any]:
        """The keys that determine the learning curve (declared with learning=True)."""
        d = self.to_dict()
        return {k: d[k] for k in LEARNING_KEYS}

    def config_hash(self) -> str:
        """A stable hash of the learning keys (resume refuses a different config). `device`
        is hashed too: a run is never resumed on another device (resume is bit-exact), and the
        hashes of existing runs stay valid."""
        blob = {
            k: v
            for k, v in self.learning_dict().items()
            if not (KEYS[k].metadata["added_after"] and v == key_default(k))
        }
        blob.update({k: getattr(self, k) for k in _ALSO_HASHED})
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ]

    def group_name(self) -> str:
        """The configuration without the seed (the W&B group): env, backend, method, hidden,
        then every other learning key whose value differs from its default, so that runs that
        learn differently never share a group."""
        if self.wandb_group:
            return self.wandb_group
        defaults = Config(env=self.env)
        _resolve_env_defaults(defaults)
        named = {"env", "backend", "share", "comm", "channel", "hidden", "seed", "env_args"}
        mine, base = self.learning_dict(), defaults.learning_dict()
        extra = "".join(
            f"-{k}={mine[k]}" for k in sorted(mine) if k not in named and mine[k] != base[k]
        )
        extra += "".join(f"-{k}={v}" for k, v in sorted(self.env_args.items()))
        return f"{self.env}-{self.backend}-{self.method}-h{self.hidden}{extra}"

    def run_name(self) -> str:
        """The W&B run name: the configuration and the seed (unique within a project)."""
        return f"{self.group_name()}-s{self.seed}"


def method_label(share: str, comm: bool, channel: str = "concat") -> str:
    """'PS+IQL', 'NPS+IQL+COMM', ...; 'NPS+IQL+ATT' for the attention channel."""
    suffix = ("+ATT" if channel == "attention" else "+COMM") if comm else ""
    return f"{str(share).upper()}+IQL{suffix}"


def _type_tuple(annotation: Any) -> tuple[type, ...]:
    if isinstance(annotation, types.UnionType):
        return tuple(typing.get_args(annotation))
    return (annotation,)


_HINTS = typing.get_type_hints(Config)
# The declarations, in order: name -> (types, default, metadata).
KEYS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}
_TYPES: dict[str, tuple[type, ...]] = {name: _type_tuple(_HINTS[name]) for name in KEYS}
LEARNING_KEYS = tuple(name for name, f in KEYS.items() if f.metadata["learning"])
NON_LEARNING_KEYS = tuple(name for name in KEYS if name not in LEARNING_KEYS)
PACK_KEYS = tuple(name for name, f in KEYS.items() if f.metadata["pack"])  # may vary in a pack
_ALSO_HASHED = ("device",)


def key_default(name: str) -> Any:
    f = KEYS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def with_added_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config.yaml with the keys added after it was written (declared with `added_after`)
    filled in at their defaults: what that run was trained with."""
    added = {k: key_default(k) for k, f in KEYS.items() if f.metadata["added_after"]}
    return {**added, **stored}


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(KEYS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{key}: unknown config key{hint} (known keys: {', '.join(KEYS)})")


def _number(value: Any) -> Any:
    """A string that spells a number becomes that number: YAML 1.1 (PyYAML) reads 1e-3 and
    -1e-2 (an exponent without a dot) as strings; everything else is returned unchanged."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return value
    return value


def _coerce(key: str, value: Any) -> Any:
    """Check a value's type; ints are accepted where floats are expected, nothing else."""
    types_ = _TYPES[key]
    if float in types_ or int in types_:
        value = _number(value)
    if float in types_ and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if int in types_ and isinstance(value, float) and value.is_integer():
        # 1e6 in YAML is a float; accept integral floats for counts.
        return int(value)
    if isinstance(value, bool) and bool not in types_:
        raise ConfigError(f"{key}: expected {_type_names(types_)}, got the boolean {value!r}")
    if not isinstance(value, types_):
        raise ConfigError(
            f"{key}: expected {_type_names(types_)}, got {type(value).__name__} {value!r}"
        )
    if key == "wandb_tags":
        return [str(t) for t in value]
    if key == "env_args":
        return {k: _number(v) for k, v in value.items()}
    return value


def _type_names(types_: tuple[type, ...]) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return " or ".join(names.get(t, t.__name__) for t in types_ if t is not type(None))


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
        if key not in KEYS:
            raise _unknown_key(key)
        if value is None and type(None) not in _TYPES[key]:
            raise ConfigError(f"{key}: a value is required ({_type_names(_TYPES[key])})")
        kwargs[key] = _coerce(key, value) if value is not None else None
    cfg = Config(**kwargs)
    _resolve_env_defaults(cfg)
    validate(cfg)
    return cfg


def _read_values(path: str | Path | None, overrides: list[str] | None) -> dict[str, Any]:
    """The raw values of an optional YAML config with key=value overrides applied."""
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
    return values


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read an optional YAML config, apply key=value overrides, validate."""
    return make_config(_read_values(path, overrides))


def load_pack(path: str | Path | None = None, overrides: list[str] | None = None) -> list[Config]:
    """The runs one `ficomm train` process trains side by side (a pack), validated.

    A key declared with pack=True (`PACK_KEYS`: seed, lr, budget, ...) given as a list makes one
    run per element (every such list of one length): `seed=[0,1,2]`. Each run needs its own
    directory: `out` is then a list, or a template that names a varying key
    (`out=runs/pp/seed{seed}`). Without lists this is `[load_config(path, overrides)]`."""
    values = _read_values(path, overrides)
    varying = {k: v for k, v in values.items() if k in PACK_KEYS and isinstance(v, list)}
    if not varying:
        return [make_config(values)]
    sizes = {k: len(v) for k, v in varying.items()}
    if len(set(sizes.values())) > 1 or 0 in sizes.values():
        listed = ", ".join(f"{k} has {n}" for k, n in sizes.items())
        raise ConfigError(f"pack: every list of a pack needs the same, non-zero length ({listed})")
    size = next(iter(sizes.values()))
    for k, v in values.items():
        if isinstance(v, list) and k in KEYS and _TYPES[k] != (list,) and k not in PACK_KEYS:
            raise ConfigError(
                f"{k}: the runs of a pack share one value of {k} (only {', '.join(PACK_KEYS)} "
                "may be lists)"
            )
    out = values.get("out", key_default("out"))
    if "out" not in varying and not (isinstance(out, str) and "{" in out):
        raise ConfigError(
            f"out: a pack of {size} runs needs a directory per run: a template that names a "
            "varying key (out=runs/pp/seed{seed}) or a list of directories"
        )
    cfgs = []
    for i in range(size):
        run = {**values, **{k: v[i] for k, v in varying.items()}}
        if "out" not in varying:
            try:
                run["out"] = out.format(**{k: run[k] for k in varying})
            except (KeyError, IndexError, ValueError):
                raise ConfigError(
                    f"out: the template {out!r} may name only the keys that vary in the pack "
                    f"({', '.join('{' + k + '}' for k in varying)})"
                ) from None
        cfgs.append(make_config(run))
    seen: dict[str, int] = {}
    for i, cfg in enumerate(cfgs):
        where = str(Path(cfg.out).resolve())
        if where in seen:
            raise ConfigError(f"out: runs {seen[where]} and {i} of the pack share {cfg.out}")
        seen[where] = i
    return cfgs


def _resolve_env_defaults(cfg: Config) -> None:
    if cfg.env in ENV_NAMES:
        spec = env_spec(cfg.env)
        if cfg.backend is None:
            cfg.backend = spec.default_backend
        if cfg.budget is None:
            cfg.budget = spec.default_budget


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def validate(cfg: Config) -> None:
    """Impossible values fail here, before anything is built, naming the field: first each
    key's declared choices and bounds, then the checks that involve several keys."""
    _check(
        cfg.env in ENV_NAMES, "env", f"unknown environment {cfg.env!r}; choose one of {ENV_NAMES}"
    )
    for name, f in KEYS.items():
        value, meta = getattr(cfg, name), f.metadata
        if value is None:
            continue
        if meta["choices"] is not None:
            _check(value in meta["choices"], name, f"must be {_choices(meta)}, got {value!r}")
        if meta["bound"] is not None:
            ok, phrase = BOUNDS[meta["bound"]]
            _check(ok(value), name, f"{phrase}, got {value}")
    _check(
        cfg.backend in backends_for(cfg.env),
        "backend",
        f"{cfg.backend!r} cannot run {cfg.env!r}; choose one of {backends_for(cfg.env)}",
    )
    _check(
        cfg.budget >= cfg.eval_interval,
        "budget",
        f"{cfg.budget} is below eval_interval={cfg.eval_interval}: the run would evaluate only "
        "the untrained policy; raise budget or lower eval_interval",
    )
    _check(cfg.eps_end <= cfg.eps_start, "eps_end", "must not exceed eps_start")
    _check(
        not (cfg.kernel == "fused" and cfg.device == "cuda"),
        "kernel",
        "'fused' is the compiled CPU kernel; with device=cuda use kernel=auto or torch",
    )
    _check(
        cfg.comm or cfg.channel == "concat",
        "channel",
        f"{cfg.channel!r} is a message channel; it needs comm=true",
    )
    _check(
        not (cfg.kernel == "fused" and cfg.channel == "attention"),
        "kernel",
        "'fused' has no attention channel; with channel=attention use kernel=auto or torch",
    )
    _check(bool(cfg.out), "out", "a run directory is required (out=DIR)")
    for key in cfg.env_args:
        _check(isinstance(key, str) and key != "", "env_args", f"bad parameter name {key!r}")


def _choices(meta) -> str:
    quoted = [repr(c) for c in meta["choices"]]
    return " or ".join(quoted) if len(quoted) == 2 else f"one of [{', '.join(quoted)}]"


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def _default_text(name: str) -> str:
    if name in ("backend", "budget"):  # None: the environment's own (its registry entry)
        return "per env"
    value = key_default(name)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def keys_help() -> str:
    """Every key with its default, unit and help (`ficomm train --help`)."""
    lines = []
    for name, f in KEYS.items():
        meta = f.metadata
        extra = f" [{meta['unit']}]" if meta["unit"] else ""
        extra += " [pack: a list trains one run per value]" if meta["pack"] else ""
        choices = f" ({'|'.join(map(str, meta['choices']))})" if meta["choices"] else ""
        lines.append(f"  {name}={_default_text(name)}{extra}{choices}\n      {meta['help']}")
    return "\n".join(lines)


def keys_markdown() -> str:
    """The key table of docs/training.md (a test checks that the page holds exactly this)."""
    rows = [
        "| key | default | unit | changes learning | may vary in a pack | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in KEYS.items():
        meta = f.metadata
        meaning = meta["help"]
        if meta["choices"]:
            meaning += " (one of: " + ", ".join(f"`{c}`" for c in meta["choices"]) + ")"
        rows.append(
            f"| `{name}` | {_default_text(name)} | {meta['unit'] or '-'} | "
            f"{'yes' if meta['learning'] else 'no'} | {'yes' if meta['pack'] else 'no'} | "
            f"{meaning} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":  # python -m ficomm.config --markdown: the table of docs/training.md
    import sys

    print(keys_markdown() if "--markdown" in sys.argv else keys_help())
