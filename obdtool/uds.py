"""UDS (ISO 14229) read-out pieces for the scan workflow: identification, DTCs, mileage, sessions.

Requests are encoded and answers decoded by udsoncan's service layer (``make_request`` /
``interpret_response`` of its service classes, ``Dtc``, ``DidCodec``, ``ResponseCode``); the bytes travel
through :meth:`adapters.base.Adapter.request` with ``ecu=address``, so the same code reads an ECU over a
CAN interface today and through an ELM327 (``AT SH``) tomorrow.

Why not ``udsoncan.Client``: the client wants a ``BaseConnection`` that owns one ECU's ISO-TP channel and
waits for frames itself, while our adapters already own the transport -- several ECUs on one link,
``7F xx 78`` handled below the contract. The client would also wait out ``7F xx 78`` a second time, raise
*or return* a negative response depending on configuration flags, and parse several DIDs in one answer
only with a fixed length for each, which identification DIDs do not have. So this module keeps what the
client adds on top of the service layer in a few plain lines: busy retries, TesterPresent, notes.

Negative answers become plain sentences in :attr:`UdsEcuReport.notes` when the technician can act on
them (0x22, 0x33, 0x83 ...); "not supported" answers (0x11, 0x12, 0x31, 0x7E, 0x7F) are skipped quietly;
0x21 is retried; 0x78 never reaches this module (the adapter keeps waiting).
"""

from __future__ import annotations

import importlib
import logging
import re
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from udsoncan import exceptions as uds_exceptions
from udsoncan.common.DidCodec import DidCodec
from udsoncan.common.dtc import Dtc
from udsoncan.Response import Response
from udsoncan.ResponseCode import ResponseCode
from udsoncan.services.ClearDiagnosticInformation import ClearDiagnosticInformation
from udsoncan.services.DiagnosticSessionControl import DiagnosticSessionControl
from udsoncan.services.ReadDataByIdentifier import ReadDataByIdentifier
from udsoncan.services.ReadDTCInformation import ReadDTCInformation
from udsoncan.services.TesterPresent import TesterPresent

from adapters.base import Adapter
from obdtool.errors import ConfigError, DecodeError, WorkflowError

__all__ = [
    "DEFAULT_DTC_MASK",
    "DEFAULT_PROFILES",
    "DID_NAMES",
    "IDENT_DIDS",
    "MileageProfile",
    "UdsDtc",
    "UdsEcuReport",
    "UdsError",
    "UdsMileage",
    "UdsSession",
    "clear_uds_dtcs",
    "decode_identification",
    "explain_nrc",
    "load_mileage_profiles",
    "read_uds_ecu",
    "read_uds_mileage",
    "split_identification_answer",
    "status_flags",
    "uds_session",
]

log = logging.getLogger(__name__)

IDENT_DIDS: tuple[int, ...] = (0xF187, 0xF188, 0xF189, 0xF18A, 0xF18C, 0xF190, 0xF191, 0xF195, 0xF197)
DID_NAMES: dict[int, str] = {
    0xF180: "boot software",
    0xF181: "application software",
    0xF186: "active session",
    0xF187: "spare part number",
    0xF188: "ECU software number",
    0xF189: "ECU software version",
    0xF18A: "system supplier",
    0xF18B: "ECU manufacturing date",
    0xF18C: "ECU serial number",
    0xF190: "VIN",
    0xF191: "ECU hardware number",
    0xF192: "supplier hardware number",
    0xF193: "supplier hardware version",
    0xF194: "supplier software number",
    0xF195: "supplier software version",
    0xF197: "system name or engine type",
}

# 19 02 mask: every failure bit (testFailed, ..ThisOperationCycle, pending, confirmed, ..SinceLastClear)
# and the MIL bit. Not bits 4 and 6 ("test not completed"): after a clear every DTC the ECU knows has
# them, and 19 02 FF would list hundreds of faults that are not there.
DEFAULT_DTC_MASK = 0xAF
DEFAULT_PROFILES = Path(__file__).resolve().parents[1] / "fixtures" / "uds-profiles.toml"

