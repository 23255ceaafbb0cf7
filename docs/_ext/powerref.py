"""The manual's references, generated from the code so they cannot drift.

Directives:

``.. power-cli:: PROGRAM``
    The usage and a table of every option of ``power.py``, ``power.py
    COMMAND`` or ``install_init_script.py``, from its argparse parser. The
    content may add prose to options (see below).
``.. power-cli-reference::``
    Every program: ``power.py``, each command in ``power.SUBCOMMANDS``, the
    installer, as ``program``/``option`` entries (``:option:`` links here).
``.. power-settings:: TABLE``
    A table of the keys of one option table: ``top-level``, ``sink NAME``,
    ``sink common``, ``input NAME`` or ``module:NAME``
    (``config.settings:METER_OPTIONS``).
    Default and what is expected come from the ``Option``; the content may
    add prose.
``.. power-settings-reference::``
    Every settings table, iterating over the sink and input registries.
``.. power-fields:: WHAT``
    ``reading`` (the Reading's fields, with prose), ``csv-header``,
    ``mqtt-state``, ``mqtt-power`` and ``influxdb``: the names the code writes.

Prose in a directive's content is keyed by option or setting name::

    .. power-settings:: config.settings:METER_OPTIONS

       name
          The meter's name in every reading.

A key the code does not know is an error (a warning, and ``make docs`` runs
with -W), so the prose cannot describe an option that no longer exists;
a key without prose still gets its row from the code.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import json
import math
import os
import pathlib
import re
import sys
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
SRC = ROOT / "src"
# The checkout as the manual names it (never a path of the building machine).
NEUTRAL_ROOT = "/home/pi/power"
HELP_WIDTH = "80"  # argparse wraps the usage to the terminal's width

logger = logging.getLogger(__name__)

if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


# Text ---------------------------------------------------------------------------


def escape(text: str) -> str:
    """Plain text as rST that shows it unchanged."""
    return re.sub(r"([\\`*_|\[\]])", r"\\\1", text)


def neutral(text: str) -> str:
    """The checkout's path as the manual writes it."""
    return text.replace(str(ROOT), NEUTRAL_ROOT)


def literal(value: Any) -> str:
    """A default as it is written in settings.py."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return repr(value)


def sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", ":")) else text + "."


def described(content: Sequence[str]) -> Dict[str, List[str]]:
    """A directive's prose: unindented key lines, each followed by its
    indented rST description."""
    out: Dict[str, List[str]] = {}
    key: Optional[str] = None
    for line in content:
        if line and not line[0].isspace():
            key = line.strip()
            if key in out:
                raise ValueError(f"{key} is described twice")
            out[key] = []
        elif key is None:
            if line.strip():
                raise ValueError(f"text before the first key: {line.strip()!r}")
        else:
            out[key].append(line)
    for key, lines in out.items():
        indents = [len(x) - len(x.lstrip()) for x in lines if x.strip()]
        cut = min(indents) if indents else 0
        out[key] = [x[cut:] for x in lines]
        while out[key] and not out[key][-1].strip():
            out[key].pop()
    return out


def list_table(header: Sequence[str], rows: Sequence[Sequence[List[str]]], widths):
    """A list-table in rST; each cell a list of rST lines."""
    out = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: " + " ".join(str(w) for w in widths),
        "",
    ]
    for row in [[[h] for h in header], *rows]:
        for i, cell in enumerate(row):
            lead = "   * - " if i == 0 else "     - "
            lines = cell or [""]
            out.append(lead + lines[0])
            out.extend(("       " + x) if x.strip() else "" for x in lines[1:])
    return out + [""]


# Command line -------------------------------------------------------------------


@contextlib.contextmanager
def _columns() -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _installer():
    """install_init_script.py, a script beside src/ rather than in it."""
    name = "install_init_script"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look themselves up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def programs() -> List[Tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of power.py, each command in SUBCOMMANDS (a command
    added there appears by itself) and the installer."""
    import power

    with _columns():
        out = [("power.py", power.build_parser())]
        for name, entry in power.SUBCOMMANDS.items():
            if len(entry) < 3:
                raise ValueError(
                    f"power.SUBCOMMANDS[{name!r}] has no parser function: give "
                    "it (help, main, build_parser) so the manual can show it"
                )
            out.append((f"power.py {name}", entry[2]()))
        out.append(("install_init_script.py", _installer().build_parser()))
    return out


