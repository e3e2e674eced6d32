"""Run one provisioning (first-boot build or load) through the TensorRT double in a child process.

Usage: python -m tests.doubles.provision_child CONFIG_YAML. Prints "ready <precision> <plan-count>".
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "doubles"))

from edge_daemon.app import load_model  # noqa: E402
from edge_daemon.config import load_settings  # noqa: E402
from edge_daemon.logs import setup_logging  # noqa: E402
from tests.doubles.hostmem import HostMemory  # noqa: E402


def main() -> int:
    setup_logging("INFO")
    settings = load_settings(sys.argv[1])
    model = load_model(settings, memory=HostMemory())
    sys.stdout.write(f"ready {model.engine.info.precision}\n")
    model.engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
