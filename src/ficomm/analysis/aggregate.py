"""Run directories -> one tidy table, and the per-run final performance every figure, table
and claim uses.

A run directory holds config.yaml (the resolved flat config), run_info.json
(derived facts: method label, n_params, q_input_width, ...) and metrics.csv (one row per
evaluation). The tidy table has one row per (run, evaluation) with every scalar config and
run-info value repeated as columns. Only those three files are read: the analysis never
imports the learner.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ficomm.config import NON_LEARNING_KEYS, with_added_defaults
from ficomm.config import method_label as _config_method_label
from ficomm.envs import ENV_NAMES, env_spec
from ficomm.envs.base import ConfigError


class AnalysisInputError(ConfigError):
    """An input file of the analysis is missing or malformed; the message names the path."""


METHODS = ("PS+IQL", "PS+IQL+COMM", "NPS+IQL", "NPS+IQL+COMM")  # the paper's four
# Beyond the paper: the attention channel is a method label of its own, so its runs never
# mix with the paper's COMM runs and the paper's figures (which draw METHODS) stay as they are.
ATTENTION_METHODS = ("PS+IQL+ATT", "NPS+IQL+ATT")
ALL_METHODS = METHODS + ATTENTION_METHODS
HIDDEN_SIZES = (32, 64, 128)
DEFAULT_HIDDEN = 64  # the paper's default GRU width: the four-method comparison uses it
# The grid axes; every other config key that varies across runs marks a variant (an ablation).
# `channel` is named by the method label, so it is no variant.
GRID_COLUMNS = ("env", "backend", "share", "comm", "channel", "hidden", "seed")
# Config keys that say where or how a run executed, not what was learned (declared in config.py).
_NOT_CONFIG_IDENTITY = set(NON_LEARNING_KEYS)
REQUIRED_METRICS = ("env_steps", "eval_return_mean")
REQUIRED_CONFIG = ("env", "backend", "share", "comm", "hidden", "seed")

# Final performance: the mean of a run's last K evaluations (10 evaluations = the last 100k
# env steps at the paper's 10k interval), which smooths the 20-episode evaluation noise.
DEFAULT_LAST_K = 10


def method_label(share: str, comm: bool, channel: str = "concat") -> str:
    """'PS+IQL', 'NPS+IQL+COMM', ...; 'NPS+IQL+ATT' for the attention channel."""
    return _config_method_label(share, _as_bool(comm), channel)


def method_slug(method: str) -> str:
    """'PS+IQL+COMM' -> 'ps_iql_comm' (file names)."""
    return method.lower().replace("+", "_")


def primary_metric(env: str) -> tuple[str, str]:
    """(column, axis label) of the metric `env` is judged by (its registry entry)."""
    if env not in ENV_NAMES:
        raise AnalysisInputError(f"env: no primary metric known for {env!r}; known: {ENV_NAMES}")
    spec = env_spec(env)
    return spec.metric, spec.metric_label


def env_title(env: str, backend: str) -> str:
    """'3s_vs_5z (SMAX backend)': the backend is always named next to the environment."""
    if env not in ENV_NAMES:
        return f"{env} ({backend} backend)"
    spec = env_spec(env)
    b = spec.backends.get(backend)
    return f"{spec.title} ({b.title if b else backend} backend)"


# ---------------------------------------------------------------- reading run directories


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Each path is a run directory (holds metrics.csv or config.yaml) or a root searched
    recursively for run directories. Sorted, without duplicates."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise AnalysisInputError(f"{p}: no such run directory or root")
        if p.is_file():
            raise AnalysisInputError(f"{p}: expected a run directory or a root, got a file")
        if _is_run_dir(p):
            found.add(p)
            continue
        hits = {
            m.parent
            for name in ("metrics.csv", "run_info.json")
            for m in p.rglob(name)
            if not {"wandb", "checkpoint"} & set(m.relative_to(p).parts[:-1])
        }
        if not hits:
            raise AnalysisInputError(
                f"{p}: no run directories below (none holds metrics.csv or run_info.json)"
            )
        found |= hits
    return sorted(found)


def _read_run_parts(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    """(flattened config.yaml, tidy rows) of one run directory."""
    # keys added since a run was written read as their defaults: its identity stays the same
    config = with_added_defaults(_read_mapping(run_dir / "config.yaml", _yaml_load, "YAML"))
    info = _read_mapping(run_dir / "run_info.json", json.loads, "JSON")
    missing = [k for k in REQUIRED_CONFIG if k not in config]
    if missing:
        raise AnalysisInputError(f"{run_dir / 'config.yaml'}: missing keys {missing}")
    metrics = _read_metrics(run_dir / "metrics.csv")
    if "backend" in metrics and (metrics["backend"] != config.get("backend")).any():
        raise AnalysisInputError(
            f"{run_dir / 'metrics.csv'}: backend {sorted(set(metrics['backend']))} disagrees "
            f"with config.yaml (backend={config.get('backend')!r})"
        )

    flat_config = _flatten(config)
    columns: dict[str, object] = dict(flat_config)
    for key, value in _flatten(info).items():
        if key in ("method", "method_label"):
            continue
        if key in columns and not _same(columns[key], value):
            columns[f"info.{key}"] = value
        else:
            columns.setdefault(key, value)
    label = method_label(config["share"], config["comm"], config["channel"])
    stated = info.get("method", info.get("method_label"))
    if stated is not None and stated != label:
        raise AnalysisInputError(
            f"{run_dir / 'run_info.json'}: method {stated!r} disagrees with config.yaml "
            f"(share={config['share']}, comm={config['comm']}, channel={config['channel']} "
            f"-> {label!r})"
        )
    columns["method"] = label
    columns["comm"] = _as_bool(config["comm"])
    columns["run_dir"] = str(run_dir)
    columns["source"] = "ficomm"

    const = {k: [v] * len(metrics) for k, v in columns.items() if k not in metrics.columns}
    rows = pd.concat([metrics, pd.DataFrame(const, index=metrics.index)], axis=1)
    rows["eval_index"] = np.arange(len(rows))
    interval = config.get("eval_interval") or info.get("eval_interval")
    if interval:
        rows["eval_step"] = (rows["env_steps"] // int(interval)) * int(interval)
    else:
        rows["eval_step"] = rows["env_steps"]
    reason = incomplete_reason(rows, config, info)
    rows["run_complete"] = reason == ""
    rows["incomplete_reason"] = reason
    return flat_config, rows


def incomplete_reason(rows: pd.DataFrame, config: dict, info: dict) -> str:
    """'' for a run that finished, else why it looks half-written: run_info.json says
    `finished: false`, or metrics.csv stops before the budget (its last evaluation lies
    before the last multiple of eval_interval below the budget, where the trainer evaluates
    last), or holds fewer evaluations than budget / eval_interval (checked only when episodes
    are no longer than the interval, so that no evaluation can be skipped legitimately)."""
    if info.get("finished") is False:
        return "run_info.json says finished: false"
    budget = config.get("budget")
    if not budget:
        return ""
    budget, interval = (
        int(budget),
        int(config.get("eval_interval") or info.get("eval_interval") or 0),
    )
    last = int(rows["env_steps"].max())
    if interval <= 0:
        return "" if last >= budget else f"metrics.csv ends at env step {last} of budget {budget}"
    expected = -(-budget // interval)  # evaluations at 0, I, 2I, ... below the budget
    last_due = (expected - 1) * interval
    if last < last_due:
        return (
            f"metrics.csv ends at env step {last} of budget {budget} (the last evaluation is "
            f"due at env step {last_due}; {len(rows)} of {expected} evaluations)"
        )
    limit = info.get("episode_limit")
    if isinstance(limit, int | float) and 0 < limit <= interval and len(rows) < expected:
        return f"metrics.csv holds {len(rows)} of {expected} evaluations (budget / eval_interval)"
    return ""


def aggregate_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Every run found under `paths` -> one tidy DataFrame (config columns first)."""
    run_dirs = find_run_dirs(paths)
    parts = [_read_run_parts(d) for d in run_dirs]
    df = pd.concat([rows for _, rows in parts], ignore_index=True, sort=False)
    configs = pd.DataFrame([c for c, _ in parts], index=[str(d) for d in run_dirs])
    df["variant"] = df["run_dir"].map(variant_labels(configs))
    _check_duplicates(df)
    front = ["source", "env", "backend", "method", "share", "comm", "hidden", "seed", "variant"]
    front += [
        c
        for c in ("n_params", "q_input_width", "budget", "eval_interval", "run_complete")
        if c in df
    ]
    front += ["incomplete_reason"] if "incomplete_reason" in df else []
    front += ["run_dir", "eval_index", "eval_step"]
    return df[front + [c for c in df.columns if c not in front]]


