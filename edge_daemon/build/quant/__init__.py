"""Explicit (Q/DQ) INT8 quantization and its per-device cache.

Needs the ``quant`` extra (onnx). The fidelity report that scores it is ``edge_daemon.tools.quant_report``.
"""