KEEPALIVE_AFTER = 2.0  # s without a request before TesterPresent (S3server is about 5 s)
BUSY_RETRIES = 3
BUSY_DELAY = 0.1  # s between retries after 7F xx 21
MULTI_DID_BATCH = 3  # 22 + 3 DIDs = 7 bytes: one CAN frame
_KEEPALIVE_TIMEOUT = 0.05  # 3E 80 is not answered: do not wait long for nothing

_STATUS_BITS: tuple[tuple[int, str], ...] = (
    (0x01, "testFailed"),
    (0x02, "testFailedThisOperationCycle"),
    (0x04, "pendingDTC"),
    (0x08, "confirmedDTC"),
    (0x10, "testNotCompletedSinceLastClear"),
    (0x20, "testFailedSinceLastClear"),
    (0x40, "testNotCompletedThisOperationCycle"),
    (0x80, "warningIndicatorRequested"),
)
_QUIET_NRCS = frozenset({0x11, 0x12, 0x31, 0x7E, 0x7F})
_SESSION_NRCS = frozenset({0x31, 0x7E, 0x7F})  # "not here, maybe in another session"
_NRC_WORDS: dict[int, str] = {
    0x10: "the ECU rejected the request (general reject, NRC 0x10)",
    0x13: "the ECU did not accept the request's length (NRC 0x13)",
    0x14: "the answer would be too long for the ECU (NRC 0x14)",
    0x21: "the ECU stayed busy (NRC 0x21); try again in a moment",
    0x22: "conditions not correct (NRC 0x22): switch the engine off, ignition on, and check the battery",
    0x24: "the ECU expected another request first (NRC 0x24)",
    0x25: "a component behind this ECU did not answer (NRC 0x25)",
    0x26: "a fault in the ECU prevents it (NRC 0x26)",
    0x33: "protected (security access denied, NRC 0x33): only the manufacturer's tool can read it",
    0x72: "the ECU reported a general programming failure (NRC 0x72)",
    0x83: "refused while the engine is running (NRC 0x83): switch the engine off, ignition on",
    0x88: "refused while the vehicle moves (NRC 0x88)",
    0x92: "refused: supply voltage too high (NRC 0x92)",
    0x93: "refused: supply voltage too low (NRC 0x93); connect a battery charger",
}


class UdsError(WorkflowError):
    """An ECU refused or ignored a UDS step the workflow needs (session change, clear).

    ``nrc`` is the negative response code, or ``None`` when the ECU did not answer.
    """

    def __init__(self, message: str, *, address: str, nrc: int | None) -> None:
        super().__init__(message)
        self.address = address
        self.nrc = nrc


def explain_nrc(nrc: int) -> str:
    """A negative response code in words a technician can act on."""
    words = _NRC_WORDS.get(nrc)
    if words is not None:
        return words
    return f"the ECU answered {ResponseCode.get_name(nrc)} (NRC 0x{nrc:02X})"


def status_flags(status: int) -> list[str]:
    """The ISO 14229-1 names of the bits set in a DTC status byte, lowest bit first."""
    return [name for bit, name in _STATUS_BITS if status & bit]


def decode_identification(raw: bytes) -> str:
    """ASCII when the value is printable (fill bytes 00/FF and blanks at the end dropped), else hex."""
    text = raw.rstrip(b"\x00\xff ")
    if text and all(0x20 <= b < 0x7F for b in text):
        return text.decode("ascii").strip()
    return raw.hex(" ").upper()


# -- the models ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UdsDtc:
    """One DTC as ``19 02`` reported it."""

    code: str  # "P0133-00": SAE code and failure type byte
    status: int
    flags: list[str]
    description: str | None

    @property
    def confirmed(self) -> bool:
        """True when the ECU confirmed the fault (status bit 3)."""
        return bool(self.status & 0x08)


