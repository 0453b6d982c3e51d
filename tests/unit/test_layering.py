"""The package layering of docs/ARCHITECTURE.md ("Packages"), enforced on the source tree.

The checker reads import statements with `ast` (nothing is imported), so a module that is never loaded by a test
is still checked. A deliberately broken tree proves the checker itself can fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCESS_PACKAGES = ("extproc", "admin_flask", "scheduler", "mcp_server")
TOOLS = ("bench", "tests")


@dataclass(frozen=True)
class Rule:
    """Modules under `source` (dotted prefix) must not import anything under `forbidden` unless it is also under
    `allowed`; the modules under `exempt` are excused."""

    source: str
    forbidden: tuple[str, ...]
    why: str
    exempt: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()


RULES = (
    Rule("pooler", (*PROCESS_PACKAGES, *TOOLS), "the core never imports a process package or a tool"),
    *(
        Rule(p, tuple(o for o in (*PROCESS_PACKAGES, *TOOLS) if o != p), "process packages share only the core")
        for p in PROCESS_PACKAGES
    ),
    Rule(
        "pooler",
        ("pooler.simulator",),
        "the simulator is a test and demo tool: only the CLI and the demo start it",
        exempt=("pooler.simulator", "pooler.cli.simulator", "pooler.demo"),
    ),
    Rule(
        "pooler.simulator",
        ("pooler",),
        "the simulator stands in for the upstream and knows nothing of the gateway",
        # `python -m pooler.simulator` reuses the CLI's argument parser.
        exempt=("pooler.simulator.__main__",),
        allowed=("pooler.simulator",),
    ),
)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute dotted name) of every import in the file, relative imports resolved."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def violations(root: Path, rules: tuple[Rule, ...] = RULES) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if any(part in {".venv", "var", "node_modules"} or part.startswith(".") for part in path.parts):
            continue
        module = module_name(root, path)
        for rule in rules:
            if not _under(module, rule.source) or any(_under(module, e) for e in rule.exempt):
                continue
            for line, name in imported_names(module, path):
                hit = next((f for f in rule.forbidden if _under(name, f)), None)
                if hit is not None and not any(_under(name, a) for a in rule.allowed):
                    found.append(f"{path.relative_to(root)}:{line}: {module} imports {name} ({rule.why})")
    return found


def test_the_tree_keeps_its_layers() -> None:
    assert violations(REPO_ROOT) == []


def test_a_deliberate_violation_is_caught(tmp_path: Path) -> None:
    (tmp_path / "pooler" / "simulator").mkdir(parents=True)
    (tmp_path / "pooler" / "__init__.py").write_text("")
    (tmp_path / "pooler" / "policy.py").write_text("from extproc.state import Snapshot\nimport pooler.simulator\n")
    (tmp_path / "pooler" / "simulator" / "__init__.py").write_text("from ..policy import pick\n")
    (tmp_path / "extproc").mkdir()
    (tmp_path / "extproc" / "__init__.py").write_text("")
    (tmp_path / "extproc" / "views.py").write_text("from admin_flask import app\nfrom pooler import policy\n")
    found = violations(tmp_path)
    assert [f.split(": ", 1)[0] for f in found] == [
        "extproc/views.py:1",
        "pooler/policy.py:1",
        "pooler/policy.py:2",
        "pooler/simulator/__init__.py:1",
    ]
    assert "pooler.simulator imports pooler.policy.pick" in found[-1]
