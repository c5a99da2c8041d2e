"""The reference receiver: a small, real HTTP(S) server implementing the upload contract (``openapi.yaml``).

It exists so that the client is tested against real sockets, real TLS and a durable store instead of mocks,
and so that a manufacturer has a runnable example of what obdtool expects from the endpoint:

* ``POST /v1/records``: Bearer token, JSON body valid against ``record-v1.schema.json``, ``Idempotency-Key``
  equal to the body's ``record_id``. First delivery: 201 with a new receipt; the same record again: 200 with
  the *same* receipt; a different record under a known id: 409.
* ``POST /v1/records:batch``: up to 500 records in ``{"records": [...]}``; each record is judged exactly as a
  single POST would judge it (its ``record_id`` is its idempotency key) and the answer (200) lists one result
  per record, in order: ``status`` 201/200 with the receipt, or 400/409/422 with ``message``. Valid records
  are stored in one transaction, so a batch costs one durable write, not one per record.
* ``GET /v1/records`` and ``GET /v1/records/{id}``: what was received (token required).
* ``GET /v1/health``: liveness, no token.

:class:`Faults` makes it misbehave on purpose (5xx, 429, slow answers, dropped connections, lost answers)
so that retries and exactly-once delivery can be proven. Requests are logged without headers, so the token
never reaches a log. Only the standard library is used (plus the record schema of this package).
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import logging
import os
import socket
import sqlite3
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, cast
from urllib.parse import unquote, urlsplit

from upload._secret import Secret
from upload.errors import RecordInvalidError
from upload.schema import SCHEMA_VERSION, validate_record

__all__ = ["TOKEN_ENV", "Faults", "ReceiverServer", "main", "parse_faults", "serve_forever"]

logger = logging.getLogger(__name__)

TOKEN_ENV: Final = "OBDTOOL_RECEIVER_TOKEN"
"""Environment variable holding the receiver's token for :func:`main` (never on the command line)."""

_RECORDS: Final = "/v1/records"
_BATCH: Final = "/v1/records:batch"
_HEALTH: Final = "/v1/health"
_MAX_BODY: Final = 2 * 1024 * 1024
_MAX_BATCH_BODY: Final = 16 * 1024 * 1024
_MAX_BATCH_RECORDS: Final = 500
_STORE_FILE: Final = "received.sqlite3"


@dataclass
class Faults:
    """Misbehaviour to inject, consumed request by request; change it at run time via ``server.faults``.

    Order per ``POST /v1/records`` (and per ``POST /v1/records:batch``, where a fault hits the whole batch):
    ``delay``, then ``reset_next``, ``fail_next``, ``throttle_next``; after the token check ``reject_all``;
    ``lose_answer_next`` stores the record (the batch) and then drops the answer.

    :ivar fail_next: answer HTTP 500 to this many POSTs.
    :ivar throttle_next: answer HTTP 429 with ``Retry-After: retry_after`` to this many POSTs.
    :ivar retry_after: seconds sent in ``Retry-After``.
    :ivar delay: seconds to wait before answering any POST (lets a client time out).
    :ivar reset_next: close this many connections without an answer, before storing anything.
    :ivar lose_answer_next: store the record, then close the connection without an answer, this many times.
    :ivar reject_all: answer every valid POST with 422.
    :ivar no_batch: behave like an endpoint without ``/v1/records:batch`` (404, as for any unknown path).
    """

    fail_next: int = 0
    throttle_next: int = 0
    retry_after: float = 1.0
    delay: float = 0.0
    reset_next: int = 0
    lose_answer_next: int = 0
    reject_all: bool = False
    no_batch: bool = False


