"""Loading a sink or input backend class by its name in the settings.

Registries map names to "module:Class" strings, so a module (and the
third-party library it needs) is imported only when it is configured.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict

from options import SettingsError, show


def load(table: Dict[str, str], name: Any, setting: str, what: str) -> Any:
    """The class registered under `name`, or a SettingsError for `setting`
    naming the choices."""
    target = table.get(name) if isinstance(name, str) else None
    if target is None:
        choices = ", ".join(repr(k) for k in table)
        raise SettingsError(
            f"{setting} = {show(name)}: unknown {what}; expected one of {choices}"
        )
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
