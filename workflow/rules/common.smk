"""Configuration checks, the grid of training runs, and the helpers the rules use."""

import math
import os
import shlex
import sys
from itertools import product

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from ficomm.envs import ENV_NAMES, backend_spec, backends_for

validate(config, "../schemas/config.schema.yaml")

# `ficomm` is looked up on PATH first (a conda env, an activated venv); the bin directory of the
# Python running Snakemake is appended as the fallback, so `.venv/bin/snakemake ...` works without
# activating the venv (cluster jobs re-invoke that same Python).
# JAX (the smax backend) compiles the same programs in every run: share its compilation cache
# (small programs included) between the jobs of the workflow unless the user set it otherwise.
shell.prefix(
    "set -euo pipefail; "
    f'export PATH="$PATH":{shlex.quote(os.path.dirname(sys.executable))}; '
    'export JAX_COMPILATION_CACHE_DIR="${{JAX_COMPILATION_CACHE_DIR:-.snakemake/jax-cache}}"; '
    "export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="
    '"${{JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}}"; '
)


def _config_error(field, message):
    return WorkflowError(f"config: {field}: {message} (edit config/config.yaml or --config)")


def _check_preset(name, presets):
    if name not in presets:
        raise _config_error("preset", f"unknown preset {name!r}; choose one of {sorted(presets)}")
    preset = presets[name]
    for env in preset["grid"]["env"]:
        if env not in ENV_NAMES:
            raise _config_error(
                f"presets.{name}.grid.env", f"unknown env {env!r}; choose from {ENV_NAMES}"
            )
        backend = preset["backend"].get(env)
        if backend not in backends_for(env):
            raise _config_error(
                f"presets.{name}.backend.{env}",
                f"{backend!r} cannot run {env!r}; set one of {backends_for(env)}",
            )
        if env not in preset["budget"]:
            raise _config_error(
                f"presets.{name}.budget.{env}", "missing: give the env steps per run"
            )
    return preset


def _check_output_dirs(presets):
    """No two presets may write into one folder: one would overwrite the other's results."""
    seen = {}
    for name, preset in presets.items():
        for key, default in (("out", f"results/{name}"), ("figures", f"paper_figures/{name}")):
            path = os.path.normpath(preset.get(key, default))
            if path in seen:
                raise _config_error(
                    f"presets.{name}.{key}",
                    f"{path!r} is already the folder of presets.{seen[path]}; give each preset "
                    "its own",
                )
            seen[path] = f"{name}.{key}"


_check_output_dirs(config["presets"])
PRESET_NAME = config["preset"]
PRESET = _check_preset(PRESET_NAME, config["presets"])
WANDB = config["wandb"]

RESULTS = PRESET.get("out", f"results/{PRESET_NAME}")
FIGURES = PRESET.get("figures", f"paper_figures/{PRESET_NAME}")
REFERENCE = "config/reference.yaml"  # what the paper reports (the replication report's reference)
COMM_DIRS = {True: "comm", False: "nocomm"}
RUN_DIR = f"{RESULTS}/runs/{{env}}/{{backend}}/{{share}}_{{comm}}/h{{hidden}}/seed{{seed}}"
LOG_DIR = f"{RESULTS}/logs"


wildcard_constraints:
    env="[a-z0-9_]+",
    backend="[a-z0-9_]+",
    share="ps|nps",
    comm="comm|nocomm",
    hidden=r"\d+",
    seed=r"\d+",


def grid_points():
    """One dict of run-path wildcards per training run of the selected preset."""
    grid = PRESET["grid"]
    return [
        dict(
            env=env,
            backend=PRESET["backend"][env],
            share=share,
            comm=COMM_DIRS[comm],
            hidden=hidden,
            seed=seed,
        )
        for env, share, comm, hidden, seed in product(
            grid["env"], grid["share"], grid["comm"], grid["hidden"], grid["seeds"]
        )
    ]


def run_files(name):
    """The file `name` of every run directory of the grid."""
    return [f"{RUN_DIR}/{name}".format(**point) for point in grid_points()]