def program(name: str) -> argparse.ArgumentParser:
    for known, parser in programs():
        if known == name:
            return parser
    choices = ", ".join(n for n, _ in programs())
    raise ValueError(f"unknown program {name!r}; expected one of: {choices}")


def label(prefix: str, name: str) -> str:
    return prefix + "-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@dataclass
class Opt:
    """One argument of a parser, as the manual shows it."""

    names: List[str]  # option strings, or the metavar of a positional
    signature: str  # "-q, --quiet", "--settings PATH", "KWH"
    text: str  # the help, completed by what argparse knows


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _args(action: argparse.Action) -> str:
    m = _metavar(action)
    return {None: m, "?": f"[{m}]", "*": f"[{m} ...]", "+": f"{m} [{m} ...]"}.get(
        action.nargs,
        " ".join([m] * action.nargs) if isinstance(action.nargs, int) else m,
    )


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%" in text:  # %(default)s and friends, as -h expands them
        params = dict(vars(action), prog=parser.prog)
        if params.get("choices") is not None:
            params["choices"] = ", ".join(str(c) for c in params["choices"])
        text = text % params
    parts = [sentence(text)] if text else []
    if action.choices is not None and "one of" not in text:
        parts.append("One of " + ", ".join(str(c) for c in action.choices) + ".")
    default = action.default
    if (
        action.option_strings
        and default not in (None, False, True, argparse.SUPPRESS)
        and "default" not in text
    ):
        parts.append(f"Default: {default}.")
    for group in parser._mutually_exclusive_groups:
        if action in group._group_actions:
            others = [
                a.option_strings[-1] for a in group._group_actions if a is not action
            ]
            parts.append("Not together with " + ", ".join(others) + ".")
    return neutral(" ".join(parts))


def options(parser: argparse.ArgumentParser) -> List[Opt]:
    out = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            sig = ", ".join(
                s if action.nargs == 0 else f"{s} {_args(action)}"
                for s in action.option_strings
            )
            names = list(action.option_strings)
        else:  # a positional: its name; the usage shows if it may be left out
            sig = _metavar(action) if action.nargs == "?" else _args(action)
            names = [_metavar(action)]
        out.append(Opt(names, sig, _help(parser, action)))
    return out


def usage(parser: argparse.ArgumentParser) -> str:
    with _columns():
        return neutral(parser.format_usage().strip())


def cli_table(
    parser: argparse.ArgumentParser, prose: Dict[str, List[str]]
) -> List[str]:
    """The usage and one row per option; prose keyed by an option string."""
    known = {n for o in options(parser) for n in o.names}
    unknown = sorted(set(prose) - known)
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)}: not an option of {parser.prog}; it has "
            + ", ".join(sorted(known))
        )
    rows = []
    for o in options(parser):
        cell = [escape(o.text)] if o.text else []
        for name in o.names:
            if name in prose:
                cell += [""] + prose[name]
        rows.append([[f"``{o.signature}``"], cell])
    out = [".. code-block:: text", ""]
    out += ["   " + x for x in usage(parser).splitlines()] + [""]
    return out + list_table(("Option", "Meaning"), rows, (30, 70))


