"""The daemon's exception hierarchy. Every error a user can cause is an EdgeError with a clear message.

Each class carries the sysexits(3) code the CLI exits with, so systemd units can tell a bad
config (no restart helps) from a transient failure (restart).
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error the daemon raises on purpose."""

    exit_code = 70  # EX_SOFTWARE


class ConfigError(EdgeError):
    """The configuration is invalid. ``problems`` holds one human-readable line per problem."""

    exit_code = 78  # EX_CONFIG

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class ModelError(EdgeError):
    """The model file cannot be used: unreadable, wrong layout, or export failed."""

    exit_code = 65  # EX_DATAERR


class CameraError(EdgeError):
    """A camera could not be opened or stopped delivering frames."""

    exit_code = 69  # EX_UNAVAILABLE


class EngineError(EdgeError):
    """The inference backend failed to load or to run."""

    exit_code = 70


class PublishError(EdgeError):
    """The publisher could not be set up (bad TLS files, unreachable broker at start, ...)."""

    exit_code = 69
