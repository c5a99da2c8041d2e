"""Delivering records to the manufacturer's endpoint over HTTPS.

:class:`UploadClient` sends one record per ``POST {endpoint}/v1/records`` with the record id as
``Idempotency-Key``, so a retry after a lost answer can never create a second copy at the server. It
retries what is worth retrying (timeouts, lost connections, 429, 5xx) with capped exponential backoff and
jitter, and stops at once on what is not (401/403, other 4xx, a certificate that does not verify).

Several records go out together in one ``POST {endpoint}/v1/records:batch`` (up to ``batch_size``): one
round trip and one durable write at the endpoint instead of one per record, over the one kept-alive
connection. Each record keeps its own idempotency (its ``record_id``) and gets its own verdict. An endpoint
without the batch path (404) is asked one record at a time from then on.

:func:`deliver_pending` walks the outbox and records each outcome, so the outbox always says what the
server has. It streams the queue, so its memory does not grow with the number of records waiting.

Transport security is not negotiable: certificates are always verified (a private CA may be *added* through
``ca_file``), and plain http is accepted only to this computer's loopback address, for the reference receiver.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import itertools
import json
import logging
import math
import random
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self, TypeVar, runtime_checkable
from urllib.parse import urlsplit

import httpx

from upload._secret import Secret
from upload.credentials import is_acceptable_token
from upload.errors import (
    CredentialError,
    InsecureEndpointError,
    RecordInvalidError,
    RecordNotFoundError,
    TlsError,
    UploadAuthError,
    UploadError,
    UploadRejectedError,
    UploadRetryableError,
)
from upload.outbox import PENDING, Outbox, OutboxEntry

__all__ = [
    "BATCH_PATH",
    "RECORDS_PATH",
    "BatchSender",
    "DeliveryReport",
    "Receipt",
    "RecordSender",
    "UploadClient",
    "backoff_delay",
    "check_endpoint",
    "deliver_pending",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

RECORDS_PATH: Final = "/v1/records"
"""Path, below the endpoint's base URL, that accepts records (see ``openapi.yaml``)."""

BATCH_PATH: Final = "/v1/records:batch"
"""Path, below the endpoint's base URL, that accepts several records in one request (see ``openapi.yaml``)."""

_RETRY_STATUSES: Final = frozenset({408, 425, 429})
_MAX_SERVER_MESSAGE: Final = 300
_HOST_RE: Final = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$")
_BATCH_SIZE: Final = 100  # records per batch request: ~250 kB of JSON, far below the 16 MiB a batch may take
_NO_BATCH_PATH: Final = frozenset({404, 405, 501})  # the endpoint has no batch path: one record at a time
_BATCH_REFUSED: Final = frozenset({400, 413, 415, 422})  # the batch as a whole was refused: send one by one

CertSpec = str | Path | tuple[str | Path, str | Path]
"""A client certificate: one PEM file holding certificate and key, or a (certificate, key) pair."""


