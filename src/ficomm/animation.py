"""An animated GIF of one greedy PredatorPrey episode (`ficomm evaluate --gif`).

The episode is the evaluation's own (its recorded actions replayed on a single env from the
episode's seed, which reproduces the vector env's lane exactly). Each frame shows the grid,
the predators (numbered blue discs), the living prey (red squares), the captures so far, and,
for comm runs, a thick orange ring around every predator whose greedy action at that step
changes when its incoming messages are swapped for another episode's (ficomm.listening).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ficomm.envs import make_env
from ficomm.envs.predator_prey import sub_seeds

CELL, MARGIN, HEADER = 48, 8, 40


def changed_actions(nets, res: dict[str, np.ndarray], episode: int) -> np.ndarray:
    """(T, n) bool: whose greedy action the swap intervention changes, per step (all False
    for runs without messages or evaluations of one episode)."""
    T, _, n = res["actions"].shape
    if not nets.layout.comm or len(res["return"]) < 2:
        return np.zeros((T, n), bool)
    from ficomm.listening import Traced

    traced = Traced(nets, res)
    changed = traced.greedy(traced.incoming("swap", T)) != traced.greedy()  # (n, T, B)
    return changed[:, :, episode].T.numpy()


def frames(cfg, res: dict[str, np.ndarray], seed: int, episode: int, changed: np.ndarray):
    """The episode's frames (PIL images), from its seed and recorded actions."""
    B = len(res["return"])
    env = make_env(cfg.env, cfg.backend, **cfg.env_args)
    if not hasattr(env, "positions"):
        raise ValueError(f"--gif: draws PredatorPrey episodes only, not {cfg.env!r}")
    env.reset(seed=sub_seeds(seed, B)[episode])  # lane `episode` of the vector env
    rows, cols = env.geometry.rows, env.geometry.cols
    total, out = 0.0, []
    length = int(res["length"][episode])
    for t in range(length + 1):
        preds, preys = env.positions()
        marked = changed[t] if t < length else np.zeros(len(preds), bool)
        out.append(_draw(rows, cols, preds, preys, marked, t, total))
        if t < length:
            total += env.step(res["actions"][t, episode]).reward
    return out


def _draw(rows, cols, preds, preys, marked, t, total) -> Image.Image:
    w, h = 2 * MARGIN + cols * CELL, 2 * MARGIN + rows * CELL + HEADER
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    alive = sum(p is not None for p in preys)
    d.text((MARGIN, 4), f"step {t}  return {total:+.2f}  prey left {alive}", fill="black")
    if marked.any():
        who = ", ".join(str(i) for i in np.flatnonzero(marked))
        d.text((MARGIN, 20), f"action changed by swapped messages: {who}", fill="#d55e00")
    top = MARGIN + HEADER
    for r in range(rows + 1):
        d.line([(MARGIN, top + r * CELL), (MARGIN + cols * CELL, top + r * CELL)], "#bbbbbb")
    for c in range(cols + 1):
        d.line([(MARGIN + c * CELL, top), (MARGIN + c * CELL, top + rows * CELL)], "#bbbbbb")
    for prey in preys:
        if prey is not None:
            x, y = MARGIN + prey[1] * CELL, top + prey[0] * CELL
            d.rectangle([x + 12, y + 12, x + CELL - 12, y + CELL - 12], fill="#cc3311")
    for i, (r, c) in enumerate(preds):
        x, y = MARGIN + c * CELL, top + r * CELL
        if marked[i]:
            d.ellipse([x + 2, y + 2, x + CELL - 2, y + CELL - 2], outline="#d55e00", width=5)
        d.ellipse([x + 9, y + 9, x + CELL - 9, y + CELL - 9], fill="#0072b2")
        d.text((x + CELL // 2 - 3, y + CELL // 2 - 6), str(i), fill="white")
    return img


def write_gif(path: Path, cfg, nets, res: dict[str, np.ndarray], seed: int, episode: int):
    """Write episode `episode` of the evaluation `res` (played from env seed `seed`)."""
    if not 0 <= episode < len(res["return"]):
        raise ValueError(f"--gif-episode: {episode} is not one of the {len(res['return'])}")
    images = frames(cfg, res, seed, episode, changed_actions(nets, res, episode))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=250, loop=0)
    return path
