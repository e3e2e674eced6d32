"""The TensorRT runtime: load a ready plan and run it with the named-tensor API.

Importing this package imports nothing from TensorRT; :mod:`.engine` does, and only when the TensorRT
backend is chosen. Building plans is :mod:`edge_daemon.build.tensorrt`.
"""