# -- endpoint ------------------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str) -> str:
    """Check an endpoint URL and return it normalised (lower-case scheme and host, no trailing slash).

    Run before any connection is made, so a mistyped ``http://`` never puts a VIN on the wire in clear text.

    :raises InsecureEndpointError: not http(s), no host, credentials or query in the URL, or plain http to
        anything but a loopback address (127.0.0.0/8, ::1, ``localhost``).
    """
    if not isinstance(url, str) or not url.strip():
        raise InsecureEndpointError("No endpoint address is configured.")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in {"https", "http"}:
        found = f" (it starts with {scheme[:20]}://)" if scheme else ""
        raise InsecureEndpointError(f"The endpoint address must start with https://{found}.")
    if "@" in parts.netloc:
        raise InsecureEndpointError(
            "The endpoint address must not contain a user name or password; the API token is kept in the "
            "system keyring."
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise InsecureEndpointError("The endpoint address has no host name.")
    try:
        port = parts.port
    except ValueError as exc:
        raise InsecureEndpointError("The endpoint address has an invalid port number.") from exc
    is_ip = True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        is_ip = False
    if not is_ip and not _HOST_RE.match(host):
        raise InsecureEndpointError(f"The endpoint host name {host[:80]!r} is not valid.")
    if parts.query or parts.fragment:
        raise InsecureEndpointError(
            "The endpoint address must not contain a query (?...) or fragment (#...)."
        )
    if scheme == "http" and not _is_loopback(host):
        raise InsecureEndpointError(
            f"The endpoint {host} would receive vehicle data over plain http; use https:// (plain http is "
            f"allowed only to this computer)."
        )
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


# -- results -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """The endpoint's confirmation that it holds a record.

    :ivar duplicate: ``True`` when the endpoint already had the record (HTTP 200) and returned its first
        receipt.
    """

    receipt_id: str
    received_at: str
    duplicate: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The receipt as stored in the outbox."""
        return {"receipt_id": self.receipt_id, "received_at": self.received_at, "duplicate": self.duplicate}


@dataclass(frozen=True)
class DeliveryReport:
    """What one :func:`deliver_pending` run did.

    :ivar sent: records now marked sent, including ``duplicates``.
    :ivar duplicates: of those, records the endpoint already had (a previous answer was lost).
    :ivar rejected: records the endpoint refused for good (now in state rejected).
    :ivar failed: records whose attempt failed and stay pending: one (a failure stops the run), or the
        records of one batch whose results the endpoint answered outside the contract.
    :ivar remaining: pending records left in the outbox after the run.
    :ivar stopped_by: the error that ended the run early (auth, TLS, network down), else ``None``.
    """

    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    remaining: int = 0
    stopped_by: UploadError | None = None


class RecordSender(Protocol):
    """Anything that can deliver one record and return the endpoint's receipt (``UploadClient`` does)."""

    def send(self, record: Mapping[str, Any]) -> Receipt:
        """Deliver one record; raise an :class:`~upload.errors.UploadError` subclass on failure."""
        ...


@runtime_checkable
class BatchSender(Protocol):
    """A :class:`RecordSender` that can also deliver several records in one request (``UploadClient``)."""

    @property
    def batch_size(self) -> int:
        """How many records to hand to :meth:`send_batch` at once; 1 means one record at a time."""
        ...

    def send(self, record: Mapping[str, Any]) -> Receipt:
        """Deliver one record."""
        ...

    def send_batch(self, records: Sequence[Mapping[str, Any]]) -> list[Receipt | UploadError] | None:
        """Deliver several records; one outcome each, or ``None``: send them one by one instead."""
        ...


# -- helpers -------------------------------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header (delay in seconds or an HTTP date).

    :returns: ``None`` when the header is absent or unreadable (the caller then uses its own backoff).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, *, base: float, cap: float, draw: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): exponential, capped, with jitter.

    The ceiling doubles per attempt up to ``cap``; the wait is drawn from the upper half of it (``draw`` in
    [0, 1)), which spreads the retries of many workshop PCs that lost the network at the same moment while
    still backing off.
    """
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + draw * ceiling / 2


def _tls_context(ca_file: str | Path | None, client_cert: CertSpec | None) -> ssl.SSLContext:
    """A verifying TLS context: system CAs, or exactly ``ca_file`` when given; optional client certificate."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"The CA file {ca_file} cannot be loaded ({_reason(exc)}).") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        certfile, keyfile = client_cert if isinstance(client_cert, tuple) else (client_cert, None)
        try:
            context.load_cert_chain(str(certfile), str(keyfile) if keyfile is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"The client certificate {certfile} cannot be loaded ({_reason(exc)}).") from exc
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:  # pragma: no cover - invariant
        raise TlsError("Certificate verification must stay on.")
    return context


