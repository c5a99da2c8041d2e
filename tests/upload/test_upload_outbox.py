"""The outbox on real SQLite files: durability, states, permissions, damage and write failures, retention."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from upload_support import files_bytes

from upload.errors import (
    OutboxCorruptError,
    OutboxError,
    OutboxWriteError,
    RecordInvalidError,
    RecordNotFoundError,
)
from upload.outbox import DATA_DIR_ENV, Outbox, default_outbox_path

MakeRecord = Callable[..., dict[str, Any]]
RECEIPT = {"receipt_id": "r-1", "received_at": "2025-03-14T10:00:00.000Z", "duplicate": False}


class Clock:
    """A settable clock for the outbox's bookkeeping timestamps."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- basic life cycle ----------------------------------------------------------------------------------------


def test_add_commits_a_pending_record(tmp_path: Path, make_record: MakeRecord) -> None:
    path = tmp_path / "outbox.sqlite3"
    record = make_record()
    with Outbox(path) as box:
        assert box.add(record) == record["record_id"]
        # A second, independent connection sees it at once: add() returned only after the commit.
        with Outbox(path) as other:
            entry = other.get(record["record_id"])
    assert entry.state == "pending"
    assert entry.vin == record["vehicle"]["vin"]
    assert entry.kind == "visit"
    assert entry.created_at == record["created_at"]
    assert entry.attempts == 0
    assert entry.receipt is None and entry.sent_at is None and entry.last_error is None
    assert entry.body == record


def test_invalid_record_is_not_stored(outbox: Outbox, make_record: MakeRecord) -> None:
    record = make_record()
    record["vehicle"]["customer_name"] = "Erika Mustermann"
    with pytest.raises(RecordInvalidError) as caught:
        outbox.add(record)
    assert caught.value.path == "$.vehicle.customer_name"
    assert outbox.count() == 0
    assert b"Erika" not in files_bytes(outbox.path)


def test_same_record_twice_is_stored_once_but_a_different_body_is_refused(
    outbox: Outbox, make_record: MakeRecord
) -> None:
    record = make_record()
    outbox.add(record)
    outbox.add(dict(record))
    assert outbox.count() == 1
    changed = dict(record, workshop_id="OTHER")
    with pytest.raises(OutboxError, match="never overwritten"):
        outbox.add(changed)
    assert outbox.get(record["record_id"]).body["workshop_id"] == record["workshop_id"]


def test_state_transitions(outbox: Outbox, make_record: MakeRecord) -> None:
    record_id = outbox.add(make_record())
    outbox.note_attempt(record_id, "the server could not be reached")
    entry = outbox.get(record_id)
    assert (entry.state, entry.attempts, entry.last_error) == (
        "pending",
        1,
        "the server could not be reached",
    )

    outbox.mark_rejected(record_id, "HTTP 422: bad")
    entry = outbox.get(record_id)
    assert (entry.state, entry.attempts, entry.last_error) == ("rejected", 2, "HTTP 422: bad")
    with pytest.raises(OutboxError):
        outbox.mark_sent(record_id, RECEIPT)
    with pytest.raises(OutboxError):
        outbox.note_attempt(record_id, "x")

    outbox.requeue(record_id)
    assert outbox.get(record_id).state == "pending"
    outbox.requeue(record_id)  # already pending: nothing to do

    outbox.mark_sent(record_id, RECEIPT)
    entry = outbox.get(record_id)
    assert (entry.state, entry.receipt, entry.last_error) == ("sent", RECEIPT, None)
    assert entry.sent_at is not None and entry.sent_at.endswith("Z")
    outbox.mark_sent(record_id, {"receipt_id": "other", "received_at": "x"})  # keeps the first receipt
    assert outbox.get(record_id).receipt == RECEIPT
    with pytest.raises(OutboxError, match="already delivered"):
        outbox.requeue(record_id)
    with pytest.raises(OutboxError):
        outbox.mark_rejected(record_id, "late")


def test_unknown_record(outbox: Outbox) -> None:
    missing = str(uuid.uuid4())
    for call in (
        lambda: outbox.get(missing),
        lambda: outbox.note_attempt(missing, "x"),
        lambda: outbox.mark_sent(missing, RECEIPT),
        lambda: outbox.mark_rejected(missing, "x"),
        lambda: outbox.requeue(missing),
    ):
        with pytest.raises(RecordNotFoundError, match=missing):
            call()


