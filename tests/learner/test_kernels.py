"""The compiled CPU kernels (ficomm.kernels) against the torch layers they replace, their
hand-written backward passes by gradcheck, and what happens where they cannot be built."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from learner_helpers import SMALL_RUN

from ficomm import kernels
from ficomm.kernels.functions import FusedMessageNet, FusedQNet
from ficomm.methods import BLOCK_KINDS, Block, layout_for
from ficomm.nets import AgentNets, MessageNet, QNet
from ficomm.rollout import Policy

# the four methods and the own-message ablation
LAYOUTS = [("nps", False, True), ("nps", True, True), ("nps", True, False)]
LAYOUTS += [("ps", False, True), ("ps", True, True)]


@pytest.fixture(scope="module")
def lib():
    lib = kernels.load()
    if lib is None:  # a C++ compiler is part of the set-up: a failed build is a failure
        pytest.fail(f"the compiled kernel does not build here: {kernels.unavailable_reason()}")
    return lib


def _outputs_and_grads(module, kernel, inputs, weight_seed=1):
    module.kernel = kernel
    out = module(*inputs)
    out = out[0] if isinstance(out, tuple) else out
    w = torch.randn(
        out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(weight_seed)
    )
    leaves = [t for t in inputs if t.requires_grad] + list(module.parameters())
    grads = torch.autograd.grad((out * w).sum(), leaves)
    with torch.no_grad():
        plain = module(*inputs)
    plain = plain[0] if isinstance(plain, tuple) else plain
    return [out, plain, *grads]


class _Unroll(torch.nn.Module):
    """QNet.unroll as a module call, so both nets go through one comparison helper."""

    def __init__(self, q):
        super().__init__()
        self.q = q

    @property
    def kernel(self):
        return self.q.kernel

    @kernel.setter
    def kernel(self, value):
        self.q.kernel = value

    def forward(self, x, h):
        return self.q.unroll(x, h)


# (G, T, R, F, H): NPS- and PS-shaped, hidden sizes that are not multiples of the SIMD width,
# row counts that are not multiples of the matmul's row block, a single row and unit sizes
QNET_SHAPES = [(4, 12, 8, 73, 64), (1, 9, 32, 67, 32), (3, 6, 5, 11, 8), (2, 5, 9, 30, 20)]
QNET_SHAPES += [(1, 3, 1, 1, 1), (1, 4, 7, 37, 128)]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("shape", QNET_SHAPES)
def test_fused_qnet_equals_the_torch_layers(lib, shape, dtype, tol):
    G, T, R, F, H = shape
    torch.manual_seed(0)
    net = _Unroll(QNet(G, F, H, 5).to(dtype))
    x = torch.randn(G, T, R, F, dtype=dtype, requires_grad=True)
    h = torch.randn(G, R, H, dtype=dtype, requires_grad=True)
    ref = _outputs_and_grads(net, "torch", (x, h))
    got = _outputs_and_grads(net, "fused", (x, h))
    assert len(ref) == len(got) == 2 + 2 + 8  # q, q without grad, dx, dh0, 8 parameters
    for i, (a, b) in enumerate(zip(ref, got, strict=True)):
        scale = a.abs().max().clamp_min(1e-30)
        assert ((a - b).abs().max() / scale) < tol, f"output/gradient {i} differs"


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("shape", [(4, 320, 28, 64, 10), (1, 77, 5, 20, 3), (2, 130, 48, 64, 10)])
def test_fused_message_net_equals_the_torch_layers(lib, shape, dtype, tol):
    G, N, n_obs, M, D = shape
    torch.manual_seed(0)
    net = MessageNet(G, n_obs, M, D).to(dtype)
    obs = torch.randn(G, N, n_obs, dtype=dtype)  # data: no gradient
    ref = _outputs_and_grads(net, "torch", (obs,))
    got = _outputs_and_grads(net, "fused", (obs,))
    for i, (a, b) in enumerate(zip(ref, got, strict=True)):
        scale = a.abs().max().clamp_min(1e-30)
        assert ((a - b).abs().max() / scale) < tol, f"output/gradient {i} differs"


def test_fused_backward_passes_gradcheck(lib):
    torch.manual_seed(0)
    q = QNet(2, 6, 5, 3).double()
    x = torch.randn(2, 4, 3, 6, dtype=torch.double, requires_grad=True)
    h = torch.randn(2, 3, 5, dtype=torch.double, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in q.parameters()]
    order = ["fc1.weight", "fc1.bias", "gru.w_ih", "gru.b_ih", "gru.w_hh", "gru.b_hh"]
    order += ["fc2.weight", "fc2.bias"]
    named = dict(zip([k for k, _ in q.named_parameters()], params, strict=True))
    args = [x, h] + [named[k] for k in order]
    assert torch.autograd.gradcheck(lambda x, h, *p: FusedQNet.apply(x, h, None, lib, *p)[0], args)

    m = MessageNet(2, 4, 6, 3).double()
    mp = [p.detach().clone().requires_grad_() for p in m.parameters()]
    obs = torch.randn(2, 70, 4, dtype=torch.double)  # 70 rows: 2 chunks
    assert torch.autograd.gradcheck(lambda *p: FusedMessageNet.apply(obs, lib, *p), mp)


def test_gradient_reaches_the_message_part_only(lib):
    """grad_part: the tensor filling the last input columns gets the same gradient from the
    fused kernel as from the torch layers, and x (data) none."""
    torch.manual_seed(0)
    q = QNet(2, 12, 8, 5).double()
    h = torch.zeros(2, 3, 8, dtype=torch.double)
    part = torch.randn(2, 5, 3, 4, dtype=torch.double, requires_grad=True)
    x = torch.cat([torch.randn(2, 5, 3, 8, dtype=torch.double), part.detach()], -1)
    grads = {}
    for kernel in ("torch", "fused"):
        q.kernel = kernel
        grads[kernel] = torch.autograd.grad(q.unroll(x, h, part)[0].sum(), part)[0]
    torch.testing.assert_close(grads["fused"], grads["torch"], rtol=1e-12, atol=1e-14)
    assert torch.count_nonzero(grads["torch"]) > 0


def _kernel_blocks(policy: Policy) -> list[tuple[str, int, int]]:
    """The (kind, first column, width) triples exactly as handed to the acting kernel."""
    flat = np.array(policy._blocks).reshape(-1, 3)
    return [(BLOCK_KINDS[k], int(s), int(w)) for k, s, w in flat]


@pytest.mark.parametrize("share,comm,own", LAYOUTS)
def test_acting_kernel_gets_the_columns_the_torch_inputs_use(share, comm, own):
    """One source for the input layout: every block the acting kernel is told about holds,
    in the input that AgentNets.q_inputs builds for the torch layers and the training kernel,
    exactly that block's content, and the blocks tile the input."""
    n, n_obs, A, D, T, B = 4, 6, 5, 3, 2, 3
    nets = AgentNets(layout_for(share, comm, own), n, n_obs, A, 8, msg_dim=D)
    blocks = _kernel_blocks(Policy(nets))
    assert [b.start for b in nets.blocks] == [s for _, s, _ in blocks]
    assert [s + w for _, s, w in blocks] == [s for _, s, _ in blocks[1:]] + [nets.in_features]
    # a value per input kind (and per sending agent) that no other block holds
    obs = torch.full((n, T, B, n_obs), 2.0)
    last = torch.full((n, T, B, A), 3.0)
    msgs = (10.0 + torch.arange(float(n))).view(n, 1, 1, 1).expand(n, T, B, D)
    x, _ = nets.q_inputs(obs, last, msgs if comm else None)
    G, k = nets.owners, nets.per_owner
    x = x.view(G, T, k, B, -1).transpose(1, 2).reshape(n, T, B, -1)  # agent-major
    for i in range(n):
        expected = {
            "obs": torch.full((n_obs,), 2.0),
            "last_action": torch.full((A,), 3.0),
            "agent_id": torch.eye(n)[i],
            "others_messages": torch.tensor(
                [10.0 + j for j in range(n) if j != i]
            ).repeat_interleave(D),
            "own_message": torch.full((D,), 10.0 + i),
        }
        for kind, start, width in blocks:
            got = x[i, :, :, start : start + width]
            assert torch.equal(got, expected[kind].expand_as(got)), (i, kind)
    kinds = [kind for kind, _, _ in blocks]
    assert ("agent_id" in kinds) == (share == "ps")
    assert ("own_message" in kinds) == (comm and own and share == "nps")


