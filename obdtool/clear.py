"""Clearing fault memory: a deliberate act that keeps what it erases.

Service 04 (and UDS 14 on CAN) destroys DTCs, freeze frames, readiness and the distance/time
since clear. So the order is fixed: read everything it will erase, refuse while the engine runs,
ask for an explicit yes, save the snapshot to the outbox *before* the clear goes out, clear,
read again, and record what is gone and what remains -- permanent DTCs stay until the ECU's own
monitor passes, which is not a failed clear and is said so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from adapters.base import Adapter
from adapters.errors import AdapterError
from obdtool.decode import common, pids
from obdtool.errors import WorkflowError
from obdtool.model import ScanResult
from obdtool.readout import ReadOptions, read_vehicle

__all__ = ["ClearOutcome", "ClearPlan", "engine_rpm", "run_clear"]

log = logging.getLogger(__name__)

CLEAR_READ = ReadOptions(freeze_frames=True, software=False, obfcm=None, uds=False)


@dataclass(slots=True)
class ClearPlan:
    """What the technician asked for."""

    ecus: list[str] = field(default_factory=list)
    force: bool = False
    uds: bool = False


@dataclass(slots=True)
class ClearOutcome:
    """What happened, for the screen, the record and the exit code."""

    outcome: str
    before: ScanResult
    after: ScanResult | None = None
    refusals: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cleared: dict[str, list[str]] = field(default_factory=dict)
    remaining: dict[str, list[str]] = field(default_factory=dict)


def engine_rpm(adapter: Adapter) -> float | None:
    """The engine speed now, or None when no ECU reports it."""
    for reply in adapter.request(b"\x01\x0c"):
        try:
            value = pids.split_multi_pid(reply.data).get(0x0C)
        except Exception:
            continue
        if value is not None:
            rpm = pids.decode_pid(0x0C, value)
            if isinstance(rpm, int | float):
                return float(rpm)
    return None


def run_clear(
    adapter: Adapter,
    plan: ClearPlan,
    *,
    confirm: Callable[[ScanResult], bool],
    save_before: Callable[[ScanResult], None],
    progress: Callable[[str], None] | None = None,
) -> ClearOutcome:
    """Read, guard, confirm, snapshot, clear, re-read.

    :param confirm: shown the snapshot; returns True only on an explicit yes.
    :param save_before: stores the snapshot durably; called after confirmation, before the clear.
    :raises WorkflowError: when the engine runs (without ``force``), the read-out failed, or the
        technician did not confirm. Nothing was sent to clear in those cases.
    """
    say = progress or (lambda _m: None)
    options = replace(CLEAR_READ, uds=plan.uds)
    before = read_vehicle(adapter, options, progress=say)
    if before.error:
        raise WorkflowError(f"cannot clear: the read-out before the clear failed ({before.error})")
    unknown = [e for e in plan.ecus if e.upper() not in before.ecus]
    if unknown:
        raise WorkflowError(f"no ECU answers at {', '.join(unknown)} (found: {', '.join(before.ecus)})")
    rpm = engine_rpm(adapter)
    if rpm and rpm > 0 and not plan.force:
        raise WorkflowError(
            f"the engine is running ({rpm:.0f} rpm): switch it off, ignition on, and try again"
            " (or --force if the repair procedure demands it)"
        )
    if not confirm(before):
        raise WorkflowError("clear not confirmed: nothing was changed")
    save_before(before)

    outcome = ClearOutcome("failed", before)
    targets: list[str | None] = [e.upper() for e in plan.ecus] or [None]
    say("Clearing fault memory")
    answered: set[str] = set()
    try:
        for target in targets:
            for reply in adapter.request(b"\x04", ecu=target):
                _note_reply(outcome, reply.ecu, reply.data, 0x04, answered)
            if plan.uds and adapter.info.is_can:
                for address in [target] if target else list(before.ecus):
                    _clear_uds(adapter, address, outcome)
    except AdapterError as exc:
        outcome.notes.append(f"the link failed during the clear: {exc}")
    say("Reading fault memory again")
    after = read_vehicle(adapter, options, progress=say)
    outcome.after = after
    _compare(outcome, [t for t in targets if t] or list(before.ecus))
    return outcome


def _clear_uds(adapter: Adapter, address: str, outcome: ClearOutcome) -> None:
    """UDS 14 FF FF FF to one ECU (busy answers are retried by the UDS layer)."""
    from obdtool.uds import UdsError, clear_uds_dtcs

    try:
        clear_uds_dtcs(adapter, address)
    except UdsError as exc:
        outcome.refusals.append({"address": address, "nrc": exc.nrc, "message": str(exc)})


def _note_reply(outcome: ClearOutcome, address: str, data: bytes, service: int, answered: set[str]) -> None:
    negative = common.parse_negative(data)
    if negative is not None:
        outcome.refusals.append({"address": address, "nrc": negative.nrc, "message": negative.meaning})
    elif data[:1] == bytes([service + 0x40]):
        answered.add(address)


def _compare(outcome: ClearOutcome, targets: list[str]) -> None:
    before, after = outcome.before, outcome.after
    if after is None or after.error:
        outcome.outcome = "failed"
        outcome.notes.append("the fault memory could not be read again after the clear; check it by hand")
        return
    left_any = False
    for address in targets:
        was = before.ecus.get(address)
        now = after.ecus.get(address)
        if was is None:
            continue
        old = {(d.code, d.kind) for d in was.dtcs}
        new = {(d.code, d.kind) for d in now.dtcs} if now else set()
        outcome.cleared[address] = sorted(f"{c} ({k})" for c, k in old - new)
        remaining = sorted(f"{c} ({k})" for c, k in new if k != "permanent")
        outcome.remaining[address] = remaining
        left_any = left_any or bool(remaining)
        permanent = sorted(c for c, k in new if k == "permanent")
        if permanent:
            outcome.notes.append(
                f"{address}: permanent DTC {', '.join(permanent)} stays until the ECU's own monitor runs and"
                " passes (a drive cycle); that is expected, not a failed clear"
            )
    if outcome.refusals and not any(outcome.cleared.values()):
        outcome.outcome = "refused"
    elif left_any or outcome.refusals:
        outcome.outcome = "partially_cleared"
    else:
        outcome.outcome = "cleared"
