"""A chapter's parameters: read from its ``parameters`` cell, checked before a kernel starts.

**Types.** A parameter has its default's type: ``seed = 0`` takes only integers, ``lam = 0.5``
any finite number (an integer becomes a float; never ``inf`` or ``nan``), ``fixed_majority =
True`` only ``True`` or ``False``, ``modalities = ["skin"]`` only lists of strings. A value given
on the command line is read as a Python literal (``-p seed 1.5`` is a float, so refused;
``-p modalities "['skin']"``), except for a ``str`` parameter, which takes the text as it is.

**Rules.** What values are allowed stands in a raw cell tagged ``parameter-rules`` after the
parameters cell, one ``name: rule`` a line, read by the runner without starting a kernel::

    # %% [raw] tags=["parameter-rules", "remove-cell"]
    # dark_fraction: in [0, 1]
    # n_batches: None or int in [4, 1000]; None is the mode's monitor_batches
    # onset: None or int in [1, n_batches)
    # modalities: non-empty, distinct, each one of skin, cxr, mri

A rule is, in this order and each part optional: ``None or`` (None is allowed), ``non-empty``
and ``distinct`` (a list, no item twice), ``each`` (the check applies to every element of a
list), a type (``bool``, ``int``, ``float``, ``str``), one check: ``in [a, b]`` (brackets
closed, parentheses open), ``>= a``, ``> a``, ``<= a``, ``< a`` or ``one of x, y, z`` (strings,
or integers for an int), and ``; None is the mode's FIELD`` (what None stands for: a field of
``fairkit.config.Settings``). A bound is a number or the name of a number parameter, whose
value it then takes (its mode's value where it is None, which its rule must then name). A
parameter that defaults to None must name its type in its rule (``run_samplers: None or
bool``); ``seed`` is ``in [0, 2**32 - 1]`` (numpy's seeds) in every chapter; ``mode`` is checked
against ``fairkit.config`` and ``device`` against the devices this machine has.
"""

from __future__ import annotations

import ast
import math
import operator
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fairkit.config import DEVICES, Settings, settings

REQUIRED = {"mode": "quick", "seed": 0, "device": "auto"}  # every chapter's, typed
COMMON_RULES = {"seed": "in [0, 4294967295]"}  # every chapter's rules: numpy's seeds
RULES_TAG = "parameter-rules"
KINDS = {"bool": bool, "int": int, "float": float, "str": str}
BOUNDS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_RULE = re.compile(
    r"(?P<none>None or )?(?P<non_empty>non-empty(?:, |$))?(?P<distinct>distinct(?:, |$))?"
    r"(?P<each>each )?(?:(?P<kind>bool|int|float|str)(?: |$))?(?P<check>.*?)"
    r"(?:; None is the mode's (?P<mode_field>\S*))?"
)
_INTERVAL = re.compile(r"in ([\[(])([^,]+),([^\])]+)([\])])")
_BOUND = re.compile(r"(>=|>|<=|<)\s*(\S+)")
_ONE_OF = re.compile(r"one of (.+)")


class ParameterError(ValueError):
    """A parameter name or value that the notebook does not accept."""


