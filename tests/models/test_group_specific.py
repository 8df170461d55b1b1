import pytest
import torch

from fairkit.models import GroupSpecific, backbone, n_stages


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "vgg11"])
def test_group_specific_sharing_counts(name):
    def make():
        return backbone(name, in_channels=1, n_classes=2, image_size=32, width=4, seed=0)

    k = n_stages(make)
    sizes = []
    for share in range(k + 1):
        model = GroupSpecific(make, column="g", groups=["a", "b"], share_stages=share)
        assert model(torch.rand(3, 1, 32, 32)).shape == (3, 2, 2)
        sizes.append(sum(p.numel() for p in model.parameters()))
    single = sum(p.numel() for p in make().parameters())
    assert sizes[0] == 2 * single and sizes[-1] == single
    assert all(a > b for a, b in zip(sizes, sizes[1:], strict=False))
    with pytest.raises(ValueError, match="share_stages"):
        GroupSpecific(make, column="g", groups=["a", "b"], share_stages=k + 1)
