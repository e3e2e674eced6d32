"""Which layers stay in floating point when a model is quantized to INT8: one answer for every route.

Quantizing an Ultralytics detect head's last layers destroys its class scores (docs/benchmarks.md), so
every INT8 route keeps a set of nodes in float, named here and nowhere else:

- ONNX Runtime and TensorRT's explicit route: the Q/DQ model leaves these nodes unquantized
  (:mod:`edge_daemon.build.quant.qdq`, ``nodes_to_exclude``);
- TensorRT's implicit route: the builder pins the layers of the same names (TensorRT's ONNX parser names
  each layer after its node) to FP16 under ``OBEY_PRECISION_CONSTRAINTS``
  (:mod:`edge_daemon.build.tensorrt.plan`), as Ultralytics' own INT8 export does with the head's output
  convolutions and DFL.

Named sets: "head" = every node of the head (the last /model.N/ block); "head-final" = the head's last
box/class convolutions, its text/contrastive branch, DFL and the decode ops after them, and every task
branch whole: a segment head's mask-coefficient branch (cv4) and prototype network (proto), a pose head's
keypoint branch and keypoint decode, an OBB head's angle branch and its rotation ops, an end-to-end head's
top-k selection (TopK, GatherElements), a classifier's head (the box/class stem convolutions, plain and
one-to-one, are quantized); "head-final+attn" = that plus every attention block (YOLO-World's
text-guided C2fAttn, YOLO11's C2PSA); "none" = quantize everything (naive). A list mixes named sets and
node-name prefixes. "auto" (the measured set, :mod:`edge_daemon.build.quant.search`) resolves to a list
before it gets here.
"""

from __future__ import annotations

import re
from typing import Literal

from edge_daemon.errors import ModelError

ExcludeSet = Literal["head", "head-final", "head-final+attn", "none"]
NAMED_SETS = ("head", "head-final", "head-final+attn", "none")

_HEAD_STEM = re.compile(r"/(one2one_)?cv[23]\.\d+/(one2one_)?cv[23]\.\d+\.[01]/")
_BLOCK = re.compile(r"^/model\.(\d+)/")


def head_prefix(node_names: list[str]) -> str:
    """``/model.N/`` of the detect head: the last numbered block of an Ultralytics export."""
    blocks = [int(m.group(1)) for n in node_names if (m := _BLOCK.match(n))]
    if not blocks:
        raise ModelError(
            "cannot find the detect head: node names are not /model.N/... (not an Ultralytics export?)"
        )
    return f"/model.{max(blocks)}/"


def excluded_nodes(node_names: list[str], which: ExcludeSet | list[str]) -> list[str]:
    """Node names to keep in floating point for a named set, or the explicit list/prefixes given."""
    if isinstance(which, list):  # prefixes and/or named sets, e.g. ["head-final", "/model.12/attn/"]
        named = {w for w in which if w in NAMED_SETS}
        out = {n for w in named for n in excluded_nodes(node_names, w)}  # type: ignore[arg-type]
        prefixes = [p for p in which if p not in named]
        out |= {n for n in node_names if any(n == p or n.startswith(p) for p in prefixes)}
        return [n for n in node_names if n in out]
    if which == "none":
        return []
    head = head_prefix(node_names)
    in_head = [n for n in node_names if n.startswith(head)]
    if which == "head":
        return in_head
    final = [n for n in in_head if not _HEAD_STEM.search(n)]
    if which == "head-final+attn":
        keep = set(final) | {n for n in node_names if "/attn/" in n}
        return [n for n in node_names if n in keep]
    return final
