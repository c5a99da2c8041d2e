"""The outbox: a local SQLite file that holds every record until the manufacturer's endpoint confirms it.

Why SQLite and not one JSON file per record: a commit is atomic and durable (WAL with ``synchronous=FULL``), a
workshop PC that loses power mid-write keeps either the old or the new state, and thousands of records can be
listed, counted and purged without reading them all into memory.

A record moves through three states::

    add() ──► pending ──mark_sent()──► sent ──purge_sent()──► (deleted after the retention period)
                 │  ▲
    mark_rejected() │ requeue()        (purge_vin() deletes every record of one VIN, whatever its state)
                 ▼  │
               rejected

Nothing is lost: :meth:`Outbox.add` returns only after the record is committed to disk, and it is called
before any network traffic. A damaged file is reported (:class:`~upload.errors.OutboxCorruptError`) and
never reset.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import platformdirs

from upload.errors import (
    OutboxCorruptError,
    OutboxError,
    OutboxWriteError,
    RecordInvalidError,
    RecordNotFoundError,
)
from upload.schema import validate_record

__all__ = [
    "DATA_DIR_ENV",
    "HELD",
    "PENDING",
    "REJECTED",
    "SENT",
    "Outbox",
    "OutboxEntry",
    "RecordState",
    "default_outbox_path",
]

logger = logging.getLogger(__name__)

RecordState = Literal["pending", "sent", "rejected", "held"]
PENDING: Final = "pending"
SENT: Final = "sent"
REJECTED: Final = "rejected"
HELD: Final = "held"
"""Kept local on purpose (the owner objects to any transfer): never sent, never requeued."""
_STATES: Final = frozenset({PENDING, SENT, REJECTED, HELD})

DATA_DIR_ENV: Final = "OBDTOOL_DATA_DIR"
"""Environment variable that moves obdtool's data folder (and so the outbox) elsewhere."""

_APPLICATION_ID: Final = 0x4F424454  # "OBDT": marks the SQLite file as an obdtool outbox
_FORMAT_VERSION: Final = 1
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_BATCH: Final = 500
_MAX_ERROR_TEXT: Final = 1000

_SCHEMA_SQL: Final = """
CREATE TABLE records (
    record_id  TEXT PRIMARY KEY NOT NULL,
    vin        TEXT NULL,
    kind       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'rejected', 'held')),
    body       TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NULL,
    receipt    TEXT NULL,
    sent_at    TEXT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX records_state ON records (state);
CREATE INDEX records_vin ON records (vin);
"""

_COLUMNS: Final = (
    "rowid, record_id, vin, kind, created_at, state, attempts, last_error, receipt, sent_at, updated_at, body"
)

# Primary SQLite result codes (the low byte of sqlite_errorcode) that mean "could not write".
_WRITE_CODES: Final = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
    }
)
_CORRUPT_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_WRITE_HINTS: Final = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_READONLY: "the file or its folder is read-only",
    sqlite3.SQLITE_CANTOPEN: "the file cannot be opened",
    sqlite3.SQLITE_IOERR: "the disk reported an input/output error",
    sqlite3.SQLITE_PERM: "access was denied",
    sqlite3.SQLITE_BUSY: "another obdtool is using the outbox",
    sqlite3.SQLITE_LOCKED: "another obdtool is using the outbox",
    sqlite3.SQLITE_NOMEM: "the computer ran out of memory",
}