@dataclass(frozen=True)
class Rule:
    """What one parameter may be: its type, whether None is allowed and a check of its values."""

    default: Any
    kind: type | None  # bool, int, float, str or list; None: any literal (an untyped None)
    element: type | None = None  # a list's element type
    allow_none: bool = False
    non_empty: bool = False
    distinct: bool = False
    each: bool = False
    check: str = ""  # "in [0, 1]", ">= 1", "< n_batches", "one of a, b" or ""
    names: tuple = ()  # the names (or integers) of ``one of``
    mode_field: str = ""  # the field of the mode's ``Settings`` that None stands for

    @property
    def expected(self) -> str:
        """The type in words: ``int``, ``list of float``, ``None or bool``."""
        kind = "any literal" if self.kind is None else self.kind.__name__
        if self.kind is list and self.element is not None:
            kind += f" of {self.element.__name__}"
        return f"None or {kind}" if self.allow_none and self.kind is not None else kind

    @property
    def constraint(self) -> str:
        """The rule's check in words: ``None or >= 1``, ``a non-empty list, each in (0, 1)``."""
        check = self.check
        if self.kind is list:
            listed = "a non-empty list" if self.non_empty else "a list"
            listed += " of distinct items" * self.distinct
            check = ", ".join([listed] + [f"each {self.check}"] * self.each)
        return " ".join(["None or"] * self.allow_none + [check])

    @property
    def limits(self) -> tuple[str, ...]:
        """The check's bounds as written: numbers, or names of other parameters."""
        if interval := _INTERVAL.fullmatch(self.check):
            return tuple(bound.strip() for bound in interval.group(2, 3))
        bound = _BOUND.fullmatch(self.check)
        return (bound[2],) if bound else ()

    @property
    def references(self) -> tuple[str, ...]:
        """The parameters whose values bound this one."""
        return tuple(limit for limit in self.limits if not _is_number(limit))

    def accepts(self, item: Any, values: dict[str, Any]) -> bool:
        """Whether one value (a list's element when ``each``) passes the check.

        ``values`` are the run's parameters (None replaced by the mode's value), for bounds
        that name a parameter.
        """
        if not self.check or item is None:
            return True
        if self.names:
            return item in self.names
        low, *high = (float(x) if _is_number(x) else values[x] for x in self.limits)
        if interval := _INTERVAL.fullmatch(self.check):
            left, right = interval[1], interval[4]
            above = (operator.ge if left == "[" else operator.gt)(item, low)
            return above and (operator.le if right == "]" else operator.lt)(item, high[0])
        return BOUNDS[_BOUND.fullmatch(self.check)[1]](item, low)


def _tagged_cells(nb, tag: str) -> list:
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def _assigned(node: ast.stmt) -> str | None:
    """The name that ``name = value`` (or ``name: type = value``) assigns; None for others."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        target = node.target
    else:
        return None
    return target.id if isinstance(target, ast.Name) else None


def _defaults(cell, notebook) -> dict[str, Any]:
    try:
        body = ast.parse(cell.source).body
    except (SyntaxError, ValueError) as err:
        where = f" at line {err.lineno} of the cell, `{(err.text or '').strip()}`"
        raise ParameterError(
            f"{notebook}: the parameters cell does not parse: {getattr(err, 'msg', err)}"
            + (where if isinstance(err, SyntaxError) else "")
        ) from None
    defaults: dict[str, Any] = {}
    for node in body:
        name = _assigned(node)
        if name is None:
            raise ParameterError(f"{notebook}: the parameters cell may hold only `name = literal`")
        if name in defaults:
            raise ParameterError(f"{notebook}: the parameters cell sets {name!r} twice")
        try:
            defaults[name] = ast.literal_eval(node.value)
        except ValueError as err:
            raise ParameterError(f"{notebook}: parameter {name!r} is not a literal") from err
    return defaults


def _read_notebook(notebook: str | os.PathLike):
    """The notebook as jupytext reads it; refused (naming it) if it is not one."""
    import jupytext
    from jupytext.formats import NOTEBOOK_EXTENSIONS

    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(
            f"notebook {path} {'is not a file' if path.exists() else 'not found'}"
        )
    if path.suffix not in NOTEBOOK_EXTENSIONS:
        raise ParameterError(f"{path} is not a notebook: expected a jupytext chapter (.py, .ipynb)")
    try:
        return jupytext.read(path)
    except ValueError as err:  # not JSON, not UTF-8, not a format jupytext knows
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ParameterError(f"{path} is not a notebook that jupytext reads: {reason}") from None


def read_chapter(notebook: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
    """Return the defaults of the cell tagged ``parameters`` and the lines of ``parameter-rules``.

    Returns:
        The defaults, and each rule's text by parameter name (``COMMON_RULES`` included).
    """
    nb = _read_notebook(notebook)
    cells = _tagged_cells(nb, "parameters")
    if len(cells) != 1:
        raise ParameterError(
            f"{notebook}: expected one cell tagged 'parameters', found {len(cells)}"
        )
    defaults = _defaults(cells[0], notebook)
    rule_cells = _tagged_cells(nb, RULES_TAG)
    if len(rule_cells) > 1:
        raise ParameterError(
            f"{notebook}: expected at most one cell tagged {RULES_TAG!r}, found {len(rule_cells)}"
        )
    texts = dict(COMMON_RULES)
    for line in rule_cells[0].source.splitlines() if rule_cells else []:
        if line.strip():
            name, text = _rule_line(line, defaults, texts, notebook)
            texts[name] = text
    return defaults, texts


def _rule_line(line: str, defaults: dict, texts: dict, notebook) -> tuple[str, str]:
    name, sep, text = (part.strip() for part in line.partition(":"))
    if not sep or not name.isidentifier():
        raise ParameterError(f"{notebook}: rule line {line!r} reads NAME: RULE")
    if name not in defaults:
        raise ParameterError(f"{notebook}: rule for {name!r}, which is not a parameter")
    if name in COMMON_RULES:
        raise ParameterError(
            f"{notebook}: {name!r} has every chapter's rule, {COMMON_RULES[name]!r}"
        )
    if name in texts:
        raise ParameterError(f"{notebook}: two rules for {name!r}")
    return name, text


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """Return the defaults of the notebook's cell tagged ``parameters`` (literal assignments)."""
    return read_chapter(notebook)[0]


