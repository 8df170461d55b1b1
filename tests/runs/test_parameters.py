import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from fairkit import runs
from fairkit.__main__ import main
from fairkit.runs import parameters

from ..conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"
QUICKSTART = NOTEBOOKS / "00_quickstart.py"
BIAS = NOTEBOOKS / "02_bias.py"
COUNTERFACTUALS = NOTEBOOKS / "04_counterfactuals.py"
FAIRGEN = NOTEBOOKS / "05_fairgen.py"
PIPELINE = NOTEBOOKS / "06_pipeline.py"
CHAPTERS = sorted(NOTEBOOKS.glob("*.py"))


def _cli(notebook, **overrides):
    return runs.resolve_parameters(notebook, overrides, from_cli=True)


def test_parameters_are_read_from_the_parameters_cell():
    params = runs.notebook_parameters(QUICKSTART)
    assert params == {"mode": "quick", "seed": 0, "device": "auto", "dark_fraction": 0.15}


def test_unknown_parameter_is_refused_with_the_allowed_names():
    with pytest.raises(runs.ParameterError, match="allowed: mode, seed, device, dark_fraction"):
        runs.resolve_parameters(QUICKSTART, {"no_such_param": 1})


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [("seed", "3", 3), ("dark_fraction", "1", 1.0), ("mode", "smoke", "smoke")],
)
def test_cli_values_take_the_type_of_the_default(name, raw, expected):
    params = runs.resolve_parameters(QUICKSTART, {name: raw}, from_cli=True)
    assert params[name] == expected and type(params[name]) is type(expected)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seed": "abc"}, "'seed' expects int"),
        ({"mode": "fast"}, "mode must be one of"),
        ({"device": "gpu"}, "'device' must be auto, cpu, mps, cuda or cuda:N"),
        ({"dark_fraction": "lots"}, "'dark_fraction' expects float"),
    ],
)
def test_bad_values_are_refused(overrides, message):
    with pytest.raises(runs.ParameterError, match=message):
        runs.resolve_parameters(QUICKSTART, overrides, from_cli=True)


def test_cli_fails_at_once_naming_allowed_parameters(capsys, tmp_path):
    code = main(["run", str(QUICKSTART), "-p", "no_such_param", "1", "--runs-root", str(tmp_path)])
    assert code == 2
    assert "allowed: mode, seed, device, dark_fraction" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("raw", ["1.5", "1e3", "True", "'3'", "[1]"])
def test_cli_int_takes_only_an_integer_literal(raw):
    with pytest.raises(
        runs.ParameterError, match=rf"'seed' expects int.*got {re.escape(repr(raw))}"
    ):
        _cli(QUICKSTART, seed=raw)


@pytest.mark.parametrize(("raw", "expected"), [("3", 3), ("-0", 0), ("1_000", 1000)])
def test_cli_int_accepts_integer_literals(raw, expected):
    assert _cli(QUICKSTART, seed=raw)["seed"] == expected


@pytest.mark.parametrize("raw", ["True", "'0.2'", "[0.2]", "nan"])
def test_cli_float_refuses_bools_text_and_lists(raw):
    with pytest.raises(runs.ParameterError, match="'dark_fraction' expects float"):
        _cli(QUICKSTART, dark_fraction=raw)


@pytest.mark.parametrize("raw", ["1", "0", "yes", "true"])
def test_cli_bool_takes_only_true_or_false(raw):
    with pytest.raises(runs.ParameterError, match=rf"'fixed_majority' expects bool.*got {raw!r}"):
        _cli(BIAS, fixed_majority=raw)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"minority_fractions": "0.5"}, r"'minority_fractions' expects list.*got '0.5'"),
        ({"minority_fractions": "[0.5, 'a']"}, r"'minority_fractions' expects list of float"),
        ({"modalities": "['skin', 3]"}, r"'modalities' expects list of str"),
        ({"modalities": "skin"}, r"'modalities' expects list"),
    ],
)
def test_cli_list_is_checked_element_by_element(overrides, message):
    with pytest.raises(runs.ParameterError, match=message):
        _cli(BIAS, **overrides)


