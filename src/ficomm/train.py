"""`ficomm train [CONFIG.yaml] key=value ...`: one training run into one run directory.

The loop is the authors': evaluate when a multiple of eval_interval env steps
has been crossed (and at step 0), collect one epsilon-greedy episode, store it, take one
gradient step; stop once the budget is reached. Beyond the authors' loop, the run then
evaluates its final policy (the last row of metrics.csv) and keeps it in policy.pt
(ficomm.policy_file); comm runs add message interventions to some evaluations
(ficomm.listening). A checkpoint is written after every evaluation, and on SIGTERM/SIGINT at
the next episode boundary, so rerunning the same command continues where the run stopped and
produces the same metrics.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 143  # 128 + SIGTERM, what schedulers expect from a terminated job
EXIT_BUSY = 3  # the run directory is held by another process

try:  # importing torch takes seconds: Ctrl-C then gets one line, not a traceback
    import ctypes
    import errno
    import json
    import math
    import platform
    import random
    import re
    import signal
    import time
    from dataclasses import dataclass, field
    from pathlib import Path
    from typing import Any

    import numpy as np
    import torch
    import yaml

    import ficomm
    from ficomm import checkpoint, policy_file
    from ficomm.buffer import Episode, EpisodeBuffer
    from ficomm.config import PACK_KEYS, Config, config_to_yaml, load_pack, with_added_defaults
    from ficomm.envs import env_spec, make_env, make_eval_env, make_pack_env
    from ficomm.envs.base import ConfigError, SingleEnvs
    from ficomm.learner import Learner, StackedLearner
    from ficomm.listening import greedy_evaluation
    from ficomm.rollout import EpsilonSchedule, Policy, StackedPolicy, collect_episodes
    from ficomm.run_lock import RunDirBusy, RunLock
    from ficomm.tracking import (
        Progress,
        TrackingError,
        WandbTracker,
        metrics_csv_text,
        wandb_run_id,
        write_atomic,
        write_metrics_csv,
    )
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    print("ficomm train: interrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)

RECORDS = ("config.yaml", "run_info.json")  # the run's records, also kept in its checkpoint


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Counters:
    env_steps: int = 0
    episodes: int = 0
    evals_done: int = 0
    loss_sum: float = 0.0  # over gradient steps since the last evaluation
    loss_count: int = 0
    wall_time: float = 0.0  # seconds of training before this session
    history: list[dict[str, Any]] = field(default_factory=list)


class StopFlag:
    """SIGTERM/SIGINT set a flag that the loop reads at the next episode boundary."""

    def __init__(self):
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers, killing still works
                pass
        return self

    def _handle(self, signum, frame):
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def check_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device: 'cuda' was requested but no CUDA device is available to torch "
            f"{torch.__version__} (CUDA build: {torch.version.cuda or 'none'}); "
            "use device=cpu, or run where a GPU and a CUDA build of torch are installed"
        )
    return torch.device(name)


def check_kernel(name: str, device: torch.device, channel: str = "concat") -> str:
    """The implementation the networks will use: "fused" or "torch" (see ficomm.nets). The
    compiled kernel has no attention channel: with it, auto means torch and fused is refused."""
    if channel == "attention":
        if name == "fused":
            raise ConfigError(
                "kernel: 'fused' has no attention channel; with channel=attention use "
                "kernel=auto or kernel=torch"
            )
        return "torch"
    if name == "torch" or device.type != "cpu":
        return "torch"
    from ficomm import kernels

    if kernels.load() is not None:
        return "fused"
    if name == "fused":
        raise ConfigError(
            "kernel: 'fused' was requested but the compiled kernel is not available: "
            f"{kernels.unavailable_reason()}; install a C++ compiler (g++ or clang++) or "
            "use kernel=auto (falls back to torch) or kernel=torch"
        )
    print(
        f"ficomm train: compiled kernel unavailable ({kernels.unavailable_reason()}); "
        "using the torch implementation (slower, same math)",
        file=sys.stderr,
    )
    return "torch"


def keep_freed_memory() -> bool:
    """Stop glibc from handing freed tensor memory back to the kernel (Linux/glibc only).

    By default glibc serves blocks above a (dynamic) threshold with fresh mmaps and unmaps
    them on free, so every gradient step page-faults and zero-fills its ~100 MB of
    intermediate tensors again: 6-7 s of system time in a 30k-step PredatorPrey run, about a
    quarter of the run (bench/results/train.md). Blocks up to 32 MB (glibc's cap) now come
    from the heap and stay mapped; peak memory is unchanged. Returns whether it applied."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 * 2**20)) and bool(
        mallopt(m_trim_threshold, 2**31 - 1)
    )


