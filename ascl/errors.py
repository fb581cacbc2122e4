"""Exceptions raised by the library. Each docstring is the default message."""

from __future__ import annotations


class AsclError(Exception):
    """ASCL library error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(AsclError, ValueError):
    """Invalid experiment configuration."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.problem = message
        super().__init__(f"{field}: {message}")

    def within(self, section: str) -> ConfigError:
        """The same error with its field path prefixed by the enclosing section."""
        return ConfigError(f"{section}.{self.field}", self.problem)


class DataNotFoundError(AsclError):
    """Dataset files were not found in the data directory."""


class NonFiniteLossError(AsclError):
    """The training loss became NaN or infinite."""


class CheckpointError(AsclError):
    """The checkpoint cannot be used."""
