"""The layout of src/ stays true: every module lives in a room, a room imports
only the rooms below it (the picture in docs/development.rst), and no chain
of imports comes back to where it started. Imports inside functions count:
a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

SRC = Path(__file__).resolve().parent.parent / "src"

ENTRY = "power"  # src/power.py, the composition root: may import any room


def rooms(src: Path) -> Dict[str, Set[str]]:
    """Each room (a package directly in `src`) and the rooms it may import,
    as its __init__.py declares them in MAY_IMPORT (read, not imported)."""
    out = {}
    for init in sorted(src.glob("*/__init__.py")):
        below: Set[str] = set()
        for node in ast.parse(init.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "MAY_IMPORT" for t in node.targets
            ):
                below = set(ast.literal_eval(node.value))
        out[init.parent.name] = below
    return out


def modules(src: Path) -> Dict[str, Path]:
    """Dotted name -> file, for every module under `src`."""
    found = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(
    path: Path, known: Set[str], room_names: Set[str]
) -> Iterator[Tuple[int, str]]:
    """(line, dotted module) of each of power's own modules `path` imports,
    at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from core import meter` imports the module core.meter.
            subs = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [s if s in known else node.module for s in subs]
        else:
            continue
        for name in names:
            if name.split(".")[0] in room_names and name in known:
                yield node.lineno, name


def problems(src: Path) -> List[str]:
    """Every loose module, upward import and circle under `src`."""
    found = modules(src)
    known = set(found)
    below = rooms(src)
    names = set(below) | {ENTRY}
    out = []
    graph: Dict[str, Set[str]] = {}
    for name, path in found.items():
        room = name.split(".")[0]
        if room not in names:
            out.append(f"{path.relative_to(src)}: a module in no room")
            continue
        graph[name] = set()
        for line, target in imports(path, known, names):
            to = target.split(".")[0]
            if room != ENTRY and to != room and to not in below[room]:
                out.append(
                    f"{path.relative_to(src)}:{line}: {room} imports {target} "
                    f"(room {to}), which is not below it"
                )
            if target != name and not name.startswith(target + "."):
                graph[name].add(target)
    out += [f"circle: {' -> '.join(c)}" for c in circles(graph)]
    return out


def circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One path round each strongly connected set of modules (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group) + [sorted(group)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_src_keeps_its_rooms():
    assert problems(SRC) == []


def test_every_room_says_what_it_is_for_and_what_lies_below_it():
    found = rooms(SRC)
    assert {"core", "inputs", "sinks", "web", "config", "service", "commands"} <= set(
        found
    )
    assert found["core"] == set()  # the core stands on nothing of power's
    for room, below in found.items():
        assert ast.get_docstring(ast.parse((SRC / room / "__init__.py").read_text()))
        assert below <= set(found), (room, below - set(found))
        assert room not in below


def test_the_check_finds_an_upward_import_a_circle_and_a_loose_module(tmp_path):
    """The check itself can fail: a tree with each mistake once."""
    (tmp_path / "core").mkdir()
    (tmp_path / "service").mkdir()
    (tmp_path / "core" / "__init__.py").write_text("MAY_IMPORT = ()\n")
    (tmp_path / "service" / "__init__.py").write_text("MAY_IMPORT = ('core',)\n")
    (tmp_path / "core" / "meter.py").write_text(
        "def f():\n    from service import runtime\n"
    )
    (tmp_path / "service" / "runtime.py").write_text("from core.meter import f\n")
    (tmp_path / "service" / "leds.py").write_text("import service.pidcheck\n")
    (tmp_path / "service" / "pidcheck.py").write_text("from service import leds\n")
    (tmp_path / "loose.py").write_text("")
    found = problems(tmp_path)
    assert "loose.py: a module in no room" in found
    assert any(
        p.startswith("core/meter.py:2: core imports service.runtime") for p in found
    )
    assert "circle: core.meter -> service.runtime -> core.meter" in found
    assert "circle: service.leds -> service.pidcheck -> service.leds" in found
    assert len(found) == 4, found


def test_the_project_says_its_licence_version_and_dependencies():
    """GPL-3.0-or-later in LICENSE, the README and pyproject.toml, whose
    version and dependencies are the code's and the requirements'."""
    import importlib

    tomllib = importlib.import_module("tomllib")  # Python 3.11, as CI has
    root = SRC.parent
    licence = (root / "LICENSE").read_text(encoding="utf-8")
    assert licence.lstrip().startswith("GNU GENERAL PUBLIC LICENSE")
    assert "Version 3, 29 June 2007" in licence.splitlines()[1]
    assert "GPL-3.0-or-later" in (root / "README.rst").read_text(encoding="utf-8")
    meta = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    project = meta["project"]
    assert project["name"] == "power"
    assert project["license"] == {"text": "GPL-3.0-or-later"}
    assert project["requires-python"] == ">=3.9"
    assert set(project["dynamic"]) == {"version", "dependencies"}
    dynamic = meta["tool"]["setuptools"]["dynamic"]
    module, _, name = dynamic["version"]["attr"].rpartition(".")
    from core.version import VERSION

    assert getattr(importlib.import_module(module), name) == VERSION
    assert dynamic["dependencies"] == {"file": ["src/requirements.txt"]}
    packages = set(meta["tool"]["setuptools"]["packages"])
    assert packages == set(rooms(SRC)), "every room is a package of the project"