def eval_seed(seed: int, index: int) -> int:
    """Seed of the index-th evaluation: independent of how training went."""
    return int(np.random.SeedSequence([seed, 2, index]).generate_state(1)[0])


def env_facts(env: Any) -> dict[str, Any]:
    """What the environment reports about itself for the record (e.g. the game build), from
    its optional `run_facts()`; {} for environments without one."""
    facts = getattr(env, "run_facts", None)
    return dict(facts()) if callable(facts) else {}


class Run:
    """Everything one training run holds; built from a validated Config.

    `env` is the pack's training environment (a VectorEnv whose episode `lane` is this run's);
    without one the run builds its own, a pack of one."""

    def __init__(self, cfg: Config, env: Any = None, lane: int = 0):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.device = check_device(cfg.device)
        self.kernel = check_kernel(cfg.kernel, self.device, cfg.channel)
        torch.set_num_threads(cfg.threads)
        keep_freed_memory()
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)  # exploration and replay sampling
        self.env_seeds = np.random.default_rng([cfg.seed, 1])  # one env seed per episode
        self.owns_env = env is None
        self.env = env if env is not None else _training_env(cfg, [cfg.seed])
        self.lane = lane
        self.eval_env = None
        try:
            info = self.info = self.env.info
            self.eval_env = make_eval_env(
                cfg.env, cfg.backend, cfg.eval_episodes, seed=cfg.seed + 1, **cfg.env_args
            )
            nets = policy_file.build_nets(cfg, info, self.kernel).to(self.device)
            self.layout = nets.layout
            self.learner = Learner(
                nets,
                lr=cfg.lr,
                rms_alpha=cfg.rms_alpha,
                rms_eps=cfg.rms_eps,
                gamma=cfg.gamma,
                grad_clip=cfg.grad_clip,
                target_update=cfg.target_update,
                target_unroll=cfg.target_unroll,
            )
            # The global torch and Python streams are used only to initialise the networks;
            # their state right after is this run's, whatever the other runs of a pack do.
            self.torch_rng, self.python_rng = torch.get_rng_state(), random.getstate()
            self.policy = Policy(nets)
            self.buffer = EpisodeBuffer(cfg.buffer_size, info)
            self.episode = Episode.empty(info)
            self.eps = EpsilonSchedule(cfg.eps_start, cfg.eps_end, cfg.eps_anneal)
            self.c = Counters()
            self.finished = False
        except BaseException:  # a failed build (memory, Ctrl-C) still ends the simulators
            self.close()
            raise
        self.records: dict[str, str] = {}  # name -> text of config.yaml and run_info.json

    def close(self) -> None:
        """Close the environments this run owns that can be closed (StarCraft II processes)."""
        for env in (self.env if self.owns_env else None, self.eval_env):
            close = getattr(env, "close", None)
            if callable(close):
                close()

    # ----------------------------------------------------------------- run directory
    def run_info(
        self, wandb_id: str, pack_runs: int = 1, pack_learning: str = "per_run"
    ) -> dict[str, Any]:
        nets, info = self.learner.nets, self.info
        return {
            "method": self.cfg.method,
            "env": self.cfg.env,
            "backend": self.cfg.backend,
            "seed": self.cfg.seed,
            "n_params": nets.params_per_owner(),
            "n_owners": nets.owners,
            "n_params_total": sum(p.numel() for p in nets.parameters()),
            "q_input_width": nets.in_features,
            "n_agents": info.n_agents,
            "n_actions": info.n_actions,
            "obs_size": info.obs_size,
            "state_size": info.state_size,
            "episode_limit": info.episode_limit,
            "has_win": info.has_win,
            "config_hash": self.cfg.config_hash(),
            "wandb_run_id": wandb_id,
            "ficomm_version": ficomm.__version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "device": str(self.device),
            "threads": self.cfg.threads,
            "kernel": self.kernel,
            "env_facts": env_facts(self.env),
            "pack_runs": pack_runs,  # the runs this one trained beside (itself included)
            "pack_learning": pack_learning,
        }

    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoint"

    def state(self, with_buffer: bool) -> dict[str, Any]:
        c = self.c
        return {
            "config_hash": self.cfg.config_hash(),
            "finished": self.finished,
            "records": self.records,
            "learner": self.learner.state_dict(),
            "buffer": self.buffer.state() if with_buffer else None,
            "counters": {
                "env_steps": c.env_steps,
                "episodes": c.episodes,
                "evals_done": c.evals_done,
                "loss_sum": c.loss_sum,
                "loss_count": c.loss_count,
                "wall_time": c.wall_time,
            },
            "epsilon": self.eps.value,
            "rng": {
                "numpy": self.rng.bit_generator.state,
                "env_seeds": self.env_seeds.bit_generator.state,
                "torch": self.torch_rng,
                "python": self.python_rng,
            },
            "history": c.history,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["learner"])
        if state["buffer"] is not None:
            self.buffer.load(state["buffer"])
        c = state["counters"]
        self.c = Counters(
            env_steps=int(c["env_steps"]),
            episodes=int(c["episodes"]),
            evals_done=int(c["evals_done"]),
            loss_sum=float(c["loss_sum"]),
            loss_count=int(c["loss_count"]),
            wall_time=float(c["wall_time"]),
            history=list(state["history"]),
        )
        self.eps.value = float(state["epsilon"])
        r = state["rng"]
        self.rng.bit_generator.state = r["numpy"]
        self.env_seeds.bit_generator.state = r["env_seeds"]
        self.torch_rng = r["torch"]
        v, internal, gauss = r["python"]
        self.python_rng = (v, tuple(internal), gauss)
        self.finished = bool(state["finished"])


