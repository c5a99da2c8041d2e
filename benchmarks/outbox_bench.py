"""Outbox flush figures for ``bench_check.py``: fill an outbox, serve endpoints, flush in a child process.

Three roles, each run in its own process so that one's CPU and memory do not blur another's figures:

* ``fill_outbox`` (called in the parent): N pending records loaded straight into the outbox's SQLite table.
  ``Outbox.add`` validates every record against the JSON schema (about 4 ms each with jsonschema), which
  is the cost of *adding*, measured elsewhere; a 100k queue would take minutes to build that way and
  tell nothing about delivery. The upload tests load large outboxes the same way.
* ``python outbox_bench.py receiver STORE PORT``: the reference receiver (``upload.receiver``).
* ``python outbox_bench.py stub PORT``: a loopback endpoint that speaks the same contract
  (``POST /v1/records`` and ``POST /v1/records:batch``, receipts, one result per record) but checks nothing
  and stores nothing. It shows what obdtool's side can deliver when the endpoint is not the bottleneck:
  the reference receiver validates every record against the schema in pure Python, which caps it.
* ``python outbox_bench.py flush OUTBOX URL LIMIT BATCH``: ``deliver_pending`` over one ``UploadClient``
  (keep-alive, batches of BATCH records), then one JSON line: records, seconds, peak RSS.

The token comes from ``OBDTOOL_RECEIVER_TOKEN`` in every role.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOKEN_ENV = "OBDTOOL_RECEIVER_TOKEN"
EXAMPLE = ROOT / "upload" / "examples" / "visit-example.json"


def fill_outbox(path: Path, count: int) -> None:
    """Create an outbox at ``path`` holding ``count`` pending visit records (copies of the example record).

    The first record goes through ``Outbox.add`` (so the file is a real, validated outbox); the rest are
    inserted in one transaction from a generator, so filling 100k records takes seconds and little memory.
    """
    from upload.outbox import Outbox

    template = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    first = copy.deepcopy(template)
    first["record_id"] = str(uuid.uuid4())
    with Outbox(path) as box:
        box.add(first)
    body = json.dumps(first, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    vin, created = first["vehicle"]["vin"], first["created_at"]

    def rows() -> Iterator[tuple[str, str, str, str]]:
        for _ in range(count - 1):
            record_id = str(uuid.uuid4())
            yield record_id, vin, created, body.replace(first["record_id"], record_id)

    conn = sqlite3.connect(path)
    try:
        conn.executemany(
            "INSERT INTO records (record_id, vin, kind, created_at, state, body, attempts, updated_at) "
            "VALUES (?, ?, 'visit', ?, 'pending', ?, 0, '2025-01-01T00:00:00.000000Z')",
            rows(),
        )
        conn.commit()
    finally:
        conn.close()


# -- the stub endpoint ---------------------------------------------------------------------------------------


class _StubHandler(BaseHTTPRequestHandler):
    """Answers the upload contract without checking or storing anything."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(HTTPStatus.OK, {"status": "ok", "schema_version": "1.0"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        now = "2025-01-01T00:00:00.000Z"
        if self.path == "/v1/records:batch":
            records = json.loads(body)["records"]
            results = [
                {"record_id": r["record_id"], "status": 201, "receipt_id": r["record_id"], "received_at": now}
                for r in records
            ]
            self._answer(HTTPStatus.OK, {"results": results})
        else:
            record_id = json.loads(body)["record_id"]
            self._answer(HTTPStatus.CREATED, {"receipt_id": record_id, "received_at": now})


class _StubServer(ThreadingHTTPServer):
    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the reference receiver does
        return sock, address


def serve_stub(port: int) -> None:
    """Serve the stub endpoint on 127.0.0.1:``port`` until killed."""
    _StubServer(("127.0.0.1", port), _StubHandler).serve_forever()


# -- the flushing child --------------------------------------------------------------------------------------


def flush(outbox_path: Path, url: str, limit: int, batch: int) -> dict[str, Any]:
    """Deliver up to ``limit`` pending records with one client; return the figures."""
    from upload.client import UploadClient, deliver_pending
    from upload.outbox import Outbox

    token = os.environ[TOKEN_ENV]
    with Outbox(outbox_path) as box, UploadClient(url, token, timeout=60.0, batch_size=batch) as client:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        report = deliver_pending(box, client, limit=limit)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "records": report.sent,
        "rejected": report.rejected,
        "error": None if report.stopped_by is None else str(report.stopped_by),
        "seconds": seconds,
        "records_per_s": report.sent / seconds if seconds > 0 else 0.0,
        "rss_before_flush_kib": before,
        "peak_rss_kib": peak,
    }


# -- helpers for the parent ----------------------------------------------------------------------------------


def start(role: str, *args: str) -> subprocess.Popen[bytes]:
    """Start this script in ``role`` as a child process."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), role, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until_up(url: str, seconds: float = 15.0) -> None:
    """Poll ``url/v1/health`` until it answers.

    :raises TimeoutError: when it does not answer in time.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/health", timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers at {url}") from None
            time.sleep(0.05)


def run_flush(outbox_path: Path, url: str, limit: int, batch: int) -> dict[str, Any]:
    """Run :func:`flush` in a fresh child process (so its peak RSS is the flush's alone)."""
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "flush",
            str(outbox_path),
            url,
            str(limit),
            str(batch),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> int:
    role, *args = argv
    if role == "stub":
        serve_stub(int(args[0]))
    elif role == "receiver":
        from upload.receiver import ReceiverServer

        ReceiverServer(args[0], os.environ[TOKEN_ENV], port=int(args[1])).serve_forever()
    elif role == "flush":
        print(json.dumps(flush(Path(args[0]), args[1], int(args[2]), int(args[3]))))
    else:
        raise SystemExit(f"unknown role {role!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
