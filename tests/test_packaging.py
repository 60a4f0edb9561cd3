from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_browser_file_ships_inside_the_package() -> None:
    # static/ is packaged as hub/static (pyproject's package-dir), so `pip install .` serves
    # the pages too; a file type the patterns miss would be left out of the wheel.
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"hub.static": "static"}
    missing = []
    for path in sorted((ROOT / "static").rglob("*")):
        if path.is_dir():
            continue
        package = ".".join(["hub", *path.parent.relative_to(ROOT).parts])
        patterns = setuptools["package-data"].get(package, [])
        if package not in setuptools["packages"] or not any(
            fnmatch(path.name, p) for p in patterns
        ):
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []
