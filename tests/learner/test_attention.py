"""The attention channel (beyond the paper) under the paper's independence rule: which
parameters receive gradient from which agent's loss, the torch-only kernel choice, and
`ficomm train` end to end with a bit-exact resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from learner_helpers import (
    PP,
    SMALL_RUN,
    grads_of,
    per_owner_losses,
    read_metrics,
    run_train,
)

from ficomm.config import load_config
from ficomm.envs.base import ConfigError
from ficomm.learner import Learner
from ficomm.methods import layout_for
from ficomm.nets import AgentNets
from ficomm.rollout import Policy
from ficomm.train import check_kernel

OWN_NETS = ("msg.fc1.weight", "msg.fc3.weight", "msg.fc3.bias", "query.weight", "query.bias")
Q_NETS = ("q.fc1.weight", "q.gru.w_hh", "q.fc2.weight")


def make(share, own_message=True, hidden=16, seed=0, kernel="auto"):
    torch.manual_seed(seed)
    layout = layout_for(share, True, own_message, channel="attention")
    nets = AgentNets(layout, PP["n"], PP["obs"], PP["actions"], hidden, kernel=kernel)
    return Learner(nets, lr=5e-4)


def test_nps_agent_loss_reaches_only_its_own_networks():
    learner = make("nps")
    assert {n.split(".")[0] for n, _ in learner.nets.named_parameters()} == {"q", "msg", "query"}
    losses = per_owner_losses(learner)
    for i in range(4):
        g = grads_of(losses[i], learner.nets)
        for name, grad in g.items():
            others = torch.cat([grad[:i], grad[i + 1 :]])
            assert torch.count_nonzero(others) == 0, f"agent {i}'s loss reached {name} of another"
        for name in OWN_NETS + Q_NETS:  # own key/value (msg), query and Q-net all learn
            assert g[name][i].abs().sum() > 0, f"agent {i}'s loss gave no gradient to its {name}"


def test_nps_key_and_value_both_learn_through_the_own_message():
    """The own key reaches the loss through the attention weights, the own value through the
    attended sum: both halves of the message net's output layer get gradient."""
    learner = make("nps")
    g = grads_of(per_owner_losses(learner)[2], learner.nets)["msg.fc3.weight"][2]
    D = learner.nets.msg_dim
    assert g[:, :D].abs().sum() > 0 and g[:, D:].abs().sum() > 0


def test_without_own_message_the_message_nets_get_no_gradient():
    """The ablation as for concat: detached senders alone leave key and value untrained; the
    receiver's own query and Q-net still learn."""
    learner = make("nps", own_message=False)
    g = grads_of(per_owner_losses(learner).sum(), learner.nets)
    msg = {k: v for k, v in g.items() if k.startswith("msg.")}
    assert msg and all(torch.count_nonzero(v) == 0 for v in msg.values())
    for name in ("query.weight",) + Q_NETS:
        assert g[name].abs().sum() > 0, name


def test_ps_shared_nets_learn_through_received_messages():
    learner = make("ps")
    assert not learner.nets.layout.own_message  # as for concat: no own message under PS
    g = grads_of(per_owner_losses(learner)[0], learner.nets)
    for name in ("msg.fc1.weight", "msg.fc2.weight", "msg.fc3.weight", "query.weight"):
        assert g[name].abs().sum() > 0, name


def test_senders_are_detached_under_nps_only():
    """Agent 0's Q-values depend on the other agents' message nets only under PS."""
    for share in ("ps", "nps"):
        nets = make(share).nets
        q, _ = nets.unroll(torch.rand(4, 3, 2, 28), torch.zeros(4, 3, 2, 5))
        g = torch.autograd.grad(q[0].sum(), nets.msg.fc3.weight)[0]
        sender_grad = g.abs().sum() if share == "ps" else g[1:].abs().sum()
        assert (sender_grad > 0) == (share == "ps"), share