def _reason(exc: BaseException) -> str:
    """A short lower-level reason for a TLS or file problem, without a trailing full stop."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        text = str(exc.verify_message)
    elif isinstance(exc, ssl.SSLError) and exc.reason:
        text = str(exc.reason).replace("_", " ").lower()
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return text.rstrip(". ")


def _find_tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a transport error, if any; EOF during TLS counts as a lost connection instead."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError) and not isinstance(
            current, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def _transport_failure(exc: httpx.TransportError, timeout: float) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"the server could not be reached within {timeout:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return f"the server did not answer within {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return "the server could not be reached (no network, or the server is down)"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection without an answer"
    return "the connection to the server was lost"


# -- client --------------------------------------------------------------------------------------------------


_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Retry:
    """A transient failure: why, and how long the server asked us to wait (``Retry-After``), if it did."""

    failure: str
    wait: float | None


class UploadClient:
    """One keep-alive HTTPS connection pool to the endpoint. Use as a context manager.

    :param endpoint: base URL; checked by :func:`check_endpoint`.
    :param token: API token (from :class:`~upload.credentials.TokenStore`); sent only in the
        ``Authorization`` header, never shown in repr, logs or errors.
    :param ca_file: PEM bundle to trust *instead of* the system CAs (a manufacturer's private CA, a test CA).
    :param client_cert: client certificate for mutual TLS: a PEM path or a (certificate, key) pair.
    :param timeout: seconds for connecting, and for each read and write.
    :param max_attempts: HTTP requests per record before giving up with :class:`UploadRetryableError`.
    :param backoff_base: first retry delay in seconds; doubles per attempt, with jitter.
    :param backoff_cap: longest single wait, also for a server's ``Retry-After``.
    :param sleep: how to wait between attempts (injectable so tests do not sleep).
    :param transport: an httpx transport to use instead of the network (keeps the TLS settings out of play).
    :param tool_version: obdtool's version, sent as ``User-Agent: obdtool/<version>``.
    :param proxy: an explicit proxy URL; environment proxy settings are ignored on purpose.
    :param jitter: source of uniform numbers in [0, 1) for the backoff jitter.
    :param batch_size: records per ``POST /v1/records:batch``; 1 sends every record on its own.
    :raises InsecureEndpointError: the endpoint is not acceptable.
    :raises CredentialError: the token cannot be sent in an HTTP header.
    :raises TlsError: the CA file or client certificate cannot be loaded.
    """

    def __init__(
        self,
        endpoint: str,
        token: str,
        *,
        ca_file: str | Path | None = None,
        client_cert: CertSpec | None = None,
        timeout: float = 10.0,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        tool_version: str = "unknown",
        proxy: str | None = None,
        jitter: Callable[[], float] = random.random,
        batch_size: int = _BATCH_SIZE,
    ) -> None:
        self.endpoint = check_endpoint(endpoint)
        if not isinstance(token, str) or not is_acceptable_token(token):
            raise CredentialError(
                "The API token is not usable: it must be non-empty printable ASCII without spaces or "
                "line breaks."
            )
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if timeout <= 0 or backoff_base < 0 or backoff_cap < 0:
            raise ValueError("timeout must be positive and backoff values non-negative")
        self._token = Secret(token)
        self._records_url = self.endpoint + RECORDS_PATH
        self._batch_url = self.endpoint + BATCH_PATH
        self._batch_size = batch_size
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._jitter = jitter
        self._http = httpx.Client(
            verify=_tls_context(ca_file, client_cert),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            proxy=proxy,
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": f"obdtool/{tool_version}", "Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"UploadClient(endpoint={self.endpoint!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections; safe to call twice."""
        self._http.close()

    @property
    def batch_size(self) -> int:
        """Records per batch request; 1 once the endpoint has shown it has no batch path."""
        return self._batch_size

    def backoff_delay(self, attempt: int) -> float:
        """Wait before retry number ``attempt`` (1-based), with this client's settings and jitter source."""
        return backoff_delay(attempt, base=self._backoff_base, cap=self._backoff_cap, draw=self._jitter())

    def send(self, record: Mapping[str, Any]) -> Receipt:
        """POST one record; retry transient failures; return the endpoint's receipt.

        A 200 answer means the endpoint already had this record id and returns the first receipt again, so
        sending a record whose previous answer was lost is always safe.

        :raises RecordInvalidError: the record has no usable ``record_id``.
        :raises TlsError: the server's certificate does not verify (never retried).
        :raises UploadAuthError: 401/403; the token is wrong or lacks permission.
        :raises UploadRejectedError: another 4xx; the server's message is included.
        :raises UploadRetryableError: timeouts, lost connections, 429 or 5xx outlasted every attempt.
        :raises UploadError: the server answered something outside the contract (e.g. a redirect).
        """
        record_id = record.get("record_id")
        if not isinstance(record_id, str) or not record_id:
            raise RecordInvalidError("$.record_id", "a record needs a record_id to be uploaded")
        try:
            body = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise RecordInvalidError("$", f"the record cannot be written as JSON ({exc})") from exc
        headers = {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Idempotency-Key": record_id,
            "Content-Type": "application/json",
        }

        def judge(response: httpx.Response) -> Receipt | _Retry:
            outcome = self._interpret(response, record_id)
            if isinstance(outcome, Receipt):
                logger.info(
                    "Record %s delivered (HTTP %d, receipt %s)",
                    record_id,
                    response.status_code,
                    outcome.receipt_id,
                )
                return outcome
            return _Retry(*outcome)

        return self._post_with_retries(
            self._records_url,
            body,
            headers,
            judge,
            subject=f"Record {record_id}",
            stays="It stays in the outbox for the next upload.",
        )

    def send_batch(self, records: Sequence[Mapping[str, Any]]) -> list[Receipt | UploadError] | None:
        """POST several records to ``/v1/records:batch``; return one outcome per record, in order.

        One round trip for the lot instead of one per record. Each record is judged as if it came alone, its
        ``record_id`` being its idempotency key, so resending a batch whose answer was lost is as safe as
        resending one record. Transient failures of the whole request are retried like :meth:`send`'s.

        :returns: per record, its :class:`Receipt` or an :class:`~upload.errors.UploadRejectedError` (400,
            409, 422 for that record), or an :class:`~upload.errors.UploadRetryableError` for a result the
            contract does not know; ``None`` when the records must go one by one instead: the endpoint has no
            batch path (404, 405, 501: this client then stops asking) or refused the batch as a whole (400,
            413, 415, 422).
        :raises RecordInvalidError: a record has no usable ``record_id`` or cannot be written as JSON.
        :raises TlsError: the server's certificate does not verify (never retried).
        :raises UploadAuthError: 401/403; the token is wrong or lacks permission.
        :raises UploadRetryableError: timeouts, lost connections, 429 or 5xx outlasted every attempt.
        :raises UploadError: the server answered something outside the contract (e.g. a redirect).
        """
        if self._batch_size < 2:
            return None
        ids: list[str] = []
        parts: list[bytes] = []
        for record in records:
            record_id = record.get("record_id")
            if not isinstance(record_id, str) or not record_id:
                raise RecordInvalidError("$.record_id", "a record needs a record_id to be uploaded")
            try:
                parts.append(
                    json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
                )
            except (TypeError, ValueError) as exc:
                raise RecordInvalidError("$", f"the record cannot be written as JSON ({exc})") from exc
            ids.append(record_id)
        body = b'{"records":[' + b",".join(parts) + b"]}"
        headers = {"Authorization": f"Bearer {self._token.reveal()}", "Content-Type": "application/json"}

        def judge(response: httpx.Response) -> list[Receipt | UploadError] | _Retry | None:
            status = response.status_code
            if status == 200:
                outcomes = self._batch_outcomes(response, ids)
                if outcomes is not None:
                    logger.info("Batch of %d records answered (HTTP 200)", len(ids))
                    return outcomes
                return _Retry("the server's answer to the batch (HTTP 200) could not be read", None)
            if status in _NO_BATCH_PATH or status in _BATCH_REFUSED:
                logger.info(
                    "The endpoint answered HTTP %d to a batch (%s); sending records one by one",
                    status,
                    self._server_message(response),
                )
                if status != 413:  # too large: smaller batches or single records will do
                    self._batch_size = 1
                return None
            return _Retry(*self._interpret_failure(response))

        return self._post_with_retries(
            self._batch_url,
            body,
            headers,
            judge,
            subject=f"A batch of {len(ids)} records",
            stays="The records stay in the outbox for the next upload.",
        )

    def _post_with_retries(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        judge: Callable[[httpx.Response], _T | _Retry],
        *,
        subject: str,
        stays: str,
    ) -> _T:
        """POST until ``judge`` accepts an answer, backing off between transient failures.

        :raises UploadRetryableError: every attempt failed transiently (the last reason is in the message).
        """
        failure = ""
        status: int | None = None
        for attempt in range(1, self._max_attempts + 1):
            wait: float | None = None
            response = self._post(url, body, headers)
            if isinstance(response, str):
                failure, status = response, None
            else:
                status = response.status_code
                verdict = judge(response)
                if not isinstance(verdict, _Retry):
                    return verdict
                failure, wait = verdict.failure, verdict.wait
            if attempt == self._max_attempts:
                break
            delay = self.backoff_delay(attempt) if wait is None else min(wait, self._backoff_cap)
            logger.info(
                "Delivery of %s failed (%s); attempt %d of %d, next in %.2f s",
                subject[0].lower() + subject[1:],
                failure,
                attempt,
                self._max_attempts,
                delay,
            )
            self._sleep(delay)
        raise UploadRetryableError(
            f"{subject} could not be delivered after {self._max_attempts} attempts: {failure}. {stays}",
            attempts=self._max_attempts,
            status=status,
        )

    def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> httpx.Response | str:
        """One POST; the answer, or why the transport failed (worth retrying).

        :raises TlsError: the secure connection failed; nothing was sent.
        :raises UploadError: the request cannot be made at all (bad proxy, unsupported scheme).
        """
        try:
            return self._http.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            tls_failure = _find_tls_failure(exc)
            if tls_failure is not None:
                raise TlsError(
                    f"The secure connection to {self.endpoint} failed ({_reason(tls_failure)}); nothing "
                    f"was sent. Check the endpoint address and its CA certificate."
                ) from exc
            if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.ProxyError):
                raise UploadError(f"The request to {self.endpoint} could not be made ({exc}).") from exc
            return _transport_failure(exc, self._timeout)

    def _interpret_failure(self, response: httpx.Response) -> tuple[str, float | None]:
        """An answer without a result: (why, server-requested wait) if worth retrying; raises otherwise."""
        status = response.status_code
        if status in {401, 403}:
            what = "refused the API token" if status == 401 else "does not allow this API token to upload"
            raise UploadAuthError(
                f"The endpoint {what} (HTTP {status}): {self._server_message(response)}. "
                f"Store a valid token and upload again.",
                status=status,
            )
        if status in _RETRY_STATUSES or 500 <= status <= 599:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            return f"the server answered HTTP {status} ({self._server_message(response)})", wait
        raise UploadError(
            f"The endpoint answered HTTP {status}, which the upload contract does not allow; check the "
            f"endpoint address."
        )

    def _batch_outcomes(
        self, response: httpx.Response, ids: Sequence[str]
    ) -> list[Receipt | UploadError] | None:
        """One outcome per record from a batch answer; ``None`` when the answer does not fit the batch."""
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError):
            return None
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list) or len(results) != len(ids):
            return None
        outcomes: list[Receipt | UploadError] = []
        for record_id, result in zip(ids, results, strict=True):
            if not isinstance(result, dict) or result.get("record_id") != record_id:
                return None
            status = result.get("status")
            if status in (200, 201):
                receipt = _receipt_from(result, duplicate=status == 200)
                if receipt is None:
                    return None
                outcomes.append(receipt)
            elif isinstance(status, int) and 400 <= status <= 499:
                message = self._tidy(result.get("message"), "no explanation given")
                outcomes.append(
                    UploadRejectedError(
                        f"The endpoint rejected record {record_id} (HTTP {status}): {message}.",
                        status=status,
                        server_message=message,
                    )
                )
            else:
                outcomes.append(
                    UploadRetryableError(
                        f"The endpoint did not store record {record_id} (result {status!r}, which the upload "
                        f"contract does not allow). It stays in the outbox for the next upload.",
                        attempts=1,
                        status=status if isinstance(status, int) else None,
                    )
                )
        return outcomes

    def _interpret(self, response: httpx.Response, record_id: str) -> Receipt | tuple[str, float | None]:
        """A receipt, or (why it failed, server-requested wait) for a retryable answer; raises otherwise."""
        status = response.status_code
        if status in {200, 201}:
            receipt = _parse_receipt(response, duplicate=status == 200)
            if receipt is None:
                return f"the server's confirmation (HTTP {status}) could not be read", None
            return receipt
        if 400 <= status <= 499 and status not in {401, 403} and status not in _RETRY_STATUSES:
            message = self._server_message(response)
            raise UploadRejectedError(
                f"The endpoint rejected record {record_id} (HTTP {status}): {message}.",
                status=status,
                server_message=message,
            )
        return self._interpret_failure(response)

    def _server_message(self, response: httpx.Response) -> str:
        """The server's ``message`` field (or body text), one line, truncated, with the token masked."""
        text = ""
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            data = response.json()
            if isinstance(data, dict) and isinstance(data.get("message"), str):
                text = data["message"]
        if not text:
            with contextlib.suppress(UnicodeDecodeError):
                text = response.text
        return self._tidy(text, response.reason_phrase or "no explanation given")

    def _tidy(self, text: object, fallback: str) -> str:
        """Server text made fit to show: one line, truncated, the token masked, no trailing full stop."""
        line = " ".join(text.split()) if isinstance(text, str) else ""
        line = line.replace(self._token.reveal(), "<hidden>")
        if len(line) > _MAX_SERVER_MESSAGE:
            line = line[: _MAX_SERVER_MESSAGE - 3] + "..."
        return line.rstrip(".") or fallback