@pytest.mark.parametrize(
    ("notebook", "overrides", "message"),
    [
        (QUICKSTART, {"dark_fraction": "1.5"}, r"'dark_fraction' must be in \[0, 1\]; got 1.5"),
        (QUICKSTART, {"seed": "-1"}, r"'seed' must be in \[0, 4294967295\]; got -1"),
        (BIAS, {"minority_fractions": "[0.5, 1.2]"}, r"each in \(0, 1\); got 1.2"),
        (
            BIAS,
            {"modalities": "[]"},
            r"'modalities' must be a non-empty list of distinct items, each",
        ),
        (BIAS, {"modalities": "['skin', 'ct']"}, "one of skin, cxr, mri; got 'ct'"),
        (COUNTERFACTUALS, {"n_eval": "0"}, r"'n_eval' must be None or in \[1, 10000\]; got 0"),
        (COUNTERFACTUALS, {"run_samplers": "1"}, r"'run_samplers' expects None or bool"),
    ],
)
def test_values_outside_their_rule_are_refused(notebook, overrides, message):
    with pytest.raises(runs.ParameterError, match=message):
        _cli(notebook, **overrides)


def test_python_values_obey_the_same_rules():
    with pytest.raises(runs.ParameterError, match="'seed' expects int"):
        runs.resolve_parameters(QUICKSTART, {"seed": 1.5})
    with pytest.raises(runs.ParameterError, match="'minority_fractions' expects list"):
        runs.resolve_parameters(BIAS, {"minority_fractions": 0.5})
    with pytest.raises(runs.ParameterError, match=r"'n_eval' must be None or in \[1, 10000\]"):
        runs.resolve_parameters(COUNTERFACTUALS, {"n_eval": 0})
    with pytest.raises(runs.ParameterError, match="'fixed_majority' expects bool"):
        runs.resolve_parameters(BIAS, {"fixed_majority": 1})


@pytest.mark.parametrize(
    ("notebook", "overrides", "expected"),
    [
        (QUICKSTART, {"dark_fraction": "0"}, {"dark_fraction": 0.0}),
        (BIAS, {"minority_fractions": "[0.5, 0.02]"}, {"minority_fractions": [0.5, 0.02]}),
        (BIAS, {"artifact_strengths": "[0, 1]"}, {"artifact_strengths": [0.0, 1.0]}),
        (BIAS, {"modalities": "['skin']", "fixed_majority": "False"}, {"modalities": ["skin"]}),
        (COUNTERFACTUALS, {"n_eval": "24", "run_samplers": "True"}, {"n_eval": 24}),
        (COUNTERFACTUALS, {"n_eval": "None"}, {"n_eval": None}),
    ],
)
def test_valid_overrides_are_accepted(notebook, overrides, expected):
    params = _cli(notebook, **overrides)
    for name, value in expected.items():
        assert params[name] == value
        assert repr(params[name]) == repr(value)  # 0.0 not 0, [1.0] not [1]


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_parameter_has_a_rule_or_is_a_switch(notebook):
    defaults, texts = parameters.read_chapter(notebook)
    unruled = [
        name
        for name, default in defaults.items()
        if name not in texts and name not in {"mode", "device"} and type(default) is not bool
    ]
    assert unruled == []
    runs.resolve_parameters(notebook)  # the defaults obey their own rules


