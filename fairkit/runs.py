"""Run a chapter notebook with parameters into a run folder, with provenance.

The runner side (``run_notebook``, ``build_book``) converts a jupytext source, checks the
parameters against the notebook's ``parameters`` cell before any kernel starts, executes it with
papermill into ``runs/<chapter>/<run-id>/`` and moves the folder into place only when the run
succeeded. The kernel side (``start`` and ``Run``) seeds, picks the device, shows the provenance
banner and writes the run's figures, tables and ``provenance.json``.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fairkit.io import write_atomic, write_json

log = logging.getLogger(__name__)

MODES = ("smoke", "quick", "full")
RUN_DIR_ENV = "FAIRKIT_RUN_DIR"
CHAPTER_ENV = "FAIRKIT_CHAPTER"
RUN_ID_ENV = "FAIRKIT_RUN_ID"
REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "scikit-learn",
    "fairlearn",
    "diffusers",
    "monai",
    "accelerate",
    "papermill",
    "jupyter-book",
)
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Settings:
    """Sizes that a mode decides, in one place for every chapter."""

    n_train: int
    n_test: int
    image_size: int
    epochs: int
    batch_size: int
    width: int
    n_boot: int
    backbone: str
    backbone_width: int  # first-stage channels of ResNet-18 / VGG-11 (64: torchvision's)
    backbones: tuple[str, ...]  # architectures a chapter compares (SPARE: ResNet-18, VGG-11)
    diffusion_steps: int  # optimiser steps of the conditional diffusion model
    diffusion_batch: int  # images per diffusion step
    diffusion_width: int  # channels of its first UNet level


SETTINGS = {
    "smoke": Settings(
        n_train=192,
        n_test=128,
        image_size=16,
        epochs=1,
        batch_size=64,
        width=8,
        n_boot=20,
        backbone="small_cnn",
        backbone_width=4,
        backbones=("small_cnn",),
        diffusion_steps=30,
        diffusion_batch=64,
        diffusion_width=8,
    ),
    "quick": Settings(
        n_train=2000,
        n_test=1500,
        image_size=32,
        epochs=5,
        batch_size=32,  # twice the steps of 64 at the same cost: minority groups get learned
        width=16,
        n_boot=200,
        backbone="small_cnn",
        backbone_width=8,
        backbones=("small_cnn",),
        diffusion_steps=400,
        diffusion_batch=64,
        diffusion_width=16,
    ),
    "full": Settings(
        n_train=40000,
        n_test=10000,
        image_size=64,
        epochs=30,
        batch_size=256,
        width=64,
        n_boot=1000,
        backbone="resnet18",
        backbone_width=64,
        backbones=("resnet18", "vgg11"),
        diffusion_steps=30000,
        diffusion_batch=256,
        diffusion_width=64,
    ),
}


def settings(mode: str) -> Settings:
    """Return the sizes of ``mode`` (one of ``smoke``, ``quick``, ``full``)."""
    if mode not in SETTINGS:
        raise ParameterError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return SETTINGS[mode]


class ParameterError(ValueError):
    """A parameter name or value that the notebook does not accept."""


class RunFailed(RuntimeError):
    """A chapter raised while it was executed; the executed notebook is kept for reading."""


# --------------------------------------------------------------------------- parameters


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """Return the defaults of the notebook's cell tagged ``parameters`` (literal assignments)."""
    import jupytext

    nb = jupytext.read(notebook)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(
            f"{notebook}: expected one cell tagged 'parameters', found {len(cells)}"
        )
    defaults: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if not isinstance(target, ast.Name) or node.value is None:
            raise ParameterError(f"{notebook}: the parameters cell may hold only `name = literal`")
        try:
            defaults[target.id] = ast.literal_eval(node.value)
        except ValueError as err:
            raise ParameterError(f"{notebook}: parameter {target.id!r} is not a literal") from err
    return defaults