def _parse_receipt(response: httpx.Response, *, duplicate: bool) -> Receipt | None:
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return _receipt_from(data, duplicate=duplicate)


def _receipt_from(data: object, *, duplicate: bool) -> Receipt | None:
    """A receipt from a decoded answer (or one result of a batch answer), if it holds one."""
    if not isinstance(data, dict):
        return None
    receipt_id, received_at = data.get("receipt_id"), data.get("received_at")
    if not isinstance(receipt_id, str) or not receipt_id or not isinstance(received_at, str):
        return None
    return Receipt(receipt_id=receipt_id, received_at=received_at, duplicate=duplicate)


# -- delivery loop -------------------------------------------------------------------------------------------

_Outcome = Receipt | UploadError


def _send_batch(
    sender: RecordSender, entries: Sequence[OutboxEntry]
) -> list[tuple[OutboxEntry, _Outcome]] | Iterator[tuple[OutboxEntry, _Outcome]]:
    """Deliver one batch: one outcome per record, in order.

    Two or more records go to a :class:`BatchSender` in one request, and the answer is a list: the endpoint
    has judged every record. A failure of that request as a whole is the first record's outcome alone (the
    run stops there; every record stays pending). When the endpoint has no batch path, or for a plain
    :class:`RecordSender`, the records go one POST each, lazily (an iterator): a caller that stops after an
    error that is not about one record also stops the sending.
    """
    if len(entries) > 1 and isinstance(sender, BatchSender):
        try:
            outcomes = sender.send_batch([entry.body for entry in entries])
        except UploadError as exc:
            return [(entries[0], exc)]
        if outcomes is not None:
            return list(zip(entries, outcomes, strict=True))
    return _send_each(sender, entries)


