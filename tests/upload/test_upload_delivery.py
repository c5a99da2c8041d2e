"""deliver_pending: outbox + client + real receiver; nothing is lost and nothing arrives twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from upload_support import TOKEN, SleepRecorder, TlsFiles

from upload.client import UploadClient, deliver_pending
from upload.errors import TlsError, UploadAuthError, UploadRetryableError
from upload.outbox import Outbox
from upload.receiver import ReceiverServer

MakeClient = Callable[..., UploadClient]
MakeRecord = Callable[..., dict[str, Any]]


def test_add_deliver_sent_with_receipt(
    outbox: Outbox, receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    record = make_record()
    record_id = outbox.add(record)
    assert outbox.get(record_id).state == "pending"

    report = deliver_pending(outbox, make_client(receiver.url))

    assert (report.sent, report.duplicates, report.rejected, report.failed, report.remaining) == (
        1,
        0,
        0,
        0,
        0,
    )
    assert report.stopped_by is None
    entry = outbox.get(record_id)
    assert entry.state == "sent"
    assert entry.attempts == 1
    assert entry.receipt is not None
    assert entry.receipt["receipt_id"] == receiver.receipt(record_id)["receipt_id"]
    assert entry.receipt["duplicate"] is False
    assert receiver.received(record_id) == record


def test_receiver_down_then_up_delivers_exactly_once(
    tmp_path: Path,
    tls: TlsFiles,
    outbox: Outbox,
    make_client: MakeClient,
    make_record: MakeRecord,
    sleeps: SleepRecorder,
) -> None:
    server = ReceiverServer(tmp_path / "store", TOKEN, certfile=tls.certfile)
    server.start()
    url = server.url
    server.stop()  # the port is known, nobody listens: connection refused

    record_id = outbox.add(make_record())
    client = make_client(url, max_attempts=3)
    report = deliver_pending(outbox, client)
    assert (report.sent, report.failed, report.remaining) == (0, 1, 1)
    assert isinstance(report.stopped_by, UploadRetryableError)
    entry = outbox.get(record_id)
    assert entry.state == "pending"
    assert entry.attempts == 1
    assert entry.last_error is not None and "could not be reached" in entry.last_error
    assert len(sleeps.delays) == 2

    server.start()  # same port, same durable store
    try:
        report = deliver_pending(outbox, client)
        assert (report.sent, report.remaining, report.stopped_by) == (1, 0, None)
        assert server.post_count == 1
        assert server.received_ids() == [record_id]
        report = deliver_pending(outbox, client)  # nothing pending: nothing sent again
        assert (report.sent, report.remaining) == (0, 0)
        assert server.post_count == 1
    finally:
        server.stop()
    assert outbox.get(record_id).state == "sent"


def test_several_records_and_a_flaky_server(
    outbox: Outbox, receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    ids = [outbox.add(make_record()) for _ in range(5)]
    receiver.faults.fail_next = 2
    receiver.faults.reset_next = 1
    receiver.faults.lose_answer_next = 1
    progress: list[tuple[int, int]] = []

    report = deliver_pending(
        outbox,
        make_client(receiver.url, batch_size=1),  # one POST per record
        progress=lambda done, total: progress.append((done, total)),
    )

    assert (report.sent, report.duplicates, report.remaining) == (5, 1, 0)
    assert receiver.received_ids() == ids
    assert receiver.post_count == 5 + 2 + 1 + 1
    assert progress == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert all(outbox.get(record_id).state == "sent" for record_id in ids)


def test_rejections_do_not_stop_the_run_and_can_be_requeued(
    outbox: Outbox, receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    ids = [outbox.add(make_record()) for _ in range(3)]
    receiver.faults.reject_all = True
    client = make_client(receiver.url)

    report = deliver_pending(outbox, client)
    assert (report.sent, report.rejected, report.failed, report.remaining) == (0, 3, 0, 0)
    for record_id in ids:
        entry = outbox.get(record_id)
        assert entry.state == "rejected"
        assert entry.last_error is not None and "rejects every record" in entry.last_error

    receiver.faults.reject_all = False
    outbox.requeue(ids[1])
    report = deliver_pending(outbox, client)
    assert (report.sent, report.remaining) == (1, 0)
    assert receiver.received_ids() == [ids[1]]
    assert outbox.count("rejected") == 2


def test_auth_error_stops_the_run_and_leaves_records_pending(
    outbox: Outbox,
    receiver: ReceiverServer,
    make_client: MakeClient,
    make_record: MakeRecord,
    sleeps: SleepRecorder,
) -> None:
    records = [make_record() for _ in range(3)]
    for record in records:
        outbox.add(record)

    report = deliver_pending(outbox, make_client(receiver.url, token="expired-token"))

    assert isinstance(report.stopped_by, UploadAuthError)
    assert (report.sent, report.failed, report.remaining) == (0, 1, 3)
    assert receiver.post_count == 1  # no hammering with a bad token
    assert sleeps.delays == []
    for record in records:
        entry = outbox.get(record["record_id"])
        assert entry.state == "pending"
        assert entry.body == record


def test_tls_error_stops_the_run(
    tmp_path: Path, other_tls: TlsFiles, outbox: Outbox, make_client: MakeClient, make_record: MakeRecord
) -> None:
    ids = [outbox.add(make_record()) for _ in range(2)]
    with ReceiverServer(tmp_path / "store", TOKEN, certfile=other_tls.certfile) as impostor:
        report = deliver_pending(outbox, make_client(impostor.url))
        assert impostor.post_count == 0
    assert isinstance(report.stopped_by, TlsError)
    assert (report.failed, report.remaining) == (1, 2)
    assert [outbox.get(record_id).state for record_id in ids] == ["pending", "pending"]


def test_server_already_had_the_record(
    outbox: Outbox, receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    record = make_record()
    client = make_client(receiver.url)
    first = client.send(record)  # e.g. an earlier run whose outbox update failed
    outbox.add(record)

    report = deliver_pending(outbox, client)

    assert (report.sent, report.duplicates) == (1, 1)
    receipt = outbox.get(record["record_id"]).receipt
    assert receipt is not None and receipt["receipt_id"] == first.receipt_id
    assert receiver.received_ids() == [record["record_id"]]


def test_limit_and_order(
    outbox: Outbox, receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    ids = [outbox.add(make_record()) for _ in range(4)]
    report = deliver_pending(outbox, make_client(receiver.url), limit=2)
    assert (report.sent, report.remaining) == (2, 2)
    assert receiver.received_ids() == ids[:2]


def test_records_delivered_elsewhere_meanwhile_are_not_sent(
    outbox: Outbox, receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    ids = [outbox.add(make_record()) for _ in range(3)]
    ids.append(outbox.add(make_record(vin="1HGCM82633A004352")))
    client = make_client(receiver.url)
    elsewhere = {"receipt_id": "elsewhere", "received_at": "2025-03-14T10:00:00Z", "duplicate": False}

    class AnotherProcessIsBusyToo:
        """While this run sends the first record, another obdtool delivers the third and erases the fourth."""

        def send(self, record: dict[str, Any]) -> Any:
            receipt = client.send(record)
            if record["record_id"] == ids[0]:
                outbox.mark_sent(ids[2], elsewhere)
                outbox.purge_vin("1HGCM82633A004352")  # the owner's erasure request
            return receipt

    progress: list[tuple[int, int]] = []
    report = deliver_pending(outbox, AnotherProcessIsBusyToo(), progress=lambda *p: progress.append(p))

    assert report.sent == 2
    assert receiver.received_ids() == [ids[0], ids[1]]
    assert receiver.post_count == 2
    assert outbox.get(ids[2]).receipt == elsewhere
    assert progress[-1] == (4, 4)
