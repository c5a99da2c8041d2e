"""Errors raised by obdtool's own layer (decoders, workflows, configuration).

The tree, so that the CLI can turn every one of them into one line for the technician::

    ObdToolError
    ├── DecodeError          bytes from the car that do not fit the layout they claim
    ├── ConfigError          a configuration file or value that cannot be used
    ├── UsageError           a command asked for something that cannot be done as asked
    ├── ConsentRequiredError a non-interactive run that did not say whether the owner refuses OBFCM
    └── WorkflowError        a workshop job that could not be completed (clear refused, ...)

The adapter layer (``adapters.errors.AdapterError``) and the upload layer (``upload.errors.UploadError``)
have roots of their own because they must not import obdtool.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConsentRequiredError",
    "DecodeError",
    "ObdToolError",
    "UsageError",
    "WorkflowError",
]


class ObdToolError(Exception):
    """Root of obdtool's own errors; ``str(err)`` is a sentence a technician can act on."""


class DecodeError(ObdToolError, ValueError):
    """A response does not fit the layout of the service or PID it answers."""


class ConfigError(ObdToolError):
    """A configuration file or value is unusable; the message names the file and the key."""


class UsageError(ObdToolError):
    """The command line asked for something that cannot be done as asked."""


class ConsentRequiredError(UsageError):
    """OBFCM was about to be read, but nobody said whether the vehicle owner refuses."""


class WorkflowError(ObdToolError):
    """A workshop job (scan, clear, upload) could not be completed as asked."""
