"""A chapter's parameters: read from its ``parameters`` cell, checked before a kernel starts."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

from fairkit.config import DEVICES, settings

REQUIRED = {"mode": "quick", "seed": 0, "device": "auto"}  # every chapter's, typed


class ParameterError(ValueError):
    """A parameter name or value that the notebook does not accept."""


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
    return check_parameters(
        notebook_parameters(notebook), overrides, source=Path(notebook).name, from_cli=from_cli
    )


def check_parameters(
    defaults: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    *,
    source: str,
    from_cli: bool = False,
) -> dict[str, Any]:
    """``defaults`` updated by ``overrides``, each value checked against its default's type.

    ``mode`` must name a mode and ``device`` a device; ``source`` names the notebook in errors.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ParameterError(
            f"{source} has no parameter {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(defaults)}"
        )
    params = dict(defaults)
    for name, value in overrides.items():
        convert = parse_cli_value if from_cli and isinstance(value, str) else check_value
        params[name] = convert(name, value, defaults[name])
    missing = [name for name in REQUIRED if name not in params]
    if missing:
        raise ParameterError(f"{source}: the parameters cell must define {missing[0]!r}")
    try:
        settings(params["mode"])
    except ValueError as err:
        raise ParameterError(str(err)) from err
    if not DEVICES.match(str(params["device"])):
        raise ParameterError(
            f"device must be auto, cpu, mps, cuda or cuda:N; got {params['device']!r}"
        )
    return params