def notebook_rules(notebook: str | os.PathLike) -> dict[str, Rule]:
    """Return every parameter's rule: its type, and the check its ``parameter-rules`` line sets."""
    defaults, texts = read_chapter(notebook)
    rules = {name: make_rule(name, texts.get(name, ""), d) for name, d in defaults.items()}
    for name, rule in rules.items():
        for other in rule.references:
            _check_reference(name, other, rules.get(other))
    return rules


def _check_reference(name: str, other: str, rule: Rule | None) -> None:
    """Refuse a bound of ``name`` naming ``other`` unless ``other`` is always a number."""
    if rule is None:
        raise ParameterError(f"rule of {name!r} names {other!r}, which is not a parameter")
    if rule.kind not in (int, float):
        raise ParameterError(
            f"rule of {name!r}: {other!r} must be a number to bound it; it is {rule.expected}"
        )
    if rule.allow_none and not rule.mode_field:
        raise ParameterError(
            f"rule of {name!r}: {other!r} may be None; its rule must say "
            "`; None is the mode's FIELD`"
        )


def _element_kind(name: str, default: list) -> type | None:
    kinds = {type(item) for item in default}
    if kinds == {int, float}:
        return float
    if len(kinds) > 1:
        raise ParameterError(f"parameter {name!r}: the default {default!r} mixes types")
    return kinds.pop() if kinds else None


def make_rule(name: str, text: str, default: Any) -> Rule:
    """Build the rule of parameter ``name`` from its text and default (see the module docstring)."""
    parts = _RULE.fullmatch(text.strip())
    check = parts["check"].strip()
    one_of = _ONE_OF.fullmatch(check)
    listed = bool(parts["each"] or parts["non_empty"] or parts["distinct"])
    kind, element = _rule_kinds(
        name, default, declared=KINDS.get(parts["kind"]), names=bool(one_of), listed=listed
    )
    if kind is not list and (parts["each"] or parts["non_empty"] or parts["distinct"]):
        raise ParameterError(f"rule of {name!r}: 'each', 'non-empty' and 'distinct' are for lists")
    if kind is list and check and not parts["each"]:
        raise ParameterError(f"rule of list {name!r}: write `each {check}`")
    names = _names(name, check, one_of, element if kind is list else kind)
    _check_fits_kind(name, check, names, element if kind is list else kind)
    mode_field = parts["mode_field"]
    if mode_field is not None:
        _check_mode_field(name, mode_field, allow_none=bool(parts["none"]))
    return Rule(
        default=default,
        kind=kind,
        element=element,
        allow_none=bool(parts["none"]),
        non_empty=bool(parts["non_empty"]),
        distinct=bool(parts["distinct"]),
        each=bool(parts["each"]),
        check=check,
        names=names,
        mode_field=mode_field or "",
    )


def _names(name: str, check: str, one_of: re.Match | None, kind: type | None) -> tuple:
    """The choices of ``one of``: strings, or integers for an int parameter."""
    names = tuple(n.strip() for n in one_of[1].split(",")) if one_of else ()
    if kind is not int:
        return names
    if not all(re.fullmatch(r"-?\d+", n) for n in names):
        raise ParameterError(f"rule {check!r} of {name!r} is not understood; see `{__name__}`")
    return tuple(map(int, names))


def _check_mode_field(name: str, field: str, *, allow_none: bool) -> None:
    if not allow_none:
        raise ParameterError(f"rule of {name!r}: `; None is the mode's ...` needs `None or`")
    if field not in {f.name for f in fields(Settings)}:
        raise ParameterError(
            f"rule of {name!r}: {field!r} is not a setting of a mode (fairkit.config.Settings)"
        )


