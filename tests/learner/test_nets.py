"""Network shapes and arithmetic: the spec's input widths and parameter counts, PyTorch's
initialisation, and the owner-stacked GRU against torch.nn.GRUCell."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ficomm.methods import layout_for
from ficomm.nets import AgentNets, GRUSequence, gru_sequence

METHODS = [("nps", False), ("nps", True), ("ps", False), ("ps", True)]  # spec column order

# the paper (docs/faithfulness.md): (obs, actions, agents) -> H -> parameters per owner for NPS, NPS+COMM, PS, PS+COMM
PARAM_COUNTS = {
    (28, 5, 4): {
        32: (7589, 15535, 7717, 15343),
        64: (27461, 36687, 27717, 36303),
        128: (104069, 115855, 104581, 115087),
    },
    (48, 11, 3): {
        32: (8619, 17525, 8715, 17301),
        64: (29515, 39381, 29707, 38933),
        128: (108171, 119957, 108555, 119061),
    },
}
# the paper (docs/faithfulness.md): Q-net input widths for NPS, NPS+COMM, PS, PS+COMM
WIDTHS = {(28, 5, 4): (33, 73, 37, 67), (48, 11, 3): (59, 89, 62, 82)}


@pytest.mark.parametrize("sizes", list(PARAM_COUNTS))
@pytest.mark.parametrize("hidden", [32, 64, 128])
def test_widths_and_parameter_counts_match_the_spec(sizes, hidden):
    obs, actions, n = sizes
    for (share, comm), width, count in zip(
        METHODS, WIDTHS[sizes], PARAM_COUNTS[sizes][hidden], strict=True
    ):
        layout = layout_for(share, comm)
        nets = AgentNets(layout, n, obs, actions, hidden)
        assert nets.in_features == width == layout.q_input_width(n, obs, actions, 10)
        assert nets.params_per_owner() == count, (share, comm, hidden)
        assert nets.owners == (1 if share == "ps" else n)
        # every parameter tensor is stacked over the owners
        assert all(p.shape[0] == nets.owners for p in nets.parameters())


def test_own_message_ablation_removes_ten_inputs():
    nets = AgentNets(layout_for("nps", True, own_message=False), 4, 28, 5, 64)
    assert nets.in_features == 63
    # PS+COMM never feeds the own message: the flag changes nothing there
    assert AgentNets(layout_for("ps", True, own_message=False), 4, 28, 5, 64).in_features == 67


# attention channel (beyond the paper) at H 64: (NPS, PS) widths and parameters per owner:
# the concat Q-net input's messages become one attended value (msg_dim), the message net's
# output layer emits key and value (2 x msg_dim), plus a linear query Linear(obs, msg_dim)
ATTENTION = {(28, 5, 4): ((43, 47), (35707, 35963)), (48, 11, 3): ((69, 72), (39241, 39433))}


@pytest.mark.parametrize("sizes", list(ATTENTION))
def test_attention_widths_and_parameter_counts(sizes):
    obs, actions, n = sizes
    H, D, M = 64, 10, 64
    widths, counts = ATTENTION[sizes]
    for share, width, count in zip(("nps", "ps"), widths, counts, strict=True):
        layout = layout_for(share, True, channel="attention")
        nets = AgentNets(layout, n, obs, actions, H)
        assert nets.in_features == width == layout.q_input_width(n, obs, actions, D)
        assert [b.kind for b in nets.blocks][-1] == "attended"
        qnet = width * H + H + 2 * (3 * H * H + 3 * H) + H * actions + actions
        msg = obs * M + M + M * M + M + M * 2 * D + 2 * D
        assert nets.params_per_owner() == count == qnet + msg + obs * D + D
        # the own-message ablation changes who is attended to, not the width
        ablation = AgentNets(layout_for(share, True, False, "attention"), n, obs, actions, H)
        assert ablation.in_features == width
    with pytest.raises(ValueError, match="channel"):
        layout_for("nps", False, channel="attention")


def test_initialisation_matches_pytorch_defaults():
    torch.manual_seed(0)
    nets = AgentNets(layout_for("nps", True), 4, 28, 5, 64)
    # nn.Linear and nn.GRUCell draw U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (fan_in = H for the GRU)
    for p, fan_in in [
        (nets.q.fc1.weight, 73),
        (nets.q.fc1.bias, 73),
        (nets.q.gru.w_hh, 64),
        (nets.q.gru.b_ih, 64),
        (nets.q.fc2.weight, 64),
        (nets.msg.fc1.weight, 28),
        (nets.msg.fc3.bias, 64),
    ]:
        bound = fan_in**-0.5
        assert p.abs().max() <= bound
        assert p.abs().max() > 0.9 * bound  # really spread over the range
    # owners are initialised independently
    assert not torch.equal(nets.q.fc1.weight[0], nets.q.fc1.weight[1])


def test_owner_stacked_gru_equals_torch_grucell_per_owner():
    torch.manual_seed(1)
    G, T, R, H = 3, 6, 5, 8
    cells = [torch.nn.GRUCell(H, H).double() for _ in range(G)]
    x = torch.randn(G, T, R, H, dtype=torch.double)
    w_ih = torch.stack([c.weight_ih.T for c in cells])
    b_ih = torch.stack([c.bias_ih for c in cells]).unsqueeze(1)
    w_hh = torch.stack([c.weight_hh.T for c in cells])
    b_hh = torch.stack([c.bias_hh for c in cells]).unsqueeze(1)
    h0 = torch.randn(G, R, H, dtype=torch.double)
    gi = (x.reshape(G, T * R, H) @ w_ih + b_ih).view(G, T, R, 3 * H)
    hs = gru_sequence(gi, h0, w_hh, b_hh)
    for g, cell in enumerate(cells):
        h = h0[g]
        for t in range(T):
            h = cell(x[g, t], h)
            torch.testing.assert_close(hs[g, t], h, rtol=0, atol=1e-12)


def test_hand_written_gru_backward_passes_gradcheck():
    torch.manual_seed(2)
    G, T, R, H = 2, 5, 3, 4
    args = [
        torch.randn(G, T, R, 3 * H, dtype=torch.double, requires_grad=True),
        torch.randn(G, R, H, dtype=torch.double, requires_grad=True),
        torch.randn(G, H, 3 * H, dtype=torch.double, requires_grad=True),
        torch.randn(G, 1, 3 * H, dtype=torch.double, requires_grad=True),
    ]
    assert torch.autograd.gradcheck(GRUSequence.apply, args)


@pytest.mark.parametrize("share,comm", METHODS)
@pytest.mark.parametrize("kernel", ["fused", "torch"])
@pytest.mark.parametrize("own_message", [True, False])
def test_acting_policy_step_by_step_equals_the_training_unroll(share, comm, kernel, own_message):
    """The acting path (the compiled step, or one step of the torch layers with
    kernel=torch), carrying its hidden state, gives the training unroll's Q."""
    from ficomm.rollout import Policy

    torch.manual_seed(3)
    nets = AgentNets(layout_for(share, comm, own_message), 4, 28, 5, 16, kernel=kernel)
    T, B = 6, 3
    obs = torch.rand(4, T, B, 28)
    actions = torch.randint(0, 5, (4, T, B))
    last = torch.nn.functional.one_hot(actions, 5).float()
    last = torch.cat([torch.zeros_like(last[:, :1]), last[:, :-1]], 1)
    with torch.no_grad():
        q_all, _ = nets.unroll(obs, last)
    policy = Policy(nets)
    assert (policy.lib is not None) == (kernel == "fused")
    policy.start(B)
    for t in range(T):
        q_t = policy.q_values(obs[:, t].permute(1, 0, 2).numpy())  # (B, n, A)
        np.testing.assert_allclose(q_t, q_all[:, t].permute(1, 0, 2).numpy(), rtol=1e-5, atol=1e-5)
        policy.record(actions[:, t].T.numpy())
    # parameters are shared: an in-place update is seen without a refresh
    with torch.no_grad():
        nets.q.fc2.bias.add_(1.0)
    policy.start(B)
    q0 = policy.q_values(obs[:, 0].permute(1, 0, 2).numpy())
    np.testing.assert_allclose(q0, q_all[:, 0].permute(1, 0, 2).numpy() + 1.0, rtol=1e-5, atol=1e-5)