def test_counts_queue_and_filters(outbox: Outbox, make_record: MakeRecord) -> None:
    first = outbox.add(make_record())
    second = outbox.add(make_record(vin="1HGCM82633A004352"))
    third = outbox.add(make_record(vin=None))
    clear = make_record(kind="clear", clear=json.loads(json.dumps(_clear_report())))
    fourth = outbox.add(clear)
    outbox.mark_sent(second, RECEIPT)
    assert outbox.count() == 4
    assert outbox.count("pending") == 3
    assert outbox.count("sent") == 1
    assert outbox.pending_ids() == [first, third, fourth]
    assert outbox.pending_ids(limit=2) == [first, third]
    assert [e.record_id for e in outbox.iter_entries()] == [first, second, third, fourth]
    assert [e.record_id for e in outbox.iter_entries(state="sent")] == [second]
    assert [e.record_id for e in outbox.iter_entries(vin="WVWZZZ1KZ8W000001")] == [first, fourth]
    assert [e.record_id for e in outbox.iter_entries(kind="clear")] == [fourth]
    assert outbox.get(third).vin is None
    with pytest.raises(ValueError, match="unknown record state"):
        outbox.count("lost")  # type: ignore[arg-type]


def _clear_report() -> dict[str, Any]:
    from upload_support import load_example

    report: dict[str, Any] = load_example("clear-example.json")["clear"]
    return report


def test_closed_outbox_refuses_work(tmp_path: Path, make_record: MakeRecord) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.close()
    box.close()
    with pytest.raises(OutboxError, match="closed"):
        box.add(make_record())


# -- files and permissions -----------------------------------------------------------------------------------


def test_folder_is_0700_and_files_are_0600(tmp_path: Path, make_record: MakeRecord) -> None:
    os.umask(0o022)
    path = tmp_path / "fresh" / "obdtool" / "outbox.sqlite3"
    with Outbox(path) as box:
        box.add(make_record())
        assert _mode(path.parent) == 0o700
        assert _mode(path.parent.parent) == 0o700
        assert _mode(path) == 0o600
        for companion in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            if companion.exists():
                assert _mode(companion) == 0o600


def test_existing_file_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    Outbox(path).close()
    path.chmod(0o644)
    Outbox(path).close()
    assert _mode(path) == 0o600


def test_wal_and_full_sync_are_used(outbox: Outbox) -> None:
    conn = sqlite3.connect(outbox.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert outbox._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_default_path_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "portable"))
    assert default_outbox_path() == tmp_path / "portable" / "outbox.sqlite3"
    monkeypatch.delenv(DATA_DIR_ENV)
    path = default_outbox_path()
    assert path.name == "outbox.sqlite3"
    assert "obdtool" in path.parts


# -- damage --------------------------------------------------------------------------------------------------


def test_garbage_file_is_reported_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    path.chmod(0o644)
    with pytest.raises(OutboxCorruptError) as caught:
        Outbox(path)
    assert str(path) in str(caught.value)
    assert "left untouched" in str(caught.value)
    assert path.read_bytes() == garbage
    assert _mode(path) == 0o644
    assert not Path(f"{path}-wal").exists()


def test_damaged_pages_are_reported_and_left_untouched(tmp_path: Path, make_record: MakeRecord) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        for _ in range(40):
            box.add(make_record())
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    for offset in range(4096, len(data), 4096):  # keep the header page, scribble over every other page start
        data[offset : offset + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(OutboxCorruptError, match="left untouched"):
        Outbox(path)
    assert path.read_bytes() == bytes(data)


def test_foreign_sqlite_database_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "someone-else.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(OutboxCorruptError, match="not an obdtool outbox"):
        Outbox(path)
    assert path.read_bytes() == before


def test_a_directory_in_place_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.mkdir()
    with pytest.raises(OutboxCorruptError, match="not a regular file"):
        Outbox(path)


def test_empty_file_becomes_an_outbox(tmp_path: Path, make_record: MakeRecord) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.touch()
    with Outbox(path) as box:
        box.add(make_record())
        assert box.count() == 1


# -- write failures (honest ways that work even as root) -----------------------------------------------------


def test_data_folder_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    for path in (blocker / "outbox.sqlite3", blocker / "deeper" / "outbox.sqlite3"):
        with pytest.raises(OutboxWriteError, match="nothing was saved"):
            Outbox(path)
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutboxWriteError):
            Outbox(folder / "outbox.sqlite3")
    finally:
        folder.chmod(0o700)


def test_read_only_database_does_not_claim_the_record_saved(outbox: Outbox, make_record: MakeRecord) -> None:
    # PRAGMA query_only makes SQLite answer every write with SQLITE_READONLY, as a read-only file would.
    outbox._connection().execute("PRAGMA query_only=ON")
    record = make_record()
    with pytest.raises(OutboxWriteError, match="read-only") as caught:
        outbox.add(record)
    assert "Nothing was saved" in str(caught.value)
    outbox._connection().execute("PRAGMA query_only=OFF")
    assert outbox.count() == 0
    with pytest.raises(RecordNotFoundError):
        outbox.get(record["record_id"])


