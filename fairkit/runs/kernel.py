"""The kernel side of a run: parameters, seeding, device, banner, figures, tables, provenance.

A chapter calls ``run = runs.start()``: under the runner the parameters are the ones it
checked and wrote to ``params.json``; opened by hand in Jupyter they are the notebook's own
variables named in its ``parameters`` cell.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import inspect
import json
import os
import platform
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fairkit.config import Settings, resolve_device, settings, swept_mode
from fairkit.io import write_atomic, write_json

RUN_DIR_ENV = "FAIRKIT_RUN_DIR"
CHAPTER_ENV = "FAIRKIT_CHAPTER"
RUN_ID_ENV = "FAIRKIT_RUN_ID"
REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "results"  # the kept sweeps behind the book's verdicts (make study)
PER_RUN = ("seed", "device")  # parameters that differ between the runs pooled by a sweep
SECTION_SWITCH = "run_"  # run_<section> parameters choose what runs, never change a number


def pooling_key(params: dict) -> dict:
    """The parameters that runs must share to be pooled: all but seed, device and switches.

    A ``run_<section>`` switch only decides whether a section runs (a sweep turns on what a
    quick reader's run leaves to ``results/``), so runs that differ in it are pooled.
    """
    return {
        k: v for k, v in params.items() if k not in PER_RUN and not k.startswith(SECTION_SWITCH)
    }


def replaced(params: dict, changes: dict, *, chapter: str) -> dict:
    """``params`` with some values changed; a name the chapter does not have is refused."""
    unknown = sorted(set(changes) - set(params))
    if unknown:
        raise KeyError(f"{chapter} has no parameters {unknown}")
    return params | changes


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
        kept = swept_mode(self.chapter, self.mode)
        if kept != self.mode:
            lines += ["", f"This run is at {self.mode} sizes; its verdicts pool the kept sweep "
                          f"at the **{kept}** setting's sizes (`fairkit.config`)."]  # fmt: skip
        badges = launch_badges(self.chapter)
        if badges:
            lines += ["", badges]
        return Markdown("\n".join(lines))

    def sweep_table(self, table: str, root: Path = RESULTS, **params):
        """``table`` of every kept sweep run of this chapter with this run's parameters.

        The kept sweep's mode is ``config.swept_mode``'s: a quick run of a chapter that reads
        FairGen's sizes pools the study setting's sweep (the banner says so).

        Runs match when every parameter but the seed, device and run_* switches equals this
        run's (``pooling_key``), so the seeds of the sweep are pooled at the settings the
        reader asked for; ``params`` replace some of them (another setting's sweep). None (and a
        line saying why) when no such run is kept under ``root``, when its runs may not be
        pooled (a dirty tree, or commits whose chapter code differs: ``runs.provenance``), and
        for a run that is itself being written under ``root`` (a sweep's run would pool a
        half-finished sweep).
        """
        from fairkit.runs.provenance import ProvenanceError
        from fairkit.runs.sweep import poolable

        if Path(root).resolve() in self.dir.resolve().parents:
            print(f"This run is part of the sweep under {root}: it does not pool its own sweep.")
            return None
        kept = {"mode": swept_mode(self.chapter, self.params["mode"])} | params
        where = pooling_key(replaced(self.params, kept, chapter=self.chapter))
        try:
            return poolable(root, self.chapter, table, where=where)
        except FileNotFoundError as err:
            print(f"No multi-seed results for these parameters: {err}")
        except ProvenanceError as err:
            print(f"The kept sweep is not pooled: {err}")
        return None

    def claim_verdicts(self, root: Path = RESULTS):
        """The seed papers' claims this chapter tests, judged on its kept sweeps.

        The same judgement as the summary chapter's (``provenance.judged_claims``), on the
        sweeps whose parameters match this run's (``sweep_table``); None, and a line saying
        why, when none is kept.
        """
        from fairkit import claims
        from fairkit.runs.provenance import judged_claims
        from fairkit.studies import evidence

        sweeps = {}
        for sweep in sorted({c.sweep for c in claims.CLAIMS if c.chapter == self.chapter}):
            tables = {n: self.sweep_table(n, root, **claims.SWEEPS[sweep])
                      for n in evidence.tables(self.chapter)}  # fmt: skip
            if all(t is not None for t in tables.values()):
                sweeps[self.chapter, sweep] = tables
        if not sweeps:
            print("No kept sweep to judge this chapter's claims on.")
            return None
        return judged_claims(sweeps)

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


def _open_notebook(namespace: dict[str, Any]) -> Path | None:
    """The jupytext source of the notebook open in Jupyter, when the kernel can tell."""
    session = os.environ.get("JPY_SESSION_NAME") or namespace.get("__session__") or ""
    source = REPO_ROOT / "notebooks" / f"{Path(session).stem}.py"
    return source if session and source.is_file() else None


def _interactive_parameters(namespace: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The chapter's name and parameters of a notebook run by hand, checked like the runner's.

    The names come from the notebook's ``parameters`` cell when the open notebook is known;
    otherwise from the variables every chapter defines (``mode``, ``seed``, ``device``).
    """
    from fairkit.runs.parameters import REQUIRED, check_parameters, notebook_rules

    source = _open_notebook(namespace)
    rules = notebook_rules(source) if source else None
    defaults = {name: rule.default for name, rule in rules.items()} if rules else REQUIRED
    missing = [name for name in defaults if name not in namespace]
    if missing:
        raise NameError(f"runs.start() needs the parameters {missing}; run the parameters cell")
    values = {name: namespace[name] for name in defaults}
    chapter = source.stem if source else "interactive"
    return chapter, check_parameters(defaults, values, source=chapter, rules=rules)


def start() -> Run:
    """Begin a chapter's run: read its parameters, seed everything, pick the device, set the theme.

    Under the runner the parameters are the checked ones of ``params.json`` in the run folder
    (papermill injected the same values into the notebook). Opened by hand in Jupyter, they are
    the values of the notebook's parameter variables, and the chapter writes to
    ``runs/<chapter>/interactive-<time>/``.
    """
    import torch
    from accelerate.utils import set_seed

    from fairkit import plots

    run_dir = os.environ.get(RUN_DIR_ENV)
    written = Path(run_dir) / "params.json" if run_dir else None
    if written is not None and written.exists():
        chapter = os.environ.get(CHAPTER_ENV, Path(run_dir).parent.name)
        params = json.loads(written.read_text())
    else:
        chapter, params = _interactive_parameters(inspect.stack()[1].frame.f_globals)
    run_dir = Path(run_dir or _default_run_dir(chapter))
    run_dir.mkdir(parents=True, exist_ok=True)
    set_seed(params["seed"])  # random, numpy and torch; accelerate loads in a third of MONAI's time
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    plots.set_theme()
    return Run(
        chapter=chapter,
        params=params,
        dir=run_dir,
        device=resolve_device(params["device"]),
        settings=settings(params["mode"]),
    )