def parse_faults(spec: str) -> Faults:
    """Build :class:`Faults` from e.g. ``"fail=2,throttle=1,retry-after=0.5,delay=0.2,reset=1,no-batch"``.

    Meant for a ``--fail`` command-line option, so a technician or integrator can rehearse failures.

    :raises ValueError: unknown name or unreadable number.
    """
    names = {
        "fail": "fail_next",
        "throttle": "throttle_next",
        "retry-after": "retry_after",
        "delay": "delay",
        "reset": "reset_next",
        "lose-answer": "lose_answer_next",
        "reject": "reject_all",
        "no-batch": "no_batch",
    }
    faults = Faults()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        attribute = names.get(name.strip().replace("_", "-"))
        if attribute is None:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(names)}")
        try:
            if attribute in {"reject_all", "no_batch"}:
                setattr(faults, attribute, value.strip().lower() not in {"0", "false", "no", "off"})
            elif attribute in {"retry_after", "delay"}:
                setattr(faults, attribute, max(0.0, float(value)))
            else:
                setattr(faults, attribute, max(0, int(value)))
        except ValueError as exc:
            raise ValueError(f"fault {name!r} needs a number, got {value!r}") from exc
    return faults


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _canonical(record: Any) -> str:
    """The form a record is stored and compared in: key order and spacing do not make a new record."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# -- store ---------------------------------------------------------------------------------------------------


class _Store:
    """Received records in an SQLite file; one connection shared by the handler threads under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS received (seq INTEGER PRIMARY KEY, record_id TEXT NOT NULL UNIQUE, "
            "receipt_id TEXT NOT NULL, received_at TEXT NOT NULL, body TEXT NOT NULL)"
        )
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{path}{suffix}", 0o600)

    def put(self, record_id: str, body: str) -> tuple[dict[str, str], int]:
        """Store once; returns (receipt, status): 201 new, 200 same record again, 409 different record."""
        with self._lock:
            row = self._conn.execute(
                "SELECT receipt_id, received_at, body FROM received WHERE record_id = ?", (record_id,)
            ).fetchone()
            if row is not None:
                receipt = {"receipt_id": row[0], "received_at": row[1]}
                return receipt, (HTTPStatus.OK if row[2] == body else HTTPStatus.CONFLICT)
            receipt = {"receipt_id": str(uuid.uuid4()), "received_at": _now_text()}
            self._conn.execute(
                "INSERT INTO received (record_id, receipt_id, received_at, body) VALUES (?, ?, ?, ?)",
                (record_id, receipt["receipt_id"], receipt["received_at"], body),
            )
            return receipt, HTTPStatus.CREATED

    def put_many(self, items: Sequence[tuple[str, str]]) -> list[tuple[dict[str, str], int]]:
        """:meth:`put` for several records in one transaction: one durable write for a whole batch."""
        results: list[tuple[dict[str, str], int]] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for record_id, body in items:
                    row = self._conn.execute(
                        "SELECT receipt_id, received_at, body FROM received WHERE record_id = ?", (record_id,)
                    ).fetchone()
                    if row is not None:
                        status = HTTPStatus.OK if row[2] == body else HTTPStatus.CONFLICT
                        results.append(({"receipt_id": row[0], "received_at": row[1]}, status))
                        continue
                    receipt = {"receipt_id": str(uuid.uuid4()), "received_at": _now_text()}
                    self._conn.execute(
                        "INSERT INTO received (record_id, receipt_id, received_at, body) VALUES (?, ?, ?, ?)",
                        (record_id, receipt["receipt_id"], receipt["received_at"], body),
                    )
                    results.append((receipt, HTTPStatus.CREATED))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return results

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _read_store(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=10.0)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        conn.close()


# -- HTTP ----------------------------------------------------------------------------------------------------


