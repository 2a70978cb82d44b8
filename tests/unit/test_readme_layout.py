"""README's Development tree names every module of the package (it is the map users read)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _development_tree() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Development", 1)[1]
    return section.split("```", 2)[1]


def test_the_development_tree_names_every_module() -> None:
    tree = _development_tree()
    blocks: dict[str, str] = {}
    current = ""
    for line in tree.splitlines():
        match = re.match(r"^  (\w+)/\s", line)
        if match:
            current = match.group(1)
        elif re.match(r"^  \S", line):
            current = ""
        if current:
            blocks[current] = blocks.get(current, "") + line + "\n"
    package = ROOT / "infinitic_py"
    missing = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.name == "__init__.py" and len(rel.parts) > 1:
            continue
        if len(rel.parts) == 1:
            if not re.search(rf"\b{re.escape(rel.name)}\b", tree):
                missing.append(str(rel))
        elif not re.search(rf"\b{re.escape(rel.stem)}\b", blocks.get(rel.parts[0], "")):
            missing.append(str(rel))
    assert not missing, f"README Development tree misses {missing}"


def test_make_help_lists_every_target() -> None:
    """`make help` is where a user looks first: every phony target is listed there."""
    import subprocess

    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M)
    assert phony is not None
    shown = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True,
                           timeout=30).stdout
    listed = {m.group(1) for m in re.finditer(r"make ([\w-]+)", shown)}
    missing = sorted(set(phony.group(1).split()) - listed - {"help"})
    assert missing == [], f"make help does not list: {missing}"
