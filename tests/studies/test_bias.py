import pandas as pd
import pytest

from fairkit.studies import bias


def test_chapter_2_findings_read_the_first_and_last_setting():
    def rows(metric, values, **labels):
        return pd.DataFrame(
            {"modality": "skin", "metric": metric, "strength": [0.5, 0.1], "value": values,
             "lo": [v - 0.05 for v in values], "hi": [v + 0.05 for v in values], **labels}
        )  # fmt: skip

    under = (
        pd.concat(
            [rows("auroc", [0.8, 0.6], group="dark"), rows("auroc", [0.9, 0.9], group="light")]
        ),
        pd.concat([rows("gap_auroc", [0.1, 0.3]), rows("equalized_odds", [0.2, 0.25])]),
    )
    spurious = (rows("auroc", [0.84, 0.55], group="dark"), rows("equalized_odds", [0.38, 0.07]))
    shortcut = pd.DataFrame(
        {"modality": "skin", "test": ["tied", "tied", "removed"], "auroc": [0.9, 1.0, 0.6]}
    )
    found = bias.findings("skin", "dark", under=under, spurious=spurious, shortcut=shortcut)
    assert found.shares == (0.5, 0.1)
    assert (found.minority_auroc.first, found.minority_auroc.last) == (0.8, 0.6)
    assert found.minority_auroc.first_lo == pytest.approx(0.75)
    assert str(found.auroc_gap) == "0.100 [0.050, 0.150] → 0.300 [0.250, 0.350]"
    assert found.shortcut_auroc == pytest.approx((0.95, 0.6))
    assert found.tied_auroc == pytest.approx((0.84, 0.55))
    assert str(found.tied_eodds_gap) == "0.380 [0.330, 0.430] → 0.070 [0.020, 0.120]"


def test_amplification_is_a_paired_difference_on_the_same_test_patients():
    from fairkit.config import settings
    from fairkit.experiment import Experiment

    experiment = Experiment("skin", settings("smoke"), 0, "cpu", fixed_majority=True)
    rows = bias.amplification(experiment, "under", [0.5, 0.25]).set_index(["group", "metric"])
    assert set(rows.index) >= {("dark", "auroc"), ("all", "gap_auroc")}
    gap = rows.loc[("all", "gap_auroc")]
    assert gap.value == pytest.approx(gap.a_value - gap.b_value)
    assert gap.lo <= gap.value <= gap.hi and gap["comparison"] == "under"
    same = bias.amplification(experiment, "under", [0.5, 0.5])
    assert (same["value"] == 0).all() and (same["verdict"] == "no detectable difference").all()
