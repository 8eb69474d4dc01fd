"""Configuration checks, the grid of training runs, and the helpers the rules use."""

import math
import os
import shlex
import sys
from itertools import product

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from ficomm.config import LEARNING_KEYS, load_config, with_added_defaults
from ficomm.envs import ENV_NAMES, backend_spec, backends_for
from ficomm.envs.base import ConfigError

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


def _grids(preset, name):
    """(field, cross product) of a preset: its grid, then each extra grid as the grid with the
    axes it names replaced."""
    grid = preset["grid"]
    yield f"presets.{name}.grid", grid
    for i, extra in enumerate(preset.get("extra_grids", [])):
        yield f"presets.{name}.extra_grids[{i}]", {**grid, **extra}


def _check_preset(name, presets):
    if name not in presets:
        raise _config_error("preset", f"unknown preset {name!r}; choose one of {sorted(presets)}")
    preset = presets[name]
    for where, grid in _grids(preset, name):
        for env in grid["env"]:
            if env not in ENV_NAMES:
                raise _config_error(f"{where}.env", f"unknown env {env!r}; choose from {ENV_NAMES}")
    for env in dict.fromkeys(e for _, grid in _grids(preset, name) for e in grid["env"]):
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
# The W&B settings, spelled as the `ficomm train` keys (wandb_mode, ...).
WANDB = {k: config[f"wandb_{k}"] for k in ("mode", "project", "entity", "reference_project")}
DEVICE = config.get("device", "cpu")

RESULTS = PRESET.get("out", f"results/{PRESET_NAME}")
FIGURES = PRESET.get("figures", f"paper_figures/{PRESET_NAME}")
REFERENCE = "config/reference.yaml"  # what the paper reports (the replication report's reference)
# The channel factor: none, the paper's concatenation, or attention (beyond the paper); the
# directory names the level, so the paper's run paths are unchanged.
COMM_DIRS = {False: "nocomm", True: "comm", "attention": "att"}
COMM_LEVELS = {d: level for level, d in COMM_DIRS.items()}
RUN_DIR = f"{RESULTS}/runs/{{env}}/{{backend}}/{{share}}_{{comm}}/h{{hidden}}/seed{{seed}}"
LOG_DIR = f"{RESULTS}/logs"


wildcard_constraints:
    env="[a-z0-9_]+",
    backend="[a-z0-9_]+",
    share="ps|nps",
    comm="|".join(COMM_DIRS.values()),
    hidden=r"\d+",
    seed=r"\d+",


def grid_points():
    """One dict of run-path wildcards per training run of the selected preset (the union of
    its cross products, in order, each run once)."""
    points = {}
    for _, grid in _grids(PRESET, PRESET_NAME):
        for env, share, comm, hidden, seed in product(
            grid["env"], grid["share"], grid["comm"], grid["hidden"], grid["seeds"]
        ):
            point = dict(
                env=env,
                backend=PRESET["backend"][env],
                share=share,
                comm=COMM_DIRS[comm],
                hidden=hidden,
                seed=seed,
            )
            points.setdefault(tuple(point.values()), point)
    return list(points.values())


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


def _point(wildcards):
    """A grid point (a dict of grid_points, or a job's wildcards) as a plain dict."""
    return dict(wildcards) if isinstance(wildcards, dict) else dict(wildcards.items())