class _HttpServer(ThreadingHTTPServer):
    """Threading server that does the TLS handshake in the worker thread and can drop open connections."""

    daemon_threads = False  # server_close() joins the workers: no thread outlives stop()
    block_on_close = True

    def __init__(self, receiver: ReceiverServer, address: tuple[str, int], context: ssl.SSLContext | None):
        self.receiver = receiver
        self.ssl_context = context
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        # The handler writes the status and headers, then the body: without TCP_NODELAY the body waits for
        # the client to acknowledge the headers, and a client that delays its ACK adds 40 ms to every answer.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.connections_lock:
            self.connections.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Wake every worker blocked on a keep-alive connection so that stop() does not wait for it."""
        with self.connections_lock:
            open_now = list(self.connections)
        for sock in open_now:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("Connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "obdtool-reference-receiver/1"
    sys_version = ""
    timeout = 30.0  # idle keep-alive connections are closed after this many seconds
    server: _HttpServer

    # -- plumbing ----------------------------------------------------------------------------------------

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                logger.info("TLS handshake with %s failed: %s", self.client_address[0], exc)
                self.close_connection = True
                return
        super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        # The request line and status only: headers (and so the token) are never logged.
        logger.info("%s %s", self.client_address[0], format % args)

    def _send_json(
        self, status: int, payload: dict[str, Any], headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, **extra: Any) -> None:
        self._send_json(status, {"message": message, **extra})

    def _drop(self) -> None:
        """Close the connection without answering (RST), as a crashed proxy or server would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        expected = self.server.receiver._token.reveal()
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
            return True
        self._send_json(
            HTTPStatus.UNAUTHORIZED,
            {"message": "Missing or wrong API token."},
            headers=[("WWW-Authenticate", 'Bearer realm="obdtool"')],
        )
        return False

    def _read_body(self, limit: int = _MAX_BODY) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "Send the body with a Content-Length.")
            return None
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "Send the body with a Content-Length.")
            return None
        if length < 0 or length > limit:
            self.close_connection = True
            what = "A record" if limit == _MAX_BODY else "A batch"
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{what} may be at most {limit} bytes.")
            return None
        return self.rfile.read(length)

    def _faulted(self) -> tuple[bool, bool, bool]:
        """Apply this POST's injected fault: (answered already, reject every record, lose the answer)."""
        fault, delay, retry_after, reject_all, lose_answer = self.server.receiver._take_fault()
        if delay > 0:
            time.sleep(delay)
        if fault == "reset":
            self._drop()
        elif fault == "fail":
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "Simulated server failure.")
        elif fault == "throttle":
            self._send_json(
                HTTPStatus.TOO_MANY_REQUESTS,
                {"message": "Too many requests; retry later."},
                headers=[("Retry-After", f"{retry_after:g}")],
            )
        return fault is not None, reject_all, lose_answer

    def _json_body(self, body: bytes) -> tuple[bool, Any]:
        """Check the content type and parse; (False, None) when an error was answered."""
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "The body must be application/json.")
            return False, None
        try:
            return True, json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, f"The body is not valid JSON ({exc}).", path="$")
            return False, None

    # -- methods -----------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        receiver = self.server.receiver
        if path == _HEALTH:
            self._send_json(HTTPStatus.OK, {"status": "ok", "schema_version": SCHEMA_VERSION})
        elif path == _RECORDS:
            if self._authorised():
                self._send_json(HTTPStatus.OK, {"record_ids": receiver.received_ids()})
        elif path.startswith(_RECORDS + "/") and "/" not in path[len(_RECORDS) + 1 :]:
            if self._authorised():
                record_id = path[len(_RECORDS) + 1 :]
                found = receiver._lookup(record_id)
                if found is None:
                    self._error(HTTPStatus.NOT_FOUND, f"No record {record_id} was received.")
                else:
                    self._send_json(HTTPStatus.OK, found)
        else:
            self._error(HTTPStatus.NOT_FOUND, "Unknown path.")

    def do_POST(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == _BATCH:
            self._post_batch()
            return
        if path != _RECORDS:
            known = path == _HEALTH or path.startswith(_RECORDS + "/")
            self.close_connection = True  # the body is not read
            if known:
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "Use GET here.")
            else:
                self._error(HTTPStatus.NOT_FOUND, "Unknown path.")
            return
        receiver = self.server.receiver
        receiver._count_post()
        body = self._read_body()
        if body is None:
            return
        answered, reject_all, lose_answer = self._faulted()
        if answered or not self._authorised():
            return
        key = self.headers.get("Idempotency-Key", "").strip()
        if not key:
            self._error(HTTPStatus.BAD_REQUEST, "The Idempotency-Key header is required.")
            return
        parsed, record = self._json_body(body)
        if not parsed:
            return
        try:
            validate_record(record)
        except RecordInvalidError as exc:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc), path=exc.path)
            return
        if key != record["record_id"]:
            self._error(
                HTTPStatus.BAD_REQUEST, "The Idempotency-Key header must equal the record's record_id."
            )
            return
        if reject_all:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, "This receiver rejects every record.", path="$")
            return
        receipt, status = receiver._store_records([(key, _canonical(record))])[0]
        if lose_answer:
            self._drop()
            return
        if status == HTTPStatus.CONFLICT:
            self._error(HTTPStatus.CONFLICT, f"A different record with id {key} was already received.")
            return
        self._send_json(status, receipt)

    def _post_batch(self) -> None:
        """``POST /v1/records:batch``: judge every record as a single POST would, answer one result each."""
        receiver = self.server.receiver
        if receiver.faults.no_batch:
            self.close_connection = True  # the body is not read
            self._error(HTTPStatus.NOT_FOUND, "Unknown path.")
            return
        receiver._count_post()
        body = self._read_body(_MAX_BATCH_BODY)
        if body is None:
            return
        answered, reject_all, lose_answer = self._faulted()
        if answered or not self._authorised():
            return
        parsed, document = self._json_body(body)
        if not parsed:
            return
        records = document.get("records") if isinstance(document, dict) else None
        if not isinstance(records, list) or not 1 <= len(records) <= _MAX_BATCH_RECORDS:
            self._error(
                HTTPStatus.BAD_REQUEST,
                f'The body must be {{"records": [...]}} with 1 to {_MAX_BATCH_RECORDS} records.',
                path="$.records",
            )
            return
        results: list[dict[str, Any]] = []
        storing: list[tuple[int, str, str]] = []  # (index in results, record_id, canonical body)
        for index, record in enumerate(records):
            record_id = record.get("record_id") if isinstance(record, dict) else None
            result: dict[str, Any] = {"record_id": record_id if isinstance(record_id, str) else None}
            results.append(result)
            try:
                validate_record(record)
            except RecordInvalidError as exc:
                result.update(status=int(HTTPStatus.UNPROCESSABLE_ENTITY), message=str(exc), path=exc.path)
                continue
            if reject_all:
                result.update(
                    status=int(HTTPStatus.UNPROCESSABLE_ENTITY),
                    message="This receiver rejects every record.",
                    path="$",
                )
                continue
            storing.append((index, record["record_id"], _canonical(record)))
        stored = receiver._store_records([(record_id, text) for _, record_id, text in storing])
        for (index, record_id, _), (receipt, status) in zip(storing, stored, strict=True):
            if status == HTTPStatus.CONFLICT:
                results[index].update(
                    status=int(status),
                    message=f"A different record with id {record_id} was already received.",
                )
            else:
                results[index].update(status=int(status), **receipt)
        if lose_answer:
            self._drop()
            return
        self._send_json(HTTPStatus.OK, {"results": results})

    def _not_allowed(self) -> None:
        self.close_connection = True
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "Method not allowed.")

    do_PUT = do_DELETE = do_PATCH = _not_allowed