def _send_each(
    sender: RecordSender, entries: Sequence[OutboxEntry]
) -> Iterator[tuple[OutboxEntry, _Outcome]]:
    for entry in entries:
        try:
            yield entry, sender.send(entry.body)
        except UploadError as exc:
            yield entry, exc


def _still_pending(outbox: Outbox, ids: Sequence[str]) -> list[OutboxEntry]:
    """Re-read records right before sending: one delivered (or erased) meanwhile by another run is skipped."""
    entries = []
    for record_id in ids:
        try:
            entry = outbox.get(record_id)
        except RecordNotFoundError:
            continue
        if entry.state == PENDING:
            entries.append(entry)
    return entries


@dataclass
class _Tally:
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    done: int = 0
    stopped_by: UploadError | None = None


def _record_outcome(
    outbox: Outbox, entry: OutboxEntry, outcome: _Outcome, tally: _Tally, *, marked: bool = False
) -> None:
    """Write one delivery outcome to the outbox; an error that is not about this record stops the run.

    ``marked`` says a receipt is already written (by :meth:`~upload.outbox.Outbox.mark_sent_many`).
    """
    if isinstance(outcome, Receipt):
        if not marked:
            outbox.mark_sent(entry.record_id, outcome.as_dict())
        tally.sent += 1
        tally.duplicates += int(outcome.duplicate)
    elif isinstance(outcome, UploadRejectedError | RecordInvalidError):
        outbox.mark_rejected(entry.record_id, str(outcome))
        tally.rejected += 1
    else:
        outbox.note_attempt(entry.record_id, str(outcome))
        tally.failed += 1
        if tally.stopped_by is None:
            tally.stopped_by = outcome
    tally.done += 1