def default_outbox_path() -> Path:
    """Where the outbox lives unless the caller says otherwise.

    The per-user data folder (``platformdirs``) keeps records out of the working directory, where a technician
    might delete or share them by accident; ``OBDTOOL_DATA_DIR`` moves it (portable installs, tests).
    """
    override = os.environ.get(DATA_DIR_ENV)
    base = Path(override) if override else platformdirs.user_data_path("obdtool", appauthor=False)
    return base / "outbox.sqlite3"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    """Fixed-width RFC 3339 UTC text, so that SQL string comparison orders timestamps correctly."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


@dataclass(frozen=True)
class OutboxEntry:
    """One record in the outbox together with its delivery bookkeeping.

    ``body`` is parsed from the stored JSON on first access, so listing thousands of entries stays cheap.
    """

    record_id: str
    vin: str | None
    kind: str
    created_at: str
    state: RecordState
    attempts: int
    last_error: str | None
    receipt: dict[str, Any] | None
    sent_at: str | None
    updated_at: str
    body_json: str = field(repr=False)

    @functools.cached_property
    def body(self) -> dict[str, Any]:
        """The record itself, as it was validated and stored."""
        parsed: dict[str, Any] = json.loads(self.body_json)
        return parsed


class Outbox:
    """The SQLite file of records waiting for (or done with) upload. Use as a context manager.

    One instance belongs to one thread; several processes may open the same file (SQLite locks it).

    :param path: the outbox file; missing folders are created with mode 0700 and the file gets mode 0600,
        because records are linked to a VIN and so to a person.
    :param timeout: seconds to wait when another process holds the write lock.
    :param clock: source of "now" (aware UTC datetimes) for the bookkeeping timestamps.
    :raises OutboxCorruptError: the file is damaged or not an obdtool outbox; it is left untouched.
    :raises OutboxWriteError: the folder or file cannot be created or written.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        timeout: float = 5.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._prepare_file()
        self._conn = self._connect(timeout)

    # -- opening ---------------------------------------------------------------------------------------------

    def _prepare_file(self) -> None:
        """Create the folder (0700) and an empty file (0600), or check that an existing file is SQLite."""
        directory = self.path.parent
        try:
            missing = []
            probe = directory
            while not probe.exists():
                missing.append(probe)
                probe = probe.parent
            for folder in reversed(missing):
                folder.mkdir(mode=0o700)
                os.chmod(folder, 0o700)  # mkdir's mode is reduced by the umask
            if not directory.is_dir():
                raise NotADirectoryError(20, "Not a directory", str(directory))
        except OSError as exc:
            raise OutboxWriteError(
                f"The outbox folder {directory} cannot be created or used ({exc.strerror or exc}); "
                f"nothing was saved."
            ) from exc
        if self.path.exists():
            self._check_header()
            return
        try:
            handle = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(handle)
        except FileExistsError:
            self._check_header()
        except OSError as exc:
            raise OutboxWriteError(
                f"The outbox file {self.path} cannot be created ({exc.strerror or exc}); nothing was saved."
            ) from exc

    def _check_header(self) -> None:
        """Refuse a file that is not SQLite before SQLite even opens it, so not a byte of it changes."""
        try:
            if not stat.S_ISREG(self.path.stat().st_mode):
                raise OutboxCorruptError(
                    f"The outbox {self.path} is not a regular file; it was left untouched."
                )
            with self.path.open("rb") as handle:
                header = handle.read(len(_SQLITE_MAGIC))
        except OutboxCorruptError:
            raise
        except OSError as exc:
            raise OutboxCorruptError(
                f"The outbox {self.path} cannot be read ({exc.strerror or exc}); it was left untouched."
            ) from exc
        if header and header != _SQLITE_MAGIC:
            raise OutboxCorruptError(
                f"The outbox {self.path} is not an SQLite database (damaged or a different file); "
                f"it was left untouched."
            )

    def _connect(self, timeout: float) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._map_error(exc, "open the outbox") from exc
        try:
            self._check_integrity(conn)
            self._configure(conn)
            self._ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._tighten_modes()
        logger.debug("Opened outbox %s", self.path)
        return conn

    def _check_integrity(self, conn: sqlite3.Connection) -> None:
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.OperationalError as exc:
            if _primary_code(exc) not in _CORRUPT_CODES:
                # A read-only folder, a full disk or an I/O error is not damage: say what it is.
                raise self._map_error(exc, "open the outbox") from exc
            raise OutboxCorruptError(
                f"The outbox {self.path} is damaged ({exc}); it was left untouched. "
                f"Keep a copy and ask for support before deleting it."
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise OutboxCorruptError(
                f"The outbox {self.path} is damaged ({exc}); it was left untouched. "
                f"Keep a copy and ask for support before deleting it."
            ) from exc
        if rows != [("ok",)]:
            raise OutboxCorruptError(
                f"The outbox {self.path} failed its integrity check ({rows[0][0]}); it was left untouched. "
                f"Keep a copy and ask for support before deleting it."
            )
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if app_id != _APPLICATION_ID and (app_id != 0 or tables != 0):
            raise OutboxCorruptError(
                f"The file {self.path} is an SQLite database but not an obdtool outbox; "
                f"it was left untouched."
            )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _FORMAT_VERSION:
            raise OutboxError(
                f"The outbox {self.path} was written by a newer obdtool (format {version}); "
                f"update obdtool to use it."
            )

    def _configure(self, conn: sqlite3.Connection) -> None:
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxWriteError(
                    f"The outbox {self.path} cannot use a write-ahead log (journal mode {mode}); "
                    f"put the data folder on a local disk."
                )
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA secure_delete=ON")  # purged records are overwritten, not just unlinked
        except sqlite3.Error as exc:
            raise self._map_error(exc, "open the outbox") from exc

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] == _FORMAT_VERSION:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("PRAGMA user_version").fetchone()[0] != _FORMAT_VERSION:
                    for statement in _SCHEMA_SQL.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version={_FORMAT_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as exc:
            raise self._map_error(exc, "set up the outbox") from exc

    def _tighten_modes(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            candidate = Path(f"{self.path}{suffix}")
            with contextlib.suppress(FileNotFoundError):
                if stat.S_IMODE(candidate.stat().st_mode) != 0o600:
                    os.chmod(candidate, 0o600)

    # -- errors ----------------------------------------------------------------------------------------------

    def _map_error(self, exc: sqlite3.Error, action: str) -> OutboxError:
        """Translate an sqlite3 error into the upload error a technician can act on."""
        code = _primary_code(exc)
        if code in _CORRUPT_CODES:
            return OutboxCorruptError(
                f"The outbox {self.path} is damaged ({exc}); it was left untouched. "
                f"Keep a copy and ask for support before deleting it."
            )
        if code in _WRITE_CODES or isinstance(exc, sqlite3.OperationalError):
            hint = _WRITE_HINTS.get(code if code is not None else -1, str(exc))
            return OutboxWriteError(f"Could not {action} in {self.path}: {hint}. Nothing was saved.")
        return OutboxError(f"Could not {action} in {self.path}: {exc}.")

    @contextlib.contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; on any failure it is rolled back and the error translated."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as exc:
            raise self._map_error(exc, action) from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxError(f"The outbox {self.path} is already closed.")
        return self._conn

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._map_error(exc, "read the outbox") from exc

    # -- writing ---------------------------------------------------------------------------------------------

    def add(self, record: Mapping[str, Any], *, hold: bool = False) -> str:
        """Validate a record and commit it as pending (or held: kept local, never sent); returns its id.

        Called before any upload attempt, so a record survives a crash, a dead network or a full server.
        Adding the very same record twice is harmless; a *different* record under an existing id is refused.

        :raises RecordInvalidError: the record does not match the schema (nothing is stored).
        :raises OutboxWriteError: the disk is full or read-only; the record was NOT saved.
        :raises OutboxError: another record with the same id is already stored.
        """
        validate_record(record)
        try:
            body = json.dumps(
                record, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
            )
        except (TypeError, ValueError) as exc:
            raise RecordInvalidError("$", f"the record cannot be written as JSON ({exc})") from exc
        record_id = str(record["record_id"])
        now = _timestamp(self._clock())
        with self._transaction("save the record") as conn:
            existing = conn.execute("SELECT body FROM records WHERE record_id = ?", (record_id,)).fetchone()
            if existing is not None:
                if existing[0] == body:
                    logger.debug("Record %s is already in the outbox", record_id)
                    return record_id
                raise OutboxError(
                    f"A different record with id {record_id} is already in the outbox; records are never "
                    f"overwritten."
                )
            conn.execute(
                "INSERT INTO records (record_id, vin, kind, created_at, state, body, attempts, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                (
                    record_id,
                    record["vehicle"]["vin"],
                    record["kind"],
                    record["created_at"],
                    HELD if hold else PENDING,
                    body,
                    now,
                ),
            )
        logger.info("Saved record %s in the outbox", record_id)
        return record_id

    def replace_unsent(self, record_id: str, record: Mapping[str, Any]) -> None:
        """Replace the body of a record that has not left the workshop (pending or held).

        A clear stores its before-snapshot first and adds the outcome once the re-read is done; a
        record already delivered is never changed.

        :raises RecordInvalidError: the new body does not match the schema, or changes the id.
        :raises RecordNotFoundError: no such record.
        :raises OutboxError: the record was already sent or rejected.
        """
        validate_record(record)
        if str(record["record_id"]) != record_id:
            raise RecordInvalidError("$.record_id", "the replacement must keep the record id")
        body = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
        with self._transaction("update the record") as conn:
            state = self._state_of(conn, record_id)
            if state not in (PENDING, HELD):
                raise OutboxError(f"Record {record_id} is {state}; only unsent records can be updated.")
            conn.execute(
                "UPDATE records SET body = ?, vin = ?, updated_at = ? WHERE record_id = ?",
                (body, record["vehicle"]["vin"], _timestamp(self._clock()), record_id),
            )

    def _state_of(self, conn: sqlite3.Connection, record_id: str) -> str:
        row = conn.execute("SELECT state FROM records WHERE record_id = ?", (record_id,)).fetchone()
        if row is None:
            raise RecordNotFoundError(f"There is no record {record_id} in the outbox.")
        return str(row[0])

    def note_attempt(self, record_id: str, error: str) -> None:
        """Count a failed delivery attempt of a pending record and remember why it failed.

        :raises RecordNotFoundError: no such record.
        :raises OutboxError: the record is not pending.
        """
        with self._transaction("note the delivery attempt") as conn:
            state = self._state_of(conn, record_id)
            if state != PENDING:
                raise OutboxError(f"Record {record_id} is {state}, not pending; nothing to note.")
            conn.execute(
                "UPDATE records SET attempts = attempts + 1, last_error = ?, updated_at = ? "
                "WHERE record_id = ?",
                (error[:_MAX_ERROR_TEXT], _timestamp(self._clock()), record_id),
            )

    def mark_sent(self, record_id: str, receipt: Mapping[str, Any]) -> None:
        """Record that the endpoint confirmed the record, with its receipt, so it is never sent again.

        Marking an already sent record again keeps the first receipt.

        :raises RecordNotFoundError: no such record.
        :raises OutboxError: the record was rejected (requeue it first).
        """
        receipt_text = json.dumps(dict(receipt), sort_keys=True, separators=(",", ":"))
        with self._transaction("mark the record as sent") as conn:
            state = self._state_of(conn, record_id)
            if state == SENT:
                return
            if state != PENDING:
                raise OutboxError(f"Record {record_id} is {state}; only pending records can be marked sent.")
            now = _timestamp(self._clock())
            conn.execute(
                "UPDATE records SET state = 'sent', attempts = attempts + 1, last_error = NULL, receipt = ?, "
                "sent_at = ?, updated_at = ? WHERE record_id = ?",
                (receipt_text, now, now, record_id),
            )
        logger.info("Record %s is delivered", record_id)

    def mark_sent_many(self, receipts: Mapping[str, Mapping[str, Any]]) -> int:
        """Mark a batch the endpoint confirmed as sent, in one transaction; return how many records changed.

        :meth:`mark_sent` for many records at once, with one durable commit per batch instead of one per
        record: on a long upload the disk's flush, not the network, is otherwise what sets the pace. Only
        pending records change; one already sent keeps its first receipt, and one erased meanwhile stays
        erased.

        :raises OutboxWriteError: the file could not be written; no record of the batch is marked.
        """
        if not receipts:
            return 0
        now = _timestamp(self._clock())
        rows = [
            (json.dumps(dict(receipt), sort_keys=True, separators=(",", ":")), now, now, record_id)
            for record_id, receipt in receipts.items()
        ]
        with self._transaction("mark the records as sent") as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE records SET state = 'sent', attempts = attempts + 1, last_error = NULL, receipt = ?, "
                "sent_at = ?, updated_at = ? WHERE record_id = ? AND state = 'pending'",
                rows,
            )
            changed = conn.total_changes - before
        logger.info("%d records are delivered", changed)
        return int(changed)

    def mark_rejected(self, record_id: str, message: str) -> None:
        """Park a record the endpoint refused for good, keeping its message; ``requeue`` sends it again.

        :raises RecordNotFoundError: no such record.
        :raises OutboxError: the record is not pending.
        """
        with self._transaction("mark the record as rejected") as conn:
            state = self._state_of(conn, record_id)
            if state != PENDING:
                raise OutboxError(f"Record {record_id} is {state}; only pending records can be rejected.")
            conn.execute(
                "UPDATE records SET state = 'rejected', attempts = attempts + 1, last_error = ?, "
                "updated_at = ? WHERE record_id = ?",
                (message[:_MAX_ERROR_TEXT], _timestamp(self._clock()), record_id),
            )
        logger.info("Record %s was rejected by the endpoint", record_id)

    def requeue(self, record_id: str) -> None:
        """Put a rejected record back to pending (``outbox retry``), e.g. after the endpoint was fixed.

        :raises RecordNotFoundError: no such record.
        :raises OutboxError: the record was already delivered; it is never sent twice.
        """
        with self._transaction("requeue the record") as conn:
            state = self._state_of(conn, record_id)
            if state == PENDING:
                return
            if state == SENT:
                raise OutboxError(f"Record {record_id} was already delivered; it is not sent again.")
            if state == HELD:
                raise OutboxError(
                    f"Record {record_id} is kept local at the owner's request; it is never sent."
                )
            conn.execute(
                "UPDATE records SET state = 'pending', updated_at = ? WHERE record_id = ?",
                (_timestamp(self._clock()), record_id),
            )

    def purge_sent(self, older_than: timedelta, now: datetime | None = None) -> int:
        """Delete delivered records whose delivery is older than the retention period; returns how many.

        Only *sent* records are touched: pending and rejected ones are never lost to a retention sweep.

        :raises ValueError: ``older_than`` is negative.
        :raises OutboxWriteError: the file could not be written.
        """
        if older_than < timedelta(0):
            raise ValueError("the retention period cannot be negative")
        cutoff = _timestamp((now or self._clock()) - older_than)
        with self._transaction("purge delivered records") as conn:
            deleted = conn.execute(
                "DELETE FROM records WHERE state = 'sent' AND sent_at < ?", (cutoff,)
            ).rowcount
        if deleted:
            self._checkpoint()
            logger.info("Purged %d delivered records from the outbox", deleted)
        return int(deleted)

    def purge_vin(self, vin: str) -> int:
        """Delete every record of one VIN, whatever its state (erasure request); returns how many.

        Deleted content is overwritten (``secure_delete``) and the write-ahead log is truncated, so the VIN
        does not linger in the file.

        :raises OutboxWriteError: the file could not be written.
        """
        with self._transaction("erase the vehicle's records") as conn:
            deleted = conn.execute("DELETE FROM records WHERE vin = ?", (vin,)).rowcount
        self._checkpoint()
        logger.info("Erased %d records of one vehicle from the outbox", deleted)
        return int(deleted)

    def _checkpoint(self) -> None:
        try:
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            raise self._map_error(exc, "flush the outbox") from exc

    # -- reading ---------------------------------------------------------------------------------------------

    def get(self, record_id: str) -> OutboxEntry:
        """Return one record with its bookkeeping.

        :raises RecordNotFoundError: no such record.
        """
        rows = self._read(f"SELECT {_COLUMNS} FROM records WHERE record_id = ?", (record_id,))
        if not rows:
            raise RecordNotFoundError(f"There is no record {record_id} in the outbox.")
        return _entry(rows[0])

    def iter_entries(
        self,
        state: RecordState | None = None,
        vin: str | None = None,
        kind: str | None = None,
    ) -> Iterator[OutboxEntry]:
        """Yield matching records in the order they were added, fetching a few hundred at a time.

        Memory stays flat however large the outbox grows, and no read transaction is held between batches, so
        the caller may update records while iterating.

        :raises ValueError: unknown ``state``.
        """
        clauses: list[str] = []
        params: list[object] = []
        if state is not None:
            if state not in _STATES:
                raise ValueError(f"unknown record state {state!r}")
            clauses.append("state = ?")
            params.append(state)
        if vin is not None:
            clauses.append("vin = ?")
            params.append(vin)
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        where = "".join(f" AND {clause}" for clause in clauses)
        last_rowid = 0
        while True:
            rows = self._read(
                f"SELECT {_COLUMNS} FROM records WHERE rowid > ?{where} ORDER BY rowid LIMIT {_BATCH}",
                (last_rowid, *params),
            )
            for row in rows:
                yield _entry(row)
            if len(rows) < _BATCH:
                return
            last_rowid = rows[-1][0]

    def count(self, state: RecordState | None = None) -> int:
        """How many records there are, optionally only those in one state.

        :raises ValueError: unknown ``state``.
        """
        if state is None:
            return int(self._read("SELECT count(*) FROM records")[0][0])
        if state not in _STATES:
            raise ValueError(f"unknown record state {state!r}")
        return int(self._read("SELECT count(*) FROM records WHERE state = ?", (state,))[0][0])

    def pending_ids(self, limit: int | None = None) -> list[str]:
        """Ids of pending records, oldest first: the delivery queue."""
        sql = "SELECT record_id FROM records WHERE state = 'pending' ORDER BY rowid"
        if limit is not None:
            sql += f" LIMIT {max(0, int(limit))}"
        return [str(row[0]) for row in self._read(sql)]

    def export_vin(self, vin: str) -> list[dict[str, Any]]:
        """Every record of one VIN with its delivery state (access request by the vehicle's owner).

        Each item is ``{"record_id", "state", "created_at", "sent_at", "receipt", "record"}``.
        """
        return [
            {
                "record_id": entry.record_id,
                "state": entry.state,
                "created_at": entry.created_at,
                "sent_at": entry.sent_at,
                "receipt": entry.receipt,
                "record": entry.body,
            }
            for entry in self.iter_entries(vin=vin)
        ]

    # -- lifetime --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file; safe to call twice."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            logger.debug("Closed outbox %s", self.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r})"


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _entry(row: tuple[Any, ...]) -> OutboxEntry:
    _rowid, record_id, vin, kind, created_at, state, attempts, last_error, receipt, sent_at, updated, body = (
        row
    )
    return OutboxEntry(
        record_id=record_id,
        vin=vin,
        kind=kind,
        created_at=created_at,
        state=state,
        attempts=int(attempts),
        last_error=last_error,
        receipt=json.loads(receipt) if receipt else None,
        sent_at=sent_at,
        updated_at=updated,
        body_json=body,
    )