def _rule_kinds(
    name: str, default: Any, *, declared: type | None, names: bool, listed: bool
) -> tuple:
    """The parameter's type and a list's element type: the default's, else the declared one.

    A None default with a list's rule (``each``, ``non-empty``, ``distinct``) is a list of the
    declared type.
    """
    if default is None and declared is None:
        raise ParameterError(
            f"parameter {name!r} defaults to None; its rule must name its type, "
            f"e.g. `{name}: None or bool`"
        )
    if default is None:
        return (list, declared) if listed else (declared, None)
    kind = type(default)
    element = None
    if kind is list:
        element = _element_kind(name, default) or declared or (str if names else None)
    found = element if kind is list else kind
    if declared is not None and declared is not found:
        raise ParameterError(
            f"rule of {name!r} names {declared.__name__}, its default {default!r} is "
            f"{found.__name__}"
        )
    return kind, element


def _is_number(text: str) -> bool:
    """Whether ``text`` reads as a finite number."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _is_limit(text: str) -> bool:
    """Whether ``text`` is a bound: a finite number or a parameter's name."""
    return _is_number(text.strip()) or text.strip().isidentifier()


def _check_fits_kind(name: str, check: str, names: tuple, kind: type | None) -> None:
    """Refuse a check that is not understood, or that does not fit the values' type."""
    if not check:
        return
    interval, bound = _INTERVAL.fullmatch(check), _BOUND.fullmatch(check)
    understood = (
        names
        or (bound and _is_limit(bound[2]))
        or (interval and all(map(_is_limit, interval.group(2, 3))))
    )
    if not understood:
        raise ParameterError(f"rule {check!r} of {name!r} is not understood; see `{__name__}`")
    wanted = "str or int" if names else "int or float"
    if (kind not in (str, int)) if names else (kind not in (int, float)):
        found = "unknown (name the type in the rule)" if kind is None else kind.__name__
        raise ParameterError(f"rule {check!r} of {name!r} needs {wanted} values; found {found}")


def _typed(value: Any, kind: type | None) -> tuple[bool, Any]:
    """``(True, value)`` as ``kind`` (an int as a float), or ``(False, value)`` if it is not one."""
    if kind is None or type(value) is kind:
        return True, value
    if kind is float and type(value) is int:
        try:
            return True, float(value)
        except OverflowError:  # beyond every float: infinite, which is refused
            return True, math.inf if value > 0 else -math.inf
    return False, value


def typed_value(name: str, value: Any, rule: Rule, *, given: str | None = None) -> Any:
    """Return ``value`` if it has the rule's type (an int may be a float; a float is finite).

    ``given`` is the command-line text the value was read from, for the error message.
    """
    shown = repr(value) if given is None else f"{given!r}, which reads as {value!r}"
    wrong_type = ParameterError(
        f"parameter {name!r} expects {rule.expected} (default {rule.default!r}); "
        f"got {shown} of type {type(value).__name__}"
    )
    if value is None and (rule.allow_none or rule.kind is None):
        return value
    ok, value = _typed(value, rule.kind)
    if not ok:
        raise wrong_type
    if rule.kind is list:
        typed = [_typed(item, rule.element) for item in value]
        if not all(ok for ok, _ in typed):
            bad = next(item for (ok, _), item in zip(typed, value, strict=True) if not ok)
            raise ParameterError(f"{wrong_type}: {bad!r} is {type(bad).__name__}")
        value = [item for _, item in typed]
    if any(isinstance(x, float) and not math.isfinite(x) for x in _items(value, rule.kind)):
        finite = "hold finite numbers only" if rule.kind is list else "be a finite number"
        raise ParameterError(f"parameter {name!r} must {finite}; got {shown}")
    return value


def _items(value: Any, kind: type | None) -> list:
    return value if kind is list and value is not None else [value]


def _check_constraint(name: str, value: Any, rule: Rule, values: dict[str, Any]) -> None:
    """Refuse ``value`` unless it passes the rule's check; ``values`` give named bounds."""
    if value is None:
        return
    must = f"parameter {name!r} must be {rule.constraint}"
    must += "".join(f" ({other} is {values[other]!r})" for other in rule.references)
    if rule.non_empty and not value:
        raise ParameterError(f"{must}; got {value!r}")
    twice = [item for k, item in enumerate(value) if item in value[:k]] if rule.distinct else []
    if twice:
        raise ParameterError(f"{must}; got {twice[0]!r} twice in {value!r}")
    for item in value if rule.each else [value]:
        if not rule.accepts(item, values):
            where = f" in {value!r}" if rule.each else ""
            raise ParameterError(f"{must}; got {item!r}{where}")


