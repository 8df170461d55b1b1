import pytest
import torch

from fairkit.models.classifier import backbone


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "densenet121"])
@pytest.mark.parametrize(("channels", "size"), [(1, 32), (3, 64)])
def test_backbones_take_small_images(name, channels, size):
    net = backbone(name, in_channels=channels, n_classes=4, image_size=size).eval()
    with torch.no_grad():
        out = net(torch.rand(2, channels, size, size))
    assert out.shape == (2, 4)
    if name == "vgg11":
        assert sum(p.numel() for p in net.parameters()) < 10_000_000


def test_missing_pretrained_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        backbone("resnet18", in_channels=3, n_classes=2, image_size=32, pretrained=True)
