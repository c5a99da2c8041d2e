"""The ELM327 reader against real adapter output (fixtures/captures/, see their headers for the sources).

Each test states the truth the capture's source or README gives, and checks the reader finds exactly it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from adapters.base import EcuReply
from adapters.elm_lines import (
    HEADERLESS_CAN,
    HEADERLESS_LEGACY,
    ElmResponse,
    decode_response,
    parse_response,
)
from adapters.errors import (
    AdapterProtocolError,
    BusFaultError,
    BusInitError,
    FramingError,
    UnableToConnectError,
)

CAPTURES = Path(__file__).resolve().parents[2] / "fixtures" / "captures"
_LOG_LINE = re.compile(r"\[obd\.elm327\] (write|read): (.*)$")


def capture_lines(name: str) -> list[str]:
    """The capture's lines without our ``#`` header and section lines."""
    text = (CAPTURES / name).read_text(encoding="utf-8")
    return [line for line in text.split("\n") if not line.startswith("#")]


def _as_text(value: object) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def python_obd_exchanges(name: str) -> list[tuple[str, str]]:
    """(command as written, adapter text as read) pairs from a python-OBD debug log.

    The log holds Python reprs (``read: b'...\\r\\r>'``); some posts wrap each log line in one more bytes
    repr. Both are unescaped with ``ast.literal_eval``.
    """
    pairs: list[tuple[str, str]] = []
    written: str | None = None
    for raw in capture_lines(name):
        line = raw.strip()
        if line.startswith(("b'", 'b"')):
            line = _as_text(ast.literal_eval(line)).strip()
        match = _LOG_LINE.search(line)
        if match is None:
            continue
        value = _as_text(ast.literal_eval(match[2]))
        if match[1] == "write":
            written = value
        else:
            assert written is not None
            pairs.append((written, value))
            written = None
    return pairs


