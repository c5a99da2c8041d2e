"""Fuzzing: whatever bytes a car, an adapter or a file holds, only the project's own errors come out.

Each property test counts the examples it really ran into the ledger, so the summary reports executed
examples, not configured ones. The ``slow`` variants run the same properties far longer.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import LEDGER

from adapters.base import Adapter, EcuReply, LinkInfo
from adapters.elm_lines import decode_response
from adapters.errors import AdapterError
from adapters.replay import LogReplayLink, parse_terminal_log
from adapters.sim.scenario import ScenarioError, key_line, parse_scenario
from adapters.trace import TraceFormatError, escape_bytes, read_trace, unescape_bytes
from obdtool import uds
from obdtool.errors import ObdToolError
from obdtool.readout import ObfcmConsent, ReadOptions, read_vehicle

QUICK = settings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SOAK = settings(max_examples=5000, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def both(body: Callable[..., None], **strategies: Any) -> tuple[Callable[..., None], Callable[..., None]]:
    """The property once with the quick settings, once as a ``slow`` soak with many more examples."""
    return QUICK(given(**strategies)(body)), pytest.mark.slow(SOAK(given(**strategies)(body)))


# -- the ELM327 reader and ISO-TP reassembly ------------------------------------------------------------

ELM_PIECES = st.sampled_from(
    [
        "7E8",
        "7E9",
        "18DAF110",
        "18 DA F1 11",
        "10",
        "14",
        "21",
        "22",
        "23",
        "2F",
        "03",
        "06",
        "41",
        "49",
        "7F",
        "78",
        "00",
        "FF",
        "55",
        "014",
        "0:",
        "1:",
        " ",
        "\r",
        "\n",
        ">",
        "SEARCHING...",
        "NO DATA",
        "CAN ERROR",
        "BUFFER FULL",
        "STOPPED",
        "<DATA ERROR",
        "BUS INIT: ...ERROR",
        "?",
        "\x00",
        "\xff",
    ]
)
elm_text = st.one_of(
    st.lists(ELM_PIECES, max_size=80).map("".join),
    st.binary(max_size=300).map(lambda b: b.decode("ascii", errors="replace")),
)


def _frames(ecu: str, pcis: list[int], bodies: list[bytes]) -> str:
    return "\r".join(f"{ecu}{pci:02X}{body.hex().upper()}" for pci, body in zip(pcis, bodies, strict=False))


isotp_text = st.builds(
    _frames,
    st.sampled_from(["7E8", "7E9"]),
    st.lists(st.integers(0, 0x3F), min_size=1, max_size=12),
    st.lists(st.binary(max_size=7), min_size=1, max_size=12),
)


def _reader(text: str, request: bytes, can: bool, id_bits: int) -> None:
    LEDGER.example("elm reader and ISO-TP reassembly")
    try:
        response = decode_response(text, request=request, can=can, id_bits=id_bits)
    except AdapterError:
        return
    assert all(isinstance(reply, EcuReply) and reply.data for reply in response.replies)


def _elm_reader(text: str, request: bytes, can: bool, id_bits: int) -> None:
    _reader(text, request, can, id_bits)


test_elm_reader_raises_only_adapter_errors, test_soak_elm_reader = both(
    _elm_reader,
    text=st.one_of(elm_text, isotp_text),
    request=st.binary(min_size=1, max_size=7),
    can=st.booleans(),
    id_bits=st.sampled_from([11, 29]),
)


# -- trace files and terminal logs ----------------------------------------------------------------------


def _escape_round_trip(data: bytes) -> None:
    LEDGER.example("trace escaping round trip")
    text = escape_bytes(data)
    assert all(" " <= ch <= "~" for ch in text) and '"' not in text.replace('\\"', "")
    assert unescape_bytes(text) == data


test_trace_escaping_round_trips, test_soak_trace_escaping = both(
    _escape_round_trip, data=st.binary(max_size=200)
)

trace_lines = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.builds(
            lambda t, d, p: f'{t:.6f} {d} "{p}"',
            st.floats(0, 100),
            st.sampled_from([">", "<", "!", "~", "?"]),
            st.text(alphabet=string.printable, max_size=20),
        ),
    ),
    max_size=12,
)


def _trace_reader(tmp_path_factory: pytest.TempPathFactory, lines: list[str], header: bool) -> None:
    LEDGER.example("trace file reader")
    path = tmp_path_factory.getbasetemp() / "fuzz.trace"
    path.write_text("\n".join((["# obdtool-trace 1"] if header else []) + lines), encoding="utf-8")
    try:
        trace = read_trace(path)
    except TraceFormatError:
        return
    assert all(e.direction in "<>!~" for e in trace.events)


test_trace_reader_raises_only_trace_errors, test_soak_trace_reader = both(
    _trace_reader, lines=trace_lines, header=st.booleans()
)

log_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                ">ATZ",
                "ELM327 v1.5",
                ">ATH1",
                ">ATH0",
                "OK",
                ">ATSP6",
                ">ATTPA7",
                ">0100",
                ">0902",
                ">09021",
                ">ATDPN",
                "A6",
                "7E8064100BE3FA813",
                "NO DATA",
                "?",
                ">",
                "# note",
                "ATE0",
                ">0100\r7E8",
            ]
        ),
        st.text(max_size=30),
    ),
    max_size=25,
)


def _terminal_log(lines: list[str], host: bytes, protocol: str | None) -> None:
    LEDGER.example("terminal log reader and tolerant replay")
    try:
        log = parse_terminal_log("\n".join(lines))
    except AdapterError:
        return
    link = LogReplayLink(log, protocol=protocol, sleep=lambda _s: None)
    try:
        link.write(host)
        link.read(0)
    except AdapterError:
        return


test_terminal_logs_raise_only_adapter_errors, test_soak_terminal_logs = both(
    _terminal_log, lines=log_lines, host=st.binary(max_size=120), protocol=st.sampled_from([None, "6", "7"])
)


# -- UDS answer decoding ---------------------------------------------------------------------------------

uds_answers = st.one_of(
    st.binary(max_size=40),
    st.tuples(
        st.sampled_from(
            [b"\x62", b"\x62\xf1\x90", b"\x62\xf1\x87", b"\x7f\x22", b"\x59\x02", b"\x50\x03", b"\x54"]
        ),
        st.binary(max_size=40),
    ).map(lambda parts: parts[0] + parts[1]),
)


class _FuzzAdapter(Adapter):
    """Answers every request with replies drawn by hypothesis: the car and the adapter are the fuzzer."""

    def __init__(
        self, draw: Callable[[st.SearchStrategy[Any]], Any], answers: st.SearchStrategy[bytes]
    ) -> None:
        super().__init__()
        self._draw = draw
        self._answers = answers
        self.sent: list[bytes] = []

    def open(self) -> LinkInfo:
        self._info = LinkInfo("fuzz", "hypothesis", "ISO 15765-4 CAN", "6", bool(self._draw(st.booleans())))
        return self._info

    def close(self) -> None:
        pass

    def request(
        self, data: bytes, *, ecu: str | None = None, expect: int | None = None, timeout: float | None = None
    ) -> list[EcuReply]:
        self.stats.count_request(data)
        self.sent.append(data)
        if self.stats.requests > 60:
            return []
        ecus = self._draw(st.lists(st.sampled_from(["7E8", "7E9", "10"]), max_size=3))
        return [EcuReply(address, self._draw(self._answers)) for address in ecus]


def _uds_readout(data: st.DataObject) -> None:
    LEDGER.example("UDS answer decoding (read_uds_ecu, clear, mileage)")
    adapter = _FuzzAdapter(data.draw, uds_answers)
    adapter.open()
    try:
        report = uds.read_uds_ecu(adapter, "7E8", busy_delay=0)
        assert all(isinstance(v, str) for v in report.identification.values())
        uds.clear_uds_dtcs(adapter, "7E8", busy_delay=0)
        uds.read_uds_mileage(adapter, "WVWZZZCDZMW123450", busy_delay=0)
    except (ObdToolError, AdapterError):
        return


test_uds_decoding_raises_only_project_errors, test_soak_uds_decoding = both(_uds_readout, data=st.data())


def _uds_pure(data: bytes, dids: list[int]) -> None:
    LEDGER.example("UDS identification splitting")
    split = uds.split_identification_answer(data, dids)
    assert split is None or set(split) <= set(dids)
    assert isinstance(uds.decode_identification(data), str)
    assert isinstance(uds.explain_nrc(data[0] if data else 0), str)
    assert isinstance(uds.status_flags(data[0] if data else 0), list)


test_uds_pure_functions_never_fail, test_soak_uds_pure = both(
    _uds_pure, data=st.binary(max_size=60), dids=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4)
)


# -- the whole read-out over a car that answers nonsense -------------------------------------------------

obd_answers = st.one_of(
    st.binary(min_size=1, max_size=30),
    st.tuples(
        st.sampled_from(
            [
                b"\x41\x00",
                b"\x41\x01",
                b"\x41\xa6",
                b"\x41\x21",
                b"\x43",
                b"\x47",
                b"\x4a",
                b"\x49\x00",
                b"\x49\x02\x01",
                b"\x49\x04",
                b"\x49\x06",
                b"\x49\x0a",
                b"\x49\x17",
                b"\x42\x02\x00",
                b"\x7f\x01",
                b"\x7f\x09\x78",
            ]
        ),
        st.binary(max_size=30),
    ).map(lambda parts: parts[0] + parts[1]),
)


def _readout(data: st.DataObject, refused: bool) -> None:
    LEDGER.example("whole read-out over random answers (every decoder)")
    from datetime import UTC, datetime

    adapter = _FuzzAdapter(data.draw, obd_answers)
    options = ReadOptions(obfcm=ObfcmConsent(refused, datetime.now(UTC)), uds=data.draw(st.booleans()))
    result = read_vehicle(adapter, options)  # never raises: errors end up in result.error / ECU errors
    assert result.finished_at is not None
    if refused:  # the owner's refusal holds whatever the car answered
        assert not [r for r in adapter.sent if r[:1] == b"\x09" and set(r[1:]) & {0x17, 0x1A, 0x1B, 0x1C}]


test_readout_never_raises, test_soak_readout = both(_readout, data=st.data(), refused=st.booleans())


# -- scenario tables -------------------------------------------------------------------------------------

SCENARIO_KEYS = ["name", "protocol", "vin", "ecus", "adapter", "timing", "engine_running", "description", "x"]
ECU_KEYS = [
    "address",
    "stored",
    "pending",
    "permanent",
    "values",
    "freeze_frame",
    "calids",
    "cvns",
    "mil",
    "ignition",
    "obfcm",
    "uds",
    "silent",
    "response_ms",
    "pending_responses",
    "busy_responses",
    "answers_vin",
    "name",
    "zz",
]
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 1 << 40),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["6", "7", "3", "7E8", "7E9", "18DAF110", "10", "P0133", "X0000", "WVWZZZCDZMW123450"]),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from([*ECU_KEYS, "rpm", "coolant_c", "0C", "dtc", "dids"]), inner, max_size=5
        ),
    ),
    max_leaves=6,
)
ecu_tables = st.dictionaries(st.sampled_from(ECU_KEYS), values, max_size=5)
scenario_tables = st.dictionaries(
    st.sampled_from(SCENARIO_KEYS),
    st.one_of(values, st.lists(ecu_tables, min_size=1, max_size=2)),
    max_size=5,
)


def _scenario(table: dict[str, Any]) -> None:
    LEDGER.example("scenario tables")
    try:
        parse_scenario(table)
    except ScenarioError as exc:
        assert str(exc).startswith("<scenario>: ")


test_scenario_tables_raise_only_scenario_errors, test_soak_scenario_tables = both(
    _scenario, table=scenario_tables
)


def _key_line(text: str, key: str) -> None:
    LEDGER.example("scenario key -> line finder")
    line = key_line(text, key)
    assert line is None or 1 <= line <= max(1, len(text.splitlines()))


test_key_line_never_fails, test_soak_key_line = both(
    _key_line, text=st.text(max_size=300), key=st.text(max_size=30)
)


def test_the_ledger_saw_the_fuzzers(tmp_path: Path) -> None:
    """Guard against a property that silently stopped running (a skipped body counts nothing)."""
    quick = [name for name in LEDGER.fuzz if LEDGER.fuzz[name] > 0]
    assert len(quick) >= 8, LEDGER.fuzz
