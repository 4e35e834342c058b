"""Errors a user can fix: each carries one line naming the key, file or value at fault."""


class UnmixError(Exception):
    """Base class: the stages print the message alone, with no traceback, and exit 1."""


class ConfigError(UnmixError):
    """A parameter in params.yaml (or an override) is missing, unknown or ill-typed."""


class DataError(UnmixError):
    """A data source cannot deliver what the parameters ask for."""