@dataclass(frozen=True, slots=True)
class UdsEcuReport:
    """What one ECU told about itself over UDS.

    ``identification`` is keyed by DID as 4 hex digits (``"F190"``); ``answered`` is False when the
    ECU stayed silent (absent, asleep, or no UDS ECU).
    """

    address: str
    identification: dict[str, str]
    dtcs: list[UdsDtc]
    notes: list[str]
    answered: bool = True


@dataclass(frozen=True, slots=True)
class MileageProfile:
    """Where one manufacturer keeps the odometer: an ECU, a DID and how to decode it."""

    wmi: str
    name: str
    ecu: str
    did: int
    decode: str  # uint24_be | uint32_be
    scale: float
    unit: str  # km | miles
    offset: int
    session: int  # 0x01 default, 0x03 extended


@dataclass(frozen=True, slots=True)
class UdsMileage:
    """The odometer as an ECU reported it, with where it came from."""

    km: float
    value: float
    unit: str
    ecu: str
    did: str
    profile: str
    source: str


# -- talking to one ECU ----------------------------------------------------------------------------


class UdsSession:
    """Requests to one ECU: retries when it is busy, TesterPresent while a session is held.

    There is no thread: every request first checks whether more than :data:`KEEPALIVE_AFTER` seconds
    have passed since the last one and sends ``3E 80`` if so; a caller that waits between requests
    (for the technician, say) calls :meth:`keepalive` now and then.

    :param session: the session the ECU is in (``0x01`` default, ``0x03`` extended); TesterPresent
        is only sent outside the default session.
    """

    def __init__(
        self,
        adapter: Adapter,
        address: str,
        *,
        session: int = 0x01,
        busy_retries: int = BUSY_RETRIES,
        busy_delay: float = BUSY_DELAY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.adapter = adapter
        self.address = address
        self.session = session
        self.busy_retries = busy_retries
        self.busy_delay = busy_delay
        self._clock = clock
        self._sleep = sleep
        self.last_request = clock()

    def request(self, payload: bytes) -> Response | None:
        """Send one request; retry while the ECU answers ``7F xx 21``.

        :returns: udsoncan's view of the answer (positive or negative), or None when nobody answered.
        :raises DecodeError: when the answer is not one to this request.
        :raises adapters.errors.AdapterError: when the link fails.
        """
        self.keepalive()
        response: Response | None = None
        for attempt in range(self.busy_retries + 1):
            if attempt:
                log.debug("%s busy, retry %d", self.address, attempt)
                self._sleep(self.busy_delay)
            # No ``expect``: a DID answer may span several frames, and an ELM327 counts frames.
            replies = self.adapter.request(payload, ecu=self.address)
            self.last_request = self._clock()
            if not replies:
                return None
            response = self._response(payload, replies[0].data)
            if response.positive or response.code != ResponseCode.BusyRepeatRequest:
                return response
        return response

    def _response(self, payload: bytes, data: bytes) -> Response:
        sid, shown = payload[0], data.hex(" ").upper()
        negative = len(data) >= 3 and data[0] == 0x7F and data[1] == sid
        if not negative and data[:1] != bytes([sid + 0x40]):
            raise DecodeError(f"{self.address} answered {shown} to {payload.hex(' ').upper()}")
        response = Response.from_payload(data)
        if not response.valid:
            raise DecodeError(f"{self.address} answered {shown}: {response.invalid_reason}")
        return response

    def keepalive(self) -> None:
        """Send ``3E 80`` when the session would otherwise time out (S3); no-op in the default session.

        :raises adapters.errors.AdapterError: when the link fails.
        """
        if self.session == 0x01 or self._clock() - self.last_request <= KEEPALIVE_AFTER:
            return
        payload = TesterPresent.make_request().get_payload(suppress_positive_response=True)
        self.adapter.request(payload, ecu=self.address, timeout=_KEEPALIVE_TIMEOUT)
        self.last_request = self._clock()


def _negative_code(response: Response) -> int:
    return response.code if response.code is not None else 0


@contextmanager
def uds_session(
    adapter: Adapter,
    address: str,
    session: int = 0x03,
    *,
    busy_delay: float = BUSY_DELAY,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[UdsSession]:
    """Hold a diagnostic session on one ECU: ``10 03`` on entry, ``10 01`` on exit.

    :raises UdsError: when the ECU refuses the session or does not answer.
    :raises adapters.errors.AdapterError: when the link fails.
    """
    link = UdsSession(adapter, address, busy_delay=busy_delay, clock=clock)
    response = link.request(DiagnosticSessionControl.make_request(session).get_payload())
    if response is None:
        raise UdsError(
            f"{address} did not answer the request for session {session:02X}", address=address, nrc=None
        )
    if not response.positive:
        nrc = _negative_code(response)
        raise UdsError(
            f"{address} refused session {session:02X}: {explain_nrc(nrc)}", address=address, nrc=nrc
        )
    try:
        timing = DiagnosticSessionControl.interpret_response(response).service_data
        log.debug(
            "%s in session %02X, P2 %s s, P2* %s s",
            address,
            session,
            timing.p2_server_max,
            timing.p2_star_server_max,
        )
    except (uds_exceptions.InvalidResponseException, ValueError) as exc:
        log.debug("%s sent a short session answer: %s", address, exc)
    link.session = session
    try:
        yield link
    finally:
        try:
            link.session = 0x01
            link.request(DiagnosticSessionControl.make_request(0x01).get_payload())
        except Exception as exc:  # leaving the session must not hide what happened inside it
            log.warning("%s: could not return to the default session: %s", address, exc)


# -- ReadDataByIdentifier --------------------------------------------------------------------------


class _RawCodec(DidCodec):
    """A DID value as bytes; ``length`` None reads to the end of the answer."""

    def __init__(self, length: int | None = None) -> None:
        super().__init__()
        self.length = length

    def decode(self, did_payload: bytes) -> Any:
        return bytes(did_payload)

    def __len__(self) -> int:
        if self.length is None:
            raise DidCodec.ReadAllRemainingData
        return self.length


def _printable_value(value: bytes) -> bool:
    text = value.rstrip(b"\x00\xff")
    return bool(text) and all(0x20 <= b < 0x7F for b in text)


def split_identification_answer(data: bytes, dids: Sequence[int]) -> dict[int, bytes] | None:
    """Split the body of a multi-DID ``62`` answer into values, or None when that is not certain.

    UDS gives no lengths: ``F187 'ABC' F188 'DEF'`` is only certain to split at the second DID because
    identification DIDs start with byte F1, which printable text never contains. So every requested
    DID must be ``F1xx``, each value printable ASCII (fill bytes 00/FF at its end allowed), and the
    DIDs in the order requested (ISO 14229-1); DIDs the ECU left out are missing from the result.
    """
    if not data or any(did >> 8 != 0xF1 for did in dids):
        return None
    starts = [i for i in range(len(data) - 1) if data[i] == 0xF1]
    if not starts or starts[0] != 0:
        return None
    values: dict[int, bytes] = {}
    remaining = list(dids)
    for index, start in enumerate(starts):
        did = int.from_bytes(data[start : start + 2], "big")
        if did not in remaining:
            return None
        remaining = remaining[remaining.index(did) + 1 :]
        end = starts[index + 1] if index + 1 < len(starts) else len(data)
        value = data[start + 2 : end]
        if not _printable_value(value):
            return None
        values[did] = value
    return values


@dataclass(slots=True)
class _DidResult:
    values: dict[int, bytes]
    refused: dict[int, int]  # DID -> NRC
    silent: bool = False
    multi_did: bool = False  # the ECU answered several DIDs in one request


def _interpret_dids(response: Response, lengths: dict[int, int | None]) -> dict[int, bytes]:
    """udsoncan's ReadDataByIdentifier decoding with the value lengths we found.

    :raises DecodeError: when the answer does not fit (short, or DIDs nobody asked for).
    """
    config: dict[int | str, Any] = {did: _RawCodec(length) for did, length in lengths.items()}
    try:
        interpreted = ReadDataByIdentifier.interpret_response(response, list(lengths), config)
    except (uds_exceptions.InvalidResponseException, uds_exceptions.ConfigError, ValueError) as exc:
        raise DecodeError(f"the 62 answer does not fit the DIDs asked for ({exc})") from exc
    return {int(did): bytes(value) for did, value in interpreted.service_data.values.items()}


def _read_one_did(link: UdsSession, did: int) -> tuple[bytes | None, int | None, bool]:
    """(value, nrc, answered) for one DID."""
    request = ReadDataByIdentifier.make_request([did], None)
    response = link.request(request.get_payload())
    if response is None:
        return None, None, False
    if not response.positive:
        return None, _negative_code(response), True
    if response.service is not ReadDataByIdentifier:
        raise DecodeError(f"{link.address} answered 22 {did:04X} for another service")
    values = _interpret_dids(response, {did: None})
    if did not in values:
        raise DecodeError(f"{link.address} answered 22 {did:04X} for another DID")
    return values[did], None, True


def _read_dids(
    link: UdsSession, dids: Sequence[int], notes: list[str], *, trust_multi: bool = False
) -> _DidResult:
    """Read DIDs: identification DIDs several per request while the ECU takes it, the rest one by one.

    A batch holds :data:`MULTI_DID_BATCH` DIDs so that the request fits one CAN frame: an ELM327 sends
    nothing longer, and small ECUs prefer it. An ECU that answers several DIDs at once has shown that it
    does multi-DID reads, so the DIDs it left out are unsupported (ISO 14229-1) and are not asked for
    again; one that answers only the first may not do multi-DID reads, and the rest are asked one by
    one. ``trust_multi`` says that an earlier read already showed multi-DID support.
    """
    result = _DidResult({}, {}, multi_did=trust_multi)
    todo = list(dict.fromkeys(dids))
    ident = [d for d in todo if d >> 8 == 0xF1]
    batches = [ident[i : i + MULTI_DID_BATCH] for i in range(0, len(ident), MULTI_DID_BATCH)]
    for batch in batches if len(ident) > 1 else []:
        if len(batch) < 2:
            break
        response = link.request(ReadDataByIdentifier.make_request(batch, None).get_payload())
        if response is None:
            if not result.values and not result.refused:
                result.silent = True
                return result
            break
        split = None
        if response.positive and response.service is ReadDataByIdentifier:
            split = split_identification_answer(response.data or b"", batch)
            if split is None:
                log.debug("%s: multi-DID answer not certain to split, reading one by one", link.address)
        elif result.multi_did and _negative_code(response) == ResponseCode.RequestOutOfRange:
            split = {}
        if split is None:
            log.debug("%s: no multi-DID read (%s), reading one by one", link.address, response.code_name)
            break
        lengths: dict[int, int | None] = {did: len(value) for did, value in split.items()}
        if lengths:
            result.values.update(_interpret_dids(response, lengths))
        if len(split) > 1 or result.multi_did:
            result.multi_did = True
            result.refused.update({did: 0x31 for did in batch if did not in split})
    for did in todo:
        if did in result.values or did in result.refused:
            continue
        try:
            value, nrc, answered = _read_one_did(link, did)
        except DecodeError as exc:
            notes.append(f"{link.address}: {_did_label(did)} not understood: {exc}")
            continue
        if not answered:
            if not result.values and not result.refused:
                result.silent = True
                return result
            notes.append(f"{link.address}: no answer when reading {_did_label(did)}")
            continue
        if value is not None:
            result.values[did] = value
        elif nrc is not None:
            result.refused[did] = nrc
    return result


def _did_label(did: int) -> str:
    name = DID_NAMES.get(did)
    return f"{did:04X} ({name})" if name else f"{did:04X}"


def _note_refusals(address: str, refused: dict[int, int], notes: list[str]) -> None:
    for did, nrc in refused.items():
        if nrc not in _QUIET_NRCS:
            notes.append(f"{address}: {_did_label(did)} not read: {explain_nrc(nrc)}")


# -- ReadDTCInformation ----------------------------------------------------------------------------


def _describe(code: str) -> str | None:
    """The plain-words meaning of a DTC, when obdtool's DTC table is installed."""
    try:
        module = importlib.import_module("obdtool.decode.dtc")
    except ImportError:
        return None
    describe = getattr(module, "describe_dtc", None)
    if describe is None:
        return None
    text = describe(code)
    return text if isinstance(text, str) else None


def _read_dtcs(link: UdsSession, mask: int, notes: list[str]) -> list[UdsDtc] | None:
    """19 02 mask -> DTCs; None when the ECU did not answer."""
    subfunction = ReadDTCInformation.Subfunction.reportDTCByStatusMask
    request = ReadDTCInformation.make_request(subfunction, status_mask=mask)
    response = link.request(request.get_payload())
    if response is None:
        return None
    if not response.positive:
        nrc = _negative_code(response)
        if nrc not in _QUIET_NRCS:
            notes.append(f"{link.address}: fault memory not read: {explain_nrc(nrc)}")
        return []
    try:
        interpreted = ReadDTCInformation.interpret_response(response, subfunction)
    except (uds_exceptions.InvalidResponseException, ValueError) as exc:
        notes.append(f"{link.address}: fault memory answer not understood ({exc})")
        return []
    dtcs: list[UdsDtc] = []
    for dtc in interpreted.service_data.dtcs:
        assert isinstance(dtc, Dtc)
        status = dtc.status.get_byte_as_int()
        code = dtc.id_iso()
        dtcs.append(UdsDtc(code, status, status_flags(status), _describe(code[:5])))
    return dtcs


# -- the read-out ----------------------------------------------------------------------------------


def read_uds_ecu(
    adapter: Adapter,
    address: str,
    *,
    dids: Sequence[int] = IDENT_DIDS,
    dtc_mask: int = DEFAULT_DTC_MASK,
    extended_retry: bool = True,
    session: UdsSession | None = None,
    busy_delay: float = BUSY_DELAY,
) -> UdsEcuReport:
    """Read one ECU's identification DIDs and fault memory.

    The reads happen in the session the ECU is in (the default session unless ``session`` says
    otherwise). With ``extended_retry``, DIDs the ECU called unsupported are asked for once more in
    the extended session -- some ECUs show their serial number only there -- and the ECU is put
    back into the default session afterwards. An ECU that does not answer the first request is
    reported with ``answered=False`` and not asked again.

    :param address: the ECU's answer address (``"7E8"``, ``"18DAF110"``).
    :param dids: the DIDs to read; manufacturer DIDs are read one per request.
    :param dtc_mask: the ``19 02`` status mask (see :data:`DEFAULT_DTC_MASK`).
    :param session: an open :func:`uds_session` to read in; no session change happens then.
    :raises adapters.errors.AdapterError: when the link fails.
    """
    link = session or UdsSession(adapter, address, busy_delay=busy_delay)
    notes: list[str] = []
    result = _DidResult({}, {})
    dtcs: list[UdsDtc] | None = []
    try:
        result = _read_dids(link, dids, notes)
        if result.silent:
            notes.append(f"{address} did not answer (ECU absent, asleep, or not a UDS ECU)")
            return UdsEcuReport(address, {}, [], notes, answered=False)
        dtcs = _read_dtcs(link, dtc_mask, notes)
        retry = [did for did, nrc in result.refused.items() if nrc in _SESSION_NRCS]
        if extended_retry and retry and session is None:
            try:
                with uds_session(adapter, address, 0x03, busy_delay=busy_delay) as extended:
                    found = _read_dids(extended, retry, [], trust_multi=result.multi_did)
            except UdsError as exc:
                log.info("%s: %s", address, exc)
            else:
                result.values.update(found.values)
                for did in found.values:
                    result.refused.pop(did, None)
    except DecodeError as exc:  # one confused ECU must not end the whole scan
        notes.append(f"{address}: read-out stopped, an answer was not understood: {exc}")
    _note_refusals(address, result.refused, notes)
    identification = {
        f"{did:04X}": decode_identification(result.values[did]) for did in dids if did in result.values
    }
    return UdsEcuReport(address, identification, dtcs or [], notes)


def clear_uds_dtcs(adapter: Adapter, address: str, *, busy_delay: float = BUSY_DELAY) -> None:
    """``14 FF FF FF``: clear all DTC groups of one ECU.

    :raises UdsError: when the ECU refuses (the message says why, e.g. engine running) or is silent.
    :raises adapters.errors.AdapterError: when the link fails.
    """
    link = UdsSession(adapter, address, busy_delay=busy_delay)
    request = ClearDiagnosticInformation.make_request(group=0xFFFFFF)
    response = link.request(request.get_payload())
    if response is None:
        raise UdsError(f"{address} did not answer the clear request", address=address, nrc=None)
    if not response.positive:
        nrc = _negative_code(response)
        raise UdsError(
            f"{address} did not clear its fault memory: {explain_nrc(nrc)}", address=address, nrc=nrc
        )


# -- mileage ---------------------------------------------------------------------------------------

_DECODERS: dict[str, int] = {"uint24_be": 3, "uint32_be": 4}
_UNITS: dict[str, float] = {"km": 1.0, "miles": 1.609344}
_SESSIONS: dict[str, int] = {"default": 0x01, "extended": 0x03}
_ECU_RE = re.compile(r"^([0-7][0-9A-F]{2}|18DAF1[0-9A-F]{2})$")


def _profile_error(path: Path, key: str, why: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {why}")


def _profile(path: Path, wmi: str, table: object) -> MileageProfile:
    where = f"profiles.{wmi}"
    if not isinstance(table, dict):
        raise _profile_error(path, where, "expected a table")
    if len(wmi) != 3 or not wmi.isalnum() or wmi.upper() != wmi:
        raise _profile_error(path, where, "a WMI is the first 3 characters of a VIN, e.g. WVW")
    known = {"name", "ecu", "did", "decode", "scale", "unit", "offset", "session"}
    for key in table:
        if key not in known:
            raise _profile_error(path, f"{where}.{key}", f"unknown key (known: {', '.join(sorted(known))})")

    def text(key: str, default: str | None = None) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or not value:
            raise _profile_error(path, f"{where}.{key}", f'expected text in quotes, e.g. {key} = "..."')
        return value

    ecu = text("ecu").upper()
    if not _ECU_RE.match(ecu) or "7DF" <= ecu <= "7E7":
        raise _profile_error(
            path, f"{where}.ecu", f"{ecu!r} is not an ECU answer address such as 7E8 or 18DAF110"
        )
    did_text = text("did")
    try:
        did = int(did_text, 16)
    except ValueError:
        did = -1
    if len(did_text) != 4 or not 0 <= did <= 0xFFFF:
        raise _profile_error(path, f"{where}.did", f"{did_text!r} is not a DID of 4 hex digits")
    decode = text("decode")
    if decode not in _DECODERS:
        raise _profile_error(path, f"{where}.decode", f"expected one of {', '.join(_DECODERS)}")
    unit = text("unit", "km")
    if unit not in _UNITS:
        raise _profile_error(path, f"{where}.unit", f"expected one of {', '.join(_UNITS)}")
    scale = table.get("scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0:
        raise _profile_error(path, f"{where}.scale", "expected a positive number")
    offset = table.get("offset", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise _profile_error(path, f"{where}.offset", "expected a whole number of bytes, 0 or more")
    session = text("session", "default")
    if session not in _SESSIONS:
        raise _profile_error(path, f"{where}.session", f"expected one of {', '.join(_SESSIONS)}")
    return MileageProfile(
        wmi=wmi,
        name=text("name", wmi),
        ecu=ecu,
        did=did,
        decode=decode,
        scale=float(scale),
        unit=unit,
        offset=offset,
        session=_SESSIONS[session],
    )


def load_mileage_profiles(path: str | PathLike[str] = DEFAULT_PROFILES) -> dict[str, MileageProfile]:
    """Read the per-manufacturer odometer profiles, keyed by WMI.

    :raises ConfigError: naming the file and the key when the file is missing or malformed.
    """
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: the UDS mileage profile file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot be read ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: {exc}") from exc
    for key in raw:
        if key != "profiles":
            raise _profile_error(file, key, "unknown key; profiles go under [profiles.WMI]")
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, dict):
        raise _profile_error(file, "profiles", "expected tables such as [profiles.WVW]")
    return {wmi: _profile(file, wmi, table) for wmi, table in profiles.items()}


def _decode_mileage(profile: MileageProfile, value: bytes) -> UdsMileage | None:
    size = _DECODERS[profile.decode]
    field = value[profile.offset : profile.offset + size]
    did = f"{profile.did:04X}"
    if len(field) != size:
        raise DecodeError(
            f"{profile.ecu} answered DID {did} with {len(value)} bytes; profile '{profile.wmi}' expects"
            f" {profile.decode} at byte {profile.offset}"
        )
    if field == b"\xff" * size:
        return None  # "not available"
    number = int.from_bytes(field, "big") * profile.scale
    return UdsMileage(
        km=round(number * _UNITS[profile.unit], 3),
        value=round(number, 3),
        unit=profile.unit,
        ecu=profile.ecu,
        did=did,
        profile=profile.wmi,
        source=f"UDS 22 {did} on {profile.ecu} (profile '{profile.wmi}')",
    )


def read_uds_mileage(
    adapter: Adapter,
    vin: str | None,
    profiles_path: str | PathLike[str] = DEFAULT_PROFILES,
    *,
    busy_delay: float = BUSY_DELAY,
) -> UdsMileage | None:
    """Read the odometer the way the VIN's manufacturer keeps it (see ``fixtures/uds-profiles.toml``).

    :returns: the mileage, or None when the VIN is unknown, no profile fits its WMI, or the ECU does
        not give the DID (the reason is logged).
    :raises ConfigError: when the profile file is missing or malformed.
    :raises DecodeError: when the ECU's answer does not fit the profile.
    :raises adapters.errors.AdapterError: when the link fails.
    """
    if not vin:
        log.info("no VIN: cannot choose a UDS mileage profile")
        return None
    profile = load_mileage_profiles(profiles_path).get(vin[:3].upper())
    if profile is None:
        log.info("no UDS mileage profile for WMI %s", vin[:3])
        return None

    def read(link: UdsSession) -> tuple[bytes | None, int | None, bool]:
        return _read_one_did(link, profile.did)

    try:
        if profile.session == 0x01:
            value, nrc, answered = read(UdsSession(adapter, profile.ecu, busy_delay=busy_delay))
        else:
            with uds_session(adapter, profile.ecu, profile.session, busy_delay=busy_delay) as link:
                value, nrc, answered = read(link)
    except UdsError as exc:
        log.info("mileage not read: %s", exc)
        return None
    if value is None:
        why = explain_nrc(nrc) if nrc is not None else "no answer" if not answered else "empty answer"
        log.info("mileage not read from %s DID %04X: %s", profile.ecu, profile.did, why)
        return None
    return _decode_mileage(profile, value)
