"""torch autograd Functions over the compiled kernels of nets.cpp (see ficomm.kernels).

They compute what the torch layers of ficomm.nets compute (to rounding): the loops over
time steps and rows, and the weight gradients, run in C; only the narrow output layers'
weight gradients are torch matmuls. tests/learner/test_kernels.py checks them against the
torch layers and by gradcheck. Every tensor whose pointer is handed to C is held by a Python
name until the call returns.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
MSG_CHUNK = 64  # rows per chunk in nets.cpp's message net (its scratch size)


def fused_kernel(kernel: str, x: Tensor):
    """The compiled library if `kernel` allows it and it can run on x (CPU, float32/64) on
    this machine; None means the torch implementation."""
    if kernel == "torch" or x.device.type != "cpu" or x.dtype not in _SUFFIX:
        return None
    from ficomm import kernels

    return kernels.load()


def _call(lib, name: str, dtype: torch.dtype, dims: tuple[int, ...], *tensors) -> None:
    fn = getattr(lib, f"ficomm_{name}_{_SUFFIX[dtype]}")
    ptrs = [None if t is None else t.data_ptr() for t in tensors]
    fn((ctypes.c_int * len(dims))(*dims), *ptrs)


def qnet_forward(lib, x: Tensor, h0: Tensor, params: list[Tensor], keep: bool):
    """QNet over T steps: q (G, T, R, A), hall (G, T+1, R, H) and, with `keep`, what the
    backward pass reads (contiguous x, relu(x W1 + b1), the gates)."""
    G, T, R, F = x.shape
    H, A = h0.shape[-1], params[6].shape[-1]
    w1, b1, w_ih, b_ih, w_hh, b_hh, w2, b2 = params
    x, h0, *ps = (t.contiguous() for t in (x, h0, w1, b1, w_ih, b_ih, w_hh, b_hh))
    w2t, b2 = w2.transpose(1, 2).contiguous(), b2.contiguous()
    new = x.new_empty
    q, hall = new(G, T, R, A), new(G, T + 1, R, H)
    a1, gates = (new(G, T, R, H), new(G, T, R, 4 * H)) if keep else (None, None)
    scratch = new(7 * R * H + (H + 1 + R) * (A + 16))
    dims = (G, T, R, F, H, A)
    _call(lib, "qnet_forward", x.dtype, dims, x, h0, *ps, w2t, b2, q, hall, a1, gates, scratch)
    return q, hall, x, a1, gates


class FusedQNet(torch.autograd.Function):
    """QNet.unroll (fc1 - ReLU - GRU - fc2 over T steps) in the compiled kernel."""

    @staticmethod
    def forward(ctx, x, h0, grad_part, lib, *params):
        # grad_part: see QNet.unroll; its values are the last columns of x
        q, hall, x, a1, gates = qnet_forward(lib, x, h0, list(params), keep=True)
        ctx.lib = lib
        ctx.set_materialize_grads(False)  # no zero-filled gradient for hall
        ctx.grad_cols = 0 if grad_part is None else grad_part.shape[-1]
        w1, _, w_ih, _, w_hh, _, w2, _ = params
        ctx.save_for_backward(x, hall, a1, gates, w1, w_ih, w_hh, w2)
        ctx.mark_non_differentiable(hall)
        return q, hall

    @staticmethod
    def backward(ctx, dq, _dhall):
        x, hall, a1, gates, w1, w_ih, w_hh, w2 = ctx.saved_tensors
        G, T, R, F = x.shape
        H, A = hall.shape[-1], w2.shape[-1]
        if ctx.needs_input_grad[0] and ctx.needs_input_grad[2]:
            raise RuntimeError("FusedQNet: x and grad_part cannot both carry gradient")
        c = F if ctx.needs_input_grad[0] else ctx.grad_cols if ctx.needs_input_grad[2] else 0
        dq = torch.zeros(G, T, R, A, dtype=x.dtype) if dq is None else dq.contiguous()
        new = dq.new_empty
        dxm = new(G, T, R, c) if c else None
        dh0, dw1, db1 = new(G, R, H), new(G, F, H), new(G, 1, H)
        dw_ih, db_ih, dw_hh, db_hh = (
            new(G, H, 3 * H),
            new(G, 1, 3 * H),
            new(G, H, 3 * H),
            new(G, 1, 3 * H),
        )
        w2t, w_iht, w_hht = (w.transpose(1, 2).contiguous() for w in (w2, w_ih, w_hh))
        w1 = w1.contiguous()
        scratch = new(10 * R * H + 3 * H + (H + 1 + R) * (c + 16))
        ins = (dq, x, hall, a1, gates, w1, w2t, w_iht, w_hht)
        outs = (dxm, dh0, dw1, db1, dw_ih, db_ih, dw_hh, db_hh, scratch)
        _call(ctx.lib, "qnet_backward", dq.dtype, (G, T, R, F, H, A, c), *ins, *outs)
        dx, dpart = (dxm, None) if ctx.needs_input_grad[0] else (None, dxm)
        hs, dqf = hall[:, 1:].reshape(G, T * R, H), dq.view(G, T * R, A)
        dw2, db2 = torch.bmm(hs.transpose(1, 2), dqf), dqf.sum(1, keepdim=True)
        return dx, dh0, dpart, None, dw1, db1, dw_ih, db_ih, dw_hh, db_hh, dw2, db2


def message_forward(lib, obs: Tensor, params: list[Tensor], keep: bool):
    """Messages (G, N, D) and, with `keep`, what the backward pass reads."""
    w1, b1, w2, b2, w3, b3 = params
    G, N, n_obs = obs.shape
    M, D = w2.shape[-1], w3.shape[-1]
    obs, *ps = (t.contiguous() for t in (obs, w1, b1, w2, b2, w3.transpose(1, 2), b3))
    msg = obs.new_empty(G, N, D)
    a1, a2 = (obs.new_empty(G, N, M), obs.new_empty(G, N, M)) if keep else (None, None)
    scratch = obs.new_empty(2 * MSG_CHUNK * M + (M + 1 + MSG_CHUNK) * (D + 16))
    _call(lib, "msg_forward", obs.dtype, (G, N, n_obs, M, D), obs, *ps, msg, a1, a2, scratch)
    return msg, obs, a1, a2


class FusedMessageNet(torch.autograd.Function):
    """MessageNet.forward in the compiled kernel, for observations that need no gradient
    (they are data; MessageNet uses the torch layers otherwise)."""

    @staticmethod
    def forward(ctx, obs, lib, *params):
        msg, obs, a1, a2 = message_forward(lib, obs, list(params), keep=True)
        ctx.lib = lib
        w1, _, w2, _, w3, _ = params
        ctx.save_for_backward(obs, a1, a2, w1, w2, w3)
        return msg

    @staticmethod
    def backward(ctx, dmsg):
        obs, a1, a2, w1, w2, w3 = ctx.saved_tensors
        G, N, n_obs = obs.shape
        M, D = w2.shape[-1], w3.shape[-1]
        dm = dmsg.contiguous()
        new = dm.new_empty
        dw1, dw2, db1, db2, db3 = (
            new(G, n_obs, M),
            new(G, M, M),
            new(G, 1, M),
            new(G, 1, M),
            new(G, 1, D),
        )
        w2t, w3t = (w.transpose(1, 2).contiguous() for w in (w2, w3))
        scratch = new(M + 2 * MSG_CHUNK * M)
        ins = (dm, obs, a1, a2, w2t, w3t)
        _call(
            ctx.lib,
            "msg_backward",
            dm.dtype,
            (G, N, n_obs, M, D),
            *ins,
            dw1,
            dw2,
            db1,
            db2,
            db3,
            scratch,
        )
        dw3 = torch.bmm(a2.transpose(1, 2), dm)
        return None, None, dw1, db1, dw2, db2, dw3, db3