def variant_labels(configs: pd.DataFrame) -> pd.Series:
    """Per run (index), '' when its non-grid config equals the most common one of its
    (env, backend), else 'key=value; ...' of the keys where it differs (an ablation)."""
    cols = [c for c in configs.columns if c not in GRID_COLUMNS and c not in _NOT_CONFIG_IDENTITY]
    variant = pd.Series("", index=configs.index, dtype=object)
    for _, group in configs.groupby(["env", "backend"], sort=False):
        for col in cols:
            vals = group[col].astype(str)
            if vals.nunique() < 2:
                continue
            modal = vals.value_counts().index[0]
            for run, v in vals.items():
                if v != modal:
                    variant[run] = f"{variant[run]}; {col}={v}".lstrip("; ")
    return variant


# ---------------------------------------------------------------- using the tidy table


def load_runs(path: str | Path) -> pd.DataFrame:
    """Read an aggregated CSV back, with a clear error if it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisInputError(f"{path}: aggregated CSV not found (run `aggregate` first)")
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise AnalysisInputError(f"{path}: not a readable CSV ({e})") from e
    needed = {"env", "backend", "method", "hidden", "seed", "run_dir", "eval_step", "env_steps"}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise AnalysisInputError(f"{path}: not an aggregated table, columns missing: {missing}")
    if "variant" not in df:
        df["variant"] = ""
    df["variant"] = ["" if pd.isna(v) else str(v) for v in df["variant"]]
    if "source" not in df:
        df["source"] = "ficomm"
    return df


def main_grid(df: pd.DataFrame) -> pd.DataFrame:
    """ficomm's runs of the main grid (no ablation variant, no pulled reference runs)."""
    return df[(df["variant"] == "") & (df["source"] == "ficomm")]


