#!/usr/bin/env python3
"""Copy the TensorRT type stubs of the installed ``tensorrt-stubs`` wheel into ``typings/`` for mypy.

The wheel installs ``tensorrt/__init__.pyi`` without a ``py.typed`` marker, so mypy ignores it in
site-packages; from ``typings/`` (mypy_path in pyproject.toml) it is used. The daemon's TensorRT code is
type-checked against these stubs (the TensorRT 10.13 API); no TensorRT runtime exists on this machine.
"""

from __future__ import annotations

import re
import shutil
import site
import sys
from pathlib import Path


def _split_params(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _repair_def(line: str) -> str:
    """Make a generated ``def`` line valid: no parameter named ``in``; defaults only at the end."""
    match = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not match:
        return line
    params = _split_params(match.group(2))
    seen_default, fixed = False, []
    for raw in params:
        param = re.sub(r"^(\s*)in:", r"\1in_:", raw)
        if "=" in param:
            seen_default = True
        elif seen_default and param.strip() and not param.strip().startswith(("*", "/")):
            param = f"{param} = ..."
        fixed.append(param)
    return match.group(1) + ",".join(fixed) + match.group(3)


def _repair(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    out = [_repair_def(line) for line in lines if not line.startswith("import tensorrt_libs")]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def main() -> int:
    dest = Path("typings")
    for base in [*site.getsitepackages(), site.getusersitepackages()]:
        root = Path(base)
        if (root / "tensorrt_bindings" / "tensorrt.pyi").is_file():
            for pkg in ("tensorrt", "tensorrt_bindings"):
                shutil.rmtree(dest / pkg, ignore_errors=True)
                shutil.copytree(root / pkg, dest / pkg, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
                for stub in (dest / pkg).glob("*.pyi"):
                    _repair(stub)
            print(f"ok      typings/ from {root}")
            return 0
    print("error: tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