def test_attended_value_is_a_convex_combination_of_the_senders_values():
    nets = make("nps").nets
    obs = torch.rand(4, 2, 3, 28)
    msgs = nets.messages(obs)
    att = nets.attend(obs, msgs)
    values = msgs[..., nets.msg_dim :]
    lo, hi = values.min(0).values, values.max(0).values  # over all senders, own included
    assert att.shape == (4, 2, 3, nets.msg_dim)
    assert torch.all(att >= lo - 1e-6) and torch.all(att <= hi + 1e-6)


def test_the_compiled_kernel_is_never_used_and_fused_is_refused():
    nets = make("nps").nets
    assert nets.q.kernel == "torch" and nets.msg.kernel == "torch"  # auto -> torch
    assert Policy(nets).lib is None
    with pytest.raises(ValueError, match="kernel"):
        make("nps", kernel="fused")
    assert check_kernel("auto", torch.device("cpu"), "attention") == "torch"
    with pytest.raises(ConfigError, match="^kernel: 'fused'"):
        check_kernel("fused", torch.device("cpu"), "attention")
    with pytest.raises(ConfigError, match="^kernel: "):
        load_config(None, ["channel=attention", "kernel=fused"])
    with pytest.raises(ConfigError, match="^channel: 'attention' .* comm=true"):
        load_config(None, ["channel=attention", "comm=false"])


@pytest.mark.parametrize("share", ["nps", "ps"])
def test_acting_step_by_step_equals_the_training_unroll(share):
    nets = make(share).nets
    rng = np.random.default_rng(0)
    obs = rng.random((5, 2, 4, 28)).astype(np.float32)  # (T, B, n, obs)
    actions = rng.integers(0, 5, (5, 2, 4))
    policy = Policy(nets)
    policy.start(2)
    steps = []
    for t in range(5):
        steps.append(policy.q_values(obs[t]))
        policy.record(actions[t])
    o = torch.from_numpy(obs).permute(2, 0, 1, 3)
    last = torch.nn.functional.one_hot(torch.from_numpy(actions), 5).float().permute(2, 0, 1, 3)
    last = torch.cat([torch.zeros_like(last[:, :1]), last[:, :-1]], 1)
    with torch.no_grad():
        q, _ = nets.unroll(o, last)
    np.testing.assert_allclose(np.stack(steps), q.permute(1, 2, 0, 3).numpy(), atol=1e-5)


# ---------------------------------------------------------------- ficomm train end to end

BUDGET = ["budget=2000", "eval_interval=500"]
ATT = [*SMALL_RUN, *BUDGET, "share=nps", "comm=true", "channel=attention", "kernel=torch"]


@pytest.fixture(scope="module")
def attention_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("att") / "run"
    res = run_train([*ATT, f"out={out}"])
    assert res.returncode == 0, res.stderr
    return out


def test_attention_run_finishes_and_writes_its_records(attention_run):
    cfg = yaml.safe_load((attention_run / "config.yaml").read_text())
    assert cfg["channel"] == "attention"
    info = json.loads((attention_run / "run_info.json").read_text())
    assert info["method"] == "NPS+IQL+ATT" and info["kernel"] == "torch"
    nets = AgentNets(layout_for("nps", True, channel="attention"), 4, 28, 5, 16)
    assert info["n_params"] == nets.params_per_owner() and info["q_input_width"] == 43
    rows = read_metrics(attention_run / "metrics.csv")
    # 0 and each crossed multiple of 500, then the final policy's at the budget
    assert [int(r["env_steps"]) // 500 for r in rows] == [0, 1, 2, 3, 4]
    assert all(float(r["train_loss"]) > 0 for r in rows[1:])
    # the attention channel's interventions and signalling (auto: at the final evaluation)
    assert rows[-1]["intervene_swap_action_change"] != "" and rows[-1]["signal_action_mi"] != ""


def test_killed_attention_run_resumes_bit_exact(attention_run, tmp_path):
    out = tmp_path / "run"
    args = [*ATT, f"out={out}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ficomm.train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    csv = out / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline:
        if csv.exists() and len(csv.read_text().splitlines()) >= 3:  # header + 2 evaluations
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert len(read_metrics(csv)) < 4  # it really stopped early
    res = run_train(args)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    assert read_metrics(csv) == read_metrics(attention_run / "metrics.csv")
