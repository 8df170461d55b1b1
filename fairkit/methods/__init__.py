"""Mitigation methods: each turns one scenario of an experiment into a predictions table.

A method is a frozen dataclass whose fields are its settings; ``REGISTRY`` names them, and
``get("spare", temperature=4.0)`` builds one. Adding a method is one new file and one line here
(see the book's "Add your own method" page).
"""

from fairkit.methods import deepfool
from fairkit.methods.augment import Augment
from fairkit.methods.base import Method, MethodPredictions, group_threshold_decisions
from fairkit.methods.erm import ERM
from fairkit.methods.in_group import InGroup
from fairkit.methods.rebalance import GroupDRO, Resample, Reweight, inverse_frequency_weights
from fairkit.methods.spare import Spare
from fairkit.methods.ssl import Pretrained
from fairkit.methods.threshold import GroupThresholds, Threshold, postprocess

REGISTRY: dict[str, type] = {
    "erm": ERM,  # one model, every image weighted alike
    "resample": Resample,  # group-balanced sampling
    "reweight": Reweight,  # inverse-frequency sample weights
    "groupdro": GroupDRO,  # the worst groups' loss weighs most (Sagawa et al. 2020)
    "in_group": InGroup,  # one model per group, on that group's images only
    "threshold": Threshold,  # fairlearn's ThresholdOptimizer on ERM's scores
    "spare": Spare,  # group-specific models with boundary-distance weights (Xu et al. 2026)
    "ssl": Pretrained,  # SimCLR pretraining on an unlabelled pool, then a linear probe or fine-tuning
    "augment": Augment,  # real images plus extra images of the rare cells (FairGen's synthetic ones, or the oracle's)
}
BASELINES = ("erm", "resample", "reweight", "groupdro", "in_group", "threshold")


def get(name: str, **settings) -> Method:
    """The registered method ``name`` with ``settings`` (its dataclass fields)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name](**settings)


__all__ = [
    "Augment",  # ERM on real plus extra images of the rare cells (FairGen)
    "BASELINES",  # the literature's baselines, in the order chapters show them
    "ERM",
    "GroupDRO",
    "GroupThresholds",  # a method's scores with one validation threshold per group
    "InGroup",
    "Method",  # the protocol: name + call(scenario) -> MethodPredictions
    "MethodPredictions",  # validation and test predictions of one method
    "Pretrained",  # SimCLR-pretrained encoder, then a linear probe or fine-tuning
    "REGISTRY",  # method name -> its class
    "Resample",
    "Reweight",
    "Spare",
    "Threshold",
    "deepfool",  # the module: batched multi-class DeepFool (Moosavi-Dezfooli et al. 2016)
    "get",  # a registered method by name, with settings
    "group_threshold_decisions",  # one validation threshold per group
    "inverse_frequency_weights",  # 1 / group size, mean 1
    "postprocess",  # ThresholdOptimizer on given predictions
]