def test_rules_are_read_from_the_cell_tagged_parameter_rules(tmp_path):
    notebook = tmp_path / "99_toy.py"
    notebook.write_text(
        '# %% tags=["parameters"]\nmode = "smoke"\nseed = 0\ndevice = "cpu"\nsize = 3\n\n'
        '# %% [raw] tags=["parameter-rules", "remove-cell"]\n# size: in [1, 4]\n'
    )
    assert runs.resolve_parameters(notebook, {"size": "4"}, from_cli=True)["size"] == 4
    with pytest.raises(runs.ParameterError, match=r"'size' must be in \[1, 4\]; got 5"):
        runs.resolve_parameters(notebook, {"size": "5"}, from_cli=True)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("sise: >= 1", "rule for 'sise', which is not a parameter"),
        ("size: at least 1", "rule 'at least 1' of 'size' is not understood"),
        ("size >= 1", "rule line 'size >= 1' reads NAME: RULE"),
        ("size: each >= 1", "'each', 'non-empty' and 'distinct' are for lists"),
        ("size: float >= 1", "rule of 'size' names float, its default 3 is int"),
        ("size: >= 1\nsize: <= 9", "two rules for 'size'"),
    ],
)
def test_a_bad_rule_is_refused_naming_it(tmp_path, rules, message):
    notebook = tmp_path / "99_toy.py"
    body = "\n".join(f"# {line}" for line in rules.splitlines())
    notebook.write_text(
        '# %% tags=["parameters"]\nmode = "smoke"\nseed = 0\ndevice = "cpu"\nsize = 3\n\n'
        f'# %% [raw] tags=["parameter-rules"]\n{body}\n'
    )
    with pytest.raises(runs.ParameterError, match=message):
        runs.resolve_parameters(notebook)


def test_a_none_default_must_name_its_type(tmp_path):
    notebook = tmp_path / "99_toy.py"
    notebook.write_text(
        '# %% tags=["parameters"]\nmode = "smoke"\nseed = 0\ndevice = "cpu"\nextra = None\n'
    )
    with pytest.raises(runs.ParameterError, match="'extra' defaults to None"):
        runs.resolve_parameters(notebook)


def test_backbone_rule_names_the_backbones_that_split_into_stages():
    from fairkit.models import BACKBONES
    from fairkit.models.classifier import backbone, stages

    names = parameters.notebook_rules(NOTEBOOKS / "03_spare.py")["backbones"].names
    assert set(names) <= set(BACKBONES)
    for name in names:  # SPARE's group models share their first stages
        assert len(stages(backbone(name, in_channels=3, n_classes=2, image_size=16, width=8))) > 1


def test_cli_refuses_a_fractional_seed_before_a_kernel_starts(capsys, tmp_path, monkeypatch):
    import papermill

    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    code = main(["run", str(QUICKSTART), "-p", "seed", "1.5", "--runs-root", str(tmp_path)])
    assert code == 2
    assert "'seed' expects int" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_refuses_n_eval_0_within_5_seconds(tmp_path):
    command = [sys.executable, "-m", "fairkit", "run", str(COUNTERFACTUALS), "-p", "n_eval", "0"]
    started = time.perf_counter()
    with subprocess.Popen(
        [*command, "--runs-root", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a kernel it starts is stopped with it
    ) as process:
        try:
            _, err = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail("`-p n_eval 0` was not refused within 5 s")
    assert time.perf_counter() - started < 5
    assert process.returncode == 2
    assert "'n_eval' must be None or in [1, 10000]; got 0" in err
    assert not any(tmp_path.iterdir())


def _documented_runs():
    """Every ``python -m fairkit run ...`` in the chapters' text and the README."""
    for path in [*CHAPTERS, ROOT / "README.md"]:
        text = re.sub(r"\n#\s+", " ", path.read_text())  # a command may wrap in a comment
        for command in re.findall(r"fairkit (run notebooks/[^`\n]+)", text):
            yield pytest.param(shlex.split(command), id=command)


@pytest.mark.parametrize("argv", list(_documented_runs()))
def test_every_documented_run_passes_its_rules(argv):
    from fairkit.__main__ import _parser

    args = _parser().parse_args(argv)
    runs.resolve_parameters(ROOT / args.notebook, dict(args.parameter), from_cli=True)


def _fake_accelerators(monkeypatch, *, gpus: int, mps: bool = False):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(
    ("gpus", "device"), [(0, "cuda"), (0, "cuda:0"), (1, "cuda:1"), (1, "mps")]
)
def test_a_device_this_machine_lacks_is_refused(monkeypatch, gpus, device):
    _fake_accelerators(monkeypatch, gpus=gpus)
    with pytest.raises(
        runs.ParameterError, match=rf"'device' must be one of auto, cpu.*{device!r}"
    ):
        _cli(QUICKSTART, device=device)


def test_a_device_this_machine_has_is_accepted(monkeypatch):
    _fake_accelerators(monkeypatch, gpus=2, mps=True)
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert _cli(QUICKSTART, device=device)["device"] == device


def test_image_size_rule_names_the_sizes_the_data_renders():
    from fairkit.data.synth import IMAGE_SIZES

    assert parameters.notebook_rules(FAIRGEN)["image_size"].names == IMAGE_SIZES
    assert _cli(FAIRGEN, image_size="32")["image_size"] == 32
    with pytest.raises(runs.ParameterError, match=r"'image_size' must be None or one of 16, 32"):
        _cli(FAIRGEN, image_size="17")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"onset": "24"}, r"'onset' must be None or in \[1, n_batches\).*n_batches is 24"),
        ({"mode": "smoke", "onset": "8"}, r"n_batches is 8.*got 8"),
        ({"n_batches": "10", "onset": "10"}, r"n_batches is 10.*got 10"),
        ({"ramp": "25"}, r"'ramp' must be in \[1, n_batches\]"),
    ],
)
def test_onset_beyond_the_stream_is_refused_naming_its_length(overrides, message):
    with pytest.raises(runs.ParameterError, match=message):
        _cli(PIPELINE, **overrides)


