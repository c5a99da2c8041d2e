"""What a read-out found, as plain typed values: the CLI renders it, records serialise it.

Everything here is data; the only logic is what follows from the data alone (are there faults,
which counter is the best mileage). Values keep the ECU they came from, because a workshop must
be able to tell the engine's fault from the gearbox's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = [
    "DtcEntry",
    "DtcKind",
    "EcuReport",
    "FreezeFrame",
    "Mileage",
    "ObfcmEcuData",
    "ObfcmResult",
    "ObfcmState",
    "ScanResult",
]

DtcKind = Literal["stored", "pending", "permanent", "uds"]
ObfcmState = Literal["collected", "refused", "not_possible", "not_applicable"]


@dataclass(slots=True)
class DtcEntry:
    """One trouble code as one ECU reported it."""

    code: str
    kind: DtcKind
    description: str | None = None
    uds_status: int | None = None
    uds_flags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class FreezeFrame:
    """The snapshot an ECU stored with the DTC that lit the MIL."""

    dtc: str | None
    values: dict[str, float | int | str | None] = field(default_factory=dict)


@dataclass(slots=True)
class EcuReport:
    """Everything read from one ECU."""

    address: str
    name: str | None = None
    supported_pids: set[int] = field(default_factory=set)
    supported_infotypes: set[int] = field(default_factory=set)
    mil_on: bool | None = None
    dtc_count: int | None = None
    ignition: str | None = None
    dtcs: list[DtcEntry] = field(default_factory=list)
    freeze_frame: FreezeFrame | None = None
    calids: list[str] = field(default_factory=list)
    cvns: list[str] = field(default_factory=list)
    uds_identification: dict[str, str] = field(default_factory=dict)
    readings: dict[str, float | int | str | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def codes(self, kind: DtcKind) -> list[str]:
        """The codes of one kind, in the order the ECU sent them."""
        return [d.code for d in self.dtcs if d.kind == kind]


@dataclass(slots=True)
class Mileage:
    """The car's mileage and where it came from: a technician must know which counter it is."""

    km: float
    source: str
    ecu: str | None


@dataclass(slots=True)
class ObfcmEcuData:
    """OBFCM values from one ECU; ``raw`` keeps payloads whose layout is not verified."""

    address: str
    itid17: dict[str, float | str | None] | None = None
    raw: list[dict[str, str | bool]] = field(default_factory=list)


@dataclass(slots=True)
class ObfcmResult:
    """The OBFCM outcome of a visit: collected values, or the refusal, or why it was not possible."""

    state: ObfcmState
    decided_at: datetime | None = None
    reason: str | None = None
    ecus: list[ObfcmEcuData] = field(default_factory=list)


@dataclass(slots=True)
class ScanResult:
    """A whole read-out. ``error`` is set when it stopped early; what was read stays here."""

    started_at: datetime
    adapter_kind: str = ""
    adapter_description: str = ""
    protocol: str = ""
    protocol_id: str = ""
    finished_at: datetime | None = None
    vin: str | None = None
    vin_source: str | None = None
    vin_warnings: list[str] = field(default_factory=list)
    ecus: dict[str, EcuReport] = field(default_factory=dict)
    mileage: Mileage | None = None
    obfcm: ObfcmResult | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def ecu(self, address: str) -> EcuReport:
        """The report of one ECU, created on first use."""
        if address not in self.ecus:
            self.ecus[address] = EcuReport(address)
        return self.ecus[address]

    @property
    def has_faults(self) -> bool:
        """True when any ECU reports a DTC or a lit MIL: what a pre-service script branches on."""
        return any(e.dtcs or e.mil_on for e in self.ecus.values())
