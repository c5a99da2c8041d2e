"""POST /v1/records:batch: the receiver judges each record alone; the client falls back to single POSTs."""

from __future__ import annotations

import json
import logging
import sqlite3
import ssl
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from upload_support import TOKEN, TlsFiles

from upload.client import Receipt, UploadClient, deliver_pending
from upload.errors import UploadError, UploadRejectedError, UploadRetryableError
from upload.outbox import Outbox
from upload.receiver import ReceiverServer

MakeClient = Callable[..., UploadClient]
MakeRecord = Callable[..., dict[str, Any]]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def http(receiver: ReceiverServer, tls: TlsFiles) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    with httpx.Client(base_url=receiver.url, verify=context, timeout=5.0, trust_env=False) as client:
        yield client


def _batch(
    http: httpx.Client, records: Sequence[object], headers: Mapping[str, str] = AUTH
) -> httpx.Response:
    return http.post("/v1/records:batch", json={"records": list(records)}, headers=dict(headers))


# -- the receiver --------------------------------------------------------------------------------------------


def test_each_record_gets_its_own_verdict(
    http: httpx.Client, receiver: ReceiverServer, make_record: MakeRecord
) -> None:
    known = make_record()
    assert http.post(
        "/v1/records", json=known, headers={**AUTH, "Idempotency-Key": known["record_id"]}
    ).is_success
    fresh, again, changed = make_record(), dict(known), dict(known, workshop_id="OTHER")
    invalid = dict(make_record(), customer_name="Jane Doe")

    answer = _batch(http, [fresh, again, invalid, changed, "not a record"])

    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [201, 200, 422, 409, 422]
    assert [r["record_id"] for r in results] == [
        fresh["record_id"],
        known["record_id"],
        invalid["record_id"],
        known["record_id"],
        None,
    ]
    assert results[0]["receipt_id"] == receiver.receipt(fresh["record_id"])["receipt_id"]
    assert results[1]["receipt_id"] == receiver.receipt(known["record_id"])["receipt_id"]
    assert results[2]["path"] == "$.customer_name"
    assert "different record" in results[3]["message"]
    assert receiver.received_ids() == [known["record_id"], fresh["record_id"]]
    assert receiver.post_count == 2  # a batch is one POST, however many records it carries


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"records": []}, 400),
        ({"record": []}, 400),
        ([1, 2], 400),
        ({"records": [{}] * 501}, 400),
    ],
)
def test_malformed_batches_are_refused_as_a_whole(
    http: httpx.Client, receiver: ReceiverServer, body: object, status: int
) -> None:
    answer = http.post("/v1/records:batch", json=body, headers=AUTH)
    assert answer.status_code == status
    assert answer.json()["path"] == "$.records"
    assert receiver.received_ids() == []


def test_batch_needs_the_token_and_json(http: httpx.Client, make_record: MakeRecord) -> None:
    assert _batch(http, [make_record()], headers={}).status_code == 401
    assert (
        http.post(
            "/v1/records:batch", content=b"records", headers={**AUTH, "Content-Type": "text/plain"}
        ).status_code
        == 415
    )


def test_an_endpoint_without_the_batch_path_answers_404(
    http: httpx.Client, receiver: ReceiverServer, make_record: MakeRecord
) -> None:
    receiver.faults.no_batch = True
    assert _batch(http, [make_record()]).status_code == 404
    assert receiver.post_count == 0


# -- the client ----------------------------------------------------------------------------------------------