def final_performance(
    df: pd.DataFrame, last_k: int = DEFAULT_LAST_K, metric: str | None = None
) -> pd.DataFrame:
    """One row per run: its configuration and `final`, the mean of the run's primary metric
    (or `metric`) over its last `last_k` evaluations (all if it has fewer), and `n_evals_used`."""
    if last_k < 1:
        raise AnalysisInputError(f"last_k: must be >= 1, got {last_k}")
    keys = ["source", "env", "backend", "method", "hidden", "variant", "seed", "run_dir"]
    extra = [c for c in ("share", "comm", "n_params", "run_complete", "env_steps") if c in df]
    rows = []
    for key, run in df.groupby(keys, sort=False, dropna=False):
        run = run.sort_values("eval_step")
        col = metric or primary_metric(key[1])[0]
        if col not in run or run[col].isna().all():
            raise AnalysisInputError(f"{key[-1]}: metric {col!r} is empty for env {key[1]!r}")
        tail = run[col].dropna().tail(last_k)
        row = dict(zip(keys, key, strict=True))
        for c in extra:
            row[c] = run[c].iloc[-1]
        row.update(metric=col, final=float(tail.mean()), n_evals_used=int(tail.size))
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.rename(columns={"env_steps": "final_env_steps"})


def configuration_order(frame: pd.DataFrame) -> list[tuple[str, int]]:
    """(method, hidden) pairs present, in the paper's method order then by hidden size."""
    pairs = {(m, int(h)) for m, h in zip(frame["method"], frame["hidden"], strict=True)}
    return sorted(pairs, key=lambda p: (_method_rank(p[0]), p[1]))


def _method_rank(method: str) -> int:
    return ALL_METHODS.index(method) if method in ALL_METHODS else len(ALL_METHODS)


# ---------------------------------------------------------------- helpers


def _is_run_dir(p: Path) -> bool:
    return (p / "metrics.csv").exists() or (p / "run_info.json").exists()


def _yaml_load(text: str):
    # The C loader when libyaml is there: the pure-Python one dominates aggregating many runs.
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _read_mapping(path: Path, parse, kind: str) -> dict:
    if not path.is_file():
        raise AnalysisInputError(
            f"{path}: missing (not a finished run directory? rerun its training job "
            "or leave it out of the inputs)"
        )
    try:
        data = parse(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnalysisInputError(f"{path}: corrupt {kind} ({e})") from e
    if not isinstance(data, dict):
        raise AnalysisInputError(f"{path}: expected a {kind} mapping, got {type(data).__name__}")
    return data


# metrics.csv columns that hold text (every other column must be numeric)
TEXT_METRICS = ("backend",)


def _read_metrics(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise AnalysisInputError(
            f"{path}: missing (the run has not written an evaluation yet; rerun its job)"
        )
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise AnalysisInputError(f"{path}: corrupt CSV ({e})") from e
    missing = [c for c in REQUIRED_METRICS if c not in df.columns]
    if missing:
        raise AnalysisInputError(f"{path}: columns missing: {missing}")
    if df.empty:
        raise AnalysisInputError(f"{path}: no evaluation rows")
    for c in df.columns:
        if c in TEXT_METRICS:
            continue
        if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])):
            try:
                df[c] = pd.to_numeric(df[c])
            except (ValueError, TypeError) as e:
                raise AnalysisInputError(f"{path}: column {c!r} is not numeric ({e})") from e
    if df["env_steps"].isna().any() or not df["env_steps"].is_monotonic_increasing:
        raise AnalysisInputError(f"{path}: env_steps must be present and non-decreasing")
    return df


def _flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts -> dotted keys; lists -> JSON strings (one CSV cell each)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        elif isinstance(v, list | tuple):
            out[key] = json.dumps(list(v))
        else:
            out[key] = v
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _as_bool(v) -> bool:
    if isinstance(v, str):
        if v.lower() in ("true", "1", "yes"):
            return True
        if v.lower() in ("false", "0", "no"):
            return False
        raise AnalysisInputError(f"comm: expected a boolean, got {v!r}")
    return bool(v)


def _check_duplicates(df: pd.DataFrame) -> None:
    per_run = df.drop_duplicates("run_dir")
    key = ["env", "backend", "method", "hidden", "variant", "seed"]
    dup = per_run[per_run.duplicated(key, keep=False)]
    if not dup.empty:
        first = dup.sort_values(key).head(2)["run_dir"].tolist()
        raise AnalysisInputError(
            f"{first[0]} and {first[1]}: same configuration and seed; "
            "remove one so that no seed is counted twice"
        )
