"""The "add your own method" page of the book is executed, so its example stays true."""

import re

import numpy as np
import pandas as pd

from fairkit import methods, tuning

from ..conftest import ROOT


def test_the_books_example_method_registers_and_runs(capsys):
    page = (ROOT / "book" / "extend.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) == 2
    code = "\n".join(blocks).replace('settings("quick")', 'settings("smoke")')
    namespace = {}
    try:
        exec(compile(code, "book/extend.md", "exec"), namespace)
        printed = capsys.readouterr().out
        assert printed.count("erm") == 1 and printed.count("cell_reweight") == 1
        method = methods.get("cell_reweight")
        scenario = namespace["experiment"].scenario("under", 0.1)
        _, weights = method.training(scenario)
        train = scenario.train
        cells = train.meta[scenario.attribute].astype(str) + train.labels.astype(str)
        totals = pd.Series(weights, index=cells.index).groupby(cells).sum()
        assert len(totals) == 4 and np.allclose(totals, totals.iloc[0])  # every cell alike
        rates = {c.training(scenario)[0].lr for c in tuning.candidates(method)}
        assert len(rates) == tuning.BUDGET  # its tuning trains at each rate of its grid
    finally:
        methods.REGISTRY.pop("cell_reweight", None)
