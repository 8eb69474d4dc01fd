"""The importer of the authors' released PS+IQL PredatorPrey policies, on a state dict made in
their layout by the test itself (ficomm does not ship their files)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from ficomm.authors import AuthorsFileError, expected_shapes, load


class TheirAgent(nn.Module):
    """The authors' RNN agent: fc1 - ReLU - GRUCell - fc2, input obs + last action + agent id."""

    def __init__(self, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(37, hidden)
        self.rnn = nn.GRUCell(hidden, hidden)
        self.fc2 = nn.Linear(hidden, 5)

    def forward(self, x, h):
        h = self.rnn(torch.relu(self.fc1(x)), h)
        return self.fc2(h), h


@pytest.mark.parametrize("hidden", [32, 64])
def test_imported_policy_computes_their_q_values(tmp_path, hidden):
    torch.manual_seed(hidden)
    theirs = TheirAgent(hidden)
    path = tmp_path / "1_rnn_net_params.pkl"
    torch.save(theirs.state_dict(), path)
    nets = load(path, kernel="torch")
    obs = torch.rand(4, 3, 2, 28)  # agents, steps, episodes
    last = torch.nn.functional.one_hot(torch.randint(0, 5, (4, 3, 2)), 5).float()
    q, _ = nets.unroll(obs, last)
    ids = torch.eye(4)[:, None, None].expand(4, 3, 2, 4)
    x = torch.cat([obs, last, ids], -1)  # their input, agent by agent
    h = torch.zeros(4 * 2, hidden)
    for t in range(3):
        want, h = theirs(x[:, t].reshape(8, 37), h)
        assert torch.allclose(q[:, t].reshape(8, 5), want, atol=1e-5)


def test_another_layout_is_refused_with_its_shapes(tmp_path):
    state = TheirAgent(64).state_dict()
    state["fc1.weight"] = torch.zeros(64, 40)  # another input width
    path = tmp_path / "bad.pkl"
    torch.save(state, path)
    with pytest.raises(AuthorsFileError, match=r"this file has .*'fc1.weight': \(64, 40\)"):
        load(path)
    assert expected_shapes(64)["fc1.weight"] == (64, 37)


def test_evaluate_authors_command(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "p.pkl"
    torch.save(TheirAgent(32).state_dict(), path)
    cmd = [sys.executable, "-m", "ficomm.evaluate", "--authors", str(path), "--episodes", "4"]
    res = subprocess.run([*cmd, "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["hidden"] == 32 and out["episodes"] == 4 and out["eval_length_mean"] > 0
    (tmp_path / "p.pkl").write_bytes(b"junk")
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 2 and "cannot be read" in res.stderr