def cli_reference() -> List[str]:
    """Every program as program/option entries, one section each."""
    out: List[str] = []
    for name, parser in programs():
        title = f"``{name}``"
        out += [f".. _{label('cli', name)}:", "", title, "-" * len(title), ""]
        if parser.description:
            out += [escape(neutral(parser.description)), ""]
        out += [".. code-block:: text", ""]
        out += ["   " + x for x in usage(parser).splitlines()] + [""]
        out += [f".. program:: {name}", ""]
        for o in options(parser):
            out += [f".. option:: {o.signature}", ""]
            if o.text:
                out += ["   " + escape(o.text), ""]
        if parser.epilog:
            out += ["::", ""] + ["   " + x for x in parser.epilog.splitlines()] + [""]
    return out


# Settings -----------------------------------------------------------------------


def sink_names() -> List[str]:
    from sinks.registry import SINKS

    return list(SINKS)


def backend_names() -> List[str]:
    from inputs.registry import BACKENDS

    return list(BACKENDS)


def settings_table(spec: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """The Option table a spec names, and the expected text of keys that
    are not checked by their Option alone (a sink's type, a backend)."""
    words = spec.split()
    if words[0] == "sink" and len(words) == 2:
        if words[1] == "common":
            from sinks.base import COMMON_OPTIONS

            names = ", ".join(json.dumps(n) for n in sink_names())
            return dict(COMMON_OPTIONS), {"type": f"one of {names}"}
        from config.plugins import sink_class

        return dict(sink_class(words[1], "SINKS").OPTIONS), {}
    if words[0] == "input" and len(words) == 2:
        from config.plugins import backend_class

        table = dict(backend_class(words[1], "INPUT").OPTIONS)
        return table, {"backend": json.dumps(words[1])}
    if len(words) == 1 and ":" in spec:
        module, _, attr = spec.partition(":")
        return dict(getattr(importlib.import_module(module), attr)), {}
    raise ValueError(
        f"{spec!r}: expected top-level, sink NAME, sink common, input NAME or "
        "module:NAME"
    )


def top_level_names() -> List[str]:
    import config.settings

    return sorted(config.settings.TOP_LEVEL)


def option_rows(
    table: Dict[str, Any], special: Dict[str, str], prose: Dict[str, List[str]]
) -> List[List[List[str]]]:
    rows = []
    for key, option in table.items():
        default = "required" if option.required else f"``{literal(option.default)}``"
        if key in special:
            default = "—"
        expected = special.get(key) or option.describe()
        if option.secret:
            expected += "; secret: never logged, shown as '***'"
        rows.append(
            [[f"``{key}``"], [default], [escape(neutral(expected))], prose.get(key, [])]
        )
    return rows


def settings_rows(
    spec: str, prose: Dict[str, List[str]], meaning: bool = True
) -> List[str]:
    if spec == "top-level":
        names = top_level_names()
        _check_keys(spec, prose, names)
        rows = [[[f"``{n}``"], prose.get(n, [])] for n in names]
        return list_table(("Name", "Meaning"), rows, (22, 78))
    table, special = settings_table(spec)
    _check_keys(spec, prose, table)
    rows = option_rows(table, special, prose)
    if not meaning:
        rows = [row[:3] for row in rows]
        return list_table(("Key", "Default", "Expected"), rows, (25, 25, 50))
    return list_table(("Key", "Default", "Expected", "Meaning"), rows, (18, 14, 24, 44))


def _check_keys(spec: str, prose: Dict[str, List[str]], known) -> None:
    unknown = sorted(set(prose) - set(known))
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)}: not a setting of {spec}; it has "
            + ", ".join(sorted(known))
        )


