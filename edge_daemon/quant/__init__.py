"""Explicit (Q/DQ) INT8 quantization, its per-device cache, and the fidelity report.

Needs the ``quant`` extra (onnx, for the graph work; pycocotools and matplotlib for the report).
"""