@pytest.mark.parametrize("share,comm", [("nps", True), ("ps", True)])
def test_acting_kernel_follows_a_changed_layout(lib, share, comm):
    """The kernel builds its input from the blocks it is given, not from its own idea of the
    method: with the block order changed in AgentNets alone, kernel and torch layers still
    agree (and differ from the original order)."""
    torch.manual_seed(0)
    n, n_obs, A, T, B = 4, 28, 5, 4, 2
    obs = torch.rand(n, T, B, n_obs)
    actions = torch.randint(0, A, (n, T, B))
    last = torch.nn.functional.one_hot(actions, A).float()
    last = torch.cat([torch.zeros_like(last[:, :1]), last[:, :-1]], 1)
    nets = AgentNets(layout_for(share, comm), n, n_obs, A, 16, kernel="fused")
    original = nets.blocks
    reordered, start = [], 0
    for b in reversed(original):
        reordered.append(Block(b.kind, start, b.width))
        start += b.width
    nets.blocks = tuple(reordered)
    qs = {}
    for kernel in ("torch", "fused"):
        nets.q.kernel = nets.msg.kernel = kernel
        with torch.no_grad():
            qs[kernel] = nets.unroll(obs, last)[0]
    policy = Policy(nets)
    assert policy.lib is not None
    policy.start(B)
    for t in range(T):
        q_t = policy.q_values(obs[:, t].permute(1, 0, 2).numpy())
        want = qs["torch"][:, t].permute(1, 0, 2).numpy()
        np.testing.assert_allclose(q_t, want, rtol=1e-5, atol=1e-5)
        policy.record(actions[:, t].T.numpy())
    torch.testing.assert_close(qs["fused"], qs["torch"], rtol=1e-5, atol=1e-5)
    nets.blocks = original
    with torch.no_grad():
        assert not torch.allclose(nets.unroll(obs, last)[0], qs["torch"], atol=1e-3)


