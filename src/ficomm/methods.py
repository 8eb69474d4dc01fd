"""The four methods as data: which inputs each Q-net sees and how many parameter owners exist.

One table, one code path: PS has one parameter owner for all agents and appends the agent id;
NPS has one owner per agent. COMM adds the other agents' messages (detached under NPS, so
no loss reaches another agent's network) and, under NPS, the agent's own message, which is
the only path by which an NPS agent's own loss trains its message net.

The channel is data too: "concat" (the paper's) puts the messages into the input side by side;
"attention" (beyond the paper, TarMAC-style) puts one block there, the value the receiver
attends to (AgentNets.attend): the same detaching, and the own key and value are the own
message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

# The kinds of Q-net input block, in the order they appear in the input. The compiled acting
# step (ficomm/kernels/nets.cpp) knows each by its index here.
BLOCK_KINDS = ("obs", "last_action", "agent_id", "others_messages", "own_message", "attended")
CHANNELS = ("concat", "attention")


class Block(NamedTuple):
    """One part of the Q-net input: columns start .. start + width - 1."""

    kind: str
    start: int
    width: int


@dataclass(frozen=True)
class Layout:
    """What distinguishes one method from another. Q-net input order: obs, last action,
    [agent id], then with COMM either [others' messages in ascending agent order], [own
    message] (channel "concat") or [the attended value] (channel "attention")."""

    shared: bool  # one parameter owner for all agents (PS) or one per agent (NPS)
    agent_id: bool  # one-hot agent id in the Q-net input
    comm: bool  # a message net exists and others' messages are inputs
    detach_others: bool  # others' messages carry no gradient back to their senders
    own_message: bool  # the agent's own message is an input of its own Q-net
    # "concat": messages side by side; "attention": the receiver attends over the senders'
    # (key, value) messages, its own among them when own_message, and gets one value
    channel: str = "concat"

    @property
    def attention(self) -> bool:
        return self.comm and self.channel == "attention"

    def owners(self, n_agents: int) -> int:
        """Number of parameter owners (each with its own optimizer state and clipping)."""
        return 1 if self.shared else n_agents

    def q_input_blocks(
        self, n_agents: int, obs_size: int, n_actions: int, msg_dim: int
    ) -> tuple[Block, ...]:
        """The Q-net input's blocks in column order: the one definition of the input layout,
        read by the torch layers (AgentNets.q_inputs) and by the compiled acting step."""
        concat = self.comm and not self.attention
        widths = {
            "obs": obs_size,
            "last_action": n_actions,
            "agent_id": n_agents if self.agent_id else 0,
            "others_messages": (n_agents - 1) * msg_dim if concat else 0,
            "own_message": msg_dim if concat and self.own_message else 0,
            "attended": msg_dim if self.attention else 0,
        }
        blocks, start = [], 0
        for kind in BLOCK_KINDS:
            if widths[kind]:
                blocks.append(Block(kind, start, widths[kind]))
                start += widths[kind]
        return tuple(blocks)

    def q_input_width(self, n_agents: int, obs_size: int, n_actions: int, msg_dim: int) -> int:
        """Width of the Q-net input under this layout (the spec's section 2 table)."""
        *_, last = self.q_input_blocks(n_agents, obs_size, n_actions, msg_dim)
        return last.start + last.width


# (share, comm) -> layout; the spec's section 1 table.
METHODS: dict[tuple[str, bool], Layout] = {
    ("ps", False): Layout(True, True, False, False, False),  # PS+IQL
    ("ps", True): Layout(True, True, True, False, False),  # PS+IQL+COMM
    ("nps", False): Layout(False, False, False, False, False),  # NPS+IQL
    ("nps", True): Layout(False, False, True, True, True),  # NPS+IQL+COMM
}


def layout_for(share: str, comm: bool, own_message: bool = True, channel: str = "concat") -> Layout:
    """The layout of a method. `own_message=False` is the ablation that removes the own
    message from NPS+COMM (PS+COMM never feeds it, as in the authors' code). `channel` is
    how messages reach the Q-net (only with COMM)."""
    if channel not in CHANNELS or (channel != "concat" and not comm):
        raise ValueError(f"channel: {channel!r} needs comm=true and one of {CHANNELS}")
    base = METHODS[(share, bool(comm))]
    return dataclasses.replace(base, own_message=base.own_message and own_message, channel=channel)