def parse_cli_value(name: str, raw: str, default: Any) -> Any:
    """Turn the text given on the command line into the type of the parameter's default."""
    kind = type(default)
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(raw)
            return lowered in {"true", "1", "yes"}
        if isinstance(default, int | float):
            return kind(ast.literal_eval(raw)) if kind is int else float(raw)
        if isinstance(default, str):
            return raw
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError) as err:
        raise ParameterError(
            f"parameter {name!r} expects {kind.__name__} (default {default!r}); got {raw!r}"
        ) from err


def check_value(name: str, value: Any, default: Any) -> Any:
    """Return ``value`` if its type matches the default's (an int may stand for a float)."""
    if default is None or type(value) is type(default):
        return value
    if isinstance(default, float) and type(value) is int:
        return float(value)
    raise ParameterError(
        f"parameter {name!r} expects {type(default).__name__} (default {default!r}); "
        f"got {value!r} of type {type(value).__name__}"
    )


def resolve_parameters(
    notebook: str | os.PathLike, overrides: dict[str, Any] | None = None, *, from_cli=False
) -> dict[str, Any]:
    """Merge ``overrides`` into the notebook's defaults, rejecting unknown names and bad types."""
    defaults = notebook_parameters(notebook)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ParameterError(
            f"{Path(notebook).name} has no parameter {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(defaults)}"
        )
    params = dict(defaults)
    for name, value in overrides.items():
        convert = parse_cli_value if from_cli and isinstance(value, str) else check_value
        params[name] = convert(name, value, defaults[name])
    for required in ("mode", "seed", "device"):
        if required not in params:
            raise ParameterError(f"{notebook}: the parameters cell must define {required!r}")
    settings(params["mode"])
    if not _DEVICE_PATTERN.match(str(params["device"])):
        raise ParameterError(
            f"device must be auto, cpu, mps, cuda or cuda:N; got {params['device']!r}"
        )
    return params


# --------------------------------------------------------------------------- runner side


