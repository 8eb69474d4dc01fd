"""Message interventions, signalling, final policies and `ficomm evaluate`.

Interventions are checked on hand-built networks whose answer is known (a policy whose
action hangs on one message value, and one that ignores its messages), the mutual
information on worked examples, and on real short runs: interventions never change a
training column, the last row is the final policy's, and `ficomm evaluate` replays it."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from learner_helpers import SMALL_RUN, read_metrics, run_train
from PIL import Image

from ficomm.envs import make_vector_env
from ficomm.listening import (
    COLUMNS,
    NoMessages,
    check_messages,
    listening_columns,
    mutual_information,
)
from ficomm.methods import layout_for
from ficomm.nets import AgentNets
from ficomm.rollout import Policy, evaluate

RUN = [*SMALL_RUN, "budget=3000", "eval_interval=1000"]
TRAINING = ("env_steps", "episodes", "grad_steps", "eval_return_mean", "train_loss", "epsilon")


# ------------------------------------------------------------------ mutual information
def test_mutual_information_worked_examples():
    k, reps = 4, 100
    x = np.repeat(np.arange(k), reps)  # uniform on 4 symbols, N = 400
    n = len(x)
    # X = Y: log2 k, plus the Miller-Madow terms (k-1)/2N + (k-1)/2N - (k-1)/2N, in bits
    assert mutual_information(x, x) == pytest.approx(math.log2(k) + (k - 1) / (2 * n * math.log(2)))
    # independent, every pair equally often: plug-in 0, corrected -(kx-1)(ky-1)/2N
    a, b = np.meshgrid(np.arange(4), np.arange(3))
    a, b = np.tile(a.ravel(), 50), np.tile(b.ravel(), 50)
    assert mutual_information(a, b) == pytest.approx(-3 * 2 / (2 * len(a) * math.log(2)))
    # a constant message says nothing, exactly
    assert mutual_information(np.zeros(n), x) == 0.0
    # a binary action copied from the message's parity: 1 bit
    assert mutual_information(x, x % 2) == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError):
        mutual_information(x, x[:-1])


# ------------------------------------------------------------------ hand-built networks
def _nets(listens: bool) -> AgentNets:
    """NPS+COMM on PredatorPrey whose message is always [1, 0, ...]: an agent that listens
    takes action 1 while it hears another's message component 0 and action 0 without it; one
    that does not listen always takes action 0."""
    nets = AgentNets(layout_for("nps", True), 4, 28, 5, hidden=8, msg_dim=10, kernel="torch")
    with torch.no_grad():
        for p in nets.parameters():
            p.zero_()
        nets.msg.fc3.bias[:, 0, 0] = 1.0  # every message is e_0
        heard = next(b for b in nets.blocks if b.kind == "others_messages").start
        if listens:
            nets.q.fc1.weight[:, heard, 0] = 1.0  # hidden input 0 = the first sender's e_0
        nets.q.gru.w_ih[:, 0, 16] = 5.0  # -> the n gate of unit 0: h_0 = 0.5 tanh(5 x_0) + ...
        nets.q.fc2.weight[:, 0, 1] = 10.0  # Q(action 1) = 10 h_0
        nets.q.fc2.bias[:, 0, 0] = 1e-3  # Q(action 0) wins when h_0 = 0
    return nets


@pytest.mark.parametrize("listens", [True, False])
def test_interventions_on_known_policies(listens):
    nets = _nets(listens)
    env = make_vector_env("predator_prey", "native", 4, seed=0)
    res = evaluate(env, Policy(nets), 4, seed=7, trace=True)
    row = listening_columns(env, nets, res, 7, (2, -1))
    assert set(row) == set(COLUMNS)
    assert (res["actions"][: int(res["length"].min())] == (1 if listens else 0)).all()
    # zeroing the heard messages flips every action of a listener and none of the others
    assert row["intervene_zero_action_change"] == (1.0 if listens else 0.0)
    # every message is the same, so another episode's messages change nothing
    assert row["intervene_swap_action_change"] == 0.0
    assert row["intervene_swap_return_mean"] == pytest.approx(res["return"].mean())
    if not listens:
        assert row["intervene_zero_return_mean"] == pytest.approx(res["return"].mean())
    # one symbol sent throughout: no information about anything
    assert row["signal_action_mi"] == 0.0 and row["signal_sight_mi"] == 0.0


def test_intervention_refused_without_messages():
    nets = AgentNets(layout_for("nps", False), 4, 28, 5, hidden=8, kernel="torch")
    with pytest.raises(NoMessages, match="no message channel"):
        check_messages(nets)


# ------------------------------------------------------------------ real short runs
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """NPS+COMM with interventions at every evaluation, and with none."""
    base = tmp_path_factory.mktemp("listen")
    out = {}
    for name, every in (("on", 1), ("off", 0)):
        out[name] = base / name
        args = [*RUN, "share=nps", "comm=true", f"intervene_every={every}", f"out={out[name]}"]
        res = run_train(args)
        assert res.returncode == 0, res.stderr
    return out


def test_interventions_never_change_training(runs):
    on, off = (read_metrics(runs[k] / "metrics.csv") for k in ("on", "off"))
    # 0, 1000, 2000 crossed, then the final one at the budget (100-step episodes: 3000)
    assert [int(r["env_steps"]) for r in on] == [0, 1000, 2000, 3000] and len(off) == 4
    for a, b in zip(on, off, strict=True):
        assert {k: a[k] for k in b} == b  # every column of the run without them
        assert all(a[c] != "" for c in COLUMNS)
        assert 0 <= float(a["intervene_zero_action_change"]) <= 1
    assert not any(c in off[0] for c in COLUMNS)


def test_last_row_is_the_final_policy(runs):
    rows = read_metrics(runs["on"] / "metrics.csv")
    assert int(rows[-1]["env_steps"]) >= 3000 > int(rows[-2]["env_steps"])
    assert rows[-1]["train_loss"] != ""  # over the gradient steps since the last evaluation
    payload = torch.load(runs["on"] / "policy.pt", weights_only=True)
    keys = set(payload["nets"])
    assert any(k.startswith("msg.") for k in keys) and any(k.startswith("q.") for k in keys)
    assert not any("target" in k or "optim" in k for k in payload)
    assert payload["env_steps"] == int(rows[-1]["env_steps"]) and payload["eval_index"] == 3


def _evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ficomm.evaluate", *args], capture_output=True, text=True
    )


def test_evaluate_reproduces_the_final_row(runs, tmp_path):
    gif = tmp_path / "ep.gif"
    res = _evaluate(str(runs["on"]), "--json", "--gif", str(gif))
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    last = read_metrics(runs["on"] / "metrics.csv")[-1]
    for col in ("eval_return_mean", "eval_return_std", "eval_length_mean", *COLUMNS):
        assert got[col] == pytest.approx(float(last[col]), rel=0, abs=0), col
    with Image.open(gif) as im:  # one frame per step and the last state
        if float(last["eval_length_mean"]) == 100.0:  # every episode ran to the time limit
            assert im.n_frames == 101
        assert 2 <= im.n_frames <= 101
    other = json.loads(_evaluate(str(runs["on"]), "--json", "--seed", "5").stdout)
    assert other["seed"] == 5 and other["episodes"] == 4


def test_evaluate_bad_input(runs, tmp_path):
    # a run without messages: interventions refused with the reason
    plain = tmp_path / "plain"
    assert run_train([*RUN, "share=ps", "comm=false", f"out={plain}"]).returncode == 0
    res = _evaluate(str(plain), "--interventions", "on")
    assert res.returncode == 2 and "no message channel" in res.stderr
    assert _evaluate(str(plain)).returncode == 0  # auto: off for comm=false
    # a run directory without a final policy says so and what to do
    (plain / "policy.pt").unlink()
    res = _evaluate(str(plain))
    assert res.returncode == 2 and "no final policy" in res.stderr and "rerun" in res.stderr
    # rerunning the finished run's command rebuilds it from the final checkpoint, exactly
    again = run_train([*RUN, "share=ps", "comm=false", f"out={plain}"])
    assert again.returncode == 0 and "rebuilt from the final checkpoint" in again.stderr
    assert json.loads(_evaluate(str(plain), "--json").stdout)["eval_return_mean"] == float(
        read_metrics(plain / "metrics.csv")[-1]["eval_return_mean"]
    )
    # another run's policy (other method and widths) is refused by name, never loaded
    (plain / "policy.pt").write_bytes((runs["on"] / "policy.pt").read_bytes())
    res = _evaluate(str(plain))
    assert res.returncode == 2 and "share='nps'" in res.stderr, res.stderr
    # a damaged file
    (plain / "policy.pt").write_bytes(b"not a policy")
    res = _evaluate(str(plain))
    assert res.returncode == 2 and "cannot be read" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = _evaluate(str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "no config.yaml" in res.stderr
