"""Group-specific networks: one per group, sharing their first stages (SPARE's models)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fairkit.models.classifier import stages


class GroupSpecific(nn.Module):
    """One network per group sharing their first ``share_stages`` stages.

    The output is (B, groups, classes): every group's logits for every input; the training loop
    trains each head with that group's weights, and ``head_column``/``head_names`` tell
    prediction which head scores which sample. ``share_stages`` = 0: independent networks;
    = all stages: one network for everyone.
    """

    def __init__(
        self, make_model: Callable[[], nn.Module], *, column: str, groups, share_stages: int
    ):
        super().__init__()
        first = stages(make_model())
        if not 0 <= share_stages <= len(first):
            raise ValueError(f"share_stages must lie in 0..{len(first)}; got {share_stages}")
        self.head_column, self.head_names = column, tuple(str(g) for g in groups)
        self.shared = nn.Sequential(*first[:share_stages])
        copies = [first] + [stages(make_model()) for _ in self.head_names[1:]]
        self.branches = nn.ModuleList(nn.Sequential(*c[share_stages:]) for c in copies)
        self.n_stages = len(first)

    @property
    def independent_heads(self) -> bool:
        """True when no stage is shared: each group's network can be selected on its own."""
        return len(self.shared) == 0

    def head_prefix(self, k: int) -> str:
        """The state-dict prefix of head ``k``'s own parameters and buffers."""
        return f"branches.{k}."

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every group's logits, (B, groups, classes)."""
        h = self.shared(x)
        if len(self.branches[0]) == 0:
            return h[:, None].expand(-1, len(self.head_names), -1)
        return torch.stack([branch(h) for branch in self.branches], dim=1)


def n_stages(make_model: Callable[[], nn.Module]) -> int:
    """How many stages a backbone has for ``share_stages``."""
    return len(stages(make_model()))