def train_settings(point):
    """The `ficomm train` keys of one grid point (everything but out, device and threads), each
    with the config field it comes from: {key: (value, field)}."""
    point = _point(point)
    env, level = point["env"], COMM_LEVELS[point["comm"]]
    comm = level is not False
    hidden, seed = int(point["hidden"]), int(point["seed"])
    preset = f"presets.{PRESET_NAME}"
    interval = PRESET["eval_interval"]
    settings = {
        "env": (env, f"{preset}.grid.env"),
        "backend": (point["backend"], f"{preset}.backend.{env}"),
        "share": (point["share"], f"{preset}.grid.share"),
        "comm": (comm, f"{preset}.grid.comm"),
        **({"channel": ("attention", f"{preset}.grid.comm")} if level == "attention" else {}),
        "hidden": (hidden, f"{preset}.grid.hidden"),
        "seed": (seed, f"{preset}.grid.seeds"),
        "budget": (PRESET["budget"][env], f"{preset}.budget.{env}"),
        "eval_interval": (
            per_env(interval, env),
            f"{preset}.eval_interval" + (f".{env}" if isinstance(interval, dict) else ""),
        ),
        "eval_episodes": (PRESET["eval_episodes"], f"{preset}.eval_episodes"),
        "wandb_mode": (WANDB["mode"], "wandb_mode"),
        "wandb_project": (WANDB["project"], "wandb_project"),
        "preset": (PRESET_NAME, "preset"),
    }
    if WANDB["entity"]:
        settings["wandb_entity"] = (WANDB["entity"], "wandb_entity")
    for key, value in _flatten(PRESET.get("train", {})).items():
        settings[key] = (value, f"{preset}.train.{key}")
    factors = dict(env=env, share=point["share"], comm=level, hidden=hidden, seed=seed)
    for i, override in enumerate(PRESET.get("overrides", [])):
        if all(factors.get(key) == value for key, value in override["where"].items()):
            for key, value in _flatten(override["set"]).items():
                settings[key] = (value, f"{preset}.overrides[{i}].set.{key}")
    return settings


def _learns(key):
    """Whether a `ficomm train` key (env_args.NAME included) changes what a run learns."""
    return key.split(".", 1)[0] in LEARNING_KEYS


def _cli_args(settings):
    """{key: (value, field)} as `ficomm train` arguments: key=value, unquoted."""
    return [f"{key}={_cli_value(value)}" for key, (value, _) in settings.items()]


def train_args(wildcards):
    """The learning keys of one grid point, shell-quoted: a change reruns its job (Snakemake's
    params trigger), which the check of the runs on disk below refuses for a finished run."""
    settings = {k: s for k, s in train_settings(wildcards).items() if _learns(k)}
    return " ".join(shlex.quote(arg) for arg in _cli_args(settings))


def train_execution_args(wildcards, resources):
    """The keys of one grid point that say how its run executes or is logged, not what it learns
    (device, kernel, W&B), shell-quoted. Snakemake leaves a param computed from resources (or
    input, output, threads) out of its params rerun trigger, so changing these, like threads,
    reruns no finished run; `--set-resources train:gpu=1` trains on a GPU (device=cuda)."""
    settings = {k: s for k, s in train_settings(wildcards).items() if not _learns(k)}
    settings["device"] = ("cuda" if int(resources.gpu) > 0 else "cpu", "resources.gpu")
    return " ".join(shlex.quote(arg) for arg in _cli_args(settings))


def job_gpus():
    """GPUs per training job: one where the workflow's device is cuda."""
    return 1 if DEVICE == "cuda" else 0


def _field_of(key, settings):
    """The config field a `ficomm train` key came from (env_args errors name env_args only)."""
    if key in settings:
        return settings[key][1]
    for name, (_, field) in settings.items():
        if name.startswith(f"{key}."):
            return field
    return None


def _run_config(point):
    """The Config that `ficomm train` builds from the arguments the rule passes to one grid
    point, parsed and validated by ficomm.config itself; a bad key or value raises here, while
    the Snakefile is parsed, as a one-line WorkflowError naming the config field."""
    settings = train_settings(point)
    settings["out"] = (RUN_DIR.format(**point), f"presets.{PRESET_NAME}.out")
    try:
        return load_config(None, _cli_args(settings))
    except ConfigError as exc:
        message = " ".join(str(exc).split())  # one line (YAML parse errors span several)
        key, _, reason = message.partition(": ")
        field = _field_of(key, settings)
        if field is None:  # a check of several keys, or a default: keep the key it names
            raise _config_error(f"presets.{PRESET_NAME}", message) from None
        raise _config_error(field, reason) from None


RUN_CONFIGS = {RUN_DIR.format(**point): _run_config(point) for point in grid_points()}


