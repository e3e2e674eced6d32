"""Agreement of INT8 detections with FP32's: COCO mAP with FP32 predictions as the reference.

No labeled data set exists for a product's cameras, so FP32 detections (conf >= 0.25) are the
pseudo-labels and INT8 detections (conf >= 0.001, as for validation) are scored against them with
pycocotools' COCOeval. Used by the mixed-precision search and by ``edge-daemon quant-report``. Beside
the boxes: a pose model's keypoints by OKS (COCOeval ``keypoints``; the reference's keypoints with a
visibility of 0.5 or more are the labelled ones) and a segmentation model's masks (COCOeval ``segm``,
the outlines rasterised as COCO RLE).
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


def box_lists(
    reference: list[Detections], predicted: list[Detections]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """COCO's (images, annotations, results) for boxes: ``reference`` as the annotations, ``predicted``
    as the scored results, frame by frame."""
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
    return images, annotations, results


def coco_agreement(
    reference: list[Detections], predicted: list[Detections], names: dict[int, str]
) -> tuple[float, float, dict[str, float]]:
    """(mAP50, mAP50-95, per-class AP50-95) of ``predicted`` against ``reference`` (pycocotools COCOeval)."""
    images, annotations, results = box_lists(reference, predicted)
    if not annotations:
        raise ModelError("agreement: FP32 found nothing on these frames; nothing to compare against")
    ev = _evaluate(images, annotations, results, "bbox")
    if ev is None:
        return 0.0, 0.0, {}
    precision = ev.eval["precision"]  # [IoU thresholds, recall, categories, area, maxDets]
    present = {a["category_id"] for a in annotations}
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        if cat not in present:
            continue
        p = precision[:, :, k, 0, -1]
        per_class[names.get(cat, str(cat))] = float(np.mean(p[p > -1])) if (p > -1).any() else 0.0
    return float(ev.stats[1]), float(ev.stats[0]), per_class


def reference_boxes(reference: list[Detections], names: dict[int, str]) -> dict[str, int]:
    """FP32 boxes per class over the frames: how much each class's AP in the class average rests on."""
    ids, counts = np.unique(
        np.concatenate([d.class_id for d in reference] or [np.zeros(0, int)]), return_counts=True
    )
    return {names.get(int(c), str(int(c))): int(n) for c, n in zip(ids, counts, strict=True)}


def by_boxes(per_class: dict[str, float], boxes: dict[str, int]) -> float:
    """Per-class AP weighted by each class's FP32 boxes (the class average weighs a class of one box as
    much as one of thousands)."""
    total = sum(boxes.get(c, 0) for c in per_class)
    return sum(ap * boxes.get(c, 0) for c, ap in per_class.items()) / total if total else 0.0


def _evaluate(
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    results: list[dict[str, Any]],
    iou_type: str,
    sigmas: np.ndarray | None = None,
) -> Any:
    """COCOeval of ``results`` against ``annotations``, evaluated and summarised; None without results."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cats = sorted({a["category_id"] for a in annotations} | {r["category_id"] for r in results})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in cats]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not results:
            return None
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


# COCO's per-keypoint OKS constants (pycocotools' defaults) for 17-keypoint models; others get 0.05 each.
COCO_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)


def keypoint_agreement(reference: list[Detections], predicted: list[Detections]) -> float:
    """OKS mAP50-95 of ``predicted`` keypoints against ``reference``'s (pose models)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    k = 0
    for i, (ref, pred) in enumerate(zip(reference, predicted, strict=True)):
        images.append({"id": i})
        if ref.keypoints is None or pred.keypoints is None:
            raise ModelError("keypoint agreement needs a pose model's keypoints")
        k = ref.keypoints.shape[1]
        for box, cls, kpts in zip(ref.xyxy.tolist(), ref.class_id.tolist(), ref.keypoints, strict=True):
            seen = kpts[:, 2] >= 0.5 if kpts.shape[1] == 3 else np.ones(len(kpts), bool)
            flat = np.column_stack([kpts[:, :2], np.where(seen, 2, 0)]).reshape(-1).tolist()
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": cls,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "keypoints": flat,
                    "num_keypoints": int(seen.sum()),
                }
            )
        for box, cls, conf, kpts in zip(
            pred.xyxy.tolist(), pred.class_id.tolist(), pred.confidence.tolist(), pred.keypoints, strict=True
        ):
            score = kpts[:, 2] if kpts.shape[1] == 3 else np.ones(len(kpts))
            flat = np.column_stack([kpts[:, :2], score]).reshape(-1).tolist()
            results.append(
                {"image_id": i, "category_id": cls, "keypoints": flat, "score": conf, "bbox": _xywh(box)}
            )
    if not annotations:
        raise ModelError("agreement: FP32 found nothing on these frames; nothing to compare against")
    sigmas = COCO_SIGMAS if k == 17 else np.full(k, 0.05)
    ev = _evaluate(images, annotations, results, "keypoints", sigmas)
    return 0.0 if ev is None else float(ev.stats[0])


def mask_agreement(
    reference: list[Detections], predicted: list[Detections], sizes: list[tuple[int, int]]
) -> float:
    """Mask mAP50-95 of ``predicted`` outlines against ``reference``'s (segmentation models); ``sizes``
    are the frames' (height, width)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i, (ref, pred, (h, w)) in enumerate(zip(reference, predicted, sizes, strict=True)):
        images.append({"id": i, "height": h, "width": w})
        if ref.polygons is None or pred.polygons is None:
            raise ModelError("mask agreement needs a segmentation model's outlines")
        for box, cls, outline in zip(ref.xyxy.tolist(), ref.class_id.tolist(), ref.polygons, strict=True):
            rle = _rle(outline, h, w)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": cls,
                    "bbox": _xywh(box),
                    "area": float(_area(rle)),
                    "iscrowd": 0,
                    "segmentation": rle,
                }
            )
        for cls, conf, outline in zip(
            pred.class_id.tolist(), pred.confidence.tolist(), pred.polygons, strict=True
        ):
            results.append(
                {"image_id": i, "category_id": cls, "segmentation": _rle(outline, h, w), "score": conf}
            )
    if not annotations:
        raise ModelError("agreement: FP32 found nothing on these frames; nothing to compare against")
    ev = _evaluate(images, annotations, results, "segm")
    return 0.0 if ev is None else float(ev.stats[0])


def _xywh(box: list[float]) -> list[float]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def _rle(outline: tuple[np.ndarray, ...], h: int, w: int) -> dict[str, Any]:
    """Outlines (frame pixels) -> one COCO RLE of the area they enclose (pycocotools)."""
    from pycocotools import mask as mask_utils

    polys = [p.reshape(-1).astype(np.float64).tolist() for p in outline if len(p) >= 3]
    if not polys:
        return dict(mask_utils.encode(np.zeros((h, w), np.uint8, order="F")))
    return dict(mask_utils.merge(mask_utils.frPyObjects(polys, h, w)))


def _area(rle: dict[str, Any]) -> float:
    from pycocotools import mask as mask_utils

    return float(mask_utils.area(rle))