def parse_cli_value(name: str, raw: str, rule: Rule) -> Any:
    """Read the command-line text of parameter ``name`` as a Python literal of its type.

    A ``str`` parameter takes the text as it is (``None`` is None where the rule allows it).
    """
    if rule.kind is str:
        return typed_value(name, None if rule.allow_none and raw == "None" else raw, rule)
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as err:
        raise ParameterError(
            f"parameter {name!r} expects {rule.expected} (default {rule.default!r}); "
            f"got {raw!r}, which is not a Python literal"
        ) from err
    return typed_value(name, value, rule, given=raw)


def resolve_parameters(
    notebook: str | os.PathLike,
    overrides: dict[str, Any] | None = None,
    *,
    from_cli=False,
    device_here=True,
) -> dict[str, Any]:
    """Merge ``overrides`` into the notebook's defaults, checked against its types and rules."""
    rules = notebook_rules(notebook)
    defaults = {name: rule.default for name, rule in rules.items()}
    return check_parameters(
        defaults,
        overrides,
        source=Path(notebook).name,
        from_cli=from_cli,
        rules=rules,
        device_here=device_here,
    )


def default_rules(defaults: dict[str, Any]) -> dict[str, Rule]:
    """Rules from the defaults' types and ``COMMON_RULES`` alone, for a notebook run by hand.

    A parameter that defaults to None then takes any value: its type stands in the rules cell,
    which a kernel does not read.
    """
    return {
        name: Rule(default=d, kind=None)
        if d is None
        else make_rule(name, COMMON_RULES.get(name, ""), d)
        for name, d in defaults.items()
    }


def check_parameters(
    defaults: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    *,
    source: str,
    from_cli: bool = False,
    rules: dict[str, Rule] | None = None,
    device_here: bool = True,
) -> dict[str, Any]:
    """``defaults`` updated by ``overrides``, every value checked against its rule.

    ``rules`` default to ``default_rules(defaults)``; ``mode`` must name a mode and ``device``
    a device (one this machine has, if ``device_here``); ``source`` names the notebook in errors.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ParameterError(
            f"{source} has no parameter {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(defaults)}"
        )
    rules = default_rules(defaults) if rules is None else rules
    params = {**defaults, **overrides}
    for name, value in params.items():
        if from_cli and name in overrides and isinstance(value, str):
            params[name] = parse_cli_value(name, value, rules[name])
        else:
            params[name] = typed_value(name, value, rules[name])
    missing = [name for name in REQUIRED if name not in params]
    if missing:
        raise ParameterError(f"{source}: the parameters cell must define {missing[0]!r}")
    try:
        sizes = settings(params["mode"])
    except ValueError as err:
        raise ParameterError(str(err)) from err
    _check_device(params["device"], here=device_here)
    values = {name: _stand_in(value, rules[name], sizes) for name, value in params.items()}
    for name, value in params.items():
        _check_constraint(name, value, rules[name], values)
    return params


def _stand_in(value: Any, rule: Rule, sizes: Settings) -> Any:
    """What a value stands for: the mode's setting where it is None and its rule names one."""
    return getattr(sizes, rule.mode_field) if value is None and rule.mode_field else value


def available_devices() -> list[str]:
    """``auto``, ``cpu`` and the accelerators that torch finds on this machine."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cuda = ["cuda", *(f"cuda:{k}" for k in range(gpus))] if gpus else []
    return ["auto", "cpu", *cuda, *(["mps"] if torch.backends.mps.is_available() else [])]


def _check_device(device: str, *, here: bool) -> None:
    """Refuse a device that is not named as ``fairkit.config`` names them, or is not here."""
    if not DEVICES.match(device):
        raise ParameterError(
            f"parameter 'device' must be auto, cpu, mps, cuda or cuda:N; got {device!r}"
        )
    if here and device not in ("auto", "cpu") and device not in (found := available_devices()):
        raise ParameterError(
            f"parameter 'device' must be one of {', '.join(found)} on this machine; got {device!r}"
        )