# -- server object -------------------------------------------------------------------------------------------


class ReceiverServer:
    """The reference receiver on one address; ``start()`` serves from a background thread.

    :param store_dir: folder of the durable store (created 0700; the SQLite file is 0600).
    :param token: the Bearer token clients must send.
    :param host: address to listen on; loopback by default.
    :param port: 0 picks a free port on the first start; later starts reuse it.
    :param certfile: PEM server certificate (chain); with it the receiver speaks HTTPS only.
    :param keyfile: PEM private key, when not inside ``certfile``.
    :param faults: misbehaviour to inject (see :class:`Faults`); mutable while running.
    """

    def __init__(
        self,
        store_dir: Path | str,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: Path | str | None = None,
        keyfile: Path | str | None = None,
        faults: Faults | None = None,
    ) -> None:
        if not token:
            raise ValueError("the receiver needs a token")
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port
        self.certfile = certfile
        self.keyfile = keyfile
        self.faults = faults if faults is not None else Faults()
        self._token = Secret(token)
        self._lock = threading.Lock()
        self._post_count = 0
        self._store: _Store | None = None
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ReceiverServer(host={self.host!r}, port={self.port!r}, tls={self.certfile is not None})"

    # -- lifetime ----------------------------------------------------------------------------------------

    @property
    def store_path(self) -> Path:
        """The SQLite file holding received records."""
        return self.store_dir / _STORE_FILE

    @property
    def url(self) -> str:
        """Base URL clients use (``https://`` when a certificate is configured)."""
        if self.port == 0:
            raise RuntimeError("the receiver has no port until it is started")
        scheme = "https" if self.certfile is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the receiver is accepting connections."""
        return self._server is not None

    def _open(self) -> _HttpServer:
        if self._server is not None:
            raise RuntimeError("the receiver is already running")
        context: ssl.SSLContext | None = None
        if self.certfile is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(str(self.certfile), str(self.keyfile) if self.keyfile else None)
        if not self.store_dir.exists():
            self.store_dir.mkdir(parents=True, mode=0o700)
            os.chmod(self.store_dir, 0o700)
        self._store = _Store(self.store_path)
        try:
            server = _HttpServer(self, (self.host, self.port), context)
        except BaseException:
            self._store.close()
            self._store = None
            raise
        self.port = int(server.server_address[1])
        self._server = server
        logger.info("Reference receiver listening on %s", self.url)
        return server

    def start(self) -> Self:
        """Bind and serve in a background thread; returns once the socket is listening."""
        server = self._open()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="reference-receiver"
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C), then close cleanly."""
        server = self._open()
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            logger.info("Reference receiver interrupted")
        finally:
            self._close(server)

    def stop(self) -> None:
        """Stop serving, drop open connections, wait for the worker threads; safe to call twice."""
        server = self._server
        if server is None:
            return
        server.shutdown()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close(server)

    def _close(self, server: _HttpServer) -> None:
        server.drop_connections()
        server.server_close()
        if self._store is not None:
            self._store.close()
            self._store = None
        self._server = None
        logger.info("Reference receiver stopped")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- used by the handler -----------------------------------------------------------------------------

    def _count_post(self) -> None:
        with self._lock:
            self._post_count += 1

    def _take_fault(self) -> tuple[str | None, float, float, bool, bool]:
        """Consume one fault for this POST: (kind, delay, retry_after, reject_all, lose_answer)."""
        with self._lock:
            faults = self.faults
            kind: str | None = None
            if faults.reset_next > 0:
                faults.reset_next -= 1
                kind = "reset"
            elif faults.fail_next > 0:
                faults.fail_next -= 1
                kind = "fail"
            elif faults.throttle_next > 0:
                faults.throttle_next -= 1
                kind = "throttle"
            lose_answer = kind is None and faults.lose_answer_next > 0
            if lose_answer:
                faults.lose_answer_next -= 1
            return kind, faults.delay, faults.retry_after, faults.reject_all, lose_answer

    def _store_records(self, items: Sequence[tuple[str, str]]) -> list[tuple[dict[str, str], int]]:
        store = self._store
        if store is None:
            raise RuntimeError("the receiver is not running")
        if len(items) == 1:
            return [store.put(*items[0])]
        return store.put_many(items)

    def _lookup(self, record_id: str) -> dict[str, Any] | None:
        rows = _read_store(
            self.store_path,
            "SELECT receipt_id, received_at, body FROM received WHERE record_id = ?",
            (record_id,),
        )
        if not rows:
            return None
        receipt_id, received_at, body = rows[0]
        return {
            "record_id": record_id,
            "receipt_id": receipt_id,
            "received_at": received_at,
            "record": json.loads(body),
        }

    # -- inspection (tests, operators) -------------------------------------------------------------------

    @property
    def post_count(self) -> int:
        """How many POSTs of records arrived since construction, duplicates and failures included.

        A ``POST /v1/records:batch`` counts once, however many records it carries.
        """
        with self._lock:
            return self._post_count

    def received_ids(self) -> list[str]:
        """Ids of the records stored, in order of first arrival (works while stopped, too)."""
        return [
            str(row[0]) for row in _read_store(self.store_path, "SELECT record_id FROM received ORDER BY seq")
        ]

    def received(self, record_id: str) -> dict[str, Any]:
        """The stored record body.

        :raises KeyError: no such record was received.
        """
        found = self._lookup(record_id)
        if found is None:
            raise KeyError(record_id)
        return cast(dict[str, Any], found["record"])

    def receipt(self, record_id: str) -> dict[str, str]:
        """The receipt issued for a record (``receipt_id``, ``received_at``).

        :raises KeyError: no such record was received.
        """
        found = self._lookup(record_id)
        if found is None:
            raise KeyError(record_id)
        return {"receipt_id": found["receipt_id"], "received_at": found["received_at"]}


