"""The compiled CPU kernels (ficomm.kernels) against the torch layers they replace, their
hand-written backward passes by gradcheck, and what happens where they cannot be built."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from learner_helpers import SMALL_RUN

from ficomm import kernels
from ficomm.kernels.functions import FusedMessageNet, FusedQNet
from ficomm.nets import MessageNet, QNet


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