def test_onset_within_the_stream_is_accepted():
    assert _cli(PIPELINE, onset="23")["onset"] == 23  # quick: 24 batches
    assert _cli(PIPELINE, n_batches="40", onset="30")["onset"] == 30


@pytest.mark.parametrize(
    ("notebook", "name", "raw"),
    [
        (COUNTERFACTUALS, "n_eval", str(10**12)),
        (COUNTERFACTUALS, "inversion_steps", "1001"),  # the noise schedule has 1,000 steps
        (COUNTERFACTUALS, "sampler_images", "101"),  # more than quick mode's n_eval
        (FAIRGEN, "n_train", str(10**12)),
        (FAIRGEN, "n_test", str(10**12)),
        (FAIRGEN, "generator_steps", str(10**12)),
        (FAIRGEN, "sampling_steps", "1001"),
        (PIPELINE, "n_batches", str(10**12)),
        (PIPELINE, "batch_size", str(10**12)),
        (QUICKSTART, "seed", str(2**32)),  # numpy's seeds end at 2**32 - 1
    ],
)
def test_sizes_beyond_their_upper_bound_are_refused(notebook, name, raw):
    with pytest.raises(runs.ParameterError, match=rf"{name!r} must be .*in \["):
        _cli(notebook, **{name: raw})


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_integer_parameter_has_an_upper_bound(notebook):
    unbounded = [
        name
        for name, rule in parameters.notebook_rules(notebook).items()
        if int in (rule.kind, rule.element)
        and not (rule.names or rule.check.startswith("in ") or rule.check.startswith("<"))
    ]
    assert unbounded == []


@pytest.mark.parametrize(
    ("notebook", "name", "raw"),
    [
        (COUNTERFACTUALS, "guidance", "1e999"),
        (FAIRGEN, "guidance", "-1e999"),
        (FAIRGEN, "learning_rates", "[1e999]"),
        (FAIRGEN, "betas", "[200.0, 1e999]"),
        (PIPELINE, "lrs", "[1e999]"),
        (PIPELINE, "probe_lrs", "[0.1, 1e999]"),
        (BIAS, "baseline_fraction", "1" + "0" * 400),  # an int too large for a float
    ],
)
def test_numbers_that_are_not_finite_are_refused(notebook, name, raw):
    with pytest.raises(runs.ParameterError, match=rf"{name!r} .*finite"):
        _cli(notebook, **{name: raw})


def test_python_values_that_are_not_finite_are_refused():
    with pytest.raises(runs.ParameterError, match="'guidance' .*finite"):
        runs.resolve_parameters(COUNTERFACTUALS, {"guidance": float("inf")})
    with pytest.raises(runs.ParameterError, match="'guidance' .*finite"):
        runs.resolve_parameters(COUNTERFACTUALS, {"guidance": float("nan")})