def new_run_id(params: dict[str, Any]) -> str:
    """Name a run by its start time, seed and a short hash of its parameters."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:6]
    return f"{stamp}-{params['mode']}-s{params['seed']}-{digest}-{uuid.uuid4().hex[:4]}"


@contextlib.contextmanager
def _environ(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _hide_parameter_cells(notebook_path: Path) -> None:
    """Tag the raw and injected parameter cells ``remove-cell``: the banner states them once."""
    import nbformat

    nb = nbformat.read(notebook_path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    write_atomic(notebook_path, lambda tmp: nbformat.write(nb, tmp))


def run_notebook(
    notebook: str | os.PathLike,
    parameters: dict[str, Any] | None = None,
    *,
    runs_root: str | os.PathLike = "runs",
    run_id: str | None = None,
    from_cli: bool = False,
    start_timeout: int = 120,
    log_output: bool = False,
) -> Path:
    """Execute a jupytext notebook with papermill into ``runs/<chapter>/<run-id>/``.

    The folder is filled under a hidden name and renamed into place only if every cell ran, so
    a failed run never leaves a half-written run folder; its executed notebook is kept beside it
    as ``<run-id>.failed.ipynb`` for debugging.

    Returns:
        The run folder.
    """
    import jupytext
    import papermill as pm

    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook {notebook} not found")
    params = resolve_parameters(notebook, parameters, from_cli=from_cli)
    chapter = notebook.stem
    run_id = run_id or new_run_id(params)
    chapter_dir = Path(runs_root).resolve() / chapter
    final, partial = chapter_dir / run_id, chapter_dir / f".{run_id}.partial"
    if final.exists():
        raise FileExistsError(f"run folder {final} exists already")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write_json(partial / "params.json", params)
    executed = partial / "notebook.ipynb"
    started = time.perf_counter()
    try:
        with _environ(
            **{RUN_DIR_ENV: str(partial), CHAPTER_ENV: chapter, RUN_ID_ENV: run_id},
            HF_HUB_OFFLINE="1",
            PYTHONHASHSEED="0",
        ):
            pm.execute_notebook(
                jupytext.read(notebook),
                str(executed),
                parameters=params,
                kernel_name="python3",
                language="python",
                progress_bar=False,
                log_output=log_output,
                cwd=str(partial),
                start_timeout=start_timeout,
            )
    except BaseException as err:
        failed = chapter_dir / f"{run_id}.failed.ipynb"
        if executed.exists():
            os.replace(executed, failed)
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(err, KeyboardInterrupt):
            raise
        raise RunFailed(f"{chapter} failed ({err.__class__.__name__}); read {failed}") from err
    _hide_parameter_cells(executed)
    provenance_path = partial / "provenance.json"
    if not provenance_path.exists():
        shutil.rmtree(partial, ignore_errors=True)
        raise RunFailed(f"{chapter} never called run.finish(), so it wrote no provenance.json")
    provenance = json.loads(provenance_path.read_text())
    provenance["runner_wall_time_s"] = round(time.perf_counter() - started, 3)
    write_json(provenance_path, provenance)
    os.replace(partial, final)
    log.info("%s finished in %.1f s: %s", chapter, provenance["runner_wall_time_s"], final)
    return final


def toc_chapters(root: str | os.PathLike = REPO_ROOT) -> list[str]:
    """Return the chapter names listed in ``_toc.yml`` (its entries under ``book/chapters/``)."""
    import yaml

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    entries = list(_toc_files(toc))
    return [Path(f).name for f in entries if Path(f).parent == Path("book/chapters")]


def _toc_files(node: Any):
    if isinstance(node, dict):
        if "file" in node:
            yield node["file"]
        for value in node.values():
            yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def build_book(
    mode: str = "quick", *, root: str | os.PathLike = REPO_ROOT, render: bool = True
) -> Path:
    """Run every chapter of ``_toc.yml`` in ``mode`` into ``book/chapters/`` and render the book.

    Returns:
        The rendered ``_build/html`` folder (or the chapters folder when ``render`` is false).
    """
    from tqdm.auto import tqdm

    settings(mode)
    root = Path(root)
    out = root / "book" / "chapters"
    out.mkdir(parents=True, exist_ok=True)
    for chapter in tqdm(toc_chapters(root), desc=f"chapters ({mode})", unit="chapter"):
        run_dir = run_notebook(
            root / "notebooks" / f"{chapter}.py", {"mode": mode}, runs_root=root / "runs"
        )
        write_atomic(
            out / f"{chapter}.ipynb", lambda tmp, d=run_dir: shutil.copy(d / "notebook.ipynb", tmp)
        )
    if not render:
        return out
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    subprocess.run(
        [str(jupyter_book), "build", str(root), "--warningiserror", "--keep-going", "--quiet"],
        check=True,
    )
    return root / "_build" / "html"


# --------------------------------------------------------------------------- kernel side


def git_commit(root: Path = REPO_ROOT) -> str:
    """Return the commit of the checkout, with ``+dirty`` if it has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    """Return the versions of Python and of the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def resolve_device(device: str) -> str:
    """Map ``auto`` to the best available device; refuse a device that is not there."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"device {device!r} asked for, but no CUDA device is visible")
    return device


