"""The GPU layer: the only package that imports cuda-python (``cuda.bindings``).

Every CUDA call goes through :func:`edge_daemon.gpu.cuda.check`, which turns a non-success return code
into a :class:`CudaError` naming the call. Buffers and streams are owned objects with an explicit
``close()``; nothing relies on ``__del__``.
"""