def deliver_pending(
    outbox: Outbox,
    client: RecordSender,
    *,
    progress: Callable[[int, int], None] | None = None,
    limit: int | None = None,
) -> DeliveryReport:
    """Send pending records oldest first and record every outcome in the outbox.

    A receipt marks the record sent; a refusal (4xx) marks it rejected with the server's message and the run
    goes on. An auth or TLS error, or a network failure that outlasted the retries, notes the attempt, leaves
    the record pending and ends the run: the next records would fail the same way. An outbox write error
    propagates; the record then stays pending and its next upload is answered as a duplicate.

    Records go in batches of ``client.batch_size`` when the client is a :class:`BatchSender`. The queue is
    read as it goes (a few hundred ids at a time), so memory stays flat however many records wait, and each
    batch is re-read right before it is sent, so a record delivered or erased meanwhile is skipped.

    :param progress: called as ``progress(done, total)`` before the first and after every record.
    :param limit: send at most this many records.
    :returns: the counts, and the error that stopped the run early if any.
    """
    total = outbox.count(PENDING)
    if limit is not None:
        total = min(total, max(0, int(limit)))
    queue = itertools.islice((entry.record_id for entry in outbox.iter_entries(state=PENDING)), total)
    tally = _Tally()
    if progress is not None:
        progress(0, total)
    while True:
        size = client.batch_size if isinstance(client, BatchSender) else 1
        batch = list(itertools.islice(queue, max(1, size)))
        if not batch:
            break
        entries = _still_pending(outbox, batch)
        if len(entries) < len(batch):  # delivered or erased since the queue was read
            tally.done += len(batch) - len(entries)
            if progress is not None:
                progress(tally.done, total)
        delivered = _send_batch(client, entries)
        if isinstance(delivered, list):  # the endpoint judged the whole batch: record every verdict
            outbox.mark_sent_many({e.record_id: o.as_dict() for e, o in delivered if isinstance(o, Receipt)})
            for entry, outcome in delivered:
                _record_outcome(outbox, entry, outcome, tally, marked=True)
                if progress is not None:
                    progress(tally.done, total)
        else:
            for entry, outcome in delivered:
                _record_outcome(outbox, entry, outcome, tally)
                if progress is not None:
                    progress(tally.done, total)
                if tally.stopped_by is not None:
                    break
        if tally.stopped_by is not None:
            logger.info("Upload stopped: %s", tally.stopped_by)  # the caller gets it in the report
            break
    report = DeliveryReport(
        sent=tally.sent,
        duplicates=tally.duplicates,
        rejected=tally.rejected,
        failed=tally.failed,
        remaining=outbox.count(PENDING),
        stopped_by=tally.stopped_by,
    )
    logger.info(
        "Upload finished: %d sent (%d already at the endpoint), %d rejected, %d failed, %d pending",
        report.sent,
        report.duplicates,
        report.rejected,
        report.failed,
        report.remaining,
    )
    return report
