"""CKS losses: consistency (Eqs. 4-8), border (Eqs. 9-10), collapse (Eq. 6 (L_MC)), supervised BCE, the
image-affinity pairwise term (ours, off by default) and the summed CKS objective. Detection losses (Eq. 3) live in :mod:`cks.losses.detection`."""
from .border import border_loss, principal_border, sobel_magnitude
from .cks import cks_loss_terms, prior_d_per_window
from .collapse import collapse_loss
from .consistency import (collaborator_entropy_loss, collaborator_linear_loss, collaborator_soft_entropy_loss,
                          instance_consistency_loss, linear_consistency, principal_foreground, prior_logits)
from .geodesic import geodesic_partition, owner_windows
from .pairwise import pairwise_loss
from .supervised import supervised_loss, window_targets

__all__ = [
    "border_loss", "principal_border", "sobel_magnitude",
    "cks_loss_terms", "prior_d_per_window",
    "collapse_loss",
    "collaborator_entropy_loss", "collaborator_linear_loss", "collaborator_soft_entropy_loss", "instance_consistency_loss",
    "linear_consistency",
    "principal_foreground", "prior_logits",
    "geodesic_partition", "owner_windows",
    "pairwise_loss",
    "supervised_loss", "window_targets",
]
