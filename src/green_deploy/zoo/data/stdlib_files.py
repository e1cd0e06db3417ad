"""The CPython standard library's own ``.py`` files: the shared source of the two stdlib datasets.

Tests, IDLE, lib2to3, turtledemo and site-packages are left out (tests quote other modules and
are not library code). So are the build-specific files (``_sysconfigdata_*.py``,
``config-*/``), which record paths of the machine that built Python and differ between builds of
one version.
"""

from __future__ import annotations

import os
from pathlib import Path

EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idlelib", "lib2to3", "site-packages", "__pycache__", "turtledemo"}
)


def stdlib_python_files(root_path: Path) -> list[str]:
    """Relative POSIX paths of the standard library's ``.py`` files, sorted."""
    paths = []
    for directory, subdirs, names in os.walk(root_path):
        subdirs[:] = sorted(d for d in subdirs if d not in EXCLUDED_DIRS and not d.startswith("config-"))
        rel_dir = Path(directory).relative_to(root_path)
        for name in names:
            path = Path(directory) / name
            if (
                name.endswith(".py")
                and not name.startswith("_sysconfigdata")
                and path.is_file()
                and not path.is_symlink()
            ):
                paths.append((rel_dir / name).as_posix())
    return sorted(paths)