def device_name(device: str) -> str:
    """Describe the device in words for the provenance banner."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


@dataclass
class Run:
    """One execution of a chapter: where it writes, what it ran with, and its provenance."""

    chapter: str
    params: dict[str, Any]
    dir: Path
    device: str
    settings: Settings
    started: float = field(default_factory=time.perf_counter)
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    _banner: Any = None

    @property
    def seed(self) -> int:
        """The run's seed."""
        return self.params["seed"]

    @property
    def mode(self) -> str:
        """The run's mode."""
        return self.params["mode"]

    def provenance(self) -> dict[str, Any]:
        """What a reader needs to reproduce the run: commit, versions, device, seed, time."""
        return {
            "chapter": self.chapter,
            "run_id": os.environ.get(RUN_ID_ENV, self.dir.name),
            "mode": self.mode,
            "seed": self.seed,
            "device": self.device,
            "device_name": device_name(self.device),
            "commit": git_commit(),
            "versions": package_versions(),
            "platform": platform.platform(),
            "started_at": self.started_at,
            "wall_time_s": round(time.perf_counter() - self.started, 3),
            "parameters": self.params,
            "settings": asdict(self.settings),
        }

    def banner(self):
        """Show the provenance banner; ``finish`` fills in the wall time."""
        from IPython.display import display

        self._banner = display(self._banner_markdown(), display_id=True)
        return None

    def _banner_markdown(self, wall_time: float | None = None):
        from IPython.display import Markdown

        p = self.provenance()
        took = f"{wall_time:.1f} s" if wall_time is not None else "running…"
        params = " · ".join(f"`{k}={v!r}`" for k, v in self.params.items())
        lines = [
            f"**Run** `{p['run_id']}` · mode **{self.mode}** · seed **{self.seed}** · "
            f"device **{p['device_name']}** · commit `{p['commit']}` · wall time **{took}**",
            "",
            f"Parameters: {params}",
        ]
        badges = launch_badges(self.chapter)
        if badges:
            lines += ["", badges]
        return Markdown("\n".join(lines))

    def path(self, name: str) -> Path:
        """Return the path of a file called ``name`` inside the run folder."""
        return self.dir / name

    def save_figure(self, fig, name: str):
        """Save ``fig`` as ``<name>.png`` in the run folder (atomically) and return it for display.

        The figure is closed, so the notebook shows it once: as the returned value.
        """
        import matplotlib.pyplot as plt

        write_atomic(
            self.path(f"{name}.png"),
            lambda tmp: fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight"),
        )
        plt.close(fig)
        return fig

    def save_table(self, table, name: str):
        """Save a DataFrame as ``<name>.csv`` in the run folder (atomically) and return it."""
        write_atomic(self.path(f"{name}.csv"), lambda tmp: table.to_csv(tmp, index=False))
        return table

    def finish(self) -> None:
        """Write ``provenance.json`` and put the wall time into the banner."""
        provenance = self.provenance()
        write_json(self.path("provenance.json"), provenance)
        if self._banner is not None:
            self._banner.update(self._banner_markdown(provenance["wall_time_s"]))


def launch_badges(chapter: str, root: Path = REPO_ROOT) -> str:
    """Binder and Colab links for a chapter, from the repository named in ``_config.yml``.

    Binder opens the jupytext source (it exists in git); Colab opens the executed notebook that
    the published book carries under ``_sources/`` on the ``gh-pages`` branch.
    """
    config = root / "_config.yml"
    if not config.exists():
        return ""
    import yaml

    cfg = yaml.safe_load(config.read_text())
    url = cfg.get("repository", {}).get("url", "").rstrip("/")
    branch = cfg.get("repository", {}).get("branch", "main")
    if not url.startswith("https://github.com/"):
        return ""
    slug = url.removeprefix("https://github.com/")
    binder = f"https://mybinder.org/v2/gh/{slug}/{branch}?urlpath=lab/tree/notebooks/{chapter}.py"
    colab = (
        f"https://colab.research.google.com/github/{slug}/blob/gh-pages/"
        f"_sources/book/chapters/{chapter}.ipynb"
    )
    return (
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder}) "
        f"[![Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})"
    )


def _default_run_dir(chapter: str) -> Path:
    root = REPO_ROOT if (REPO_ROOT / "_toc.yml").exists() else Path.cwd()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return root / "runs" / chapter / f"interactive-{stamp}-{uuid.uuid4().hex[:4]}"


def start(chapter: str, **params: Any) -> Run:
    """Begin a chapter's run: check the mode, seed everything, pick the device, set the theme.

    Under the runner the run folder comes from the environment; opened by hand in Jupyter the
    chapter writes to ``runs/<chapter>/interactive-<time>/``.
    """
    from monai.utils import set_determinism

    from fairkit import plots

    mode_settings = settings(params["mode"])
    run_dir = Path(os.environ.get(RUN_DIR_ENV) or _default_run_dir(chapter))
    run_dir.mkdir(parents=True, exist_ok=True)
    set_determinism(seed=params["seed"])
    plots.set_theme()
    return Run(
        chapter=os.environ.get(CHAPTER_ENV, chapter),
        params=params,
        dir=run_dir,
        device=resolve_device(params["device"]),
        settings=mode_settings,
    )
