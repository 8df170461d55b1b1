"""Command line: ``python -m fairkit run NOTEBOOK -p NAME VALUE``, ``sweep NOTEBOOK -g NAME=V1,V2``, ``book``."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys

from fairkit import runs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fairkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one chapter into runs/<chapter>/<run-id>/")
    run.add_argument("notebook", help="a jupytext notebook, e.g. notebooks/00_quickstart.py")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a parameter of the notebook's parameters cell (repeatable)",
    )
    run.add_argument("--runs-root", default="runs", help="where run folders go (default: runs)")
    run.add_argument("--log-output", action="store_true", help="stream cell output to the log")
    sweep = sub.add_parser("sweep", help="run one chapter over a grid of parameters on Dask")
    sweep.add_argument("notebook", help="a jupytext notebook, e.g. notebooks/03_spare.py")
    sweep.add_argument(
        "-g",
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="one axis of the grid (repeatable); the runs are every combination",
    )
    sweep.add_argument("--runs-root", default="runs", help="where run folders go (default: runs)")
    sweep.add_argument("--scheduler", help="address of a running Dask scheduler (default: local)")
    sweep.add_argument("--workers", type=int, help="local Dask workers (default: GPUs, else cores)")
    sweep.add_argument(
        "--tables-only", action="store_true", help="keep tables, params and provenance only"
    )
    book = sub.add_parser("book", help="run every chapter of _toc.yml and render the book")
    book.add_argument("--mode", choices=runs.MODES, default="quick")
    book.add_argument("--no-render", action="store_true", help="run the chapters only")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fairkit``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "run":
            names = [name for name, _ in args.parameter]
            if twice := [name for k, name in enumerate(names) if name in names[:k]]:
                raise runs.ParameterError(f"parameter {twice[0]!r} was given twice")
            run_dir = runs.run_notebook(
                args.notebook,
                dict(args.parameter),
                runs_root=args.runs_root,
                from_cli=True,
                log_output=args.log_output,
            )
            print(run_dir)
        elif args.command == "sweep":
            table = runs.sweep(
                args.notebook,
                runs.parse_grid(args.grid),
                runs_root=args.runs_root,
                scheduler=args.scheduler,
                workers=args.workers,
                tables_only=args.tables_only,
            )
            print(table.to_string(index=False))
            if (table["status"] == "failed").any():
                return 1
        else:
            print(runs.build_book(args.mode, render=not args.no_render))
    except (runs.ParameterError, runs.RunFailed, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:
        print(f"error: the book did not build (exit {err.returncode}); see above", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM during a run (runs.RunInterrupted)
        print(f"interrupted: {err}" if str(err) else "interrupted", file=sys.stderr)
        return 128 + getattr(err, "signum", signal.SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
