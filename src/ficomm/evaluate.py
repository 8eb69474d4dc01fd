"""`ficomm evaluate RUN_DIR`: load a run's final policy (policy.pt) and evaluate it greedily.

By default it replays the run's final evaluation exactly (its episodes, env seed and kernel),
so the numbers equal the last row of metrics.csv; --episodes and --seed evaluate others.
Message interventions and signalling (ficomm.listening) run for comm runs unless
--interventions off; --gif writes an animation of one greedy PredatorPrey episode.
`ficomm evaluate --authors FILE` evaluates one of the authors' released PS+IQL PredatorPrey
policies instead (ficomm.authors).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ficomm import policy_file
from ficomm.envs import env_spec, make_env, make_eval_env, make_vector_env
from ficomm.envs.base import ConfigError
from ficomm.listening import NoMessages, check_messages, greedy_evaluation
from ficomm.rollout import Policy


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ficomm evaluate",
        description="Evaluate a run's final policy (RUN_DIR/policy.pt) greedily; by default "
        "its final evaluation, reproduced exactly.",
    )
    p.add_argument(
        "run_dir", type=Path, nargs="?", help="a run directory that finished (holds policy.pt)"
    )
    p.add_argument(
        "--authors",
        type=Path,
        help="instead of a run: one of the authors' released PS+IQL PredatorPrey state dicts "
        "(default --episodes 200, --seed 0)",
    )
    p.add_argument("--episodes", type=int, help="greedy episodes (default: the run's)")
    p.add_argument("--seed", type=int, help="env seed (default: the final evaluation's)")
    p.add_argument(
        "--interventions",
        choices=("auto", "on", "off"),
        default="auto",
        help="message interventions and signalling: auto = on for comm runs",
    )
    p.add_argument("--gif", type=Path, help="write an animation of one episode (PredatorPrey)")
    p.add_argument("--gif-episode", type=int, default=0, help="which episode to animate")
    p.add_argument("--json", action="store_true", help="print the columns as JSON")
    return p


def _kernel(wanted: str) -> str:
    """The run's acting kernel where it loads here (same numbers), else the torch layers."""
    if wanted != "fused":
        return "torch"
    from ficomm import kernels

    if kernels.load() is not None:
        return "fused"
    print(
        "ficomm evaluate: the run acted with the compiled kernel, which is unavailable here; "
        "using the torch layers (same math; greedy ties may round differently)",
        file=sys.stderr,
    )
    return "torch"


AUTHORS_EPISODES = 200  # the number their released policies were measured with (docs)


def run_authors(args: argparse.Namespace) -> dict:
    """Greedy episodes of an authors' policy on ficomm's PredatorPrey (the paper's rules)."""
    from ficomm import authors

    nets = authors.load(args.authors)
    episodes = args.episodes or AUTHORS_EPISODES
    seed = 0 if args.seed is None else args.seed
    env = make_vector_env("predator_prey", "native", episodes, seed=seed)
    row, _ = greedy_evaluation(
        env, Policy(nets), nets, episodes, seed, has_win=False, listen=False, sight=None
    )
    return {
        "authors": str(args.authors),
        "hidden": nets.hidden,
        "episodes": episodes,
        "seed": seed,
        **row,
    }


def run(args: argparse.Namespace) -> dict:
    if (args.run_dir is None) == (args.authors is None):
        raise ValueError("give a run directory or --authors FILE (one of them)")
    if args.authors is not None:
        return run_authors(args)
    cfg = policy_file.run_config(args.run_dir)
    episodes = args.episodes
    env = None
    try:
        probe = make_env(cfg.env, cfg.backend, seed=cfg.seed, **cfg.env_args)
        info = probe.info
        getattr(probe, "close", lambda: None)()
        nets, meta = policy_file.load(args.run_dir, info)
        kernel = _kernel(meta.get("kernel", "torch"))
        for part in (nets.q, nets.msg):  # act as the run did (the kernel is an attribute)
            if part is not None and not nets.layout.attention:
                part.kernel = kernel
        listen = {"auto": cfg.comm, "on": True, "off": False}[args.interventions]
        if listen:
            check_messages(nets)
        episodes = episodes or int(meta["eval_episodes"])
        seed = meta["eval_seed"] if args.seed is None else args.seed
        env = make_eval_env(cfg.env, cfg.backend, episodes, seed=cfg.seed + 1, **cfg.env_args)
        spec = env_spec(cfg.env)
        row, res = greedy_evaluation(
            env,
            Policy(nets),
            nets,
            episodes,
            seed,
            has_win=info.has_win,
            listen=listen,
            sight=spec.sight,
            trace=args.gif is not None,
        )
        out = {"run_dir": str(args.run_dir), "env_steps": meta["env_steps"], "seed": seed}
        out.update({"episodes": episodes, **row})
        if args.gif is not None:
            from ficomm.animation import write_gif

            write_gif(args.gif, cfg, nets, res, seed, args.gif_episode)
            out["gif"] = str(args.gif)
        return out
    finally:
        if env is not None:
            getattr(env, "close", lambda: None)()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        out = run(args)
    except (policy_file.PolicyFileError, NoMessages, ConfigError, ValueError) as exc:
        print(f"ficomm evaluate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:<32} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
