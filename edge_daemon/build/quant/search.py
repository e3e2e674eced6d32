"""Which layers stay in float, chosen by measurement: an automatic mixed-precision search.

Quantize everything once (the naive Q/DQ model, one calibration). Any float set is then that model with
the set's nodes wired back to their FP32 inputs and weights (no recalibration: a tensor's scale does not
depend on which other nodes are quantized). On the calibration frames:

1. start: a named float set (``start``, by default ``head-final``: the head's decode tail, which no INT8
   model survives without) is in float from the outset;
2. benefit: per group of the remaining nodes (an Ultralytics block, or one branch of the head or an
   attention block), how much closer to FP32 the output gets when that group alone goes back to float
   from the start (relative L2 of the score and box channels, where FP32 sees something);
3. greedy: groups go back to float in order of benefit, and one stays in float only if the agreement with
   FP32 (COCO mAP50-95, :mod:`edge_daemon.build.quant.agreement`, on every search frame) rises by at least
   ``min_gain`` and the speed (median inference time against FP32's, timed in blocks) stays above the floor;
   it stops at the agreement target, or after a run of groups that were not kept.

The result (the chosen nodes' names) is a float set like the named ones
(:mod:`edge_daemon.build.quant.floatset`): the Q/DQ models and TensorRT's implicit build use it alike.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_daemon.build.quant.agreement import PREDICTION_CONF, REFERENCE_CONF, coco_agreement
from edge_daemon.build.quant.floatset import excluded_nodes
from edge_daemon.model.tasks import DecodeParams
from edge_daemon.model.tasks.detect import decode_one
from edge_daemon.types import Detections, LetterboxMeta

log = logging.getLogger(__name__)


REJECTS_TO_STOP = 8  # groups in a row not kept (speed floor or no gain): the search ends there
REFERENCE_FRAMES = 8  # FP32 frames timed before and after each candidate
WARMUP = 2  # a fresh session's first runs allocate: not timed


@dataclass(frozen=True)
class SearchTargets:
    agreement: float = 0.92  # mAP50-95 against FP32 on the calibration frames
    min_speedup: float = 1.5  # engine speed against FP32; the search stops before going under it
    frames: int = 100  # calibration frames the search evaluates on (benefit: the first 8)
    max_steps: int = 60  # greedy evaluations at most
    start: str = "head-final"  # the named float set the search starts from ("none": the naive model)
    min_gain: float = 0.002  # a group stays in float only if it raises the agreement by this much


def targets_from(config: Any) -> SearchTargets:
    """SearchTargets from a config.SearchConfig."""
    return SearchTargets(
        config.agreement,
        config.min_speedup,
        config.frames,
        start=config.start,
        min_gain=config.min_gain,
    )


@dataclass
class SearchResult:
    float_set: list[str]  # the node names kept in float
    agreement: float
    speedup: float
    steps: list[dict[str, Any]] = field(default_factory=list)
    benefit: dict[str, float] = field(default_factory=dict)
    stopped_by: str = ""  # "target" | "nothing kept lately" | "groups exhausted" | "step limit"
    groups: list[str] = field(default_factory=list)  # the groups chosen, most sensitive first

    def as_dict(self) -> dict[str, Any]:
        return {
            "float_set": self.float_set,
            "groups": self.groups,
            "agreement_map50_95": round(self.agreement, 4),
            "speedup": round(self.speedup, 3),
            "stopped_by": self.stopped_by,
            "steps": self.steps,
            "benefit": {k: round(v, 5) for k, v in self.benefit.items()},
        }


_LEAVES = {"conv", "act", "bn"}  # an Ultralytics Conv module's parts: one unit with its convolution


def group_of(name: str) -> str:
    """The module a node belongs to, at most three levels deep, a Conv module's conv/bn/act as one:
    ``/model.22/cv3.0/cv3.0.2/`` for ``/model.22/cv3.0/cv3.0.2/Conv``, ``/model.2/cv1/`` for
    ``/model.2/cv1/act/Mul``, ``/model.12/attn/`` for ``/model.12/attn/Mul``, ``/model.4/`` for
    ``/model.4/Concat``; ``/`` for nodes outside the model's blocks."""
    parts = name.split("/")[1:-1]
    if not parts or not parts[0].startswith("model."):
        return "/"
    while len(parts) > 1 and parts[-1] in _LEAVES:
        parts = parts[:-1]
    return "/" + "/".join(parts[:3]) + "/"


