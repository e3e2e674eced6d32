"""The GPU layer: the only package that imports cuda-python (``cuda.bindings``).

Every CUDA call goes through :func:`edge_daemon.gpu.cuda.check`, which turns a non-success return code
into a :class:`CudaError` naming the call. Buffers and streams are owned objects with an explicit
``close()``; nothing relies on ``__del__``.
"""


def probe(backend: str, device_index: int = 0) -> str | None:
    """Why ``backend`` ("tensorrt", "torch") cannot run on GPU ``device_index`` here, or None if it can.

    Imports nothing that is missing: each absent piece is a reason, never an exception.
    """
    if backend == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "TensorRT is not installed"
    if backend == "torch":
        try:
            import torch
        except ImportError:
            return "PyTorch is not installed"
        if not torch.cuda.is_available():
            return "PyTorch sees no CUDA device"
    try:
        from edge_daemon.gpu import cuda
    except ImportError:
        return "cuda-python is not installed"
    try:
        cuda.device_info(device_index)
    except cuda.CudaError as exc:
        return str(exc)
    return None