def request_of(command: str, previous: bytes | None = None) -> bytes:
    """The service bytes behind a written command; a bare CR repeats ``previous``; a count digit is cut."""
    command = command.strip()
    if not command:
        assert previous is not None
        return previous
    return bytes.fromhex(command[: len(command) // 2 * 2])


def terminal_exchanges(name: str) -> list[tuple[str, str]]:
    """(command, reply text) pairs from a terminal transcript where ``>`` starts each command."""
    pairs: list[tuple[str, list[str]]] = []
    waiting_for_command = False
    for line in capture_lines(name):
        if line.startswith(">"):
            command = line[1:].strip()
            waiting_for_command = not command
            pairs.append((command, []))
        elif waiting_for_command and line.strip():
            pairs[-1] = (line.strip(), [])
            waiting_for_command = False
        elif pairs:
            pairs[-1][1].append(line)
    return [(command, "\n".join(reply)) for command, reply in pairs]


def dtc(code: bytes) -> str:
    """SAE J2012 two-byte DTC, for readable assertions."""
    return "PCBU"[code[0] >> 6] + f"{(code[0] >> 4) & 3}{code[0] & 0xF:X}{code[1]:02X}"


# ----------------------------------------------------------------------- CAN 11-bit, headers on


def test_porsche_vin_is_reassembled_from_three_frames() -> None:
    [(command, text)] = python_obd_exchanges("pyobd151-porsche-can11-vin.txt")
    replies = parse_response(text, request=request_of(command), can=True)
    assert replies == [EcuReply("7E8", b"\x49\x02\x01" + b"WP0ZZZ99ZTS392124")]


def test_dacia_service_09_calid_padding_is_dropped() -> None:
    exchanges = python_obd_exchanges("pyobd288-dacia-can11-svc09.txt")
    results = {
        command.strip(): parse_response(text, request=request_of(command), can=True)
        for command, text in exchanges
    }
    assert results["09001"] == [EcuReply("7E8", bytes.fromhex("4900 55420000"))]
    supported = int.from_bytes(results["09001"][0].data[2:6], "big")
    assert [itid for itid in range(1, 33) if supported & (1 << (32 - itid))] == [2, 4, 6, 8, 0x0A, 0x0F]
    assert results["0902"] == [EcuReply("7E8", b"\x49\x02\x01UU1B5220X65966756")]
    [calid] = results["0904"]
    assert calid.data == b"\x49\x04\x01" + b"237616425S" + bytes(6)  # 0x13 bytes: the AA is CAN padding
    assert len(calid.data) == 0x13


def test_mercedes_three_ecus_with_glued_spaces_off_frames() -> None:
    rows = [
        line.split("\t") for line in capture_lines("klinereader11-mercedes-a180d-can11-3ecu.txt")[1:] if line
    ]
    exchanges: list[tuple[str, str]] = []
    for row in rows:
        direction, data = row[1], row[-1]
        if direction == ">>":
            exchanges.append((data, ""))
        elif direction == "<<":
            exchanges[-1] = (exchanges[-1][0], data)
    truth = {
        "0100": {
            "7EB": "4100 98180001",
            "7E8": "4100 983BA017",
            "7E9": "4100 98180011",
        },
        "0120": {"7EB": "4120 80018001", "7E9": "4120 80018001", "7E8": "4120 B819A015"},
        "0101": {"7EB": "4101 00040000", "7E8": "4101 000EE968", "7E9": "4101 00040000"},
    }
    headers_on = False
    checked = 0
    for command, text in exchanges:
        if command == "ATH1":
            headers_on = True
        if command not in truth:
            continue
        if not headers_on:
            # Headers off and frames glued by the logging tool: three 6-byte answers with nothing between
            # them cannot be told apart, and the reader must refuse rather than return one 18-byte answer.
            with pytest.raises(AdapterProtocolError):
                parse_response(text, request=request_of(command), can=True, headers=False)
            continue
        replies = parse_response(text, request=request_of(command), can=True)
        assert {reply.ecu: reply.data for reply in replies} == {
            ecu: bytes.fromhex(data) for ecu, data in truth[command].items()
        }
        # Arrival order is kept: the order of the IDs in the text.
        assert [reply.ecu for reply in replies] == re.findall(r"7E[89B](?=06)", text)
        checked += 1
    assert checked == 16


def test_rav4_uds_answers_including_195_byte_message_with_sequence_wrap() -> None:
    lines = [line for line in capture_lines("obdb-rav4prime-2021-uds22.txt") if line]
    odometer, *flv_and_cells = lines
    [reply] = parse_response(odometer, request=bytes.fromhex("220103"), can=True)
    assert reply.ecu == "74F"
    assert int.from_bytes(reply.data[4:7], "big") == 73850
    for line, value in zip(flv_and_cells[:3], (1671, 5114, 5121), strict=True):
        [reply] = parse_response(line, request=bytes.fromhex("221022"), can=True)
        assert (reply.ecu, reply.data[:3], int.from_bytes(reply.data[3:5], "big")) == (
            "7C8",
            b"\x62\x10\x22",
            value,
        )
    frames = flv_and_cells[3:]
    assert len(frames) == 28
    [cells] = parse_response("\r".join(frames), request=bytes.fromhex("22182E"), can=True)
    assert cells.ecu == "74F"
    assert len(cells.data) == 0xC3
    assert cells.data[:3] == b"\x62\x18\x2e"
    # A frame lost from the real sequence must be noticed, not glued over.
    with pytest.raises(FramingError, match="was due"):
        parse_response("\r".join(frames[:10] + frames[11:]), request=bytes.fromhex("22182E"), can=True)
    with pytest.raises(FramingError, match="stopped after"):
        parse_response("\r".join(frames[:-1]), request=bytes.fromhex("22182E"), can=True)


def test_response_pending_is_absorbed_when_the_answer_follows() -> None:
    sections: list[list[str]] = []
    for line in capture_lines("elmemu9-uds-response-pending-7e5.txt"):
        if line.startswith("//"):
            sections.append([])
        elif line:
            sections[-1].append(line)
    answers: dict[bytes, ElmResponse] = {}
    for section in sections:
        request_frame = bytes.fromhex(section[0][4:])
        request = request_frame[1 : 1 + request_frame[0]]
        answers[request] = decode_response("\r".join(section[1:]), request=request, can=True)
    assert answers[bytes.fromhex("1101")].replies == (EcuReply("7ED", b"\x51\x01"),)
    assert answers[bytes.fromhex("1101")].pending == ()
    assert answers[bytes.fromhex("2711")].replies == (EcuReply("7ED", bytes.fromhex("6711A641B5E9")),)
    assert answers[bytes.fromhex("1003")].replies == (EcuReply("7ED", bytes.fromhex("5003 0014 00C8")),)
    # Only the pending frame arrived: nothing to return, and the caller learns who is still working.
    only_pending = decode_response("7ED 03 7F 11 78", request=bytes.fromhex("1101"), can=True)
    assert only_pending.replies == ()
    assert only_pending.pending == ("7ED",)


# ----------------------------------------------------------------------- CAN 29-bit


def test_pending_dtcs_with_unrequested_frames_mixed_in() -> None:
    exchanges = python_obd_exchanges("pyobd254-can29-multiecu-pending-dtc.txt")
    results: list[tuple[bytes, list[EcuReply]]] = []
    for command, text in exchanges:
        if command.startswith("AT"):
            continue
        # The bare CRs repeat a 07 that python-OBD sent outside this excerpt (see the capture header).
        request = request_of(command, previous=b"\x07")
        results.append((request, parse_response(text, request=request, can=True, id_bits=29)))
    (probe_request, probe), (pending_request, running), (_, stopped) = results
    assert probe_request == b"\x01\x00"
    # ECU 11's unrequested 41 0D and 41 11 frames are not answers to 01 00.
    assert {reply.ecu: reply.data.hex() for reply in probe} == {
        "18DAF140": "410080000001",
        "18DAF111": "4100bfdfa893",
        "18DAF128": "410080000001",
        "18DAF118": "410080000001",
    }
    assert pending_request == b"\x07"
    for replies in (running, stopped):
        by_ecu = {reply.ecu: reply.data for reply in replies}
        assert all(data[0] == 0x47 for data in by_ecu.values())
        ecu11 = by_ecu["18DAF111"]
        assert [dtc(ecu11[i : i + 2]) for i in range(2, 2 + 2 * ecu11[1], 2)] == ["P226D", "P226E"]
    assert sorted(reply.ecu for reply in running) == ["18DAF111", "18DAF118", "18DAF128", "18DAF140"]
    assert {reply.ecu: reply.data for reply in running if reply.ecu != "18DAF111"} == dict.fromkeys(
        ("18DAF128", "18DAF118", "18DAF140"), b"\x47\x00"
    )
    ignored = decode_response(exchanges[-2][1], request=b"\x07", can=True, id_bits=29).ignored
    assert [reply.data[:2] for reply in ignored] == [b"\x41\x0c", b"\x41\x0d", b"\x41\x11"]


def test_honda_padding_printed_after_the_pci_length_is_dropped() -> None:
    exchanges = python_obd_exchanges("pyobd257-honda-civic-can29-padded.txt")
    assert len(exchanges) == 9
    for command, text in exchanges:
        request = request_of(command)
        replies = parse_response(text, request=request, can=True, id_bits=29)
        assert replies, command
        for reply in replies:
            assert reply.ecu in ("18DAF111", "18DAF11D")
            assert len(reply.data) == 6
            assert reply.data[:2] == bytes([request[0] + 0x40, request[1]])
    first = parse_response(exchanges[0][1], request=b"\x01\x00", can=True, id_bits=29)
    assert first == [
        EcuReply("18DAF11D", bytes.fromhex("4100983A8001")),
        EcuReply("18DAF111", bytes.fromhex("4100BE3FA813")),
    ]


# ----------------------------------------------------------------------- CAN, headers off (CAF1)


def test_mazda_vin_with_headers_off_multiframe_layout() -> None:
    lines = capture_lines("rosaheli-mazda3-2010-caf1-vin.txt")
    start = lines.index(">0902") + 1
    block = lines[start : lines.index("", start)]
    # The author's "(says 14b total)" note on the length line is not adapter output: it is refused as is...
    with pytest.raises(AdapterProtocolError):
        parse_response("\n".join(block), request=b"\x09\x02", can=True, headers=False)
    # ...and without the note the reader finds the VIN.
    block[0] = re.sub(r"\s*\(.*\)$", "", block[0])
    replies = parse_response("\n".join(block), request=b"\x09\x02", can=True, headers=False)
    assert replies == [EcuReply(HEADERLESS_CAN, b"\x49\x02\x01JM1BL1H51A1247223")]


def test_mazda_caf0_no_data_and_data_error_lines() -> None:
    lines = capture_lines("rosaheli-mazda3-2010-caf1-vin.txt")
    second = lines.index(">0902", lines.index(">0902") + 1)
    assert parse_response(lines[second + 1], request=b"\x09\x02", can=True, headers=False) == []
    flagged_h0 = next(line for line in lines if line.startswith("67 0A") and "<DATA ERROR" in line)
    flagged_h1 = next(line for line in lines if line.startswith("090 ") and "<DATA ERROR" in line)
    with pytest.raises(BusFaultError) as h0:
        parse_response(flagged_h0, request=b"\x01\x00", can=True, headers=False)
    with pytest.raises(BusFaultError) as h1:
        parse_response(flagged_h1, request=b"\x01\x00", can=True)
    assert h0.value.status == h1.value.status == "<DATA ERROR"


def test_kona_uds_multiframe_headers_off_with_negative_answers_from_other_ecus() -> None:
    text = "\n".join(capture_lines("elmduino38-kona-uds220101-h0-multiframe.txt"))
    replies = parse_response(text, request=bytes.fromhex("220101"), can=True, headers=False)
    assert [reply.data for reply in replies[:3]] == [b"\x7f\x22\x12"] * 3
    assert len(replies) == 4
    bms = replies[3]
    assert bms.ecu == HEADERLESS_CAN
    assert len(bms.data) == 0x3E
    assert bms.data[:6] == bytes.fromhex("620101FFF7E7")
    assert bms.data[-7:] == bytes.fromhex("030000000003E8")


# ----------------------------------------------------------------------- K-line and legacy


def test_renault_kwp_checksum_verified_and_dropped() -> None:
    exchanges = python_obd_exchanges("pyobd81-renault-espace4-kwp-fast.txt")
    text = next(t for c, t in exchanges if c.strip() == "0100")
    assert parse_response(text, request=b"\x01\x00", can=False) == [
        EcuReply("7A", bytes.fromhex("410000000000"))
    ]
    with pytest.raises(FramingError, match="check byte 33 should be 32"):
        parse_response(text.replace("00 32", "00 33"), request=b"\x01\x00", can=False)


def test_sprinter_kwp_spaces_off_every_frame_checks() -> None:
    exchanges = terminal_exchanges("wican424-dodge-sprinter-2005-kwp-stn.txt")
    values: dict[int, bytes] = {}
    seen = 0
    for command, text in exchanges:
        if not re.fullmatch(r"01[0-9A-F]{2}1?", command):
            continue
        request = request_of(command)
        [reply] = parse_response(text, request=request, can=False)
        assert reply.ecu == "12"
        assert reply.data[:2] == bytes([0x41, request[1]])
        values[request[1]] = reply.data[2:]
        seen += 1
    assert seen == 18
    assert int.from_bytes(values[0x21], "big") == 49  # km with MIL on
    assert values[0x30] == b"\x1d"  # 29 warm-ups since clear
    assert values[0x00] == bytes.fromhex("983B2013")


def test_audi_legacy_service_09_headers_off() -> None:
    results: dict[str, list[EcuReply] | type[Exception]] = {}
    for command, text in terminal_exchanges("androbd174-audi-a3-2005-legacy-svc09.txt"):
        try:
            results[command.upper()] = parse_response(
                text, request=bytes.fromhex(command), can=False, headers=False
            )
        except AdapterProtocolError as exc:
            results[command.upper()] = type(exc)
    assert results["0900"] == [EcuReply(HEADERLESS_LEGACY, bytes.fromhex("490001F0000000"))]
    assert results["0901"] == [EcuReply(HEADERLESS_LEGACY, bytes.fromhex("490105"))]
    assert results["0903"] == [EcuReply(HEADERLESS_LEGACY, bytes.fromhex("490304"))]
    # The poster masked the VIN and CALID bytes as "xx": not hex, so refused rather than guessed.
    assert results["0902"] is AdapterProtocolError
    assert results["0904"] is AdapterProtocolError
    for itid in ("0905", "0906", "0907", "0908", "0909", "090A"):
        assert results[itid] == [EcuReply(HEADERLESS_LEGACY, bytes.fromhex("7F0912"))]


def test_citroen_malformed_reply_is_refused_not_half_read() -> None:
    exchanges = [
        (c, t) for c, t in terminal_exchanges("freematics7-citroen-kwp-malformed.txt") if c == "010C"
    ]
    assert len(exchanges) == 4
    for command, text in exchanges:
        echoed = f"{command}\r{text}"  # echo was on (ATE1): the adapter printed the command first
        with pytest.raises(AdapterProtocolError, match="cannot be read") as caught:
            parse_response(echoed, request=b"\x01\x0c", can=False, headers=False)
        assert "41 0C 000" in str(caught.value)


def test_failed_protocol_scan_status_strings() -> None:
    outcomes: list[object] = []
    for command, text in terminal_exchanges("ltsa11-elm-v15-protocol-scan-fail.txt"):
        if command != "0100":
            continue
        try:
            outcomes.append(parse_response(text, request=b"\x01\x00", can=False))
        except (UnableToConnectError, BusInitError) as exc:
            outcomes.append((type(exc), exc.status))
    assert outcomes == [
        (UnableToConnectError, "...UNABLE TO CONNECT"),
        [],
        [],
        (BusInitError, "BUS INIT: ...ERROR"),
        (BusInitError, "BUS INIT: ...ERROR"),
        (BusInitError, "BUS INIT: ERROR"),
        [],
        [],
        [],
        [],
    ]
