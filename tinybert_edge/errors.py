"""Errors a user can cause.

Every error here carries one message that names the bad value and the fix; the CLI prints it
and exits with status 2 instead of a traceback. Programming errors stay ordinary exceptions.
"""


class KitError(Exception):
    """Base class of the errors the CLI reports as one line and exit status 2."""


class ConfigError(KitError, ValueError):
    """A setting (preset, layer map, option value, path) is invalid."""


class DataError(KitError, ValueError):
    """An input file is missing, empty, malformed or inconsistent with the model."""


class CheckpointError(KitError, RuntimeError):
    """A checkpoint or run directory cannot be resumed from."""


class ModelError(KitError, ValueError):
    """A model directory is missing, unreadable or not of a supported family."""
