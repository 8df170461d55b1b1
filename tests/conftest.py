from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def write_notebook(tmp_path):
    """Write a small jupytext chapter with the standard parameters and a given body."""

    def write(body: str, name: str = "99_toy", extra_params: str = "") -> Path:
        text = (
            "# %% [markdown]\n# # Toy\n\n"
            '# %% tags=["parameters"]\n'
            f'mode = "smoke"\nseed = 0\ndevice = "cpu"\n{extra_params}\n'
            "# %%\nfrom fairkit import runs\n"
            "run = runs.start()\n"
            f"# %%\n{body}\n"
        )
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        return path

    return write
