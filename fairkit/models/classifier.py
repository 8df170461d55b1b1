"""Image classifiers sized for 16-128 px, 1- or 3-channel inputs: torchvision backbones."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

BACKBONES = ("small_cnn", "resnet18", "vgg11", "densenet121")
WEIGHT_FILES = {  # torchvision's file names in $TORCH_HOME/hub/checkpoints (never downloaded)
    "resnet18": "resnet18-f37072fd.pth",
    "vgg11": "vgg11_bn-6002323d.pth",
    "densenet121": "densenet121-a639ec97.pth",
}


def small_cnn(in_channels: int, n_classes: int, width: int = 16) -> nn.Module:
    """Three conv-BN-ReLU stages and global pooling: the quick-mode classifier."""

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


def _stem(conv: nn.Conv2d, in_channels: int, image_size: int) -> nn.Conv2d:
    """A 3x3 first convolution: stride 1 up to 32 px, 2 above.

    The 224-px 7x7/2 stem wastes small images; pretrained RGB filters are summed into one
    channel for grayscale input.
    """
    stride = 1 if image_size <= 32 else 2
    new = nn.Conv2d(in_channels, conv.out_channels, 3, stride=stride, padding=1, bias=False)
    with torch.no_grad():
        pretrained = nn.functional.interpolate(conv.weight, size=(3, 3), mode="bilinear")
        new.weight.copy_(pretrained.sum(1, keepdim=True) if in_channels == 1 else pretrained)
    return new


def _local_weights(name: str) -> dict:
    """Torchvision's pretrained weights, only from the local cache; a clear error otherwise."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHT_FILES[name]
    if not path.exists():
        raise FileNotFoundError(
            f"pretrained {name}: {path} not found; nothing is downloaded at run time. "
            f"Copy torchvision's {WEIGHT_FILES[name]} there, or use pretrained=False"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def backbone(
    name: str,
    *,
    in_channels: int,
    n_classes: int,
    image_size: int,
    pretrained=False,
    width=16,
    seed: int | None = None,
) -> nn.Module:
    """A torchvision backbone adapted to small medical images, with an ``n_classes`` head.

    ResNet-18 and DenseNet-121 get a 3x3 stem and no stem max-pool up to 64 px; VGG-11 (with
    batch norm) loses its 120M-parameter 224-px head for global pooling and one linear layer.
    With ``seed``, the initial weights depend on it alone, not on the global random state.
    """
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return backbone(
                name,
                in_channels=in_channels,
                n_classes=n_classes,
                image_size=image_size,
                pretrained=pretrained,
                width=width,
            )
    if name == "small_cnn":
        return small_cnn(in_channels, n_classes, width)
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    constructor = {
        "resnet18": torchvision.models.resnet18,
        "vgg11": torchvision.models.vgg11_bn,
        "densenet121": torchvision.models.densenet121,
    }[name]
    model = constructor(weights=None)
    if pretrained:
        model.load_state_dict(_local_weights(name))
    if name == "resnet18":
        model.conv1 = _stem(model.conv1, in_channels, image_size)
        if image_size <= 64:
            model.maxpool = nn.Identity()
        model.fc = nn.Linear(model.fc.in_features, n_classes)
    elif name == "vgg11":
        if in_channels != 3:
            model.features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Linear(512, n_classes)
    else:
        model.features.conv0 = _stem(model.features.conv0, in_channels, image_size)
        if image_size <= 64:
            model.features.pool0 = nn.Identity()
        model.classifier = nn.Linear(model.classifier.in_features, n_classes)
    return model
