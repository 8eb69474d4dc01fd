"""A run's final policy: `policy.pt` in the run directory, small and loadable on its own.

It holds the acting networks only (Q-nets, message nets and, under attention, the query net:
`AgentNets.state_dict()`), no replay buffer, optimiser or target networks, plus what the
final evaluation needs to be replayed: the configuration identity it was trained under, the
env step, the evaluation's index and seed, and the kernel it acted with. `ficomm evaluate
RUN_DIR` loads it (ficomm.evaluate).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ficomm.config import Config, load_config
from ficomm.methods import layout_for
from ficomm.nets import AgentNets

NAME = "policy.pt"
FORMAT = 1
# the keys that fix the networks' shapes and what they act in; a policy file must match its
# run's config.yaml in every one of them
IDENTITY = (
    "env",
    "backend",
    "env_args",
    "share",
    "comm",
    "channel",
    "own_message",
    "hidden",
    "msg_hidden",
    "msg_dim",
)


class PolicyFileError(RuntimeError):
    """No usable final policy in a run directory; the message says why and what to do."""


def identity(cfg: Config) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in IDENTITY}


def save(out: Path, nets: AgentNets, cfg: Config, meta: dict[str, Any]) -> Path:
    """Write out/policy.pt atomically (through a temporary file and a rename)."""
    path = Path(out) / NAME
    state = {k: v.detach().cpu().clone() for k, v in nets.state_dict().items()}
    payload = {"format": FORMAT, "identity": identity(cfg), "nets": state, **meta}
    tmp = path.with_name(NAME + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return path


def build_nets(cfg: Config, info, kernel: str = "torch") -> AgentNets:
    """The acting networks of a configuration, freshly initialised."""
    layout = layout_for(cfg.share, cfg.comm, cfg.own_message, cfg.channel)
    return AgentNets(
        layout,
        info.n_agents,
        info.obs_size,
        info.n_actions,
        cfg.hidden,
        cfg.msg_hidden,
        cfg.msg_dim,
        kernel=kernel,
    )


def run_config(run_dir: Path) -> Config:
    """The run's configuration from its config.yaml (out= the directory as given)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise PolicyFileError(
            f"{run_dir}: no config.yaml, so this is not a ficomm run directory; give the "
            "directory a `ficomm train` run wrote (it holds config.yaml and metrics.csv)"
        )
    return load_config(path, [f"out={run_dir}"])


def load(run_dir: Path, info, kernel: str = "torch") -> tuple[AgentNets, dict[str, Any]]:
    """The final policy's networks (evaluation mode) and its metadata, checked against the
    run's config.yaml: a file of another configuration is refused by name, never loaded with
    mismatched shapes."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    path = run_dir / NAME
    if not path.is_file():
        raise PolicyFileError(
            f"{run_dir}: no final policy ({NAME}); a run writes it when it reaches its budget: "
            "rerun the run's `ficomm train` command, which finishes the run or rebuilds the "
            "file from its final checkpoint (runs from before ficomm kept final policies have "
            "neither: retrain them)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file: say which, not a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PolicyFileError(
            f"{path}: cannot be read as a ficomm policy ({type(exc).__name__}: {first}); "
            "delete it and rerun the run's `ficomm train` command, which rebuilds it from the "
            "run's final checkpoint"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PolicyFileError(f"{path}: not a ficomm policy file of format {FORMAT}")
    stored, mine = payload["identity"], identity(cfg)
    differ = [k for k in IDENTITY if stored.get(k) != mine[k]]
    if differ:
        k = differ[0]
        raise PolicyFileError(
            f"{path}: trained with {k}={stored.get(k)!r} but the run's config.yaml says "
            f"{k}={mine[k]!r}; this policy belongs to another run: copy the matching "
            "policy.pt or evaluate its own run directory"
        )
    nets = build_nets(cfg, info, kernel)
    want = nets.state_dict()
    bad = [
        k
        for k in sorted(set(want) | set(payload["nets"]))
        if k not in want or k not in payload["nets"] or want[k].shape != payload["nets"][k].shape
    ]
    if bad:
        raise PolicyFileError(
            f"{path}: tensor {bad[0]} does not match the networks of the run's configuration; "
            "the file is damaged or from another ficomm version"
        )
    nets.load_state_dict(payload["nets"])
    nets.eval()
    meta = {k: v for k, v in payload.items() if k not in ("nets", "identity", "format")}
    return nets, meta