def _config_diff(out: Path, cfg: Config, ckpt: dict) -> list[str]:
    text = (ckpt.get("records") or {}).get("config.yaml")
    try:
        old = yaml.safe_load(text if text is not None else (out / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        old = None
    if not isinstance(old, dict):
        return ["(config.yaml missing or unreadable)"]
    old = with_added_defaults(old)  # a key added since the run was written: its default
    new = cfg.learning_dict()
    return sorted(k for k in new if old.get(k) != new[k])


def make_run_dir(out: Path) -> None:
    """Create out/ or say in one line why it cannot be a run directory."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(
            f"out: {out} exists and is not a directory; choose another out="
        ) from None
    except NotADirectoryError:
        blocker = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), out)
        raise ConfigError(
            f"out: {out} cannot be created because {blocker} is a file, not a directory; "
            "choose another out="
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"out: cannot create {exc.filename or out} ({exc.strerror}); make its parent "
            "writable or choose another out="
        ) from None


def _read_record(path: Path) -> dict | None:
    """A record's content, or None when it is missing or damaged (empty, cut short)."""
    try:
        text = path.read_text()
        value = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return value if isinstance(value, dict) else None


def _wandb_id(cfg: Config, out: Path, ckpt: dict | None) -> str:
    """The W&B run id: the one the run started with (its checkpoint's record, or run_info.json
    beside a checkpoint from before records were kept), else a new stable one."""
    if ckpt is not None:
        text = (ckpt.get("records") or {}).get("run_info.json")
        info = json.loads(text) if text is not None else _read_record(out / "run_info.json")
        if info and info.get("wandb_run_id"):
            return info["wandb_run_id"]
    return wandb_run_id(cfg.config_hash(), out)


def _settle_finished(cfg: Config, out: Path, ckpt: dict) -> None:
    """A rerun of a finished run rewrites nothing that is intact: records, metrics.csv and
    their modification times stay as the run left them. A missing or damaged file is rebuilt
    from the checkpoint (checkpoints from before records were kept: from this configuration,
    which matches the run's learning keys by the config hash)."""
    records = ckpt.get("records") or {}
    damaged = [name for name in RECORDS if _read_record(out / name) is None]
    if damaged and not all(name in records for name in damaged):
        run = Run(cfg)  # the old checkpoint holds no copy: compute them as the run did
        try:
            records = {
                "config.yaml": config_to_yaml(cfg),
                "run_info.json": json.dumps(run.run_info(_wandb_id(cfg, out, ckpt)), indent=2)
                + "\n",
            }
        finally:
            run.close()
        source = "this configuration (the checkpoint predates stored records)"
    else:
        source = "the checkpoint"
    for name in damaged:
        write_atomic(out / name, records[name])
        print(
            f"ficomm train: {out / name} was missing or damaged; rebuilt from {source}",
            file=sys.stderr,
        )
    if not _policy_readable(out) and "learner" in ckpt:
        run = Run(cfg)
        try:
            run.restore(ckpt)
            _save_policy(run)
        finally:
            run.close()
        print(
            f"ficomm train: {out / policy_file.NAME} rebuilt from the final checkpoint",
            file=sys.stderr,
        )
    text = metrics_csv_text(list(ckpt["history"]), cfg.backend)
    path = out / "metrics.csv"
    try:
        same = path.read_text() == text
    except OSError:
        same = False
    if not same:
        write_atomic(path, text)


def _remove_leftovers(out: Path) -> None:
    """Temporary files of a killed or failed write; safe to delete under the run lock."""
    checkpoint.remove_leftovers(out / "checkpoint")
    for name in (*RECORDS, "metrics.csv"):
        (out / (name + ".tmp")).unlink(missing_ok=True)


def check_pack(cfgs: list[Config]) -> None:
    """The runs of a pack are one configuration: they may differ only in `PACK_KEYS`."""
    first = cfgs[0].to_dict()
    for i, cfg in enumerate(cfgs[1:], 1):
        other = cfg.to_dict()
        differ = [k for k in first if k not in PACK_KEYS and first[k] != other[k]]
        if differ:
            raise ConfigError(
                f"{differ[0]}: runs 0 and {i} of the pack differ in it; a pack trains one "
                f"configuration (its runs may differ only in {', '.join(PACK_KEYS)})"
            )


def train(cfgs: Config | list[Config]) -> int:
    """Run (or resume) one training run, or a pack of them side by side (`load_pack`), each
    into its own run directory; returns the process exit code."""
    cfgs = [cfgs] if isinstance(cfgs, Config) else list(cfgs)
    check_pack(cfgs)
    pack_learning(cfgs)  # a stacked pack whose runs cannot stack: before anything is created
    check_device(cfgs[0].device)
    for cfg in cfgs:
        make_run_dir(Path(cfg.out))
    locks: list[RunLock] = []
    try:
        for cfg in cfgs:
            lock = RunLock(Path(cfg.out))
            try:
                lock.acquire()
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                raise ConfigError(
                    f"out: {cfg.out} is not writable ({exc.strerror}: {exc.filename}); make it "
                    "writable or choose another out="
                ) from None
            locks.append(lock)
        return _train_locked(cfgs)
    finally:
        for lock in reversed(locks):
            lock.release()


def _train_locked(cfgs: list[Config]) -> int:
    todo: list[tuple[Config, dict | None]] = []
    for cfg in cfgs:
        out = Path(cfg.out)
        _remove_leftovers(out)
        ckpt = checkpoint.load(out / "checkpoint")
        if ckpt is not None and ckpt["config_hash"] != cfg.config_hash():
            changed = ", ".join(_config_diff(out, cfg, ckpt))
            raise ConfigError(
                f"out: {out} already holds a run with a different configuration (differs in: "
                f"{changed}); choose another out= or delete that directory"
            )
        if ckpt is not None and ckpt["finished"]:
            _settle_finished(cfg, out, ckpt)
            print(f"ficomm train: {out} is already finished; nothing to do", file=sys.stderr)
            continue
        todo.append((cfg, ckpt))
    if not todo:
        return 0
    first = todo[0][0]
    # one slot: the loop replaces the environment when a run of the pack stops early
    envs = [_training_env(first, [c.seed for c, _ in todo])]
    env = envs[0]
    runs: list[Run] = []
    trackers: list[WandbTracker] = []
    codes: dict[int, int] = {}
    try:
        for lane, (cfg, _) in enumerate(todo):
            runs.append(Run(cfg, env=env, lane=lane))
        # The records describe this session (an unfinished run resumed with other threads or
        # kernel continues with them); the checkpoint keeps a copy of them.
        learning = pack_learning([cfg for cfg, _ in todo])
        for run, (cfg, ckpt) in zip(runs, todo, strict=True):
            run_info = run.run_info(_wandb_id(cfg, run.out, ckpt), len(todo), learning)
            run.records = {
                "config.yaml": config_to_yaml(cfg),
                "run_info.json": json.dumps(run_info, indent=2) + "\n",
            }
            # W&B first: when it cannot start (no API key) the run directories are left as
            # they were.
            trackers.append(WandbTracker(cfg, run.out, run_info["wandb_run_id"], run_info))
        for run, (cfg, ckpt) in zip(runs, todo, strict=True):
            for name, text in run.records.items():
                write_atomic(run.out / name, text)
            if ckpt is not None:
                run.restore(ckpt)
                write_metrics_csv(run.out / "metrics.csv", run.c.history, cfg.backend)
                print(
                    f"ficomm train: resuming {run.out} from its checkpoint at env step "
                    f"{run.c.env_steps}",
                    file=sys.stderr,
                )
        with StopFlag() as stop:
            codes = _loop(runs, envs, stop, trackers)
    finally:
        for i, tracker in enumerate(trackers):
            tracker.finish(codes.get(i, 1))
        for run in runs:
            run.close()
        envs[0].close()
    if EXIT_INTERRUPTED in codes.values():
        return EXIT_INTERRUPTED
    return max(codes.values(), default=0)


class _Lane:
    """What the loop keeps for one run of the pack beside the run itself."""

    def __init__(
        self, index: int, run: Run, tracker: WandbTracker, stack: StackedLearner | None = None
    ):
        self.index, self.run, self.tracker, self.stack = index, run, tracker, stack
        c = run.c
        self.progress = Progress(run.cfg, c.env_steps, position=index)
        self.wall_before = c.wall_time
        # Running loss sum kept on the device (no sync per step); restored from the counters
        # so a resumed run adds the same numbers in the same order as an uninterrupted one.
        self.loss_sum = torch.tensor(c.loss_sum, dtype=torch.float64, device=run.device)
        self.last_eval = (
            (c.history[-1]["env_steps"], c.history[-1]["wall_time"]) if c.history else None
        )

    def sync_counters(self, t0: float) -> None:
        c = self.run.c
        c.wall_time = self.wall_before + time.perf_counter() - t0
        c.loss_sum = float(self.loss_sum)  # the only device sync, once per evaluation

    def settled(self, t0: float) -> bool:
        """Bring the counters up to date; False (with the reason printed) when the loss is no
        longer finite: the run stops, its last good checkpoint kept."""
        self.sync_counters(t0)
        try:
            self.check_finite()
        except NonFiniteLoss as exc:
            print(f"ficomm train: {exc}", file=sys.stderr)
            return False
        return True

    def save(self, with_buffer: bool) -> None:
        """Write the run's checkpoint (its part of a stack's optimiser state first)."""
        if self.stack is not None:
            self.stack.export(self.index)
        checkpoint.save(self.run.checkpoint_dir(), self.run.state(with_buffer=with_buffer))

    def check_finite(self) -> None:
        run, c = self.run, self.run.c
        if not math.isfinite(c.loss_sum):
            done = c.history[-1]["env_steps"] if c.history else 0
            raise NonFiniteLoss(
                f"{run.out}: training loss became {c.loss_sum} before env step {c.env_steps} "
                f"(grad step <= {run.learner.grad_steps}); the run stopped and its last good "
                f"checkpoint (env step {done}) in {run.checkpoint_dir()} is kept; "
                "check lr, grad_clip and the environment's rewards"
            )


def pack_learning(cfgs: list[Config]) -> str:
    """How the pack learns ("stacked" or "per_run"): the `pack_learning` key, auto resolved.
    Stacking needs the runs to share the learner's keys. auto stacks on a GPU only: on a CPU
    the gradient step's time is the compiled kernel's arithmetic, which a stack does not
    reduce, and the stack holds all its runs' intermediate tensors at once
    (bench/results/pack.md)."""
    want = cfgs[0].pack_learning
    keys = ("lr", "rms_alpha", "rms_eps", "gamma", "grad_clip", "target_update", "target_unroll")
    differ = [k for k in keys if len({getattr(cfg, k) for cfg in cfgs}) > 1]
    if want == "stacked" and differ:
        raise ConfigError(
            f"pack_learning: 'stacked' needs the runs of a pack to share {differ[0]} (one "
            "optimiser for the stack); use pack_learning=per_run or auto"
        )
    if want == "per_run" or differ or len(cfgs) == 1:
        return "per_run"
    return "stacked" if want == "stacked" or cfgs[0].device == "cuda" else "per_run"


def _loop(runs: list[Run], envs: list, stop: StopFlag, trackers: list[WandbTracker]) -> dict:
    """Train the runs of a pack side by side until each reaches its budget: per iteration,
    each run evaluates when due, all play one episode at once (`collect_episodes`), then each
    stores it and samples a batch, and all take their gradient step (one stacked step, or
    one per run: `pack_learning`). Returns {run index: exit code}."""
    stack = None
    if pack_learning([run.cfg for run in runs]) == "stacked":
        stack = StackedLearner([run.learner for run in runs])
    # one acting forward for the pack where the runs act on the torch layers (GPU); the
    # compiled acting step (CPU) is per run and reads the stack's live parameters
    stacked_acting = (
        StackedPolicy(stack.core.nets) if stack and runs[0].policy.lib is None else None
    )
    lanes = [
        _Lane(i, run, tr, stack) for i, (run, tr) in enumerate(zip(runs, trackers, strict=True))
    ]
    active = [lane for lane in lanes if lane.run.c.env_steps < lane.run.cfg.budget]
    codes: dict[int, int] = {}
    t0 = time.perf_counter()

    def drop(lane: _Lane, code: int) -> None:
        codes[lane.index] = code
        active.remove(lane)
        lane.progress.close()

    try:
        for lane in lanes:
            if lane not in active:
                _finish(lane, t0, codes, drop_from=None)
        while active:
            if stop.signal is not None:
                name = signal.Signals(stop.signal).name
                for lane in list(active):
                    run = lane.run
                    if not lane.settled(t0):
                        drop(lane, 1)
                        continue
                    lane.save(with_buffer=True)
                    print(
                        f"ficomm train: received {name} at env step {run.c.env_steps}; "
                        f"checkpoint written to {run.checkpoint_dir()}; rerun the same command "
                        "to resume",
                        file=sys.stderr,
                    )
                    drop(lane, EXIT_INTERRUPTED)
                break
            for lane in list(active):
                run, c = lane.run, lane.run.c
                if c.env_steps // run.cfg.eval_interval < c.evals_done:
                    continue
                if not lane.settled(t0):
                    drop(lane, 1)
                    continue
                row = _record_evaluation(lane, final=False)
                lane.save(with_buffer=True)
                _report(lane, row)
            if not active:
                break
            pack = [lane.run for lane in active]
            env = envs[0] = _lanes_env(envs[0], pack)
            seeds = [int(run.env_seeds.integers(2**31)) for run in pack]
            collect_episodes(
                env,
                (
                    stacked_acting.select([lane.index for lane in active])
                    if stacked_acting
                    else [run.policy for run in pack]
                ),
                [run.episode for run in pack],
                [run.eps for run in pack],
                [run.rng for run in pack],
                seeds,
                pack[0].cfg.timelimit_terminal,
                lanes=[run.lane for run in pack],
            )
            batches: dict[int, Any] = {}
            for lane in active:
                run, c = lane.run, lane.run.c
                run.buffer.add(run.episode)
                c.env_steps += run.episode.length
                c.episodes += 1
                batches[lane.index] = run.buffer.sample(run.cfg.batch_size, run.rng)
            if stack is not None:
                stacked = stack.train_step([batches.get(i) for i in range(len(runs))])
                losses = {i: stacked[i] for i in batches}
            else:
                losses = {i: runs[i].learner.train_step(b) for i, b in batches.items()}
            for lane in list(active):
                run, c = lane.run, lane.run.c
                lane.loss_sum += losses[lane.index]
                c.loss_count += 1
                lane.progress.advance(c.env_steps)
                if c.env_steps >= run.cfg.budget:
                    _finish(lane, t0, codes, drop_from=active)
        return codes
    finally:
        for lane in lanes:
            lane.progress.close()


def _finish(lane: _Lane, t0: float, codes: dict, drop_from: list | None) -> None:
    """A run that reached its budget: it evaluates its final policy (unless its last
    evaluation was at this very step), keeps it in policy.pt, and its last checkpoint keeps
    networks and history, not the replay buffer."""
    run, c = lane.run, lane.run.c
    if drop_from is not None:
        drop_from.remove(lane)
    if not lane.settled(t0):
        codes[lane.index] = 1
        return
    row = None
    if not c.history or c.history[-1]["env_steps"] != c.env_steps:
        row = _record_evaluation(lane, final=True)
    run.finished = True
    _save_policy(run)
    lane.save(with_buffer=False)
    write_metrics_csv(run.out / "metrics.csv", c.history, run.cfg.backend)
    if row is not None:
        _report(lane, row)
    codes[lane.index] = 0
    lane.progress.close()


def _save_policy(run: Run) -> None:
    """policy.pt: the networks now and how to replay the last evaluation (their final one)."""
    c = run.c
    meta = {
        "env_steps": c.env_steps,
        "eval_index": c.evals_done - 1,
        "eval_seed": eval_seed(run.cfg.seed, c.evals_done - 1),
        "eval_episodes": run.cfg.eval_episodes,
        "kernel": run.kernel,
    }
    policy_file.save(run.out, run.learner.nets, run.cfg, meta)


def _policy_readable(out: Path) -> bool:
    try:
        torch.load(out / policy_file.NAME, map_location="cpu", weights_only=True)
    except Exception:  # missing or damaged: either way it is rebuilt
        return False
    return True


def _training_env(cfg: Config, seeds: list[int]) -> Any:
    """The training episodes of a pack of runs with these seeds (`make_pack_env`). A run alone
    on the native backend steps the single env instead (`SingleEnvs` of one): PredatorPrey's
    vectorised form at batch 1 costs ~6x the single env per step (~110 vs ~17 us), which made
    runs alone 1.13-1.17x slower from 978acfb on (bench/results/commits.md). The episodes are
    the same either way (vector = single, tests/envs), so are the metrics."""
    if len(seeds) == 1 and cfg.backend == "native":
        return SingleEnvs([make_env(cfg.env, cfg.backend, seed=seeds[0], **cfg.env_args)])
    return make_pack_env(cfg.env, cfg.backend, seeds, **cfg.env_args)


def _lanes_env(env: Any, pack: list[Run]) -> Any:
    """The training environment for the runs still training. A vectorised env keeps its size
    (the lanes of stopped runs play throwaway episodes: SMAX would compile its step again for
    each smaller batch); one game per run (`SingleEnvs`, real StarCraft II) closes the games
    of stopped runs. Every episode is reset from its run's own seed, so which lane plays it
    changes nothing."""
    if not isinstance(env, SingleEnvs) or env.num_envs == len(pack):
        return env
    keep = [env.envs[run.lane] for run in pack]
    for single in env.envs:
        if all(single is not k for k in keep):
            single.close()
    for i, run in enumerate(pack):
        run.lane = i
    return SingleEnvs(keep)


def _record_evaluation(lane: _Lane, final: bool) -> dict[str, Any]:
    """Evaluate the run now and append the row to its history and metrics.csv."""
    run, c = lane.run, lane.run.c
    row = _evaluate_row(run, lane.last_eval, final)
    lane.last_eval = (row["env_steps"], row["wall_time"])
    c.history.append(row)
    c.evals_done += 1
    c.loss_sum, c.loss_count = 0.0, 0
    lane.loss_sum.zero_()
    write_metrics_csv(run.out / "metrics.csv", c.history, run.cfg.backend)
    return row


def _report(lane: _Lane, row: dict[str, Any]) -> None:
    """An evaluation row to W&B and the progress line, once its checkpoint is written (a
    failed write then ends in one line)."""
    lane.tracker.log(row)
    lane.progress.report(row)


def _evaluate_row(
    run: Run, last_eval: tuple[int, float] | None, final: bool = False
) -> dict[str, Any]:
    cfg, c = run.cfg, run.c
    seed = eval_seed(cfg.seed, c.evals_done)
    columns, _ = greedy_evaluation(
        run.eval_env,
        run.policy,
        run.learner.nets,
        cfg.eval_episodes,
        seed,
        has_win=run.info.has_win,
        listen=cfg.listens_at(c.evals_done, final),
        sight=env_spec(cfg.env).sight,
    )
    rate = None
    if last_eval is not None and c.wall_time > last_eval[1]:
        rate = (c.env_steps - last_eval[0]) / (c.wall_time - last_eval[1])
    return {
        "env_steps": c.env_steps,
        "episodes": c.episodes,
        "grad_steps": run.learner.grad_steps,
        **columns,
        "train_loss": c.loss_sum / c.loss_count if c.loss_count else None,
        "epsilon": run.eps.value,
        "wall_time": c.wall_time,
        "env_steps_per_sec": rate,
    }


USAGE = """usage: ficomm train [CONFIG.yaml] [key=value ...]

One training run, or a pack of runs trained side by side in one process. Every key of the
config can be set in the YAML file or as key=value (values are YAML: 1e-4, true, [a, b]);
env_args.NAME=value sets an environment parameter. A list for a key marked [pack] makes a
pack, one run per value, each in its own directory (out= a template or a list).
Rerunning the same command resumes from the run directories' checkpoints.
Example: ficomm train out=runs/pp env=predator_prey share=nps comm=true hidden=64 seed=0
Pack:    ficomm train out=runs/pp/seed{seed} share=nps comm=true seed=[0,1,2,3,4]"""


class Interrupted(BaseException):
    """SIGTERM outside the training loop (a BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way swallows it)."""


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError)
        and ("can't allocate memory" in text or "out of memory" in text)
    )


