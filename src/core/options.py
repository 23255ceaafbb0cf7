"""Declarative option tables and their validation.

Every settings section (METER, INPUT, LEDS, each sink) is a dict of plain
values. Each part of the program declares the keys it understands as a table
of `Option`s; `validate` turns a user's dict into a complete dict of checked
values or raises `SettingsError` naming the setting, the value and what is
expected, so a typo never reaches GPIO or a fork.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence


class SettingsError(Exception):
    """A user mistake in the settings: exit 2 with this one message."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT before the monitor runs: end quietly, no traceback."""


class StopWhileStarting:
    """The stop signals' handler until the service has its own: it ends the
    start by raising Interrupted, and remembers the signal, because Python
    swallows a raise that lands in a finalizer (a __del__ run by the garbage
    collector); the service then takes the remembered one as its own."""

    def __init__(self) -> None:
        self.received: Optional[int] = None

    def __call__(self, signum: int, frame: Any = None) -> None:
        self.received = signum
        raise Interrupted(signum)

    @staticmethod
    def hand_over(previous: Any, handle: Callable[[int], None]) -> None:
        """Give `handle` a stop signal the start handler took but whose
        raise went nowhere (`previous`: what signal.signal() returned)."""
        if isinstance(previous, StopWhileStarting) and previous.received:
            handle(previous.received)


_REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One key of a settings section: its type, default and an optional check."""

    kind: str  # int, float, number, str, path, bool, dict, list, any
    default: Any = _REQUIRED
    choices: Optional[Sequence[Any]] = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    nullable: bool = False
    check: Optional[Callable[[Any], Optional[str]]] = None
    secret: bool = False

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe(self) -> str:
        """The 'what is expected' half of an error message."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {
                "int": "an integer",
                "float": "a number",
                "number": "a number",
                "str": "a string",
                "path": "a file path (without NUL bytes)",
                "bool": "True or False",
                "dict": "a dict",
                "list": "a list",
                "any": "a value",
            }[self.kind]
            if self.minimum is not None and self.maximum is not None:
                text += f" from {self.minimum:g} to {self.maximum:g}"
            elif self.minimum is not None:
                text += f" >= {self.minimum:g}"
            elif self.maximum is not None:
                text += f" <= {self.maximum:g}"
        if self.nullable:
            text += " or None"
        return text


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "number"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        try:
            return math.isfinite(value)
        except OverflowError:  # an int too large for a float, like 10**400
            return False
    if kind == "str":
        return isinstance(value, str)
    if kind == "path":
        return isinstance(value, str) and value.strip() != "" and "\0" not in value
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "dict":
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, (list, tuple))
    return True


def show(value: Any, secret: bool = False) -> str:
    """A value as it may appear in a message: secrets are never shown, nor
    the contents of a container (a misplaced dict may hold a password)."""
    if secret and value not in (None, ""):
        return "'***'"
    if isinstance(value, (dict, list, tuple, set)):
        return f"a {type(value).__name__} of {len(value)}"
    if isinstance(value, int) and value.bit_length() > 100:  # 10**400
        return "a very large integer"
    return repr(value)


def validate(
    where: str, given: Any, table: Mapping[str, Option], owner: str = ""
) -> dict:
    """Check `given` against `table`; return it completed with defaults.

    `where` names the section as the user wrote it, e.g. ``SINKS[1]``;
    `owner` what the keys belong to, e.g. "backend 'simulated'".
    """
    if not isinstance(given, dict):
        raise SettingsError(f"{where} = {show(given)}: expected a dict")
    unknown = sorted(set(given) - set(table), key=str)
    if unknown:
        names = ", ".join(f"{where}[{show(k)}]" for k in unknown)
        whose = f" of {owner}" if owner else ""
        known = ", ".join(sorted(table))
        raise SettingsError(
            f"{names}: unknown setting{'s' if len(unknown) > 1 else ''}{whose}; "
            f"expected one of: {known}"
        )
    result = {}
    for key, option in table.items():
        name = f"{where}[{key!r}]"
        if key not in given:
            if option.required:
                raise SettingsError(f"{name} is missing: expected {option.describe()}")
            result[key] = option.default
            continue
        value = given[key]
        result[key] = check_value(name, value, option)
    return result


def check_value(name: str, value: Any, option: Option) -> Any:
    """Check one value against its option; return it (ints widened to float)."""
    bad = f"{name} = {show(value, option.secret)}: expected {option.describe()}"
    if value is None:
        if option.nullable:
            return None
        raise SettingsError(bad)
    if not _type_ok(option.kind, value):
        raise SettingsError(bad)
    if option.choices is not None and value not in option.choices:
        raise SettingsError(bad)
    if option.minimum is not None and value < option.minimum:
        raise SettingsError(bad)
    if option.maximum is not None and value > option.maximum:
        raise SettingsError(bad)
    if option.check is not None:
        problem = option.check(value)
        if problem:
            raise SettingsError(f"{name} = {show(value, option.secret)}: {problem}")
    if option.kind == "float" and isinstance(value, int):
        return float(value)
    if option.kind == "path":
        # Relative to where power was started; the daemon later chdirs to /.
        return os.path.abspath(os.path.expanduser(value))
    return value
