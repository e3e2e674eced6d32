"""The command line: one module per command; :func:`main` is the ``edge-daemon`` entry point."""

from edge_daemon.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
