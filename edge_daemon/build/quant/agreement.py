"""Agreement of INT8 detections with FP32's: COCO mAP with FP32 predictions as the reference.

No labeled data set exists for a product's cameras, so FP32 detections (conf >= 0.25) are the
pseudo-labels and INT8 detections (conf >= 0.001, as for validation) are scored against them with
pycocotools' COCOeval. Used by the mixed-precision search and by ``edge-daemon quant-report``.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from edge_daemon.errors import ModelError
from edge_daemon.types import Detections

REFERENCE_CONF = 0.25
PREDICTION_CONF = 0.001


def coco_agreement(
    reference: list[Detections], predicted: list[Detections], names: dict[int, str]
) -> tuple[float, float, dict[str, float]]:
    """(mAP50, mAP50-95, per-class AP50-95) of ``predicted`` against ``reference`` (pycocotools COCOeval)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i, (ref, pred) in enumerate(zip(reference, predicted, strict=True)):
        images.append({"id": i})
        for (x1, y1, x2, y2), cls in zip(ref.xyxy.tolist(), ref.class_id.tolist(), strict=True):
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": cls,
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for (x1, y1, x2, y2), cls, conf in zip(
            pred.xyxy.tolist(), pred.class_id.tolist(), pred.confidence.tolist(), strict=True
        ):
            results.append(
                {"image_id": i, "category_id": cls, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": conf}
            )
    if not annotations:
        raise ModelError("agreement: FP32 found nothing on these frames; nothing to compare against")
    cats = sorted({a["category_id"] for a in annotations} | {r["category_id"] for r in results})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in cats]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not results:
            return 0.0, 0.0, {}
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [IoU thresholds, recall, categories, area, maxDets]
    present = {a["category_id"] for a in annotations}
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        if cat not in present:
            continue
        p = precision[:, :, k, 0, -1]
        per_class[names.get(cat, str(cat))] = float(np.mean(p[p > -1])) if (p > -1).any() else 0.0
    return float(ev.stats[1]), float(ev.stats[0]), per_class