def _flatten(settings, prefix=""):
    """{"env_args": {"penalty": -0.5}} -> {"env_args.penalty": -0.5}."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _cli_value(value):
    if isinstance(value, str):
        return value
    # YAML flow style: true/false, null, numbers and lists read back as `ficomm train` parses them
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def per_env(value, env):
    """A preset value given once for every env, or per env ({predator_prey: .., 3s_vs_5z: ..})."""
    if not isinstance(value, dict):
        return value
    if env not in value:
        raise _config_error(f"presets.{PRESET_NAME}.eval_interval.{env}", "missing for this env")
    return value[env]


def train_settings(wildcards):
    """The `ficomm train` keys of one grid point (everything but out, device and threads)."""
    env, comm = wildcards.env, wildcards.comm == COMM_DIRS[True]
    hidden, seed = int(wildcards.hidden), int(wildcards.seed)
    settings = {
        "env": env,
        "backend": wildcards.backend,
        "share": wildcards.share,
        "comm": comm,
        "hidden": hidden,
        "seed": seed,
        "budget": PRESET["budget"][env],
        "eval_interval": per_env(PRESET["eval_interval"], env),
        "eval_episodes": PRESET["eval_episodes"],
        "wandb_mode": WANDB["mode"],
        "wandb_project": WANDB["project"],
        "preset": PRESET_NAME,
    }
    if WANDB["entity"]:
        settings["wandb_entity"] = WANDB["entity"]
    settings.update(_flatten(PRESET.get("train", {})))
    point = dict(env=env, share=wildcards.share, comm=comm, hidden=hidden, seed=seed)
    for override in PRESET.get("overrides", []):
        if all(point.get(key) == value for key, value in override["where"].items()):
            settings.update(_flatten(override["set"]))
    return settings


def train_args(wildcards):
    """train_settings as shell-quoted key=value arguments."""
    return " ".join(
        shlex.quote(f"{key}={_cli_value(value)}")
        for key, value in train_settings(wildcards).items()
    )


# Run time and memory per job come from the environment's registry entry (ficomm.envs): a
# rough single-core speed and a memory request per backend. Generous on purpose: a job that
# still runs out of time resumes from its checkpoint on retry, with a longer limit.
STARTUP_MINUTES = 10


def train_runtime(wildcards, attempt):
    """Minutes of wall-clock time to request, from the env's budget and the backend's speed."""
    speed = backend_spec(wildcards.env, wildcards.backend).steps_per_second
    seconds = PRESET["budget"][wildcards.env] / speed
    return (math.ceil(1.5 * seconds / 60) + STARTUP_MINUTES) * attempt


def train_mem_mb(wildcards):
    return backend_spec(wildcards.env, wildcards.backend).mem_mb


def train_device(wildcards, resources):
    """`--set-resources train:gpu=1` asks the scheduler for a GPU and trains on it."""
    return "cuda" if int(resources.gpu) > 0 else "cpu"


TABLES = ("final_performance", "param_counts")


def figure_files():
    """Every file `ficomm analysis figures` writes for the grid (asked from the analysis code)."""
    import pandas as pd
    from ficomm.analysis.aggregate import method_label
    from ficomm.analysis.figure_specs import figure_specs

    grid = pd.DataFrame(
        [
            dict(
                env=p["env"],
                backend=p["backend"],
                method=method_label(p["share"], p["comm"] == COMM_DIRS[True]),
                hidden=p["hidden"],
            )
            for p in grid_points()
        ]
    )
    stems = [spec["name"] for spec in figure_specs(grid)]
    files = [f"{FIGURES}/{stem}.{ext}" for stem in stems for ext in ("pdf", "png", "csv")]
    files += [f"{FIGURES}/{table}.{ext}" for table in TABLES for ext in ("csv", "md", "tex")]
    return files + [f"{FIGURES}/figures.json"]


def publish_args(wildcards):
    """config.yaml's `wandb:` section as `ficomm analysis publish` options."""
    args = ["--mode", WANDB["mode"], "--project", WANDB["project"], "--name", PRESET_NAME]
    if WANDB["entity"]:
        args += ["--entity", WANDB["entity"]]
    if WANDB["reference_project"]:
        args += ["--reference-project", WANDB["reference_project"]]
    return " ".join(shlex.quote(arg) for arg in args)