def _stored_config(run_dir):
    """The config.yaml of the run in `run_dir`, {} where it cannot be read, or None where the
    directory holds no run that a retrain would replace (no metrics.csv, no checkpoint/)."""
    path = os.path.join(run_dir, "config.yaml")
    ckpt_dir = os.path.join(run_dir, "checkpoint")
    has_results = os.path.isfile(os.path.join(run_dir, "metrics.csv")) or (
        os.path.isdir(ckpt_dir) and bool(os.listdir(ckpt_dir))
    )
    if not (has_results and os.path.isfile(path)):
        return None
    try:
        with open(path) as f:
            stored = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return {}
    # a key added since the run was trained reads as its default (what the run learned with)
    return with_added_defaults(stored) if isinstance(stored, dict) and stored else {}


def _check_runs_on_disk(configs):
    """Refuse a preset that asks runs already on disk for other learning keys than they were
    trained with, before Snakemake deletes anything: it would rerun their jobs (params trigger),
    deleting metrics.csv and run_info.json first, and `ficomm train` would then refuse to go on
    with them. Keys that do not change learning (threads, kernel, device, W&B) are not compared.
    """
    changed, seen = [], {}
    for run_dir, cfg in configs.items():
        stored = _stored_config(run_dir)
        if stored is None:
            continue
        diff = {
            k: f"{k} ({stored.get(k)!r} on disk, {v!r} now)"
            for k, v in cfg.learning_dict().items()
            if stored.get(k) != v
        }
        if not stored:
            diff = {"config.yaml": "config.yaml (unreadable)"}
        if diff:
            changed.append(run_dir)
            for key, text in diff.items():
                seen.setdefault(key, text)  # the first run's values, one entry per key
    if not changed:
        return
    keys = ", ".join(seen.values())
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    raise WorkflowError(
        f"{len(changed)} run(s) on disk were trained with other learning keys than "
        f"presets.{PRESET_NAME} now asks for: {keys}. Rerunning would replace them, so nothing "
        f"was started or deleted: {', '.join(changed[:3])}{more}. To keep them, undo the change; "
        "to train them afresh on purpose, delete those run directories, or give the preset "
        f"another folder (presets.{PRESET_NAME}.out) for the new runs."
    )


if workflow.is_main_process:  # a cluster job re-parses the Snakefile: check once, up front
    _check_runs_on_disk(RUN_CONFIGS)


# Run time and memory per job come from the environment's registry entry (ficomm.envs): a
# rough single-core speed and a memory request per backend. Generous on purpose: a job that
# still runs out of time resumes from its checkpoint on retry, with a longer limit.
STARTUP_MINUTES = 10


def train_runtime(wildcards, attempt, runs=1):
    """Minutes of wall-clock time to request, from the env's budget and the backend's speed
    (a pack of `runs` on one CPU core takes about `runs` times as long)."""
    speed = backend_spec(wildcards.env, wildcards.backend).steps_per_second
    seconds = PRESET["budget"][wildcards.env] / speed * (runs if DEVICE == "cpu" else 1)
    return (math.ceil(1.5 * seconds / 60) + STARTUP_MINUTES) * attempt


def train_mem_mb(wildcards, runs=1):
    """Memory to request: one run's, plus each further run's own (its replay buffer and
    networks) for a pack; the process, its imports and the simulator are shared."""
    spec = backend_spec(wildcards.env, wildcards.backend)
    return spec.mem_mb + (runs - 1) * spec.run_mb


# ------------------------------------------------------------------ packs (runs per job)
def pack_size(env):
    """Runs per training job for env: the preset's `pack` (one number or per env), else the
    environment's registry default for the workflow's device."""
    value = PRESET.get("pack")
    if value is None:
        return backend_spec(env, PRESET["backend"][env]).pack[DEVICE]
    if isinstance(value, dict):
        if env not in value:
            raise _config_error(f"presets.{PRESET_NAME}.pack.{env}", "missing for this env")
        return value[env]
    return value


def _packs():
    """The training jobs that train several runs: grid points of one configuration (every
    `ficomm train` key but the seed equal), in seed order, at most pack_size(env) per job.
    Every other grid point is a job of the rule `train`."""
    groups = {}
    for point in grid_points():
        settings = train_settings(point)
        key = repr(sorted((k, repr(v)) for k, (v, _) in settings.items() if k != "seed"))
        groups.setdefault(key, []).append(point)
    packs = []
    for points in groups.values():
        size = pack_size(points[0]["env"])
        points = sorted(points, key=lambda p: p["seed"])
        packs += [points[i : i + size] for i in range(0, len(points), size)]
    return [pack for pack in packs if len(pack) > 1]


