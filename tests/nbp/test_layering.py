"""Imports run one way: bankexport → features → training → serving; nothing imports serving."""

from __future__ import annotations

import ast
from pathlib import Path

from nbp.workspace import CHECKOUT

# stage -> stages it must never import
FORBIDDEN = {
    "bankexport": {"features", "training", "serving"},
    "features": {"training", "serving"},
    "training": {"serving"},
    "nbp": {"features", "training", "serving", "bankexport"},
}
# The CLI wires every stage together; it imports them lazily inside commands.
ALLOWED_FILES = {CHECKOUT / "nbp" / "cli.py"}


def _imported_tops(path: Path) -> set[str]:
    tops: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            tops.add(node.module.split(".")[0])
    return tops


def test_stages_import_only_upstream() -> None:
    bad = []
    for stage, forbidden in FORBIDDEN.items():
        for f in sorted((CHECKOUT / stage).rglob("*.py")):
            if f in ALLOWED_FILES:
                continue
            hit = _imported_tops(f) & forbidden
            if hit:
                bad.append(f"{f.relative_to(CHECKOUT)} imports {sorted(hit)}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import serving.service\nfrom training import model\n", encoding="utf-8")
    assert _imported_tops(f) == {"serving", "training"}