@pytest.mark.parametrize(
    ("notebook", "overrides", "message"),
    [
        (
            BIAS,
            {"modalities": "['skin', 'skin']"},
            r"'modalities' must .*distinct.*; got 'skin' twice",
        ),
        (PIPELINE, {"pools": "['same_site', 'same_site']"}, r"distinct.*; got 'same_site' twice"),
        (BIAS, {"modalities": "{[]: 1}"}, r"'modalities' expects list.*not a Python literal"),
    ],
)
def test_repeated_or_unreadable_list_items_are_refused(notebook, overrides, message):
    with pytest.raises(runs.ParameterError, match=message):
        _cli(notebook, **overrides)


@pytest.mark.parametrize(
    ("params", "rules", "message"),
    [
        ("size = 3", "size: in [1, stop]", "rule of 'size' names 'stop', which is not a parameter"),
        ("size = 3\nstop = 'x'", "size: < stop", "'stop' must be a number"),
        ("size = 3\nstop = None", "size: < stop\n# stop: None or int",
         "'stop' may be None; its rule must say `; None is the mode's FIELD`"),
        ("stop = None", "stop: None or int >= 1; None is the mode's nope",
         "'nope' is not a setting of a mode"),
        ("size = 3", "size: one of 1, two", "rule 'one of 1, two' of 'size' is not understood"),
    ],
)  # fmt: skip
def test_a_bad_cross_parameter_or_mode_rule_is_refused(tmp_path, params, rules, message):
    notebook = tmp_path / "99_toy.py"
    notebook.write_text(
        f'# %% tags=["parameters"]\nmode = "smoke"\nseed = 0\ndevice = "cpu"\n{params}\n\n'
        f'# %% [raw] tags=["parameter-rules"]\n# {rules}\n'
    )
    with pytest.raises(runs.ParameterError, match=re.escape(message)):
        runs.resolve_parameters(notebook)


def test_a_none_with_a_mode_default_bounds_another_parameter(tmp_path):
    notebook = tmp_path / "99_toy.py"
    notebook.write_text(
        '# %% tags=["parameters"]\nmode = "smoke"\nseed = 0\ndevice = "cpu"\n'
        "n = None\nk = 1\n\n"
        '# %% [raw] tags=["parameter-rules"]\n'
        "# n: None or int in [1, 1000]; None is the mode's n_train\n# k: int in [1, n]\n"
    )
    assert runs.resolve_parameters(notebook, {"k": 192})["k"] == 192  # smoke: n_train 192
    with pytest.raises(runs.ParameterError, match=r"'k' must be in \[1, n\] \(n is 192\)"):
        runs.resolve_parameters(notebook, {"k": 193})
    assert runs.resolve_parameters(notebook, {"n": 500, "k": 500})["k"] == 500


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            '# %% tags=["parameters"]\nmode = "smoke"\nseed = 0 +\n',
            r"not parse.*line 2 of the cell",
        ),
        ('# %% tags=["parameters"]\nmode = "smoke"\nseed = device = 0\n', "only `name = literal`"),
        ('# %% tags=["parameters"]\nmode = "smoke"\nseed += 1\n', "only `name = literal`"),
    ],
)
def test_a_parameters_cell_that_is_not_literal_assignments_is_refused(tmp_path, source, message):
    notebook = tmp_path / "99_toy.py"
    notebook.write_text(source)
    with pytest.raises(runs.ParameterError, match=rf"99_toy.py.*{message}"):
        runs.resolve_parameters(notebook)


@pytest.mark.parametrize(
    ("name", "text"),
    [("notes.txt", "mode = 1\n"), ("broken.ipynb", '{"cells": ['), ("bytes.py", b"\xff\xfe")],
)
def test_a_file_that_is_not_a_notebook_is_refused_naming_it(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(runs.ParameterError, match=rf"{name}.* not a notebook"):
        runs.resolve_parameters(path)
