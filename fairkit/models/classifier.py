"""Image classifiers sized for 16-128 px, 1- or 3-channel inputs: torchvision backbones.

``stages`` splits each network into the stages that SPARE's partial parameter sharing counts.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import vgg
from torchvision.models.resnet import BasicBlock

from fairkit import seeds

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
    width=64,
    seed: int | None = None,
) -> nn.Module:
    """A torchvision backbone adapted to small medical images, with an ``n_classes`` head.

    ResNet-18 and DenseNet-121 get a 3x3 stem and no stem max-pool up to 64 px; VGG-11 (with
    batch norm) loses its 120M-parameter 224-px head for global pooling and one linear layer.
    ``width`` is the first stage's channel count: 64 is torchvision's network, smaller values
    give the same topology narrower (ResNet-18 and VGG-11; quick mode). With ``seed``, the
    initial weights depend on it alone, not on the global random state.
    """
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeds.stream(seed, "initial weights"))
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
    if pretrained and width != 64:
        raise ValueError(f"pretrained {name} weights exist only at width 64; got width={width}")
    if name == "densenet121" and width != 64:
        raise ValueError(f"densenet121 is available at width 64 only; got width={width}")
    build = {"resnet18": _resnet18, "vgg11": _vgg11, "densenet121": _densenet121}[name]
    model = build(width)
    if pretrained:
        weights = _local_weights(name)
        if name == "vgg11":  # its 224-px head is not used
            weights = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
        model.load_state_dict(weights)
    if name == "resnet18":
        model.conv1 = _stem(model.conv1, in_channels, image_size)
        if image_size <= 64:
            model.maxpool = nn.Identity()
        model.fc = nn.Linear(model.fc.in_features, n_classes)
    elif name == "vgg11":
        if in_channels != 3:
            model.features[0] = nn.Conv2d(in_channels, width, 3, padding=1)
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Linear(8 * width, n_classes)
    else:
        model.features.conv0 = _stem(model.features.conv0, in_channels, image_size)
        if image_size <= 64:
            model.features.pool0 = nn.Identity()
        model.classifier = nn.Linear(model.classifier.in_features, n_classes)
    return model


def _resnet18(width: int) -> nn.Module:
    """Torchvision's ResNet-18, its residual layers rebuilt ``width / 64`` as wide if narrower."""
    model = torchvision.models.resnet18(weights=None)
    if width == 64:
        return model
    model.inplanes = width
    model.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    model.layer1 = model._make_layer(BasicBlock, width, 2)
    for k, factor in ((2, 2), (3, 4), (4, 8)):
        setattr(model, f"layer{k}", model._make_layer(BasicBlock, factor * width, 2, stride=2))
    model.fc = nn.Linear(8 * width, 1000)
    for module in model.modules():  # torchvision's own initialisation of ResNets
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def _vgg11(width: int) -> nn.Module:
    """Torchvision's VGG-11 with batch norm, channels scaled by ``width / 64``.

    The 224-px head (102M parameters, replaced anyway) is built on the meta device, which saves
    about a second per model.
    """
    config = [c if c == "M" else c * width // 64 for c in vgg.cfgs["A"]]
    features = vgg.make_layers(config, batch_norm=True)
    with torch.device("meta"):
        model = vgg.VGG(features)
    model.classifier = nn.Identity()
    return model


def _densenet121(width: int) -> nn.Module:
    return torchvision.models.densenet121(weights=None)


def stages(model: nn.Module) -> list[nn.Module]:
    """The network as a list of stages whose composition is the network.

    small CNN: three conv stages and the head; ResNet-18: stem, four residual layers, head;
    VGG-11: five conv blocks (split after each max-pool) and the head.
    """
    flat = nn.Flatten()
    if isinstance(model, torchvision.models.ResNet):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        layers = [model.layer1, model.layer2, model.layer3, model.layer4]
        return [stem, *layers, nn.Sequential(model.avgpool, flat, model.fc)]
    if isinstance(model, torchvision.models.VGG):
        head = nn.Sequential(model.avgpool, flat, model.classifier)
        return [*_split_after_pools(list(model.features)), head]
    if isinstance(model, nn.Sequential):  # small_cnn
        layers = list(model)
        pools = [i for i, m in enumerate(layers) if isinstance(m, nn.AdaptiveAvgPool2d)]
        return [*_split_after_pools(layers[: pools[0]]), nn.Sequential(*layers[pools[0] :])]
    raise ValueError(f"no stage split known for {type(model).__name__}")


def _split_after_pools(layers: list[nn.Module]) -> list[nn.Sequential]:
    blocks, current = [], []
    for layer in layers:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks.append(nn.Sequential(*current))
            current = []
    if current:
        blocks.append(nn.Sequential(*current))
    return blocks


def encoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """The network split into its feature encoder (images to pooled features) and linear head.

    Both share the model's modules: training the encoder (self-supervised pretraining) trains
    the model's, and freezing it freezes the model's (a linear probe).
    """
    *body, last = stages(model)
    *pooling, head = list(last)
    if not isinstance(head, nn.Linear):
        raise ValueError(f"{type(model).__name__} does not end in a linear head; found {head}")
    return nn.Sequential(*body, *pooling), head


class Frozen(nn.Module):
    """A module held fixed: no gradients, and in eval mode even when its parent trains.

    Eval mode keeps BatchNorm's running statistics as they are, so a linear probe leaves every
    weight and buffer of the encoder unchanged.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> Frozen:
        """Stay in eval mode whatever the parent asks."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen module's output."""
        return self.module(x)
