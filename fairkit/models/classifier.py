"""Image classifiers sized for 16-128 px inputs."""

from __future__ import annotations

from torch import nn


def small_cnn(in_channels: int, n_classes: int, width: int = 16) -> nn.Module:
    """Three conv-BN-ReLU stages and global pooling: the quickstart's classifier."""

    def stage(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *stage(in_channels, width),
        nn.MaxPool2d(2),
        *stage(width, 2 * width),
        nn.MaxPool2d(2),
        *stage(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, n_classes),
    )
