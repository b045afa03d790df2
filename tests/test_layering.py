"""Lower layers never import higher ones (see ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pdesurrogates"
RANK = {
    "physics": 0, "linalg": 0, "data": 1, "nn": 2, "models": 2, "losses": 2,
    "solvers": 3, "train": 4, "bench": 5, "commands": 6, "cli": 6,
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                parts = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                base = ".".join(parts)
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.add(node.module)
    return {n for n in names if n.startswith("pdesurrogates.")}


FILES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem == "cli")


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PACKAGE)) for p in FILES])
def test_no_upward_imports(path: Path) -> None:
    layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    own = RANK[layer]
    bad = [n for n in _imports(path) if RANK.get(n.split(".")[1], -1) > own]
    assert not bad, f"{path.relative_to(PACKAGE)} (layer {layer}) imports higher layers: {bad}"


def test_physics_and_linalg_import_no_torch_nn_models() -> None:
    for low in ("physics", "linalg"):
        for path in (PACKAGE / low).rglob("*.py"):
            text = path.read_text()
            assert "torch.nn.Module" not in text and "nn.Module)" not in text, path
