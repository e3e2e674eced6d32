"""Where the INT8 agreement is lost, class by class: AP at IoU 0.5, 0.75 and 0.95 and AP50-95 against FP32,
each class's FP32 boxes and their confidence (median, minimum), for the config's INT8 variant on ``--frames``
frames of its clip (as ``edge-daemon quant-report`` scores it: FP32 at conf >= 0.25 as the reference, INT8 at
conf >= 0.001).

    .venv/bin/python scripts/agreement_by_class.py -c configs/int8-cpu.yaml --frames 795
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge_daemon.build.export import resolve_onnx
from edge_daemon.build.quant.agreement import PREDICTION_CONF, REFERENCE_CONF, _evaluate, box_lists
from edge_daemon.config import load_settings
from edge_daemon.model.info import model_info
from edge_daemon.model.preprocess import preprocess
from edge_daemon.model.tasks import DecodeParams, fit
from edge_daemon.runtime import load_engine
from edge_daemon.tools.quant_report import _frames, _int8_variants, _predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    s = load_settings(args.config)
    fp32_path, sha = resolve_onnx(s.model.path, s.model.imgsz, s.model.cache_dir)
    fp32 = load_engine(s.engine.model_copy(update={"precision": "fp32"}), fp32_path)
    info = model_info(fp32.info.metadata, fp32.info.input_hw, s.model.path, sha, fp32.info.output_shapes)
    inputs = [preprocess(img, fp32.info.input_hw, fit(info.task)) for img in _frames(s, args.frames)]
    ref, _ = _predict(
        fp32, inputs, info.head, DecodeParams(info.num_classes, conf=REFERENCE_CONF, iou=s.detect.iou)
    )
    fp32.close()
    name, artifact, _ = next(iter(_int8_variants(s, fp32_path, sha, False)))
    int8 = load_engine(s.engine.model_copy(update={"precision": "int8"}), artifact)
    params = DecodeParams(info.num_classes, conf=PREDICTION_CONF, iou=s.detect.iou)
    preds, _ = _predict(int8, inputs, info.head, params)
    int8.close()
    images, annotations, results = box_lists(ref, preds)
    ev = _evaluate(images, annotations, results, "bbox")
    precision = ev.eval["precision"]  # [IoU thresholds, recall, categories, area, maxDets]
    print(f"{name}, {len(inputs)} frames:")
    print(
        f"{'class':<16}{'boxes':>7}{'AP50':>7}{'AP75':>7}{'AP95':>7}{'AP50-95':>9}"
        f"{'conf median':>13}{'min':>6}"
    )
    for k, cat in enumerate(ev.params.catIds):
        n = sum(1 for a in annotations if a["category_id"] == cat)
        if not n:
            continue
        aps = [float(np.mean(p[p > -1])) if (p > -1).any() else 0.0 for p in precision[:, :, k, 0, -1]]
        conf = np.concatenate([r.confidence[r.class_id == cat] for r in ref])
        print(
            f"{info.names[cat]:<16}{n:>7}{aps[0]:>7.3f}{aps[5]:>7.3f}{aps[9]:>7.3f}{np.mean(aps):>9.3f}"
            f"{np.median(conf):>13.2f}{conf.min():>6.2f}"
        )


if __name__ == "__main__":
    main()
