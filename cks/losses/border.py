"""Border knowledge sharing (Sec. III-D): ``B_p`` (Eq. 9) and ``L_B`` (Eq. 10).

The principal's instance masks are turned into edge maps with a Sobel filter, summed over instances
and squashed with tanh (Eq. 9); the collaborator's border net ``B_c`` and ``B_p`` are pulled together
with an L2 loss (Eq. 10) that trains BOTH models (no detaching; paper and author agree).

Shapes: ``seg_logits [K, S, S]``, ``seg_batch [K]``, ``seg_origin [K, 2]`` (window top-left),
``border_logits [B, H, W]`` (``B_c = sigmoid(border_logits)``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import CksConfigError
from ..windows import scatter_windows

#: Sobel kernel for the derivative along y (rows); its transpose differentiates along x.
_SOBEL_Y = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))


def sobel_magnitude(m: Tensor, mode: str = "author") -> Tensor:
    """Edge strength ``phi(m_i)`` of Eq. 9 for each window.

    The Sobel responses ``S_y`` (kernel [-1,-2,-1; 0,0,0; 1,2,1]) and ``S_x`` (its transpose) are taken
    on the probabilities with reflect padding inside the window. The paper only says "Sobel filter";
    ``mode="author"`` (the only mode) is the author's magnitude ``sqrt(clip((S_y^2 + S_x^2) / 8, 1e-8, 1))``:
    0 -> 1e-4 on flat regions, 1 on a sharp 0/1 step.

    Args:
        m: ``[K, S, S]`` probabilities. mode: ``"author"``.
    Returns:
        ``[K, S, S]`` in [1e-4, 1]; differentiable.
    """
    if mode != "author":
        raise CksConfigError(f"loss.border_magnitude must be 'author', got {mode!r}")
    ky = torch.tensor(_SOBEL_Y, dtype=m.dtype, device=m.device)
    kernels = torch.stack([ky, ky.t()])[:, None]  # [2, 1, 3, 3]: (S_y, S_x)
    x = F.pad(m[:, None], (1, 1, 1, 1), mode="reflect")
    g = F.conv2d(x, kernels)  # [K, 2, S, S]
    energy = (g * g).sum(1) / 8.0
    return torch.sqrt(energy.clamp(1e-8, 1.0))


def principal_border(seg_logits: Tensor, seg_batch: Tensor, seg_origin: Tensor, shape: tuple[int, int, int],
                     mode: str = "author") -> Tensor:
    """Eq. 9: ``B_p = tanh(sum_i phi(m_i))`` with ``m_i = sigmoid(seg_logits)``, summed by scatter-add.

    Off-image window pixels are dropped; pixels covered by no window get 0. NOT detached: ``L_B``
    trains the principal through ``B_p``.

    Returns:
        ``[B, H, W]`` in [0, 1) (mathematically; in float32 tanh rounds to 1 once the sum exceeds ~9).
    """
    if seg_logits.shape[0] == 0:
        b, h, w = shape
        return seg_logits.new_zeros((b, h, w)) + seg_logits.sum() * 0.0
    edges = sobel_magnitude(torch.sigmoid(seg_logits), mode)
    return torch.tanh(scatter_windows(edges, seg_batch, seg_origin, shape, reduce="sum"))


def border_loss(border_logits: Tensor, b_p: Tensor, factor: float = 1.0) -> Tensor:
    """Eq. 10: ``L_B = factor * mean((B_c - B_p)^2)``, ``B_c = sigmoid(border_logits)``.

    The paper writes an L2 norm ``||B_c - B_p||``; the mean of squares over all B x H x W pixels is the
    author's form. ``factor`` is 1 by default; the author's ``optax.l2_loss`` carries 0.5 (diff #9).
    Gradient flows to both ``border_logits`` (collaborator) and ``b_p`` (principal).

    Its weight is ``lambda_B`` (``loss.lambda_b``, Eqs. 7-8). Measured (issue #9, ``phase_points`` on Usiigaci,
    8,000 steps, two seeds; ``results/usiigaci_points_v2/lb4_8000_*.json``, chapter 9c): at ``lambda_B = 4`` the
    runs are level with ``lambda_B = 1`` at step 4,000, when the prior goes off, and fall after it (tuning AP50
    at the end 0.367 / 0.378 against 0.533 / 0.568); the masks and the collaborator's foreground shrink (median
    area ratio 0.70 / 0.69 against 0.89 / 0.90) and stay as convex. At ``lambda_B = 0`` (``lb0_8000_*.json``)
    they grow instead (area ratio 1.01 / 1.00; tuning AP50 at the end 0.499 / 0.536), as convex again.

    Args: border_logits ``[B, H, W]``; b_p ``[B, H, W]``. Returns: scalar.
    """
    diff = torch.sigmoid(border_logits) - b_p
    return factor * (diff * diff).mean()


__all__ = ["sobel_magnitude", "principal_border", "border_loss"]
