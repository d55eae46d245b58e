"""The import layering, in one sentence: core <- libraries <- stages <- benchmark <- studies <- command line.

* core: models, diffusion, data, checkpoint, paths, runtime, artifacts, registry, validation, model_uri,
  config, configdoc, yamlfile, generate, progress, tracking, logged_model, sqlite_store, signals,
  locks, demo -- no knowledge of what uses them;
* libraries: training, applications, evaluation -- import only core (and each other);
* stages: read config, call one library function, write outputs, log;
* benchmark: the one-command benchmark against the published samples (product), runs stages;
* studies: the research tools (time curves, denoise gap, RF study, speed, GPU check), run stages
  and may borrow the benchmark's tables and sheets;
* command line: the ``cli`` package (every argparse parser) and ``__main__``.

A module may import its own layer or lower ones, never a higher one. The test walks every import
statement (module level and inside functions) of ``src/sindiffusion``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sindiffusion"
ORDER = ["core", "library", "stages", "benchmark", "studies", "cli"]
LAYERS = {
    "core": {
        "models",
        "diffusion",
        "data",
        "checkpoint",
        "paths",
        "runtime",
        "artifacts",
        "registry",
        "validation",
        "config",
        "generate",
        "progress",
        "tracking",
        "logged_model",
        "model_uri",
        "sqlite_store",
        "signals",
        "locks",
        "demo",
        "yamlfile",
        "configdoc",
        "",
    },
    "library": {"training", "applications", "evaluation"},
    "stages": {"stages"},
    "benchmark": {"benchmark"},
    "studies": {"studies"},
    "cli": {"cli", "__main__"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    found = [name for name, tops in LAYERS.items() if top in tops]
    assert found, f"{module}: not in any layer; add {top!r} to LAYERS (and to the docstring)"
    return found[0]


def _imports(path: Path, package_dir: Path = PACKAGE) -> list[tuple[str, str]]:
    """``(importing module, imported sindiffusion module)`` for every import in ``path``."""
    rel = path.relative_to(package_dir.parent).with_suffix("")
    module = ".".join(rel.parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    module = module.removesuffix(".__init__")
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        out += [(module, t) for t in targets if t.split(".")[0] == "sindiffusion"]
    return out


def _all_imports() -> list[tuple[str, str]]:
    return [edge for path in sorted(PACKAGE.rglob("*.py")) for edge in _imports(path)]


def test_no_module_imports_a_higher_layer():
    edges = _all_imports()
    assert len(edges) > 100  # the walk found the package's imports
    upward = [
        f"{a} ({_layer(a)}) imports {b} ({_layer(b)})"
        for a, b in edges
        if ORDER.index(_layer(b)) > ORDER.index(_layer(a))
    ]
    assert upward == []


def test_config_imports_no_subsystem():
    """config.py takes choices from core registries only (samplers, schedules, x0 modes, presets, names)."""
    imported = {b for a, b in _all_imports() if a == "sindiffusion.config"}
    assert imported and all(_layer(b) == "core" for b in imported), imported


def test_the_walk_catches_an_upward_import(tmp_path):
    probe = tmp_path / "sindiffusion" / "models" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from ..stages import common\n")
    edges = _imports(probe, tmp_path / "sindiffusion")
    assert edges == [("sindiffusion.models.probe", "sindiffusion.stages")]
    assert ORDER.index(_layer(edges[0][1])) > ORDER.index(_layer(edges[0][0]))


def test_argparse_lives_in_the_cli_package_only():
    """Every parser is in ``sindiffusion.cli``; the libraries, stages, benchmark and studies take plain values."""
    users = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] != "cli"
        and any(
            isinstance(node, (ast.Import, ast.ImportFrom))
            and "argparse" in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module])
            for node in ast.walk(ast.parse(path.read_text()))
        )
    )
    assert users == []


def test_studies_are_used_by_the_command_line_only():
    """The product (core, libraries, stages, benchmark) never imports a study."""
    edges = _all_imports()
    users = {a for a, b in edges if b.startswith("sindiffusion.studies") and _layer(a) not in ("studies", "cli")}
    assert users == set()


def _module_level_edges(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    """``module -> sindiffusion modules it imports at module level`` (not under ``if TYPE_CHECKING``, not in
    a function): the imports that run when the module is first imported. ``from pkg import name`` counts
    as an import of ``pkg.name`` when that is a module."""
    modules = {
        ".".join(p.relative_to(package_dir.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in package_dir.rglob("*.py")
    }
    edges: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        body = list(ast.parse(path.read_text()).body)
        found: set[str] = set()
        while body:
            node = body.pop(0)
            if isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                body += node.body + node.orelse
            elif isinstance(node, ast.Try):
                body += node.body
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                if not node.level:
                    base = node.module or ""
                subs = {f"{base}.{a.name}" for a in node.names} & set(modules)
                found |= subs or {base}
        edges[module] = {t for t in found if t in modules and t != module}
    return edges


def test_no_import_cycle():
    """No two modules import each other at module level, directly or round a longer loop (a cycle dodged
    with an import inside a function counts as none: such imports must say why they are late)."""
    edges = _module_level_edges()
    cycles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target) :] + [module, target]))
            elif target not in state:
                visit(target, [*stack, module] if module not in stack else stack)
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    assert cycles == []


def late_imports(package_dir: Path = PACKAGE) -> list[tuple[str, int, str, str]]:
    """``(file, line, import, reason)`` of every import inside a function: the reason is the ``# why:``
    comment above it, or above the imports right before it (one comment for a block), else ``""``."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        import_lines = {i for n in imports for i in range(n.lineno, n.end_lineno + 1)}
        late = {
            n
            for f in ast.walk(tree)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(f)
            if isinstance(n, (ast.Import, ast.ImportFrom))
        }
        for node in sorted(late, key=lambda n: n.lineno):
            above = node.lineno - 1
            while above in import_lines:
                above -= 1
            comment = lines[above - 1].strip() if above >= 1 else ""
            reason = comment.removeprefix("# why:").strip() if comment.startswith("# why:") else ""
            found.append((str(path.relative_to(package_dir)), node.lineno, lines[node.lineno - 1].strip(), reason))
    return found


def test_every_import_inside_a_function_says_why():
    """An import inside a function is a heavy optional dependency, a plug-in or start-up time, never a
    dodged cycle (test_no_import_cycle); the line above it says which (``# why: ...``)."""
    assert len(late_imports()) > 10  # the walk found them
    assert [f"{f}:{line}: {text}" for f, line, text, reason in late_imports() if not reason] == []


if __name__ == "__main__":  # the list with reasons: python tests/test_layers.py
    for f, line, text, reason in late_imports():
        print(f"{f}:{line}: {text}  # {reason}")
