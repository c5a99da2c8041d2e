"""The pre-service job in one go: read-out, record, outbox, upload.

The record is committed to the outbox before any network call, so a dead network or a killed
process loses nothing; the upload is a separate step that can always be repeated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.base import Adapter
from obdtool.config import Config
from obdtool.errors import ConfigError
from obdtool.model import ScanResult
from obdtool.readout import ReadOptions, read_vehicle
from obdtool.record import build_visit_record
from upload.errors import OutboxError, UploadError

if TYPE_CHECKING:
    from upload.client import UploadClient
    from upload.outbox import Outbox

__all__ = ["UploadSummary", "VisitOutcome", "run_visit", "upload_pending"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UploadSummary:
    """What the upload step did; ``error`` is the one sentence to show when it stopped."""

    attempted: bool = False
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    remaining: int = 0
    error: str | None = None
    receipts: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class VisitOutcome:
    """The read-out, the record as stored, and what happened to it."""

    result: ScanResult
    record: dict[str, Any]
    record_id: str | None
    held: bool
    upload: UploadSummary
    hold_reason: str | None = None
    save_error: str | None = None


def run_visit(
    adapter: Adapter,
    options: ReadOptions,
    *,
    config: Config,
    outbox: Outbox,
    upload: Callable[[], UploadSummary] | None,
    hold: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> VisitOutcome:
    """Read the car, store the record, then (unless held) hand it to ``upload``.

    :param hold: why this record must stay local (the owner objects to any transfer, ...), or None.
    :raises ConfigError: when no workshop id is configured (the record needs one).

    A record that cannot be stored is reported in ``save_error`` (nothing is claimed saved) so
    that the read-out itself can still be shown.
    """
    if not config.workshop_id:
        raise ConfigError("no workshop id configured: run 'obdtool config set workshop_id <id>'")
    result = read_vehicle(adapter, options, progress=progress)
    record = build_visit_record(result, workshop_id=config.workshop_id)
    if result.vin is None:
        hold = "no VIN was read: the record is kept in the outbox but cannot go to the manufacturer"
    try:
        record_id: str = outbox.add(record, hold=hold is not None)
    except OutboxError as exc:
        return VisitOutcome(result, record, None, False, UploadSummary(), save_error=str(exc))
    summary = UploadSummary()
    if hold is None and upload is not None:
        summary = upload()
    return VisitOutcome(result, record, record_id, hold is not None, summary, hold_reason=hold)


def upload_pending(
    outbox: Outbox,
    client_factory: Callable[[], UploadClient],
    progress: Callable[[int, int], None] | None = None,
) -> UploadSummary:
    """Send every pending record; an unreachable endpoint leaves them pending for the next run."""
    from upload.client import deliver_pending

    summary = UploadSummary(attempted=True)
    try:
        with client_factory() as client:
            report = deliver_pending(outbox, client, progress=progress)
    except UploadError as exc:
        summary.error = str(exc)
        summary.remaining = outbox.count("pending")
        return summary
    summary.sent, summary.duplicates, summary.rejected = report.sent, report.duplicates, report.rejected
    summary.remaining = report.remaining
    if report.stopped_by is not None:
        summary.error = str(report.stopped_by)
    return summary