def test_a_flaky_server_still_gets_every_record_exactly_once(
    outbox: Outbox, receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    ids = [outbox.add(make_record()) for _ in range(5)]
    receiver.faults.fail_next = 2
    receiver.faults.reset_next = 1
    receiver.faults.lose_answer_next = 1  # the whole batch is stored, then the answer is lost
    progress: list[tuple[int, int]] = []

    report = deliver_pending(
        outbox, make_client(receiver.url), progress=lambda done, total: progress.append((done, total))
    )

    assert (report.sent, report.duplicates, report.remaining) == (5, 5, 0)
    assert receiver.received_ids() == ids
    assert receiver.post_count == 2 + 1 + 1 + 1  # fail, fail, reset, lost answer, then the repeat
    assert progress == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    for record_id in ids:
        entry = outbox.get(record_id)
        assert entry.state == "sent"
        assert entry.receipt is not None
        assert entry.receipt["receipt_id"] == receiver.receipt(record_id)["receipt_id"]


def test_batches_follow_the_batch_size(
    outbox: Outbox, receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    ids = [outbox.add(make_record()) for _ in range(7)]
    report = deliver_pending(outbox, make_client(receiver.url, batch_size=3))
    assert (report.sent, report.remaining) == (7, 0)
    assert receiver.received_ids() == ids
    assert receiver.post_count == 3  # 3 + 3 + 1, the last one as a single POST


def test_a_rejected_record_does_not_hold_up_its_batch(
    outbox: Outbox,
    receiver: ReceiverServer,
    make_client: MakeClient,
    make_record: MakeRecord,
    http: httpx.Client,
) -> None:
    ids = [outbox.add(make_record()) for _ in range(3)]
    clash = dict(outbox.get(ids[1]).body, workshop_id="SOMEONE-ELSE")
    assert http.post("/v1/records", json=clash, headers={**AUTH, "Idempotency-Key": ids[1]}).is_success

    report = deliver_pending(outbox, make_client(receiver.url))

    assert (report.sent, report.rejected, report.failed, report.remaining) == (2, 1, 0, 0)
    assert [outbox.get(i).state for i in ids] == ["sent", "rejected", "sent"]
    assert "different record" in (outbox.get(ids[1]).last_error or "")


def test_without_a_batch_path_the_client_sends_one_by_one_and_stops_asking(
    outbox: Outbox,
    receiver: ReceiverServer,
    make_client: MakeClient,
    make_record: MakeRecord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.faults.no_batch = True
    ids = [outbox.add(make_record()) for _ in range(5)]
    client = make_client(receiver.url, batch_size=2)
    caplog.set_level(logging.INFO, logger="upload.client")

    report = deliver_pending(outbox, client)

    assert (report.sent, report.remaining) == (5, 0)
    assert receiver.received_ids() == ids
    assert receiver.post_count == 5  # one POST per record
    assert client.batch_size == 1
    assert caplog.text.count("HTTP 404 to a batch") == 1  # the batch path was tried once


def test_auth_failure_of_a_batch_stops_the_run(
    outbox: Outbox, receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    ids = [outbox.add(make_record()) for _ in range(3)]
    report = deliver_pending(outbox, make_client(receiver.url, token="tok-wrong"))
    assert (report.sent, report.failed, report.remaining) == (0, 1, 3)
    assert report.stopped_by is not None and "token" in str(report.stopped_by)
    assert receiver.post_count == 1
    assert [outbox.get(i).attempts for i in ids] == [1, 0, 0]


def _client(handler: Callable[[httpx.Request], httpx.Response], **options: Any) -> UploadClient:
    options.setdefault("sleep", lambda _seconds: None)
    return UploadClient("http://127.0.0.1:9", TOKEN, transport=httpx.MockTransport(handler), **options)


def test_an_unreadable_batch_answer_is_retried(make_record: MakeRecord) -> None:
    records = [make_record(), make_record()]
    answers = iter(
        [
            httpx.Response(200, json={"results": []}),  # does not fit the batch
            httpx.Response(
                200,
                json={
                    "results": [
                        {"record_id": r["record_id"], "status": 201, "receipt_id": "r", "received_at": "t"}
                        for r in records
                    ]
                },
            ),
        ]
    )
    with _client(lambda request: next(answers)) as client:
        outcomes = client.send_batch(records)
    assert outcomes == [Receipt("r", "t"), Receipt("r", "t")]


def test_results_outside_the_contract_keep_the_record_pending(make_record: MakeRecord) -> None:
    records = [make_record(), make_record()]

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/records:batch"
        assert json.loads(request.content)["records"] == records
        first, second = (r["record_id"] for r in records)
        return httpx.Response(
            200,
            json={
                "results": [
                    {"record_id": first, "status": 422, "message": "bad\n value", "path": "$.x"},
                    {"record_id": second, "status": 507},
                ]
            },
        )

    with _client(answer) as client:
        outcomes = client.send_batch(records)
    assert outcomes is not None
    rejected, unknown = outcomes
    assert isinstance(rejected, UploadRejectedError) and rejected.server_message == "bad value"
    assert isinstance(unknown, UploadRetryableError) and unknown.status == 507


@pytest.mark.parametrize("status", [400, 413, 415, 422])
def test_a_refused_batch_is_sent_record_by_record(status: int, make_record: MakeRecord) -> None:
    with _client(lambda request: httpx.Response(status, json={"message": "no"})) as client:
        assert client.send_batch([make_record(), make_record()]) is None
        assert client.batch_size == (100 if status == 413 else 1)


# -- memory --------------------------------------------------------------------------------------------------


class _CountingSender:
    """A batch sender that answers every record with a receipt, without a network."""

    batch_size = 100

    def __init__(self) -> None:
        self.seen = 0

    def send(self, record: Mapping[str, Any]) -> Receipt:
        self.seen += 1
        return Receipt(str(record["record_id"]), "2025-01-01T00:00:00Z")

    def send_batch(self, records: Sequence[Mapping[str, Any]]) -> list[Receipt | UploadError] | None:
        return [self.send(record) for record in records]


def _bulk_outbox(path: Path, template: dict[str, Any], total: int) -> None:
    """An outbox of ``total`` pending copies of ``template``, loaded through SQLite directly.

    Validating each copy on the way in would only measure jsonschema.
    """
    with Outbox(path) as box:
        box.add(template)
    body = json.dumps(template, sort_keys=True, separators=(",", ":"))
    vin, created = template["vehicle"]["vin"], template["created_at"]
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO records (record_id, vin, kind, created_at, state, body, updated_at) "
        "VALUES (?, ?, 'visit', ?, 'pending', ?, '2025-01-01T00:00:00.000000Z')",
        (
            (rid, vin, created, body.replace(template["record_id"], rid))
            for rid in (str(uuid.UUID(int=n)) for n in range(1, total))
        ),
    )
    conn.commit()
    conn.close()


def _delivery_peak(path: Path, total: int) -> int:
    sender = _CountingSender()
    with Outbox(path) as box:
        tracemalloc.start()
        try:
            report = deliver_pending(box, sender)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert box.count("sent") == total
    assert (report.sent, sender.seen) == (total, total)
    return peak


def test_delivery_streams_the_queue_with_flat_memory(tmp_path: Path, make_record: MakeRecord) -> None:
    """Five times the queue, the same peak: memory follows the batch and page sizes, not the queue."""
    template = make_record()
    _bulk_outbox(tmp_path / "small.sqlite3", template, 600)
    _bulk_outbox(tmp_path / "large.sqlite3", template, 3000)
    small = _delivery_peak(tmp_path / "small.sqlite3", 600)
    large = _delivery_peak(tmp_path / "large.sqlite3", 3000)
    assert large < small * 1.5, f"5x the queue took {large} bytes at peak, against {small}"


def test_marking_a_batch_sent_touches_only_pending_records(outbox: Outbox, make_record: MakeRecord) -> None:
    first, second, third = (outbox.add(make_record()) for _ in range(3))
    earlier = {"receipt_id": "earlier", "received_at": "2025-03-14T10:00:00Z", "duplicate": False}
    outbox.mark_sent(second, earlier)
    outbox.mark_rejected(third, "refused")
    receipt = {"receipt_id": "now", "received_at": "2025-03-14T11:00:00Z", "duplicate": False}

    changed = outbox.mark_sent_many({first: receipt, second: receipt, third: receipt, "gone": receipt})

    assert changed == 1
    assert outbox.get(first).state == "sent" and outbox.get(first).receipt == receipt
    assert outbox.get(second).receipt == earlier  # the first receipt stays
    assert outbox.get(third).state == "rejected"
    assert outbox.mark_sent_many({}) == 0