def restore_float(naive: Any, fp32: Any, keep: set[str]) -> Any:
    """``naive`` (a Q/DQ model) with the nodes named in ``keep`` reading their FP32 inputs and weights
    again; Q/DQ nodes and quantized weights nobody reads any more are dropped. A new ModelProto."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(naive)
    graph = model.graph
    original = {n.name: n for n in fp32.graph.node}
    fp32_inits = {i.name: i for i in fp32.graph.initializer}
    have = {i.name for i in graph.initializer}
    produced = {o for n in graph.node for o in n.output}  # e.g. a DequantizeLinear named like the weight
    producer = {o: n.name for n in fp32.graph.node for o in n.output}
    for node in graph.node:
        src = original.get(node.name)
        if node.name not in keep or src is None or src.op_type != node.op_type:
            continue
        inputs = list(src.input)
        for j, original_name in enumerate(src.input):
            if original_name not in fp32_inits:
                # An activation from a node that stays quantized is read dequantized, as ONNX Runtime's
                # quantizer leaves an excluded node's inputs: the producer's output then feeds only its
                # Q/DQ pair, and its integer kernel fusion survives.
                made_by = producer.get(original_name)
                if made_by is not None and made_by not in keep and j < len(node.input):
                    inputs[j] = node.input[j]
                continue
            name = f"{original_name}__float" if original_name in produced else original_name
            inputs[j] = name
            if name not in have:
                init = onnx.TensorProto()
                init.CopyFrom(fp32_inits[original_name])
                init.name = name
                graph.initializer.append(init)
                have.add(name)
        del node.input[:]
        node.input.extend(inputs)
        _restore_outputs(graph, node, list(src.output))
    _prune(graph)
    return model


def _restore_outputs(graph: Any, node: Any, original: list[str]) -> None:
    """A quantized output is renamed and its original name given to a DequantizeLinear: give the name back
    to the node (the Q/DQ pair after it is left unread and pruned)."""
    for k, name in enumerate(original):
        renamed = node.output[k]
        if renamed == name:
            continue
        for other in [n for n in graph.node if name in n.output]:
            graph.node.remove(other)
        for other in graph.node:
            for j, x in enumerate(other.input):
                if x == renamed:
                    other.input[j] = name
        node.output[k] = name


def _prune(graph: Any) -> None:
    outputs = {o.name for o in graph.output}
    while True:
        used = {x for n in graph.node for x in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {x for n in graph.node for x in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


class _Runner:
    """Runs candidate models on the search frames: outputs, detections and median latency."""

    def __init__(self, frames: list[npt.NDArray[np.float32]], num_classes: int, threads: int | None) -> None:
        self.frames = frames
        self.nc = num_classes
        self.threads = threads
        h, w = frames[0].shape[2:]
        self.meta = LetterboxMeta(w, h, w, h, 1.0, 1.0, 0, 0)
        self.reference: Any = None  # the FP32 session every candidate is timed against

    def session(self, model: Any) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # Worker threads that spin on after a run would slow the next session's runs: the candidate's
        # spinning made FP32 look slower and flattered INT8 by about 0.2x against the report's timing.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.threads:
            opts.intra_op_num_threads = self.threads
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    def outputs(
        self, model: Any, count: int, timed: bool = True
    ) -> tuple[list[npt.NDArray[np.float32]], float]:
        """Outputs on the first ``count`` frames and the speed against FP32: the median per-frame time of
        FP32 on a few frames right before and after, over the candidate's median (its first runs, which
        allocate, untimed). Timed in blocks, not alternating frame by frame."""
        sess = self.session(model)
        name = sess.get_inputs()[0].name
        before = self._times(name, REFERENCE_FRAMES) if timed and self.reference is not None else []
        outs, times = [], []
        for i, x in enumerate(self.frames[:count]):
            started = time.perf_counter()
            outs.append(sess.run(None, {name: x})[0][0])
            if i >= WARMUP or count <= WARMUP:
                times.append(time.perf_counter() - started)
        del sess
        if not before:
            return outs, 1.0
        after = self._times(name, REFERENCE_FRAMES)
        return outs, statistics.median(before + after) / statistics.median(times)

    def _times(self, name: str, count: int) -> list[float]:
        out = []
        for x in self.frames[:count]:
            started = time.perf_counter()
            self.reference.run(None, {name: x})
            out.append(time.perf_counter() - started)
        return out

    def detections(self, outs: list[npt.NDArray[np.float32]], conf: float) -> list[Detections]:
        params = DecodeParams(self.nc, conf=conf, max_det=300)
        return [decode_one(o, self.meta, params) for o in outs]


def _distance(got: npt.NDArray[np.float32], ref: npt.NDArray[np.float32], nc: int) -> float:
    """Relative L2 distance of the score and box channels over the anchors FP32 finds something at."""
    seen = ref[4 : 4 + nc].max(axis=0) > 0.05
    if not seen.any():
        seen[:] = True
    d = 0.0
    for sl in (slice(0, 4), slice(4, 4 + nc)):
        r, g = ref[sl][:, seen], got[sl][:, seen]
        d += float(np.linalg.norm(g - r) / (np.linalg.norm(r) + 1e-9))
    return d


def search(
    fp32: Any,
    naive: Any,
    frames: list[npt.NDArray[np.float32]],
    num_classes: int,
    targets: SearchTargets,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Choose the float set for ``naive`` (the all-quantized Q/DQ model of ``fp32``, both ModelProtos)."""
    say = progress or (lambda text: log.info("%s", text))
    run = _Runner(frames[: targets.frames], num_classes, threads)
    n_eval, n_sens = len(run.frames), min(8, len(run.frames))
    ref_out, _ = run.outputs(fp32, n_eval)
    run.reference = run.session(fp32)
    reference = run.detections(ref_out, REFERENCE_CONF)
    names = {i: str(i) for i in range(num_classes)}
    original = [n.name for n in fp32.graph.node]
    start = set(excluded_nodes(original, targets.start))  # type: ignore[arg-type]
    groups: dict[str, set[str]] = {}
    for name in original:
        if name not in start:
            groups.setdefault(group_of(name), set()).add(name)

    def distance(keep: set[str]) -> float:
        outs, _ = run.outputs(restore_float(naive, fp32, keep), n_sens, timed=False)
        return float(np.mean([_distance(o, r, num_classes) for o, r in zip(outs, ref_out, strict=False)]))

    def evaluate(keep: list[str]) -> tuple[float, float]:
        model = restore_float(naive, fp32, start | {n for g in keep for n in groups[g]})
        outs, speedup = run.outputs(model, n_eval)
        _, m5095, _ = coco_agreement(reference, run.detections(outs, PREDICTION_CONF), names)
        return m5095, speedup

    chosen: list[str] = []
    agreement, speedup = evaluate(chosen)
    steps: list[dict[str, Any]] = [
        {
            "float_groups": 0,
            "start": targets.start,
            "agreement": round(agreement, 4),
            "speedup": round(speedup, 3),
        }
    ]
    say(f"mixed-precision search: start ({targets.start}): agreement {agreement:.3f}, {speedup:.2f}x FP32")
    benefit: dict[str, float] = {}
    if agreement < targets.agreement:  # the start may already be enough: then nothing else is measured
        at_start = distance(start)
        for i, (group, members) in enumerate(sorted(groups.items())):
            benefit[group] = at_start - distance(start | members)
            say(f"mixed-precision search: benefit {i + 1}/{len(groups)}")
    order = sorted(benefit, key=lambda g: -benefit[g])
    stopped = "groups exhausted"
    rejected = 0
    for group in order:
        if agreement >= targets.agreement:
            stopped = "target"
            break
        if len(steps) > targets.max_steps:
            stopped = "step limit"
            break
        if rejected >= REJECTS_TO_STOP:  # the groups left help too little or cost too much
            stopped = "nothing kept lately"
            break
        a, s = evaluate([*chosen, group])
        if s < targets.min_speedup:
            verdict = "skipped (speed floor)"
        elif a < agreement + targets.min_gain:
            verdict = "skipped (no gain)"
        else:
            verdict = "added"
        kept = verdict == "added"
        steps.append(
            {
                "float_groups": len(chosen) + kept,
                verdict: group,
                "agreement": round(a, 4),
                "speedup": round(s, 3),
            }
        )
        say(f"mixed-precision search: {group} in float: agreement {a:.3f}, {s:.2f}x FP32: {verdict}")
        if kept:
            chosen, agreement, speedup = [*chosen, group], a, s
        rejected = 0 if kept else rejected + 1
    else:
        if agreement >= targets.agreement:
            stopped = "target"
    log.info(
        "mixed-precision search: %s and %d groups kept in float, agreement %.3f, %.2fx FP32 (stopped by %s)",
        targets.start,
        len(chosen),
        agreement,
        speedup,
        stopped,
    )
    nodes = sorted(start | {n for g in chosen for n in groups[g]})  # exact members: a group is not a prefix
    return SearchResult(nodes, agreement, speedup, steps, benefit, stopped, chosen)
