"""Turn a read-out into the VIN-linked record of the visit that goes to the manufacturer.

Data minimisation happens here, by construction: the record is built field by field from the
read-out, so nothing about the customer can reach it, and a refused OBFCM read-out carries only
the refusal and its time. The schema in ``upload/record-v1.schema.json`` is the second guard.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from obdtool import __version__
from obdtool.model import EcuReport, ObfcmResult, ScanResult

__all__ = ["build_clear_record", "build_visit_record", "ecu_to_json", "scan_document", "timestamp"]

SCHEMA_VERSION = "1.0"


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 UTC with ``Z``, second resolution: what the record and the receiver use."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ecu_to_json(ecu: EcuReport) -> dict[str, Any]:
    """One ECU as the record carries it."""
    return {
        "address": ecu.address,
        "name": ecu.name,
        "mil_on": ecu.mil_on,
        "dtcs": [
            {
                "code": d.code,
                "kind": d.kind,
                "description": d.description,
                "uds_status": d.uds_status,
                "uds_flags": list(d.uds_flags),
            }
            for d in ecu.dtcs
        ],
        "freeze_frame": None
        if ecu.freeze_frame is None
        else {"dtc": ecu.freeze_frame.dtc, "values": dict(ecu.freeze_frame.values)},
        "software": {
            "calids": list(ecu.calids),
            "cvns": list(ecu.cvns),
            "uds_identification": dict(ecu.uds_identification),
        },
        "readings": dict(ecu.readings),
        "errors": list(ecu.errors),
    }


def _obfcm_to_json(obfcm: ObfcmResult | None) -> dict[str, Any]:
    if obfcm is None:
        return {"state": "not_applicable", "decided_at": None, "reason": "not part of this job", "ecus": []}
    if obfcm.state == "refused":
        # The refusal travels alone: no values, no raw bytes, not even the ECU list.
        return {"state": "refused", "decided_at": timestamp(obfcm.decided_at), "reason": None, "ecus": []}
    return {
        "state": obfcm.state,
        "decided_at": timestamp(obfcm.decided_at) if obfcm.decided_at else None,
        "reason": obfcm.reason,
        "ecus": [
            {
                "address": e.address,
                "itid17": dict(e.itid17) if e.itid17 else None,
                "raw": [dict(r) for r in e.raw],
            }
            for e in obfcm.ecus
        ],
    }


def _base(result: ScanResult, *, kind: str, workshop_id: str) -> dict[str, Any]:
    warnings = list(result.warnings)
    if result.error:
        warnings.append(f"read-out incomplete: {result.error}")
    return {
        "schema_version": SCHEMA_VERSION,
        "record_id": str(uuid.uuid4()),
        "kind": kind,
        "created_at": timestamp(),
        "tool": {"name": "obdtool", "version": __version__},
        "workshop_id": workshop_id,
        "adapter": {
            "kind": result.adapter_kind or "unknown",
            "description": result.adapter_description,
            "protocol": result.protocol,
            "protocol_id": result.protocol_id,
        },
        "vehicle": {
            "vin": result.vin,
            "vin_source": result.vin_source,
            "vin_warnings": list(result.vin_warnings),
        },
        "ecus": [ecu_to_json(e) for e in result.ecus.values()],
        "mileage": None
        if result.mileage is None
        else {"km": result.mileage.km, "source": result.mileage.source, "ecu": result.mileage.ecu},
        "obfcm": _obfcm_to_json(result.obfcm),
        "clear": None,
        "warnings": warnings,
    }


def build_visit_record(result: ScanResult, *, workshop_id: str) -> dict[str, Any]:
    """The record of a read-out visit."""
    return _base(result, kind="visit", workshop_id=workshop_id)


def build_clear_record(
    before: ScanResult,
    after: ScanResult | None,
    *,
    workshop_id: str,
    requested_ecus: list[str],
    outcome: str,
    refusals: list[dict[str, Any]],
    notes: list[str],
) -> dict[str, Any]:
    """The record of a fault-memory clear: what was there before, what is left after."""
    record = _base(before, kind="clear", workshop_id=workshop_id)
    record["clear"] = {
        "requested_ecus": list(requested_ecus),
        "before": [ecu_to_json(e) for e in before.ecus.values()],
        "after": [] if after is None else [ecu_to_json(e) for e in after.ecus.values()],
        "outcome": outcome,
        "ecu_refusals": refusals,
        "notes": list(notes),
    }
    return record


def scan_document(result: ScanResult) -> dict[str, Any]:
    """The ``scan --json`` document: the read-out with the same ECU layout as the record."""
    obfcm = None if result.obfcm is None else _obfcm_to_json(result.obfcm)
    return {
        "vin": result.vin,
        "vin_source": result.vin_source,
        "vin_warnings": list(result.vin_warnings),
        "adapter": {
            "kind": result.adapter_kind,
            "description": result.adapter_description,
            "protocol": result.protocol,
            "protocol_id": result.protocol_id,
        },
        "started_at": timestamp(result.started_at),
        "finished_at": timestamp(result.finished_at) if result.finished_at else None,
        "has_faults": result.has_faults,
        "ecus": [ecu_to_json(e) for e in result.ecus.values()],
        "mileage": None
        if result.mileage is None
        else {"km": result.mileage.km, "source": result.mileage.source, "ecu": result.mileage.ecu},
        "obfcm": obfcm,
        "warnings": list(result.warnings),
        "error": result.error,
    }
