"""Matrix products of the recurrent loops through oneDNN on CPU, with a fallback to torch's.

At the loops' shapes (a batch of 32 rows times a 256 × 1024 matrix, a hundred times per
sequence) torch's float32 CPU matmul (MKL sgemm) reached about half the throughput of oneDNN's
inner product with the weight reordered once into its blocked layout, which is what nn.LSTM's
own CPU path runs on: 0.2 ms against 0.09 ms per product on one thread here. The big
per-sequence products of the backward (∂L/∂W = Σ_t dy_t^T h_{t-1}, thousands of rows) gain
about as much.

The oneDNN ops (``torch.ops.mkldnn._reorder_linear_weight`` and ``_linear_pointwise``) are the
ones torch.compile's CPU backend emits for linear layers; they are not public API. Every use
therefore checks that they exist, that oneDNN is enabled (``torch.backends.mkldnn.flags``), and
that the tensors are float32 on the CPU; otherwise, and if an op refuses its input, the plain
matmul runs. Both paths give the same products up to float32 rounding (summation order).
"""

from __future__ import annotations

import torch
from torch import Tensor

_ONEDNN_OPS = ("_linear_pointwise", "_reorder_linear_weight")
_broken = False  # set once an op refused its input: later calls go straight to torch's matmul


def onednn_usable(*tensors: Tensor) -> bool:
    """Whether the oneDNN path can run on these tensors."""
    return (
        not _broken
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and all(hasattr(torch.ops.mkldnn, op) for op in _ONEDNN_OPS)
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
    )


def _dense(m: Tensor) -> Tensor:
    return m if m.is_contiguous() or m.t().is_contiguous() else m.contiguous()


def _refused() -> None:
    global _broken
    _broken = True


class StepLinear:
    """x @ weight.T (+ bias) (+ add) for many steps with one weight (no autograd).

    Args:
        weight: (N, K), fixed for the lifetime of this object (one sequence).
        batch_size: rows of the x it will see (oneDNN picks its layout for it).
        bias: (N,) or None.
    """

    def __init__(self, weight: Tensor, batch_size: int, bias: Tensor | None = None) -> None:
        self.weight, self.bias = weight, bias
        self.packed: Tensor | None = None
        if onednn_usable(weight):
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), batch_size)
            except RuntimeError:
                _refused()

    def __call__(self, x: Tensor, add: Tensor | None = None) -> Tensor:
        """x (B, K) → (B, N), plus ``add`` (B, N) if given. (oneDNN's fused "binary add" variant
        measured slower than adding afterwards.)"""
        if self.packed is not None and not _broken:
            try:
                out = torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
                return out if add is None else out.add_(add)
            except RuntimeError:
                _refused()
        out = x @ self.weight.t() if self.bias is None else torch.addmm(self.bias, x, self.weight.t())
        return out if add is None else out.add_(add)


def matmul_nt(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """a (M, K) @ b (N, K).T (+ bias (N,)) → (M, N), through oneDNN when it can (no autograd)."""
    if onednn_usable(a, b):
        # oneDNN takes row-major matrices and their transposes; other strides (a slice of
        # columns) sent it to a reference kernel hundreds of times slower
        a, b = _dense(a), _dense(b)
        try:
            return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")
        except RuntimeError:
            _refused()
    return a @ b.t() if bias is None else torch.addmm(bias, a, b.t())
