"""Q-nets and message nets with parameters stacked over a leading "owner" axis.

PS is one owner shared by all agents, NPS one owner per agent; every layer is a batched
matmul over the owners, so all agents are evaluated in one call, in acting and in training.
Shapes follow two conventions:
  agent-major   (n_agents, T, B, features): what the learner and rollout pass in and get back;
  owner-major   (G, rows, features): what the layers compute on, rows = agents_per_owner x ...
The owner of agent i is i // (n_agents // G), so an agent-major tensor is a view of the
owner-major one. Initialisation matches PyTorch's nn.Linear / nn.GRUCell defaults.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ficomm.kernels.functions import (
    FusedMessageNet,
    FusedQNet,
    fused_kernel,
    message_forward,
    qnet_forward,
)
from ficomm.methods import Layout

# the only inputs that carry gradient
MESSAGE_BLOCKS = ("others_messages", "own_message", "attended")

NARROW = 16  # output widths below this use the transposed matmul (Q-values, messages)


class OwnerLinear(nn.Module):
    """G independent Linear(in, out) layers applied as one batched matmul."""

    def __init__(self, owners: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)  # == nn.Linear's default init bound
        self.weight = nn.Parameter(torch.empty(owners, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(owners, 1, out_features))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:  # (G, R, in) -> (G, R, out)
        if self.weight.shape[-1] < NARROW:
            # (W^T x^T)^T: the same product, but MKL runs a many-row, few-column matmul
            # (and its weight gradient) several times slower than the transposed form.
            return (
                torch.bmm(self.weight.transpose(1, 2), x.transpose(1, 2)).transpose(1, 2)
                + self.bias
            )
        return torch.baddbmm(self.bias, x, self.weight)


def _gru_loop(gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor, keep: bool):
    """Run the recurrence (gate order r, z, n), writing every step into preallocated
    tensors. Returns the hidden states h_0..h_T (G, T+1, R, H) (so that the outputs h_1..h_T
    and the previous states h_0..h_{T-1} are both views) and, with `keep`, the gates the
    backward pass needs, time-major so that each step writes one contiguous block."""
    G, T, R, _ = gi.shape
    H = h0.shape[-1]
    hall = gi.new_empty(G, T + 1, R, H)
    hall[:, 0] = h0
    steps = T if keep else 1
    gh_all = gi.new_empty(steps, G, R, 3 * H)
    rz_all = gi.new_empty(steps, G, R, 2 * H)
    n_all = gi.new_empty(steps, G, R, H)
    h = h0
    for t in range(T):
        s = t if keep else 0
        gh = torch.baddbmm(b_hh, h, w_hh, out=gh_all[s])
        rz = torch.add(gh[..., : 2 * H], gi[:, t, :, : 2 * H], out=rz_all[s]).sigmoid_()
        n = torch.addcmul(gi[:, t, :, 2 * H :], rz[..., :H], gh[..., 2 * H :], out=n_all[s])
        n.tanh_()
        h = torch.lerp(n, h, rz[..., H:], out=hall[:, t + 1])  # n + z * (h - n)
    return hall, (rz_all, n_all, gh_all)


class GRUSequence(torch.autograd.Function):
    """The recurrent part of a owner-stacked GRU over T steps, with a hand-written backward.

    Autograd over the step loop would record ~10 small nodes per step and run 2T small
    matmuls backwards; here the gate derivatives are precomputed for all steps at once, the
    backward loop is one small matmul and three elementwise ops per step, and the weight
    gradient is one large matmul over all steps. Checked by gradcheck in tests/learner.
    """

    @staticmethod
    def forward(ctx, gi, h0, w_hh, b_hh):
        # gi (G, T, R, 3H), h0 (G, R, H) -> hidden states (G, T, R, H)
        G, T, R, _ = gi.shape
        H = h0.shape[-1]
        hall, (rz, n, gh) = _gru_loop(gi, h0, w_hh, b_hh, keep=True)
        hprev = hall[:, :-1]
        # gates as owner-major views (G, T, R, .) of the time-major buffers
        r = rz[..., :H].transpose(0, 1)
        z = rz[..., H:].transpose(0, 1)
        n = n.transpose(0, 1)
        gh_n = gh[..., 2 * H :].transpose(0, 1)
        # d(pre-activations)/dh_t for all steps, in the order [gh_n, gh_r, gh_z, gi_n]:
        # the first three are gh's gates and the last three gi's (gi_r, gi_z equal gh_r,
        # gh_z), so both gradients are views of one buffer, with no copies.
        coef = gi.new_empty(G, T, R, 4, H)
        a = coef[..., 3, :]
        torch.mul(n, n, out=a).neg_().add_(1).mul_(1 - z)  # (1 - z)(1 - n^2)
        torch.mul(a, r, out=coef[..., 0, :])
        torch.mul(a, gh_n, out=coef[..., 1, :]).mul_(r).mul_(1 - r)
        torch.sub(hprev, n, out=coef[..., 2, :]).mul_(z).mul_(1 - z)
        ctx.save_for_backward(hprev, z, coef, w_hh)
        return hall[:, 1:]

    @staticmethod
    def backward(ctx, dhseq):
        hprev, z, coef, w_hh = ctx.saved_tensors
        G, T, R, H = hprev.shape
        # rows of W_hh^T in the gate order n, r, z of the first three coefficients
        w_t = torch.cat([w_hh[..., 2 * H :], w_hh[..., : 2 * H]], -1).transpose(1, 2)
        dpre = coef.new_empty(G, T, R, 4 * H)
        g = torch.zeros_like(hprev[:, 0])
        for t in range(T - 1, -1, -1):
            g = g + dhseq[:, t]  # dL/dh_t: from the output at t and from step t+1
            d = dpre[:, t]
            torch.mul(g.unsqueeze(-2), coef[:, t], out=d.view(G, R, 4, H))
            g = torch.baddbmm(g * z[:, t], d[..., : 3 * H], w_t)
        dgh = dpre[..., : 3 * H].reshape(G, T * R, 3 * H)  # a view: gates n, r, z
        dgi = dpre[..., H:]  # a view: gates r, z, n
        dw = torch.bmm(hprev.reshape(G, T * R, H).transpose(1, 2), dgh)
        db = dgh.sum(1, keepdim=True)
        dw, db = (torch.cat([x[..., H:], x[..., :H]], -1) for x in (dw, db))
        return dgi, g, dw, db


def gru_sequence(gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """Hidden states (G, T, R, H) of a owner-stacked GRU from its input projection gi (G, T, R, 3H)."""
    if torch.is_grad_enabled() and any(x.requires_grad for x in (gi, h0, w_hh, b_hh)):
        return GRUSequence.apply(gi, h0, w_hh, b_hh)
    return _gru_loop(gi, h0, w_hh, b_hh, keep=False)[0][:, 1:]


class OwnerGRUCell(nn.Module):
    """G independent GRUCell(H, H); gate order r, z, n as in PyTorch.

    The input projection does not depend on the hidden state, so `project` runs it over all
    time steps at once and `sequence` only does the recurrent part.
    """

    def __init__(self, owners: int, hidden: int):
        super().__init__()
        bound = 1.0 / math.sqrt(hidden)  # == nn.GRUCell's default init bound
        self.w_ih = nn.Parameter(torch.empty(owners, hidden, 3 * hidden))
        self.w_hh = nn.Parameter(torch.empty(owners, hidden, 3 * hidden))
        self.b_ih = nn.Parameter(torch.empty(owners, 1, 3 * hidden))
        self.b_hh = nn.Parameter(torch.empty(owners, 1, 3 * hidden))
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)
        self.hidden = hidden

    def project(self, x: Tensor) -> Tensor:  # (G, R, H) -> (G, R, 3H)
        return torch.baddbmm(self.b_ih, x, self.w_ih)

    def sequence(self, gi: Tensor, h0: Tensor) -> Tensor:
        """gi (G, T, R, 3H), h0 (G, R, H) -> hidden states (G, T, R, H)."""
        return gru_sequence(gi, h0, self.w_hh, self.b_hh)


class QNet(nn.Module):
    """Linear(in, H) - ReLU - GRUCell(H, H) - Linear(H, n_actions), per owner.

    `kernel` chooses how the unroll is computed: "torch" (layer by layer, any device),
    "fused" (the compiled CPU kernel, ficomm.kernels) or "auto" (fused where it runs: CPU,
    float32/64, a C++ compiler; torch otherwise). Same math either way.
    """

    def __init__(
        self, owners: int, in_features: int, hidden: int, n_actions: int, kernel: str = "auto"
    ):
        super().__init__()
        self.kernel = kernel
        self.fc1 = OwnerLinear(owners, in_features, hidden)
        self.gru = OwnerGRUCell(owners, hidden)
        self.fc2 = OwnerLinear(owners, hidden, n_actions)
        self.hidden = hidden

    def unroll(
        self, x: Tensor, h: Tensor, grad_part: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """x (G, T, R, in), h (G, R, H) -> q (G, T, R, n_actions), last hidden (G, R, H)
        (returned to carry an unroll on, without gradient: training never backpropagates
        through it).

        grad_part (G, T, R, c): the tensor (with gradient) whose values fill the last c input
        columns of x (the messages; x itself is data): gradient reaches it, and the fused
        backward computes the input gradient of those columns only."""
        G, T, R, F = x.shape
        lib = fused_kernel(self.kernel, x)
        if lib is None:
            if grad_part is not None:
                x = torch.cat([x[..., : F - grad_part.shape[-1]], grad_part], -1)
            gi = self.gru.project(torch.relu(self.fc1(x.reshape(G, T * R, F))))
            hseq = self.gru.sequence(gi.view(G, T, R, -1), h)
            q = self.fc2(hseq.reshape(G, T * R, self.hidden))
            return q.view(G, T, R, -1), hseq[:, -1].detach()
        fc1, gru, fc2 = self.fc1, self.gru, self.fc2
        params = [fc1.weight, fc1.bias, gru.w_ih, gru.b_ih, gru.w_hh, gru.b_hh]
        params += [fc2.weight, fc2.bias]
        if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, h, grad_part, *params)
        ):
            q, hall = FusedQNet.apply(x, h, grad_part, lib, *params)
        else:
            q, hall = qnet_forward(lib, x, h, params, keep=False)[:2]
        return q, hall[:, -1]


class MessageNet(nn.Module):
    """Linear(obs, 64) - ReLU - Linear(64, 64) - ReLU - Linear(64, 10) on the own observation.
    `kernel` as in QNet."""

    def __init__(self, owners: int, obs_size: int, hidden: int, msg_dim: int, kernel: str = "auto"):
        super().__init__()
        self.fc1 = OwnerLinear(owners, obs_size, hidden)
        self.fc2 = OwnerLinear(owners, hidden, hidden)
        self.fc3 = OwnerLinear(owners, hidden, msg_dim)
        self.kernel = kernel

    def forward(self, obs: Tensor) -> Tensor:  # (G, R, obs) -> (G, R, msg_dim)
        lib = None if obs.requires_grad else fused_kernel(self.kernel, obs)
        if lib is None:
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(obs)))))
        params = [p for fc in (self.fc1, self.fc2, self.fc3) for p in (fc.weight, fc.bias)]
        if torch.is_grad_enabled() and any(t.requires_grad for t in params):
            return FusedMessageNet.apply(obs, lib, *params)
        return message_forward(lib, obs, params, keep=False)[0]


class AgentNets(nn.Module):
    """All agents' networks (Q-nets and, with COMM, message nets) for one method layout.

    With the attention channel the message net emits [key | value] (msg_dim each) and a
    linear query net reads the receiver's own observation (`attend`); the compiled kernel has
    no attention, so these networks run on the torch layers (kernel "auto" -> "torch").

    `runs` > 1 stacks the networks of that many runs of a pack on the owner axis (run r's
    owners are r * G .. r * G + G - 1, its agents r * n .. r * n + n - 1 on the agent axis):
    `agents` = runs * n_agents rows, and messages pass only between agents of one run.
    """

    def __init__(
        self,
        layout: Layout,
        n_agents: int,
        obs_size: int,
        n_actions: int,
        hidden: int,
        msg_hidden: int = 64,
        msg_dim: int = 10,
        kernel: str = "auto",
        runs: int = 1,
    ):
        super().__init__()
        if layout.attention:
            if kernel == "fused":
                raise ValueError("kernel: 'fused' has no attention channel; use auto or torch")
            kernel = "torch"
        self.layout = layout
        self.n_agents = n_agents  # per run: what the input layout is built for
        self.runs = runs
        self.agents = runs * n_agents  # rows of the agent axis
        self.n_actions = n_actions
        self.obs_size = obs_size
        self.owners = runs * layout.owners(n_agents)
        self.per_owner = n_agents // layout.owners(n_agents)
        self.hidden = hidden
        self.msg_hidden = msg_hidden
        self.msg_dim = msg_dim
        self.blocks = layout.q_input_blocks(n_agents, obs_size, n_actions, msg_dim)
        width = self.in_features = self.blocks[-1].start + self.blocks[-1].width
        self.q = QNet(self.owners, width, hidden, n_actions, kernel)
        # what a message net emits: the message, or under attention its key and value
        self.msg_width = 2 * msg_dim if layout.attention else msg_dim
        self.msg = (
            MessageNet(self.owners, obs_size, msg_hidden, self.msg_width, kernel)
            if layout.comm
            else None
        )
        # the receiver's query, from its own observation at the step (as the messages are)
        self.query = OwnerLinear(self.owners, obs_size, msg_dim) if layout.attention else None
        n = n_agents  # each agent's senders: the other agents of its own run
        others = [[r * n + j for j in range(n) if j != i] for r in range(runs) for i in range(n)]
        self.register_buffer("others", torch.tensor(others, dtype=torch.long), persistent=False)
        ids = torch.eye(n).repeat(runs, 1)  # (agents, n): the id within the run
        self.register_buffer("agent_ids", ids, persistent=False)

    def params_per_owner(self) -> int:
        """Parameters of one owner (one agent under NPS, the shared set under PS)."""
        return sum(p[0].numel() for p in self.parameters())

    def initial_hidden(self, batch: int) -> Tensor:
        """Zero hidden state for `batch` episodes, owner-major (G, agents_per_owner * B, H)."""
        w = self.q.fc1.weight
        return w.new_zeros(self.owners, self.per_owner * batch, self.hidden)

    def to_owners(self, x: Tensor) -> Tensor:
        """Agent-major (n, T, B, F) -> owner-major (G, agents_per_owner * T * B, F) (a view)."""
        return x.reshape(self.owners, -1, x.shape[-1])

    def messages(self, obs: Tensor) -> Tensor:
        """obs (n, T, B, obs) -> messages (n, T, B, msg_width), each from its sender's net."""
        n, T, B, _ = obs.shape
        return self.msg(self.to_owners(obs)).reshape(n, T, B, self.msg_width)

    def attend(self, obs: Tensor, msgs: Tensor, incoming: Tensor | None = None) -> Tensor:
        """The attention channel: each receiver's value (n, T, B, msg_dim), softmax(q k / sqrt
        d)-weighted over the senders' values, with its query from its own observation.

        The senders are the others (detached under NPS, as in the concatenation channel) and,
        with own_message, the receiver itself with gradient through its own key and value:
        the only path by which an NPS agent's loss trains its message net. PS (own_message
        off, as for concat) attends over the others, differentiably. `incoming`: see q_inputs."""
        n, T, B, _ = obs.shape
        D, L = self.msg_dim, self.layout
        query = self.query(self.to_owners(obs)).reshape(n, 1, T, B, D)
        sent = msgs if incoming is None else incoming
        sent = sent.detach() if L.detach_others else sent
        senders = sent[self.others]  # (n, n-1, T, B, 2D)
        if L.own_message:
            senders = torch.cat([senders, msgs.unsqueeze(1)], 1)
        keys, values = senders[..., :D], senders[..., D:]
        weights = torch.softmax((keys * query).sum(-1) / math.sqrt(D), 1)  # (n, m, T, B)
        return (weights.unsqueeze(-1) * values).sum(1)

    def to_owners_by_step(self, x: Tensor) -> Tensor:
        """Agent-major (n, T, B, F) -> owner-major (G, T, agents_per_owner * B, F), the rows
        of one step contiguous (a view under NPS, a copy under PS)."""
        n, T, B, F = x.shape
        G, k = self.owners, self.per_owner
        return x.view(G, k, T, B, F).transpose(1, 2).reshape(G, T, k * B, F)

    def q_inputs(
        self,
        obs: Tensor,
        last_action: Tensor,
        msgs: Tensor | None = None,
        incoming: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """The Q-net input of every agent, its blocks at the columns of `self.blocks`, as data
        written owner-major (G, T, agents_per_owner * B, in) so that the rows of one step are
        contiguous for the recurrence; and the part that carries gradient (the messages that
        are not detached, the last columns, owner-major), or None.

        `msgs` (n, T, B, msg_width) may be precomputed (NPS training: every agent's messages
        are computed over the minibatch before any update); otherwise they come from obs.
        `incoming` (n, T, B, msg_width), an intervention (ficomm.listening): row j is what
        every other agent receives from sender j in place of msgs[j]; each agent's own
        message stays its own.
        """
        n, T, B, _ = obs.shape
        G, k, L = self.owners, self.per_owner, self.layout
        parts = {"obs": obs, "last_action": last_action}
        if L.agent_id:
            parts["agent_id"] = self.agent_ids[:, None, None].expand(n, T, B, -1)
        if L.comm and msgs is None:
            msgs = self.messages(obs)
        if L.attention:
            parts["attended"] = self.attend(obs, msgs, incoming)
        elif L.comm:
            sent = msgs if incoming is None else incoming
            sent = sent.detach() if L.detach_others else sent
            others = sent[self.others]  # (n, n-1, T, B, D), ascending sender order
            parts["others_messages"] = others.permute(0, 2, 3, 1, 4).reshape(n, T, B, -1)
            parts["own_message"] = msgs
        x = obs.new_empty(G, T, k * B, self.in_features)
        by_agent = x.view(G, T, k, B, -1).permute(0, 2, 1, 3, 4)  # (G, k, T, B, in) view
        with torch.no_grad():  # data; the gradient goes through grad_part
            for b in self.blocks:
                by_agent[..., b.start : b.start + b.width] = parts[b.kind].view(G, k, T, B, -1)
        grads = [b for b in self.blocks if b.kind in MESSAGE_BLOCKS and parts[b.kind].requires_grad]
        if not grads:
            return x, None
        # the kernel's backward computes the input gradient of the last columns only
        assert grads[0].start + sum(b.width for b in grads) == self.in_features, grads
        grad = [parts[b.kind] for b in grads]
        return x, self.to_owners_by_step(grad[0] if len(grad) == 1 else torch.cat(grad, -1))

    def unroll(
        self,
        obs: Tensor,
        last_action: Tensor,
        h: Tensor | None = None,
        msgs: Tensor | None = None,
        incoming: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Q-values of every agent over T steps of B episodes.

        obs (n, T, B, obs), last_action (n, T, B, n_actions) one-hot, h owner-major hidden
        state or None for zeros -> q (n, T, B, n_actions), last hidden state. `msgs` and
        `incoming` as in q_inputs.
        """
        n, T, B, _ = obs.shape
        G, k = self.owners, self.per_owner
        x, grad_part = self.q_inputs(obs, last_action, msgs, incoming)
        if h is None:
            h = self.initial_hidden(B)
        q, h = self.q.unroll(x, h, grad_part)
        q = q.view(G, T, k, B, -1).transpose(1, 2).reshape(n, T, B, -1)
        return q, h