PACKS = _packs()


class _PackWildcards(dict):
    """A pack's shared grid values as the wildcards object the per-run helpers read."""

    __getattr__ = dict.__getitem__


def pack_name(pack):
    """The name of the job that trains a pack (its configuration and seeds)."""
    p = pack[0]
    seeds = "_".join(str(q["seed"]) for q in pack)
    return f"train_pack_{p['env']}_{p['backend']}_{p['share']}_{p['comm']}_h{p['hidden']}_s{seeds}"


def pack_dirs(pack):
    return [RUN_DIR.format(**point) for point in pack]


def pack_out(pack):
    """`ficomm train`'s out= template of a pack: the run directories, by seed."""
    return RUN_DIR.format(**{**pack[0], "seed": "{seed}"})


def pack_args(pack):
    """The learning keys of a pack, shell-quoted: the first run's, with seed=[...]."""
    settings = {k: s for k, s in train_settings(pack[0]).items() if _learns(k)}
    settings["seed"] = ([int(p["seed"]) for p in pack], settings["seed"][1])
    return " ".join(shlex.quote(arg) for arg in _cli_args(settings))


def pack_execution_args(pack):
    def args(wildcards, resources):
        return train_execution_args(_PackWildcards(pack[0]), resources)

    return args


def pack_resources(pack):
    wc = _PackWildcards(pack[0])
    return dict(
        mem_mb=train_mem_mb(wc, len(pack)),
        runtime=lambda wildcards, attempt: train_runtime(wc, attempt, len(pack)),
        gpu=job_gpus(),
    )


# Snakemake's report() under another name: snakefmt reads a line starting with `report` as the
# directive.
report_file = report


def figure_files():
    """Every file `ficomm analysis figures` writes for the grid (asked from the analysis code,
    `figure_specs`), each PNG marked for the report with its caption, category and label."""
    import pandas as pd
    from ficomm.analysis.aggregate import method_label
    from ficomm.analysis.figure_specs import figure_specs, report_category, report_label

    grid = pd.DataFrame(
        [
            dict(
                env=p["env"],
                backend=p["backend"],
                method=method_label(
                    p["share"],
                    COMM_LEVELS[p["comm"]] is not False,
                    "attention" if p["comm"] == COMM_DIRS["attention"] else "concat",
                ),
                hidden=p["hidden"],
            )
            for p in grid_points()
        ]
    )
    files = []
    for spec in figure_specs(grid):
        stem = f"{FIGURES}/{spec['name']}"
        category, subcategory = report_category(spec)
        # The caption is an output of the same job: an absolute path, as Snakemake reads
        # captions relative to this file, and FIGURES is relative to the working directory.
        files.append(
            report_file(
                f"{stem}.png",
                caption=os.path.abspath(f"{stem}.rst"),
                category=category,
                subcategory=subcategory,
                labels={"figure": report_label(spec)},
            )
        )
        files += [f"{stem}.{ext}" for ext in ("pdf", "csv", "rst")]
    return files + [f"{FIGURES}/figures.json"]


def table_files(name):
    """A table's CSV (marked for the report, its caption workflow/report/<name>.rst) and its
    Markdown and LaTeX versions, as named outputs."""
    return {
        name: report_file(
            f"{FIGURES}/{name}.csv",
            caption=f"../report/{name}.rst",
            category="Tables",
            labels={"table": name.replace("_", " ")},
        ),
        f"{name}_md": f"{FIGURES}/{name}.md",
        f"{name}_tex": f"{FIGURES}/{name}.tex",
    }


def publish_args(wildcards):
    """config.yaml's `wandb:` section as `ficomm analysis publish` options."""
    args = ["--wandb-mode", WANDB["mode"], "--wandb-project", WANDB["project"]]
    args += ["--name", PRESET_NAME]
    if WANDB["entity"]:
        args += ["--wandb-entity", WANDB["entity"]]
    if WANDB["reference_project"]:
        args += ["--wandb-reference-project", WANDB["reference_project"]]
    return " ".join(shlex.quote(arg) for arg in args)