def settings_reference(found_docs: Sequence[str] = ()) -> List[str]:
    """Every settings table: top-level names, METER, LEDS, a METERS entry,
    each input backend, the keys of every sink and each sink type."""
    out: List[str] = []

    def section(name: str, title: str, intro: str, spec: str, page: str = "") -> None:
        out.extend([f".. _{label('settings-reference', name)}:", ""])
        out.extend([title, "-" * len(title), "", intro])
        if page.startswith(":ref:"):
            out.append(f"See {page}.")
        elif page and page in found_docs:
            out.append(f"See :doc:`/{page}`.")
        out.append("")
        out.extend(settings_rows(spec, {}, meaning=False))

    out += [".. _settings-reference-top-level-names:", "", "Top-level names"]
    out += ["-" * 15, "", "Upper-case names in ``settings.py``; any other is an"]
    out += ["error. See :ref:`settings-top-level-names`.", ""]
    out += [", ".join(f"``{n}``" for n in top_level_names()), ""]
    section(
        "meter",
        "``METER``",
        "A meter's arithmetic.",
        "config.settings:METER_OPTIONS",
        ":ref:`settings-meter`",
    )
    section(
        "leds",
        "``LEDS``",
        "The status LEDs.",
        "config.settings:LEDS_OPTIONS",
        ":ref:`settings-leds`",
    )
    section(
        "metrics",
        "``METRICS``",
        "The Prometheus exporter (``None``, the default, turns it off).",
        "web.metrics:OPTIONS",
        "prometheus",
    )
    section(
        "web",
        "``WEB``",
        "The page (``None``, the default, turns it off).",
        "web.page:OPTIONS",
        "web",
    )
    section(
        "meters",
        "An entry of ``METERS``",
        "The keys of ``METER``, and these.",
        "config.settings:METERS_EXTRA",
        "meters",
    )
    for name in backend_names():
        section(
            f"input-{name}",
            f"``INPUT`` with backend ``{name}``",
            f"The keys of input backend ``{name}``.",
            f"input {name}",
            f"inputs/{name}",
        )
    section(
        "sink-common",
        "Keys every sink takes",
        "These, and the keys of the sink's type.",
        "sink common",
        "sinks/index",
    )
    for name in sink_names():
        section(
            f"sink-{name}",
            f"Sink type ``{name}``",
            f"The keys of sink type ``{name}``.",
            f"sink {name}",
            f"sinks/{name}",
        )
    return out


# Field lists --------------------------------------------------------------------


def sample_readings():
    from core.meter import Reading

    return [
        Reading(1714563000.0, "main", 1, 0.001, None, None),
        Reading(1714563003.6, "main", 2, 0.002, 1000.0, 3.6),
        # No pulse for 4.5 s: the bound has fallen by a fifth (an estimate).
        Reading(1714563008.1, "main", 2, 0.002, 800.0, 4.5, True),
    ]


def fields(what: str, prose: Dict[str, List[str]]) -> List[str]:
    if what == "reading":
        from core.meter import Reading

        _check_keys(what, prose, Reading._fields)
        rows = [[[f"``{f}``"], prose.get(f, [])] for f in Reading._fields]
        return list_table(("Field", "Meaning"), rows, (18, 82))
    if prose:
        raise ValueError(f"power-fields {what} takes no content")
    if what == "csv-header":
        from core.csvformat import HEADER

        return [".. code-block:: text", "", "   " + HEADER, ""]
    if what == "mqtt-state":
        from sinks.mqtt import STATE_FIELDS, state_payload

        keys = ", ".join(f"``{k}``" for k in STATE_FIELDS)
        out = [f"Keys, in this order: {keys}. For example:", ""]
        out += [".. code-block:: text", ""]
        for r in sample_readings():
            out.append("   " + state_payload(r))
        return out + [""]
    if what == "mqtt-power":
        from sinks.mqtt import POWER_FIELDS, power_payload

        keys = ", ".join(f"``{k}``" for k in POWER_FIELDS)
        out = [f"Keys, in this order: {keys}. For example:", ""]
        out += [".. code-block:: text", ""]
        for r in sample_readings():
            if r.power_w is not None:
                out.append("   " + power_payload(r))
        return out + [""]
    if what == "influxdb":
        from sinks.influxdb import FIELDS, TAG

        kinds = {
            float: "field, float",
            int: "field, integer",
            bool: "field, boolean",
        }
        rows = [[[f"``{TAG}``"], ["tag, with the sink's ``tags``"]]]
        rows += [[[f"``{name}``"], [kinds[kind]]] for name, kind in FIELDS.items()]
        return list_table(("Name", "Kind"), rows, (30, 70))
    raise ValueError(
        f"{what!r}: expected reading, csv-header, mqtt-state, mqtt-power or influxdb"
    )


