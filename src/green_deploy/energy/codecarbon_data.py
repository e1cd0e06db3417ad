"""Where CodeCarbon's shipped data tables are, found without importing CodeCarbon.

``importlib.util.find_spec`` on the top-level name locates the package without running its
``__init__`` (which loads pandas, psutil and more); ``importlib.resources.files`` would import it.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path


@cache
def codecarbon_data_dir() -> Path | None:
    """``<site-packages>/codecarbon/data``, or ``None`` when CodeCarbon is not installed."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"
