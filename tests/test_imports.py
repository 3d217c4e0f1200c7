"""Dependencies point one way: the library knows nothing of training, evaluation or the command line.

The walls, checked on the source (every ``import``, at module level or inside
a function, and ``importlib.import_module("...")`` with a literal name):

- ``codec`` (the library) imports neither ``train``, ``eval`` nor a
  command-line module (:data:`CLI_MODULES`);
- ``eval`` does not import ``train``;
- only the command line (:data:`CLI_MODULES`) imports ``argparse``: every
  sub-command's arguments are defined there, once, and the ``python -m``
  entry points of ``train`` and ``eval`` call into it;
- the repository's modules import each other without a cycle. Imports
  inside functions count here too: a cycle broken only by a lazy import is
  still two modules that cannot be understood apart. Imports under
  ``if TYPE_CHECKING:`` (never run) do not count for cycles.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The repository's packages.
PACKAGES = ("codec", "train", "eval")
#: Modules that parse command lines; the library must not import them.
CLI_MODULES = ("codec.cli",)
#: ``(importer prefix, forbidden prefix)``: modules under the first may not import modules under the second.
WALLS = (
    ("codec", "train"),
    ("codec", "eval"),
    *(("codec", cli) for cli in CLI_MODULES),
    ("eval", "train"),
)


@dataclass(frozen=True)
class Import:
    """One import statement.

    Attributes:
        importer: Dotted name of the importing module.
        target: Dotted name of the imported module (a submodule when one is named).
        line: Line number in the importer.
        runtime: False for imports under ``if TYPE_CHECKING:``.
    """

    importer: str
    target: str
    line: int
    runtime: bool


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``packages`` under ``root``."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str, known: set[str]) -> str:
    """``name`` if it is one of the repository's modules, else its longest known prefix (or itself)."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    """Every import of one module, with its target resolved to a module of the repository where it is one."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def add(target: str, node: ast.AST, runtime: bool) -> None:
        found.append(Import(module, _resolve(target, known), node.lineno, runtime))

    def visit(node: ast.AST, runtime: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, runtime)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, runtime)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in known else base, node, runtime)
        elif isinstance(node, ast.Call) and _is_import_call(node):
            add(node.args[0].value, node, runtime)
        for child in ast.iter_child_nodes(node):
            visit(child, runtime)

    visit(tree, True)
    return found


def _is_import_call(node: ast.Call) -> bool:
    """``importlib.import_module("x")`` or ``__import__("x")`` with a literal name."""
    func = node.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__")
    )
    return named and bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def wall_violations(imports: list[Import]) -> list[str]:
    """``"importer:line imports target"`` for every import that crosses a wall the wrong way."""
    bad = []
    for imp in imports:
        for importer, forbidden in WALLS:
            exempt = any(_under(imp.importer, cli) for cli in CLI_MODULES)
            if _under(imp.importer, importer) and _under(imp.target, forbidden) and not exempt:
                bad.append(f"{imp.importer}:{imp.line} imports {imp.target}")
    return bad


def find_cycles(imports: list[Import]) -> list[list[str]]:
    """The import cycles among the modules: each as ``[a, b, ..., a]`` (one per strongly connected group).

    A package's ``__init__`` importing its own submodules is not a cycle by
    itself; a submodule importing a name back from its package's
    ``__init__`` (``from codec import Codec``) is an edge like any other.
    """
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.runtime and imp.target != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.target)
    cycles, done = [], set()
    for start in sorted(graph):
        path = _path_back(graph, start)
        if path and frozenset(path) not in done:
            done.add(frozenset(path))
            cycles.append(path)
    return cycles


def _path_back(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A shortest path ``start -> ... -> start`` in ``graph``, or None (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
                if nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    return None


def repository_imports(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> list[Import]:
    """The imports of every module of ``packages`` under ``root``."""
    files = module_files(root, packages)
    return [imp for module, path in files.items() for imp in imports_of(module, path, set(files))]


def test_the_library_and_evaluation_import_nothing_across_their_walls() -> None:
    imports = repository_imports()
    assert len({imp.importer for imp in imports}) > 40, "the walk found too few modules"
    assert wall_violations(imports) == []


def argument_parsers(imports: list[Import]) -> list[str]:
    """``"importer:line"`` for every module outside :data:`CLI_MODULES` that imports ``argparse``."""
    return [f"{imp.importer}:{imp.line}" for imp in imports
            if imp.target == "argparse" and not any(_under(imp.importer, cli) for cli in CLI_MODULES)]


def test_only_the_command_line_defines_arguments() -> None:
    assert argument_parsers(repository_imports()) == []


def test_the_argument_check_finds_a_parser_outside_the_command_line(tmp_path: Path) -> None:
    _write(tmp_path, {
        "codec/__init__.py": "", "codec/cli/__init__.py": "import argparse\n", "codec/cli/files.py": "import argparse\n",
        "eval/__init__.py": "", "eval/bench.py": "def main():\n    from argparse import ArgumentParser\n",
        "train/__init__.py": "",
    })
    assert argument_parsers(repository_imports(tmp_path)) == ["eval.bench:2"]


def test_no_import_cycles() -> None:
    assert find_cycles(repository_imports()) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"codec/model.py": "def f():\n    from eval.metrics import x\n"}, ["codec.model:2 imports eval.metrics"]),
        ({"codec/demo.py": "import train.corpus\n"}, ["codec.demo:1 imports train.corpus"]),
        ({"codec/model.py": "from codec import cli\n"}, ["codec.model:1 imports codec.cli"]),
        ({"codec/cli.py": "import importlib\nimportlib.import_module('train.cli')\n"}, []),
        ({"codec/model.py": "import importlib\nimportlib.import_module('eval.cli')\n"},
         ["codec.model:2 imports eval.cli"]),
        ({"eval/alignment.py": "from train.corpus import write_jsonl\n"}, ["eval.alignment:1 imports train.corpus"]),
        ({"eval/metrics.py": "from ..train import loop\n"}, ["eval.metrics:1 imports train.loop"]),
        ({"train/loop.py": "from eval.metrics import x\nfrom codec.cli import main\n"}, []),
    ],
    ids=["lazy-eval", "train", "cli", "cli-may-load-by-name", "import-module", "eval-train", "relative", "train-ok"],
)
def test_the_wall_check_finds_forbidden_imports(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    skeleton = {f"{p}/__init__.py": "" for p in PACKAGES} | {
        "codec/cli.py": "", "codec/model.py": "", "eval/metrics.py": "", "train/corpus.py": "", "train/loop.py": "",
        "eval/cli.py": "", "train/cli.py": "",
    }
    _write(tmp_path, skeleton | files)
    assert wall_violations(repository_imports(tmp_path)) == expected


def test_the_cycle_check_finds_lazy_cycles_and_ignores_type_checking(tmp_path: Path) -> None:
    _write(tmp_path, {
        "eval/__init__.py": "",
        "eval/evaluate.py": "from eval.codebooks import CodeCounter\n",
        "eval/codebooks.py": "def run():\n    from eval.evaluate import list_audio\n",
        "eval/report.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from eval.listen import x\n",
        "eval/listen.py": "from eval import report\n",
    })
    assert find_cycles(repository_imports(tmp_path, ("eval",))) == [["eval.codebooks", "eval.evaluate",
                                                                       "eval.codebooks"]]