# Sphinx -------------------------------------------------------------------------


# Layout -------------------------------------------------------------------------


def rooms() -> List[Tuple[str, str, Tuple[str, ...]]]:
    """(room, what it is for, the rooms it may import) of each package in
    src/, from its __init__.py (read, not imported), lowest first."""
    found = []
    for init in sorted(SRC.glob("*/__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        summary = (ast.get_docstring(tree) or "").split("\n")[0]
        below: Tuple[str, ...] = ()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "MAY_IMPORT" for t in node.targets
            ):
                below = tuple(ast.literal_eval(node.value))
        found.append((init.parent.name, summary, below))
    return sorted(found, key=lambda r: (len(r[2]), r[0]))


def layout() -> List[str]:
    """A table of src/'s rooms: what each is for and what it may import."""
    out = [".. list-table::", "   :header-rows: 1", "   :widths: 18 52 30", ""]
    out += ["   * - Room", "     - What it is for", "     - May import", ""]
    entry = "The entry point: parse the command line, pick the command, hand over."
    rows = [("power.py", entry, "every room")]
    for room, summary, below in reversed(rooms()):
        rows.append((f"{room}/", summary, ", ".join(below) or "nothing of power's"))
    for name, summary, below in rows:
        out += [f"   * - ``src/{name}``", f"     - {escape(summary)}"]
        out += [f"     - {below}", ""]
    return out


class _Generated(SphinxDirective):
    """Parses the rST lines `lines()` makes; a ValueError becomes a warning."""

    titles = False

    def lines(self) -> List[str]:
        raise NotImplementedError

    def run(self) -> List[nodes.Node]:
        try:
            text = self.lines()
        except ValueError as exc:
            logger.warning(
                "%s: %s", self.name, exc, location=self.get_location(), type="power"
            )
            return []
        # The page shows what the code says: read it again when that changes.
        for path in sorted(SRC.rglob("*.py")) + [ROOT / "install_init_script.py"]:
            self.env.note_dependency(str(path))
        source = f"<{self.name} {' '.join(self.arguments)}>"
        content = StringList(text, source=source)
        node = nodes.section() if self.titles else nodes.container()
        node.document = self.state.document
        if self.titles:
            nested_parse_with_titles(self.state, content, node)
        else:
            self.state.nested_parse(content, self.content_offset, node)
        return node.children


class CliDirective(_Generated):
    required_arguments = 1
    final_argument_whitespace = True
    has_content = True

    def lines(self) -> List[str]:
        return cli_table(program(self.arguments[0]), described(self.content))


class CliReferenceDirective(_Generated):
    titles = True

    def lines(self) -> List[str]:
        return cli_reference()


class SettingsDirective(_Generated):
    required_arguments = 1
    final_argument_whitespace = True
    has_content = True

    def lines(self) -> List[str]:
        return settings_rows(self.arguments[0], described(self.content))


class SettingsReferenceDirective(_Generated):
    titles = True

    def lines(self) -> List[str]:
        return settings_reference(sorted(self.env.found_docs))


class FieldsDirective(_Generated):
    required_arguments = 1
    has_content = True

    def lines(self) -> List[str]:
        return fields(self.arguments[0], described(self.content))


class LayoutDirective(_Generated):
    def lines(self) -> List[str]:
        return layout()


def setup(app) -> dict:
    app.add_directive("power-layout", LayoutDirective)
    app.add_directive("power-cli", CliDirective)
    app.add_directive("power-cli-reference", CliReferenceDirective)
    app.add_directive("power-settings", SettingsDirective)
    app.add_directive("power-settings-reference", SettingsReferenceDirective)
    app.add_directive("power-fields", FieldsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
