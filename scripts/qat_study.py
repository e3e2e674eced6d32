"""Distillation QAT study: can fine-tuning the INT8 model against FP32 lift the agreement past post-training
quantization? (#11; a study, not a daemon feature.)

The config's ``.pt`` model in torch (Ultralytics, fused, the export's output head), quantized by NNCF's
torch backend (MIXED preset, the same calibration frames as ``int8_study.py``, the head's final layers in
float: ``head-final``'s torch counterpart, every op of the head but its box/class stem convolutions), then
fine-tuned for ``--epochs`` on those frames with FP32's own outputs as the teacher (no labels): relative L2
of the box and class channels over the anchors FP32 sees something at (the study's output distance, as a
loss) plus binary cross-entropy of every class score. Weights and quantizer ranges learn; Adam, cosine
schedule. The model before and after fine-tuning is converted to OpenVINO IR (FakeQuantize: INT8 on the
CPU) and scored on the study's evaluation frames like ``int8_study.py openvino``.

    .venv/bin/python scripts/qat_study.py -c configs/int8-cpu.yaml --epochs 3 --lr 1e-5
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from int8_study import CALIB_FRAMES, Study, ov_evaluate


def torch_model(pt: Path) -> Any:
    """The Ultralytics model as its ONNX export computes: fused, FP32, the head's decoded output."""
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from ultralytics import YOLO
    from ultralytics.nn.modules import Detect

    model = YOLO(str(pt)).model.float().eval().fuse()
    for m in model.modules():
        if isinstance(m, Detect):  # anchors made on every call, so NNCF sees them while it calibrates
            m.dynamic, m.export, m.format = True, True, "onnx"
    return model


def head_final_scope(pt: Path, example: Any) -> list[str]:
    """NNCF graph nodes of the head (the last ``model.N``) but its stem convolutions and their SiLUs."""
    from nncf.torch.function_hook import wrap_model
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    names = [n.node_name for n in build_nncf_graph(wrap_model(torch_model(pt)), example).get_all_nodes()]
    head = max(int(m.group(1)) for n in names if (m := re.match(r"model\.(\d+)\.", n)))
    first = next(i for i, n in enumerate(names) if n.startswith(f"model.{head}."))
    stem = re.compile(r"^[01]/(conv/conv2d|act/silu)/\d+$")  # cv2.i.0/1, cv3.i.0/1 (a ModuleList index)
    return [n for n in names[first:] if not n.startswith("model.") and not stem.match(n)]


def distill_loss(student: Any, teacher: Any, nc: int) -> Any:
    import torch

    t_cls, s_cls = teacher[0, 4 : 4 + nc], student[0, 4 : 4 + nc]
    seen = t_cls.max(0).values > 0.05
    t_box, s_box = teacher[0, :4, seen], student[0, :4, seen]
    box = (s_box - t_box).norm() / (t_box.norm() + 1e-9)
    cls = (s_cls[:, seen] - t_cls[:, seen]).norm() / (t_cls[:, seen].norm() + 1e-9)
    bce = torch.nn.functional.binary_cross_entropy(s_cls.clamp(1e-6, 1 - 1e-6), t_cls)
    return box + cls + 10 * bce


def main() -> None:
    import nncf
    import openvino as ov
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=300, help="evaluation frames")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--out", type=Path, default=Path(".cache/int8-study"))
    args = ap.parse_args()
    torch.manual_seed(0)
    study = Study(args.config, args.frames, args.out)
    pt, nc, rng = study.settings.model.path, study.info.num_classes, np.random.default_rng(0)
    calib = [torch.from_numpy(b) for b in study.batches[:CALIB_FRAMES]]
    _, f32_s = ov_evaluate(study, ov.Core().read_model(str(study.fp32_path)), "f32", "openvino f32", rng)

    started = time.perf_counter()
    ignored = nncf.IgnoredScope(names=head_final_scope(pt, calib[0]), validate=False)
    student = nncf.quantize(torch_model(pt), nncf.Dataset(calib), preset=nncf.QuantizationPreset.MIXED,
                            subset_size=len(calib), ignored_scope=ignored)  # fmt: skip
    print(f"NNCF torch PTQ: {time.perf_counter() - started:.0f} s", flush=True)
    with torch.no_grad():
        _, s = ov_evaluate(study, ov.convert_model(student, example_input=calib[0]), "f32", "torch ptq", rng)
    print(f"   {f32_s / s:.2f}x OpenVINO f32", flush=True)

    with torch.no_grad():
        teacher = torch_model(pt)
        targets = [teacher(x) for x in calib]
    params = [p for p in student.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * len(calib))
    for epoch in range(args.epochs):
        losses = []
        for i in torch.randperm(len(calib)).tolist():
            loss = distill_loss(student(calib[i]), targets[i], nc)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        print(
            f"epoch {epoch}: loss {np.mean(losses):.4f} ({time.perf_counter() - started:.0f} s)", flush=True
        )
    with torch.no_grad():
        model = ov.convert_model(student, example_input=calib[0])
    _, s = ov_evaluate(study, model, "f32", f"qat e{args.epochs} lr{args.lr:g}", rng)
    print(f"   {f32_s / s:.2f}x OpenVINO f32", flush=True)


if __name__ == "__main__":
    main()
