"""Draw worldsim's module graph: which part imports which, and which parts import Lightning.

Run from the repository root: ``python docs/module_graph.py docs/module-graph.png`` (needs
Graphviz's ``dot`` on the PATH; without it, or with a ``.dot`` path, it writes the DOT source).
Modules are read with ``ast``, not imported, so the graph is of the source as it stands. Parts are
subpackages (``worldsim.data``, ``worldsim.models``, ``worldsim.training``, ``worldsim.evals``,
the ground-truth worlds of ``worldsim.envs``) and top-level modules; the model env
(``worldsim.envs.world_model`` and its context sources) is its own part because it sits above
``WorldModel``, not below.
A solid edge is an import at module level, a dashed one an import inside a function (paid only
when that function runs); imports under ``if TYPE_CHECKING`` are annotations and draw no edge. Parts that import Lightning at module level are filled grey.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"worldsim": ROOT / "worldsim", "worldsim.envs": ROOT / "envs", "worldsim.evals": ROOT / "evals"}
GROUPED = ("worldsim.data", "worldsim.models", "worldsim.training", "worldsim.evals", "worldsim.envs")
#: The model env's modules form their own part: it sits above WorldModel, the worlds below data.
MODEL_ENV = ("worldsim.envs.world_model", "worldsim.envs.contexts")


def modules() -> dict[str, Path]:
    """Every module of the package by its installed dotted name."""
    found: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            if "configs" in path.parts:
                continue
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def part(module: str) -> str:
    """The node a module belongs to."""
    if module in MODEL_ENV:
        return MODEL_ENV[0]
    for group in GROUPED:
        if module == group or module.startswith(group + "."):
            return group
    return ".".join(module.split(".")[:2])


def imports(path: Path, module: str) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import statement of one file."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    typing_only = {
        id(inner)
        for node in tree.body
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: never imported at run time
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.extend((name, id(node) in top_level) for name in names)
    return found


def graph() -> tuple[dict[tuple[str, str], bool], set[str], set[str]]:
    """Edges (importer part, imported part) -> any at module level; all parts; parts importing Lightning."""
    known = modules()
    edges: dict[tuple[str, str], bool] = defaultdict(bool)
    lightning: set[str] = set()
    for module, path in known.items():
        source = part(module)
        for name, eager in imports(path, module):
            if eager and name.split(".")[0] == "lightning":
                lightning.add(source)
            target = next((m for m in (name, name.rsplit(".", 1)[0]) if m in known), None)
            if target is None or part(target) == source:
                continue
            edges[(source, part(target))] |= eager
    return dict(edges), {part(m) for m in known}, lightning


def dot_source() -> str:
    edges, parts, lightning = graph()
    lines = [
        "digraph worldsim {",
        '  rankdir=BT; node [shape=box, fontname="Helvetica", fontsize=11];',
        '  edge [color="#555555", arrowsize=0.6];',
    ]
    for name in sorted(parts):
        label = name.removeprefix("worldsim.") if name != "worldsim" else "worldsim (package)"
        fill = ', style=filled, fillcolor="#cccccc"' if name in lightning else ""
        lines.append(f'  "{name}" [label="{label}"{fill}];')
    for (source, target), eager in sorted(edges.items()):
        style = "" if eager else " [style=dashed]"
        lines.append(f'  "{source}" -> "{target}"{style};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(out: str) -> None:
    source = dot_source()
    path = Path(out)
    if path.suffix == ".dot" or shutil.which("dot") is None:
        path.with_suffix(".dot").write_text(source)
        print(f"wrote {path.with_suffix('.dot')}")
        return
    subprocess.run(["dot", "-Tpng", "-Gdpi=110", "-o", str(path)], input=source.encode(), check=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/module-graph.png")
