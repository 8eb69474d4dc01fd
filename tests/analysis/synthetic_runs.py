"""Synthetic run directories shaped like the trainer's (config.yaml, run_info.json,
metrics.csv), with outcomes the tests choose, so the analysis can be checked end to end."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

# Parameter counts per owner and Q-input widths, for realistic run_info.json.
N_PARAMS = {
    ("predator_prey", 32): (7717, 15343, 7589, 15535),
    ("predator_prey", 64): (27717, 36303, 27461, 36687),
    ("predator_prey", 128): (104581, 115087, 104069, 115855),
    ("3s_vs_5z", 32): (8715, 17301, 8619, 17525),
    ("3s_vs_5z", 64): (29707, 38933, 29515, 39381),
    ("3s_vs_5z", 128): (108555, 119061, 108171, 119957),
}
Q_WIDTH = {"predator_prey": (37, 67, 33, 73), "3s_vs_5z": (62, 82, 59, 89)}
ENV_SIZES = {
    "predator_prey": dict(n_agents=4, n_actions=5, obs_size=28, state_size=112, episode_limit=100),
    "3s_vs_5z": dict(n_agents=3, n_actions=11, obs_size=48, state_size=68, episode_limit=250),
}
# PredatorPrey at larger team sizes (the `scale` preset's entries): sizes from their EnvInfo;
# parameter counts and widths are the 4-agent ones (only their agreement across seeds is read).
for _env, _n, _p in (("predator_prey_8", 8, 4), ("predator_prey_16", 16, 8)):
    ENV_SIZES[_env] = dict(
        n_agents=_n, n_actions=5, obs_size=28, state_size=2 * _n + 3 * _p + 1, episode_limit=100
    )
    Q_WIDTH[_env] = Q_WIDTH["predator_prey"]
    for _h in (32, 64, 128):
        N_PARAMS[(_env, _h)] = N_PARAMS[("predator_prey", _h)]
# The penalty study's entries: the paper's PredatorPrey with another lone-predator penalty.
for _env in (
    "predator_prey_p075",
    "predator_prey_p050",
    "predator_prey_p025",
    "predator_prey_p000",
):
    ENV_SIZES[_env], Q_WIDTH[_env] = ENV_SIZES["predator_prey"], Q_WIDTH["predator_prey"]
    for _h in (32, 64, 128):
        N_PARAMS[(_env, _h)] = N_PARAMS[("predator_prey", _h)]


def is_predator_prey(env: str) -> bool:
    return env.startswith("predator_prey")


def team_size(env: str) -> int:
    return ENV_SIZES[env]["n_agents"]


METHOD_INDEX = {("ps", False): 0, ("ps", True): 1, ("nps", False): 2, ("nps", True): 3}

# level(env, share, comm, hidden, seed) -> the value the run's metric converges to.
LevelFn = Callable[[str, str, bool, int, int], float]
# listening(env, share, comm, hidden, seed) -> (action change, return change) under the swap
# intervention at a comm run's last evaluation (ficomm.listening), or None for no columns.
ListenFn = Callable[[str, str, bool, int, int], tuple[float, float] | None]


def listens(env: str, share: str, comm: bool, hidden: int, seed: int):
    """Comm runs act on their messages (about 30% of their actions change under the swap)
    and pay for it (the swap costs about 2 team-return units on PredatorPrey)."""
    if not comm or not is_predator_prey(env):
        return None
    return 0.3 + 0.01 * seed, -2.0 - 0.1 * seed


def default_level(env: str, share: str, comm: bool, hidden: int, seed: int) -> float:
    """PredatorPrey: some seeds sit in the avoidance basin (-4), the rest capture; 3s_vs_5z:
    a win rate. PS above NPS, COMM helps on PredatorPrey, more so with PS and at small H."""
    if is_predator_prey(env):  # team returns: per agent as for 4 agents, times the team size
        per_agent = team_size(env) / 4
        if (seed + hidden // 32 + int(comm)) % 3 == 0:
            return -4.0 * per_agent
        gain = (8.0 if share == "ps" else 4.0) * (64 / hidden) if comm else 0.0
        return ((14.0 if share == "ps" else 8.0) + gain) * per_agent
    return (0.6 if share == "ps" else 0.4) + 0.02 * int(comm) + hidden / 1280


def write_run_dir(
    run_dir: Path,
    *,
    env: str,
    share: str,
    comm: bool,
    hidden: int,
    seed: int,
    level: float,
    backend: str | None = None,
    budget: int = 200_000,
    eval_interval: int = 10_000,
    noise: float = 0.5,
    ramp: float = 0.5,
    extra_config: dict | None = None,
    listening: tuple[float, float] | None = None,
) -> Path:
    """Write one finished-looking run directory whose metric rises linearly from its start
    (PredatorPrey -30, win rate 0) to `level` over the first `ramp` fraction of the budget and
    stays there (plus noise)."""
    pp = is_predator_prey(env)
    backend = backend or ("native" if pp else "smax")
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, hidden, METHOD_INDEX[(share, comm)], len(env)])
    config = dict(
        env=env,
        backend=backend,
        env_args={"penalty": -0.75} if pp else {},
        share=share,
        comm=comm,
        hidden=hidden,
        msg_hidden=64,
        msg_dim=10,
        own_message=True,
        seed=seed,
        budget=budget,
        eval_interval=eval_interval,
        eval_episodes=20,
        buffer_size=5000,
        batch_size=32,
        lr=5e-4,
        gamma=0.99,
        grad_clip=10.0,
        target_update=200,
        eps_start=1.0,
        eps_end=0.05,
        eps_anneal=50_000,
        timelimit_terminal=True,
        target_unroll="zero_start",
        device="cpu",
        threads=1,
        out=str(run_dir),
        wandb_mode="disabled",
        wandb_project="ficomm",
        wandb_entity=None,
        wandb_group=None,
        wandb_tags=[],
    )
    config.update(extra_config or {})
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    i = METHOD_INDEX[(share, comm)]
    method = f"{share.upper()}+IQL" + ("+COMM" if comm else "")
    info = dict(
        method=method,
        n_params=N_PARAMS[(env, hidden)][i],
        q_input_width=Q_WIDTH[env][i],
        backend=backend,
        **ENV_SIZES[env],
        ficomm_version="0.1.0",
        torch_version="2.13.0",
        device="cpu",
        wandb_run_id=None,
    )
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=2))

    n_evals = budget // eval_interval
    limit = ENV_SIZES[env]["episode_limit"]
    # The first evaluation is at step 0; later ones at the first episode end after each
    # multiple of the interval, so env_steps overshoots the multiple a little.
    steps = np.array(
        [0] + [k * eval_interval + int(rng.integers(0, limit)) for k in range(1, n_evals)]
    )
    start = -30.0 * team_size(env) / 4 if pp else 0.0
    progress = np.minimum(1.0, steps / (ramp * budget))  # after `ramp`, it sits at `level`
    scale = 1.0 if pp else 0.02  # win rates live in [0, 1]
    max_return = 20.0 if backend == "sc2" else 2.0  # SMAC scales to 20; SMAX's is about 2
    speed = 200.0 / math.sqrt(team_size(env) / 4) if pp else 200.0
    values = start + (level - start) * progress + scale * noise * rng.standard_normal(n_evals)
    metrics = pd.DataFrame(
        {
            "env_steps": steps,
            "episodes": steps // (limit // 2),
            "grad_steps": np.maximum(steps // (limit // 2) - 1, 0),
            "eval_return_mean": values if pp else values * max_return,
            "eval_return_std": np.abs(rng.standard_normal(n_evals)),
            "eval_win_rate": np.nan if pp else np.clip(values, 0, 1),
            "train_loss": np.abs(rng.standard_normal(n_evals)),
            "epsilon": np.maximum(1 - 0.95 * steps / 50_000, 0.05),
            # training slows with the team (agents batched: less than proportionally)
            "wall_time": steps / speed,
            "env_steps_per_sec": np.full(n_evals, speed),
        }
    )
    if pp:
        metrics["eval_captures_mean"] = np.clip((values + 4) / 20, 0, 2)
        metrics["eval_length_mean"] = 100.0
    if listening is not None:  # interventions at the final evaluation only
        change, gain = listening
        last = n_evals - 1
        for kind in ("swap", "zero"):
            metrics[f"intervene_{kind}_action_change"] = np.nan
            metrics[f"intervene_{kind}_return_mean"] = np.nan
            metrics.loc[last, f"intervene_{kind}_action_change"] = change
            metrics.loc[last, f"intervene_{kind}_return_mean"] = (
                metrics["eval_return_mean"][last] + gain
            )
        metrics["signal_action_mi"] = np.where(np.arange(n_evals) == last, 0.2, np.nan)
    metrics["backend"] = backend  # as `ficomm train` writes it
    metrics.to_csv(run_dir / "metrics.csv", index=False)
    return run_dir


def make_runs(
    root: Path,
    *,
    envs: Iterable[str] = ("predator_prey", "3s_vs_5z"),
    hiddens: Iterable[int] = (32, 64, 128),
    seeds: Iterable[int] = (0, 1, 2),
    level: LevelFn = default_level,
    ramp: LevelFn | None = None,
    listening: ListenFn = listens,
    **kwargs,
) -> list[Path]:
    """The grid env x {ps,nps} x {no comm, comm} x hidden x seed under results/runs layout;
    `ramp(env, share, comm, hidden, seed)` (default 0.5) is the budget fraction each run takes
    to reach its level; `listening` gives comm runs their intervention columns."""
    dirs = []
    for env in envs:
        for share, comm in METHOD_INDEX:
            for hidden in hiddens:
                for seed in seeds:
                    method = f"{share}_iql" + ("_comm" if comm else "")
                    d = root / env / f"{method}_h{hidden}" / f"seed{seed}"
                    lvl = level(env, share, comm, hidden, seed)
                    if math.isnan(lvl):
                        continue
                    dirs.append(
                        write_run_dir(
                            d,
                            env=env,
                            share=share,
                            comm=comm,
                            hidden=hidden,
                            seed=seed,
                            level=lvl,
                            ramp=ramp(env, share, comm, hidden, seed) if ramp else 0.5,
                            listening=listening(env, share, comm, hidden, seed),
                            **kwargs,
                        )
                    )
    return dirs
