"""Errors raised by the upload layer (records, outbox, credentials, delivery).

``str(err)`` is always one plain sentence a technician can act on; it never contains the API token. The tree::

    UploadError
    ├── RecordInvalidError      a record does not match record-v1.schema.json (carries path and reason)
    ├── OutboxError             the local outbox cannot be used as asked
    │   ├── OutboxCorruptError  the outbox file is damaged or not an outbox; it is left untouched
    │   ├── OutboxWriteError    the outbox could not be written (disk full, read-only); nothing was saved
    │   └── RecordNotFoundError no record with that id is in the outbox
    ├── InsecureEndpointError   the endpoint URL is unusable or not secure (plain http off this computer)
    ├── CredentialError         no token stored, or the operating system has no usable keyring
    ├── TlsError                the server's certificate does not verify (never retried)
    ├── UploadRetryableError    the network or server failed temporarily and retries ran out
    ├── UploadRejectedError     the server refused the record (4xx); carries the server's message
    └── UploadAuthError         the server refused the token (401/403)

This root is separate from ``obdtool.errors.ObdToolError`` on purpose: ``upload`` never imports ``obdtool``.
"""

from __future__ import annotations

__all__ = [
    "CredentialError",
    "InsecureEndpointError",
    "OutboxCorruptError",
    "OutboxError",
    "OutboxWriteError",
    "RecordInvalidError",
    "RecordNotFoundError",
    "TlsError",
    "UploadAuthError",
    "UploadError",
    "UploadRejectedError",
    "UploadRetryableError",
]


class UploadError(Exception):
    """Root of the upload layer's errors; the message is one sentence a technician understands."""


class RecordInvalidError(UploadError, ValueError):
    """A record does not match the record schema.

    :ivar path: JSON path of the offending value, e.g. ``$.vehicle.customer_name``.
    :ivar reason: why the value is not accepted.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"The record is not valid at {path}: {reason}.")


class OutboxError(UploadError):
    """The local outbox (the SQLite file of records waiting for upload) cannot be used as asked."""


class OutboxCorruptError(OutboxError):
    """The outbox file is damaged or is not an obdtool outbox; it has been left exactly as it was."""


class OutboxWriteError(OutboxError, OSError):
    """The outbox could not be written (disk full, read-only folder, ...): the record was NOT saved."""


class RecordNotFoundError(OutboxError, LookupError):
    """No record with the requested id is in the outbox."""


class InsecureEndpointError(UploadError, ValueError):
    """The endpoint URL is malformed or would send data without TLS to another computer."""


class CredentialError(UploadError):
    """No API token is stored for the endpoint, or the operating system offers no usable keyring."""


class TlsError(UploadError):
    """The TLS connection could not be set up safely (certificate does not verify, bad CA file)."""


class UploadRetryableError(UploadError):
    """A temporary failure (timeout, connection lost, 429, 5xx) persisted after every retry.

    :ivar attempts: how many HTTP requests were made.
    :ivar status: the last HTTP status seen, or ``None`` when no response arrived.
    """

    def __init__(self, message: str, *, attempts: int = 0, status: int | None = None) -> None:
        self.attempts = attempts
        self.status = status
        super().__init__(message)


class UploadRejectedError(UploadError):
    """The server refused the record for good (a 4xx other than 401/403); retrying will not help.

    :ivar status: the HTTP status code.
    :ivar server_message: the server's explanation, truncated.
    """

    def __init__(self, message: str, *, status: int, server_message: str) -> None:
        self.status = status
        self.server_message = server_message
        super().__init__(message)


class UploadAuthError(UploadError):
    """The server refused the API token (401) or does not allow it to upload (403).

    :ivar status: the HTTP status code.
    """

    def __init__(self, message: str, *, status: int) -> None:
        self.status = status
        super().__init__(message)
