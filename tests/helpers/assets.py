"""Where the test assets are (scripts/fetch_assets.py puts them in .assets/; the GPU machine gets them in
.gpuassets/ or $EDGE_ASSETS_DIR), for the self-contained GPU tests that run without the conftest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def find_asset(name: str) -> Path:
    """The asset's path, or skip the test that asked for it."""
    for folder in (os.environ.get("EDGE_ASSETS_DIR", ""), ROOT / ".assets", ROOT / ".gpuassets"):
        if folder and (Path(folder) / name).is_file():
            return Path(folder) / name
    pytest.skip(f"{name} not found (run scripts/fetch_assets.py)")
