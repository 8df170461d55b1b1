"""environment.yml mirrors the pins of pyproject.toml, so Binder gets the tested environment."""

import tomllib

import yaml

from .conftest import ROOT


def test_environment_yml_mirrors_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(project) <= set(pip)