def serve_forever(
    store_dir: Path | str,
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8443,
    certfile: Path | str | None = None,
    keyfile: Path | str | None = None,
    faults: Faults | None = None,
) -> None:
    """Run the reference receiver in the foreground until Ctrl-C (for a command-line ``receiver`` command)."""
    ReceiverServer(
        store_dir, token, host=host, port=port, certfile=certfile, keyfile=keyfile, faults=faults
    ).serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m upload.receiver``: serve the reference receiver in the foreground.

    The token is read from ``$OBDTOOL_RECEIVER_TOKEN`` because command-line arguments are visible to every
    user of the computer.
    """
    parser = argparse.ArgumentParser(
        prog="python -m upload.receiver", description="Run obdtool's reference upload receiver."
    )
    parser.add_argument("--store", required=True, help="folder for the received-records database")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert", help="PEM certificate; serves HTTPS when given")
    parser.add_argument("--key", help="PEM private key, if not inside --cert")
    parser.add_argument("--fail", default="", help="faults, e.g. fail=2,throttle=1,retry-after=1,reset=1")
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        parser.error(f"set the token in ${TOKEN_ENV}")
    try:
        faults = parse_faults(args.fail)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve_forever(
        args.store, token, host=args.host, port=args.port, certfile=args.cert, keyfile=args.key, faults=faults
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