def test_full_disk_does_not_claim_the_record_saved(outbox: Outbox, make_record: MakeRecord) -> None:
    # max_page_count caps the file: SQLite then fails with SQLITE_FULL, the same error a full disk gives.
    conn = outbox._connection()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    big = make_record()
    big["warnings"] = ["x" * 500] * 200
    with pytest.raises(OutboxWriteError, match="disk is full"):
        outbox.add(big)
    assert outbox.count() == 0


# -- retention, erasure and access ---------------------------------------------------------------------------


def test_purge_sent_removes_only_old_sent_records(tmp_path: Path, make_record: MakeRecord) -> None:
    clock = Clock(datetime(2025, 1, 1, tzinfo=UTC))
    with Outbox(tmp_path / "o.sqlite3", clock=clock) as box:
        old_sent = box.add(make_record())
        old_pending = box.add(make_record())
        old_rejected = box.add(make_record())
        box.mark_sent(old_sent, RECEIPT)
        box.mark_rejected(old_rejected, "no")
        clock.now += timedelta(days=60)
        new_sent = box.add(make_record())
        box.mark_sent(new_sent, RECEIPT)
        clock.now += timedelta(days=1)

        assert box.purge_sent(timedelta(days=30)) == 1
        remaining = {entry.record_id for entry in box.iter_entries()}
        assert remaining == {old_pending, old_rejected, new_sent}
        assert box.purge_sent(timedelta(days=30)) == 0
        assert box.purge_sent(timedelta(0), now=clock.now + timedelta(seconds=1)) == 1
        assert {entry.record_id for entry in box.iter_entries()} == {old_pending, old_rejected}
        with pytest.raises(ValueError, match="negative"):
            box.purge_sent(timedelta(days=-1))


def test_purge_vin_erases_every_record_of_the_vehicle(outbox: Outbox, make_record: MakeRecord) -> None:
    vin, other_vin = "WVWZZZ1KZ8W000001", "1HGCM82633A004352"
    sent = outbox.add(make_record(vin=vin))
    outbox.mark_sent(sent, RECEIPT)
    rejected = outbox.add(make_record(vin=vin))
    outbox.mark_rejected(rejected, "no")
    outbox.add(make_record(vin=vin))
    kept = outbox.add(make_record(vin=other_vin))
    assert vin.encode() in files_bytes(outbox.path)

    assert outbox.purge_vin(vin) == 3
    assert [entry.record_id for entry in outbox.iter_entries()] == [kept]
    assert outbox.export_vin(vin) == []
    assert outbox.purge_vin(vin) == 0
    # secure_delete + WAL truncation: the VIN is gone from the bytes on disk, not just unlinked.
    assert vin.encode() not in files_bytes(outbox.path)
    assert other_vin.encode() in files_bytes(outbox.path)


def test_export_vin_returns_bodies_and_states(outbox: Outbox, make_record: MakeRecord) -> None:
    vin = "WVWZZZ1KZ8W000001"
    first, second = make_record(vin=vin), make_record(vin=vin)
    outbox.add(first)
    outbox.add(second)
    outbox.add(make_record(vin="1HGCM82633A004352"))
    outbox.mark_sent(second["record_id"], RECEIPT)
    exported = outbox.export_vin(vin)
    assert [item["record"] for item in exported] == [first, second]
    assert [item["state"] for item in exported] == ["pending", "sent"]
    assert exported[1]["receipt"] == RECEIPT
    assert exported[0]["sent_at"] is None
    json.dumps(exported)  # ready to hand over as a file


# -- scale ---------------------------------------------------------------------------------------------------


def test_iterating_20k_records_streams_with_flat_memory(tmp_path: Path, make_record: MakeRecord) -> None:
    total = 20_000
    path = tmp_path / "big.sqlite3"
    template = make_record()
    with Outbox(path) as box:
        box.add(template)
    # Bulk-load through SQLite directly: validating 20k records one by one would only test jsonschema's speed.
    body = json.dumps(template, sort_keys=True, separators=(",", ":"))
    rows = []
    for index in range(1, total):
        record_id = str(uuid.UUID(int=index))
        rows.append(
            (
                record_id,
                template["vehicle"]["vin"],
                "visit",
                template["created_at"],
                "pending",
                body.replace(template["record_id"], record_id),
                "2025-01-01T00:00:00.000000Z",
            )
        )
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO records (record_id, vin, kind, created_at, state, body, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.commit()
    conn.close()
    stored_bytes = len(body) * total
    del rows

    with Outbox(path) as box:
        assert box.count() == total
        tracemalloc.start()
        try:
            seen = 0
            last = ""
            for entry in box.iter_entries(state="pending"):
                seen += 1
                last = entry.record_id
                if seen % 5000 == 0:
                    assert entry.body["record_id"] == entry.record_id
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert seen == total
    assert last == str(uuid.UUID(int=total - 1))
    assert stored_bytes > 20_000_000
    assert peak < stored_bytes / 5, f"iteration held {peak} bytes for {stored_bytes} bytes of records"
