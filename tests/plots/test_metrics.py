import matplotlib.pyplot as plt
import pandas as pd

from fairkit import plots
from fairkit.studies import bias


def test_the_critical_difference_figure_has_a_panel_per_rule_with_its_p_value_and_methods():
    ranks = pd.Series({"erm": 1.2, "groupdro": 2.1, "reweight": 2.7})
    nemenyi = pd.DataFrame(
        [[1.0, 0.3, 0.01], [0.3, 1.0, 0.4], [0.01, 0.4, 1.0]], index=ranks.index,
        columns=ranks.index,
    )  # fmt: skip
    tests = {
        "overall": bias.RankTest(0.004, ranks, nemenyi, blocks=15),
        "worst_group": bias.RankTest(0.2, ranks, nemenyi, blocks=15),
    }
    fig = plots.critical_difference(
        tests, names={"overall": "overall AUROC", "worst_group": "worst-group AUROC"}, title="t"
    )
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "chosen by overall AUROC: Friedman p = 0.004",
        "chosen by worst-group AUROC: Friedman p = 0.2",
    ]
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert any("groupdro" in text for text in labels) and any("erm" in text for text in labels)
    plt.close(fig)