def test_no_compiler_means_torch_for_auto_and_a_clear_error_for_fused(tmp_path, monkeypatch):
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setattr(kernels, "compiler", lambda: None)
    assert kernels.load() is None
    assert "no C++ compiler" in kernels.unavailable_reason()

    from ficomm.envs.base import ConfigError
    from ficomm.train import check_kernel

    assert check_kernel("auto", torch.device("cpu")) == "torch"
    assert check_kernel("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ConfigError, match="kernel: 'fused' was requested.*no C\\+\\+ compiler"):
        check_kernel("fused", torch.device("cpu"))


def test_a_failed_build_is_reported_with_the_compiler_message(tmp_path, monkeypatch):
    bad = tmp_path / "nets.cpp"
    bad.write_text("this is not C++\n")
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setattr(kernels, "SOURCE", bad)
    monkeypatch.setenv("FICOMM_KERNEL_CACHE", str(tmp_path / "cache"))
    assert kernels.load() is None
    reason = kernels.unavailable_reason()
    assert "nets.cpp" in reason and "error" in reason
    assert not list((tmp_path / "cache").glob("*.so"))  # nothing half-written is left


def test_build_is_cached_per_cpu_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("FICOMM_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels, "_state", {})
    assert kernels.load() is not None
    built = sorted(tmp_path.glob("nets-*.so"))
    assert len(built) == 1
    monkeypatch.setattr(kernels, "_state", {})
    assert kernels.load() is not None  # reused, not rebuilt
    assert sorted(tmp_path.glob("nets-*.so")) == built
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setattr(kernels, "_cpu_id", lambda: "another CPU")
    assert kernels.load() is not None
    assert len(list(tmp_path.glob("nets-*.so"))) == 2  # another CPU gets its own build
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setenv("FICOMM_KERNEL_CXXFLAGS", "-O2")
    assert kernels.load() is not None
    assert len(list(tmp_path.glob("nets-*.so"))) == 3  # and so do other compiler flags


def test_train_records_the_kernel_and_rejects_a_bad_choice(tmp_path):
    import json

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ficomm.train", f"out={out}", *SMALL_RUN]
    done = subprocess.run(
        [*cmd, "budget=300", "eval_interval=300", "kernel=fused"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "run_info.json").read_text())["kernel"] == "fused"
    bad = subprocess.run([*cmd, "kernel=numba"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "kernel: must be one of" in bad.stderr