def os_error_line(exc: OSError, out: str) -> str:
    """One line for a failed file operation: what, where, what to do."""
    where = exc.filename or out
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = (
            "the file system is full or a file-size or quota limit was reached; the last "
            "checkpoint is intact: free space (or raise the limit) and rerun the same command "
            "to resume"
        )
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "make the run directory writable or choose another out="
    else:
        advice = "rerun the same command to resume from the last checkpoint"
    return f"cannot write {where}: {exc.strerror or exc}; {advice}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        from ficomm.config import keys_help

        print(f"{USAGE}\n\nkeys (key=default [unit] (choices)):\n{keys_help()}")
        return 0
    path = None
    if argv and "=" not in argv[0]:
        path, argv = argv[0], argv[1:]
    installed, old_term = False, None
    try:  # outside the loop SIGTERM ends the run like Ctrl-C: one line (not in threads)
        old_term, installed = signal.signal(signal.SIGTERM, _raise_interrupted), True
    except ValueError:
        pass
    cfg: Config | None = None
    try:
        cfgs = load_pack(path, argv)
        cfg = cfgs[0]
        return train(cfgs)
    except ConfigError as exc:
        print(f"ficomm train: config error: {exc}", file=sys.stderr)
        return 2
    except RunDirBusy as exc:
        print(f"ficomm train: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (checkpoint.CheckpointError, NonFiniteLoss, TrackingError) as exc:
        print(f"ficomm train: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ficomm train: {os_error_line(exc, cfg.out if cfg else '')}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as exc:
        name = "SIGINT" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
        print(
            f"ficomm train: received {name} while starting or finishing (outside the training "
            "loop); the checkpoint, if any, is as it was; rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (MemoryError, RuntimeError) as exc:
        if not _is_out_of_memory(exc):
            raise
        asked = re.search(r"allocate (\d+) bytes", str(exc))
        what = f"{int(asked[1]) / 2**30:.1f} GiB requested at once" if asked else "MemoryError"
        sizes = f", hidden={cfg.hidden} buffer_size={cfg.buffer_size}" if cfg else ""
        print(
            f"ficomm train: out of memory ({what}{sizes}); lower hidden, "
            "msg_hidden, batch_size or buffer_size, or run where more memory is available; the "
            "last checkpoint, if any, is kept",
            file=sys.stderr,
        )
        return 1
    finally:
        if installed:
            signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
