"""Reading YAML that a user wrote (params files, ``--set`` values) with limits PyYAML lacks.

``yaml.safe_load`` runs no code, but it still accepts

* an alias bomb (``a: &a [x, x, ...]``, ``b: &b [*a, *a, ...]``, ...): a few hundred bytes that
  expand to billions of values once anything walks the result (the config engine does: 29 s,
  6 GB, then a bare ``MemoryError``);
* the same key twice in one mapping, silently keeping the last value.

:func:`load_yaml` refuses both (and files over :data:`MAX_BYTES`) with a :class:`YamlError` that
names the file, the key or the line and what is allowed. Standard library + PyYAML only.
"""

from __future__ import annotations

from typing import Any

import yaml

#: Largest YAML text read (a params file is a few kB).
MAX_BYTES = 4 << 20
#: Most values (scalars, lists, mappings) a document may expand to, counting every alias's
#: target again each time it is used (what a consumer that walks the result visits).
MAX_VALUES = 200_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(ValueError):
    """YAML refused; the message names the file (or ``--set`` value) and what is wrong."""


def load_yaml(text: str, where: str) -> Any:
    """Parse ``text`` like ``yaml.safe_load`` (``None`` for an empty document); ``where`` names it
    in errors. Raises :class:`YamlError` for invalid YAML, a text over :data:`MAX_BYTES`, a
    document expanding to more than :data:`MAX_VALUES` values, or a key repeated in a mapping."""
    if len(text) > MAX_BYTES:
        raise YamlError(f"{where}: {len(text)} bytes is too large for a YAML settings file (at most {MAX_BYTES})")
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as err:
            raise YamlError(f"{where}: invalid YAML: {err}") from err
        if node is None:
            return None
        _check_size(node, where)
        _check_duplicate_keys(node, where)
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as err:
            raise YamlError(f"{where}: invalid YAML: {err}") from err
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    """The nodes directly inside ``node`` (keys and values of a mapping)."""
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_size(root: yaml.Node, where: str) -> None:
    """Refuse a document whose expansion (aliases counted each time) exceeds :data:`MAX_VALUES`.

    Aliases make the node graph a DAG sharing nodes; sizes are memoised per node, so checking
    costs the number of distinct nodes, not the expansion. A cycle (``&a [*a]``) is refused too.
    """
    sizes: dict[int, int] = {}
    # iterative post-order walk: a deep document must not hit Python's recursion limit
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        if id(node) in sizes and not done:
            continue
        if done:
            on_path.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[id(node)] > MAX_VALUES:
                line = node.start_mark.line + 1
                raise YamlError(
                    f"{where}: line {line}: YAML aliases expand to more than {MAX_VALUES} values "
                    "(an alias bomb?); write the values out or use fewer aliases"
                )
            continue
        if id(node) in on_path:
            raise YamlError(f"{where}: line {node.start_mark.line + 1}: a YAML alias refers to itself")
        on_path.add(id(node))
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise YamlError(f"{where}: line {child.start_mark.line + 1}: a YAML alias refers to itself")
            if id(child) not in sizes:
                stack.append((child, False))


def _check_duplicate_keys(root: yaml.Node, where: str) -> None:
    """Refuse a key written twice in one mapping (PyYAML keeps the last one without a word).

    ``<<`` merge keys may repeat, and keys a merge brings in may be overridden: that is YAML's rule.
    """
    seen_nodes: set[int] = set()
    stack = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                if key.tag != _MERGE_TAG and isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if (key.tag, name) in keys:
                        full = f"{path}.{name}" if path else name
                        raise YamlError(
                            f"{where}: line {line}: key {full!r} is repeated (first on line "
                            f"{keys[key.tag, name]}); write each key once"
                        )
                    keys[key.tag, name] = line
                stack.append((value, f"{path}.{name}" if path else name))
        else:
            stack += [(child, f"{path}[{i}]") for i, child in enumerate(_children(node))]
