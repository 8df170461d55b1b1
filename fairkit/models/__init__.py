"""Pure network modules: classifiers, group-specific models, the conditional diffusion UNet.

Nothing here trains; ``fairkit.training`` does. The UNet lives in ``fairkit.models.diffusion``
(imported on its own: it pulls in diffusers).
"""

from fairkit.models.classifier import BACKBONES, Frozen, backbone, encoder_and_head, stages
from fairkit.models.group_specific import GroupSpecific, n_stages

__all__ = [
    "BACKBONES",  # classifier architectures by name
    "Frozen",  # a module held fixed, in eval mode, whatever its parent does (linear probes)
    "GroupSpecific",  # one network per group sharing their first stages (SPARE)
    "backbone",  # a torchvision-style classifier adapted to 16-128 px
    "encoder_and_head",  # a classifier split into its feature encoder and linear head
    "n_stages",  # how many stages a backbone has for sharing
    "stages",  # a backbone cut into its stages
]
