"""tests/tiny.py is the test suite's only tiny-project builder.

There were five (``tests/tiny.py``, ``tests/stages/_tiny.py``, ``tests/evaluation/tiny_pipeline.py``,
``tests/workflow/helpers.py``, ``tests/applications/helpers.py``), each with its own params, and a dozen
tests wrote or rewrote a ``params.yaml`` by hand. The check: outside ``tests/tiny.py`` no code writes a file
spelled ``params.yaml`` (directly or through a variable or a parameter's default) and no code writes YAML
(``yaml.safe_dump`` into a file or into ``write_text``). Tests call ``tiny_project``, ``write_params``,
``write_params_file`` or ``edit_params`` instead.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import yaml

from sindiffusion.config import SECTIONS, load_params
from tests.tiny import RECIPES, TinyProject, edit_params, tiny_params, tiny_project

TESTS = Path(__file__).resolve().parent
BUILDER = TESTS / "tiny.py"
WRITERS = {"write_text", "write_bytes"}
DUMPS = {"dump", "safe_dump", "dump_all", "safe_dump_all"}


def _scope(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of one scope: a function's (its parameters' defaults included) or a module's, without
    the bodies of the functions defined in it (each is a scope of its own)."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        n = stack.pop()
        yield n
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(n))


def _spells_params_file(node: ast.AST, names: set[str]) -> bool:
    return any(
        (isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.endswith("params.yaml"))
        or (isinstance(n, ast.Name) and n.id in names)
        for n in ast.walk(node)
    )


def _is_yaml_dump(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in DUMPS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "yaml"
    )


def _params_file_names(nodes: list[ast.AST]) -> set[str]:
    """Names bound, in a scope, to a path spelled with ``params.yaml`` (or to a name that is)."""
    names: set[str] = set()
    while True:
        found = set(names)
        for n in nodes:
            if isinstance(n, ast.arguments):
                positional = [*n.posonlyargs, *n.args]
                pairs = list(zip(positional[len(positional) - len(n.defaults) :], n.defaults))
                pairs += [(a, d) for a, d in zip(n.kwonlyargs, n.kw_defaults) if d is not None]
                found |= {a.arg for a, d in pairs if _spells_params_file(d, names)}
            elif isinstance(n, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and n.value is not None:
                if _spells_params_file(n.value, names):
                    targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                    found |= {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}
        if found == names:
            return names
        names = found


def hand_written_params(path: Path) -> list[str]:
    """``file:line: code`` of every place in ``path`` that writes a params file or YAML itself."""
    text = path.read_text()
    tree = ast.parse(text)
    scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))]
    lines: set[int] = set()
    for scope in scopes:
        nodes = list(_scope(scope))
        names = _params_file_names(nodes)
        for n in nodes:
            if not isinstance(n, ast.Call):
                continue
            func, args = n.func, [*n.args, *(k.value for k in n.keywords)]
            if isinstance(func, ast.Attribute) and func.attr in WRITERS:
                if _spells_params_file(func.value, names) or any(_is_yaml_dump(x) for a in args for x in ast.walk(a)):
                    lines.add(n.lineno)
            elif _is_yaml_dump(n) and (len(n.args) > 1 or any(k.arg == "stream" for k in n.keywords)):
                lines.add(n.lineno)
            elif isinstance(func, ast.Name) and func.id == "open" and n.args and _spells_params_file(n.args[0], names):
                mode = n.args[1] if len(n.args) > 1 else next((k.value for k in n.keywords if k.arg == "mode"), None)
                if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax"):
                    lines.add(n.lineno)
    source, name = text.splitlines(), path.relative_to(TESTS.parent) if path.is_relative_to(TESTS.parent) else path
    return [f"{name}:{line}: {source[line - 1].strip()}" for line in sorted(lines)]


def test_only_the_builder_writes_params_files():
    others = [p for p in sorted(TESTS.rglob("*.py")) if p != BUILDER]
    assert len(others) > 100  # the walk found the test modules
    assert [hit for p in others for hit in hand_written_params(p)] == [], (
        "build tiny projects and params files with tests/tiny.py (tiny_project, write_params, "
        "write_params_file, edit_params)"
    )


def test_the_check_sees_the_builders_own_writes(tmp_path):
    """Not vacuous: the builder's writer is found, and so are the ways the old builders wrote."""
    assert hand_written_params(BUILDER)
    probe = tmp_path / "probe.py"
    code = (
        "import yaml\n"
        "def a(root, name='params.yaml'):\n    path = root / name\n    path.write_text('x')\n"
        "def b(root, data):\n    (root / 'params.yaml').write_text(yaml.safe_dump(data))\n"
        "def c(p, data):\n    p.write_text(yaml.safe_dump(data))\n"
        "def d(p, data):\n    with open(p, 'w') as f:\n        yaml.safe_dump(data, f)\n"
        "def e(root):\n    with open(root / 'params.yaml', 'a') as f:\n        f.write('x')\n"
        "def f(root):\n    (root / 'out.json').write_text('{}')\n"
    )
    probe.write_text(code)
    assert [int(hit.split(":")[1]) for hit in hand_written_params(probe)] == [4, 6, 8, 11, 13]


def test_a_tiny_project_is_its_recipe_with_the_callers_changes(tmp_path):
    project = tiny_project(tmp_path / "p", train={"steps": 2}, replace={"tracking": {"enabled": False}})
    assert isinstance(project, TinyProject) and project.images == ("img",)
    assert (project.images_dir / "img.png").is_file() and project.results == tmp_path / "p" / "results"
    raw = yaml.safe_load(project.params.read_text())
    assert raw == tiny_params(train={"steps": 2}, replace={"tracking": {"enabled": False}})
    assert raw["train"]["steps"] == 2 and raw["train"]["lr"] == tiny_params()["train"]["lr"]
    edit_params(project.params, sample={"seed": 3}, replace={"model": None})
    raw = yaml.safe_load(project.params.read_text())
    assert raw["sample"]["seed"] == 3 and "model" not in raw and raw["sample"]["steps"] == 5


def test_every_recipe_gives_a_valid_params_file(tmp_path):
    for name, recipe in RECIPES.items():
        project = tiny_project(tmp_path / name, name, images={})
        params = load_params(project.params)
        assert all(params.section(s) is not None for s in SECTIONS), name
        assert "{root}" not in project.params.read_text(), name
        assert (project.root / "workflow" / "Snakefile").is_file() == recipe.workflow, name
