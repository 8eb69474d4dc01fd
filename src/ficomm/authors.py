"""The authors' released PS+IQL PredatorPrey policies as ficomm networks.

Their repository (rafaelmp2/marl-indep-comm) ships trained parameter-sharing IQL policies for
PredatorPrey (`param_share/model/idql/run_{1,2,3}_pp_no_comm_{32,64,128}_hidden/iql/3m/
1_rnn_net_params.pkl`): a torch state dict of one RNN agent shared by all agents, fc1
(H x 37), a GRUCell (`rnn.*`, gates r, z, n) and fc2 (5 x H), whose input is the observation
(28), the last action one-hot (5) and the agent id one-hot (4), the same columns in the same
order as ficomm's PS+IQL Q-net (methods.Layout). ficomm does not ship their files (their
repository has no licence); `ficomm evaluate --authors FILE` loads one and evaluates it
greedily on ficomm's PredatorPrey (docs/faithfulness.md).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ficomm.methods import layout_for
from ficomm.nets import AgentNets

N_AGENTS, OBS, ACTIONS = 4, 28, 5  # the paper's PredatorPrey
# their parameter name -> (ficomm parameter, transposed: ficomm stores (in, out) per owner)
NAMES = {
    "fc1.weight": ("q.fc1.weight", True),
    "fc1.bias": ("q.fc1.bias", False),
    "rnn.weight_ih": ("q.gru.w_ih", True),
    "rnn.bias_ih": ("q.gru.b_ih", False),
    "rnn.weight_hh": ("q.gru.w_hh", True),
    "rnn.bias_hh": ("q.gru.b_hh", False),
    "fc2.weight": ("q.fc2.weight", True),
    "fc2.bias": ("q.fc2.bias", False),
}


class AuthorsFileError(ValueError):
    """A file that is not one of the authors' PS+IQL PredatorPrey state dicts."""


def expected_shapes(hidden: int) -> dict[str, tuple[int, ...]]:
    """The authors' layout at GRU width `hidden`."""
    width = OBS + ACTIONS + N_AGENTS
    return {
        "fc1.weight": (hidden, width),
        "fc1.bias": (hidden,),
        "rnn.weight_ih": (3 * hidden, hidden),
        "rnn.bias_ih": (3 * hidden,),
        "rnn.weight_hh": (3 * hidden, hidden),
        "rnn.bias_hh": (3 * hidden,),
        "fc2.weight": (ACTIONS, hidden),
        "fc2.bias": (ACTIONS,),
    }


def to_nets(state: dict[str, torch.Tensor], kernel: str = "auto") -> AgentNets:
    """ficomm's PS+IQL networks holding the authors' parameters; a state dict of another
    layout is refused with the shapes it has."""
    if not isinstance(state, dict) or "fc1.weight" not in state:
        raise AuthorsFileError("not a state dict with fc1.weight: not the authors' RNN agent")
    hidden = int(state["fc1.weight"].shape[0])
    want = expected_shapes(hidden)
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != want:
        raise AuthorsFileError(
            f"the authors' PS+IQL PredatorPrey layout at H {hidden} is {want}; this file has {got}"
        )
    nets = AgentNets(layout_for("ps", False), N_AGENTS, OBS, ACTIONS, hidden, kernel=kernel)
    own = nets.state_dict()
    with torch.no_grad():
        for theirs, (mine, transpose) in NAMES.items():
            value = state[theirs].t() if transpose else state[theirs]
            own[mine].copy_(value.reshape(own[mine].shape))
    nets.eval()
    return nets


def load(path: str | Path, kernel: str = "auto") -> AgentNets:
    """One released file as ficomm networks (read with torch.load(weights_only=True))."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file: one line
        first = (str(exc).strip().splitlines() or [""])[0]
        raise AuthorsFileError(f"{path}: cannot be read as a torch state dict ({first})") from None
    return to_nets(state, kernel)
