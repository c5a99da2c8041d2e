"""The ELM327 emulator's state machine: what it prints and when, driven through ``feed``.

Expected texts follow the real transcripts in ``shared/reference/captures`` (named per test).
Timing is asserted on the chunks' delays, never on a clock.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from adapters.protocols import j1850_crc
from adapters.sim.car import EcuAnswer, VirtualCar
from adapters.sim.elm327 import (
    Chunk,
    Elm327Emulator,
    EmulatorFaults,
    TimingModel,
    isotp_frames,
    legacy_messages,
)
from adapters.sim.scenario import load_scenario, parse_scenario

MakeEmulator = Callable[..., Elm327Emulator]

PETROL_VIN = b"WVWZZZCDZMW123450".hex(" ").upper().split(" ")
CAN29_VIN = b"JHMFC1F38KX041772".hex(" ").upper().split(" ")
KWP_VIN = b"VF7LCRFJC74355718".hex(" ").upper().split(" ")


def text(chunks: list[Chunk]) -> bytes:
    return b"".join(c.data for c in chunks)


def ask(emulator: Elm327Emulator, command: str) -> bytes:
    return text(emulator.feed(command.encode("ascii") + b"\r"))


def quiet(emulator: Elm327Emulator, *commands: str) -> None:
    for command in commands:
        emulator.feed(command.encode("ascii") + b"\r")


def lines(*items: str) -> bytes:
    """Adapter lines (CR-terminated) followed by the blank line and the prompt."""
    return "".join(item + "\r" for item in items).encode("ascii") + b"\r>"


def kwp(source: int, *data: str) -> str:
    """A KWP2000 line as the ELM prints it with headers: format, target, source, data, checksum."""
    body = [0x80 | len(data), 0xF1, source, *(int(b, 16) for b in data)]
    return " ".join(f"{b:02X}" for b in [*body, sum(body) & 0xFF]) + " "


# -- reset, echo, settings ---------------------------------------------------------------------------


def test_reset_prints_the_banner_and_the_init_sequence_matches_pyobd254(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    assert ask(elm, "ATZ") == b"ATZ\r\r\rELM327 v1.5\r\r>"
    assert ask(elm, "ATE0") == b"ATE0\rOK\r\r>"
    assert ask(elm, "ATH1") == b"OK\r\r>"
    assert ask(elm, "ATL0") == b"OK\r\r>"
    assert ask(elm, "AT RV") == b"12.4V\r\r>"
    assert ask(elm, "ATSP0") == b"OK\r\r>"
    assert ask(elm, "0100") == lines("SEARCHING...", "7E8 06 41 00 98 18 00 13 ", "7E9 06 41 00 80 08 00 00 ")
    assert ask(elm, "ATDPN") == b"A6\r\r>"
    assert elm.command_log == ["ATZ", "ATE0", "ATH1", "ATL0", "AT RV", "ATSP0", "0100", "ATDPN"]


def test_commands_ignore_case_spaces_and_control_characters(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    assert ask(elm, "at e 0") == b"at e 0\rOK\r\r>"
    assert text(elm.feed(b"a\tT h1\r\n")) == b"OK\r\r>"
    assert elm.settings.headers
    assert ask(elm, "01 00") == lines(
        "SEARCHING...", "7E8 06 41 00 98 18 00 13 ", "7E9 06 41 00 80 08 00 00 "
    )


def test_linefeeds_on_end_every_line_with_cr_lf(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0")
    assert ask(elm, "ATL1") == b"OK\r\n\r\n>"
    assert ask(elm, "ATH1") == b"OK\r\n\r\n>"
    assert ask(elm, "0100") == (
        b"SEARCHING...\r\n7E8 06 41 00 98 18 00 13 \r\n7E9 06 41 00 80 08 00 00 \r\n\r\n>"
    )


def test_defaults_and_reset_bring_echo_back_like_wican424(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATH1", "ATS0", "ATL1")
    assert ask(elm, "ATD") == b"OK\r\r>"
    assert ask(elm, "ATD0") == b"ATD0\r?\r\r>"
    quiet(elm, "ATE0", "ATH1")
    assert ask(elm, "ATWS") == b"\r\rELM327 v1.5\r\r>"
    assert not elm.settings.headers and elm.settings.echo


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ("ATI", "ELM327 v1.5"),
        ("AT@1", "OBDII to RS232 Interpreter"),
        ("ATRV", "12.4V"),
        ("ATIGN", "ON"),
        ("ATDP", "AUTO"),
        ("ATDPN", "A0"),
        ("ATM0", "OK"),
        ("ATCAF1", "OK"),
        ("ATAT2", "OK"),
        ("ATST 64", "OK"),
        ("ATFC SM 1", "OK"),
        ("ATPC", "OK"),
        ("ATCRA", "OK"),
        ("ATCRA 7E8", "OK"),
        ("ATCRA 18DAF1XX", "OK"),
        ("ATSH 7E0", "OK"),
        ("ATSH 18DA10F1", "OK"),
        ("ATBRD 23", "?"),
        ("ATSH 7E", "?"),
        ("ATST", "?"),
        ("ATXYZ", "?"),
        ("AT@2", "?"),
        ("STI", "?"),
        ("STDI", "?"),
        ("HELLO", "?"),
        ("0", "?"),
        ("01 02 03 04 05 06 07 08", "?"),
        ("0100 0", "?"),
    ],
)
def test_answers_to_single_commands(make_emulator: MakeEmulator, command: str, answer: str) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0")
    assert ask(elm, command) == lines(answer)


def test_python_obd_probe_gets_a_question_mark(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    assert text(elm.feed(b"\x7f\x7f\r")) == b"\x7f\x7f\r?\r\r>"


# -- CAN output formats ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (("ATH1", "ATS1"), ["7E8 06 41 00 98 18 00 13 ", "7E9 06 41 00 80 08 00 00 "]),
        (("ATH1", "ATS0"), ["7E806410098180013", "7E906410080080000"]),
        (("ATH0", "ATS1"), ["41 00 98 18 00 13 ", "41 00 80 08 00 00 "]),
        (("ATH0", "ATS0"), ["410098180013", "410080080000"]),
    ],
)
def test_single_frame_formats(
    make_emulator: MakeEmulator, setup: tuple[str, ...], expected: list[str]
) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATSP6", *setup)
    assert ask(elm, "0100") == lines(*expected)


def test_vin_with_headers_is_first_frame_and_consecutive_frames_like_pyobd151(
    make_emulator: MakeEmulator,
) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATH1", "ATSP6")
    v = PETROL_VIN
    assert ask(elm, "0902") == lines(
        f"7E8 10 14 49 02 01 {' '.join(v[0:3])} ",
        f"7E8 21 {' '.join(v[3:10])} ",
        f"7E8 22 {' '.join(v[10:17])} ",
    )
    quiet(elm, "ATS0")
    assert ask(elm, "0902") == lines(
        "7E81014490201" + "".join(v[0:3]),
        "7E821" + "".join(v[3:10]),
        "7E822" + "".join(v[10:17]),
    )


def test_vin_without_headers_is_length_and_numbered_segments_like_rosaheli(
    make_emulator: MakeEmulator,
) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATSP6")
    v = PETROL_VIN
    assert ask(elm, "0902") == lines(
        "014",
        f"0: 49 02 01 {' '.join(v[0:3])} ",
        f"1: {' '.join(v[3:10])} ",
        f"2: {' '.join(v[10:17])} ",
    )
    quiet(elm, "ATS0")  # the ELMduino38 layout
    assert ask(elm, "0902") == lines(
        "014", "0:490201" + "".join(v[0:3]), "1:" + "".join(v[3:10]), "2:" + "".join(v[10:17])
    )


def test_last_consecutive_frame_shows_the_ecu_padding_like_pyobd288(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATH1", "ATSP6", "ATSH7E1")
    calid = b"0CW300041C 3511".hex(" ").upper().split(" ")
    assert ask(elm, "0904") == lines(
        f"7E9 10 13 49 04 01 {' '.join(calid[0:3])} ",
        f"7E9 21 {' '.join(calid[3:10])} ",
        f"7E9 22 {' '.join(calid[10:15])} 00 55 ",
    )


def test_multi_frame_answers_of_two_ecus_interleave_by_can_id(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATH1", "ATSP6")
    printed = ask(elm, "0904").decode().split("\r")
    ids = [line[:6] for line in printed if line]
    assert ids[:6] == ["7E8 10", "7E9 10", "7E8 21", "7E9 21", "7E8 22", "7E9 22"]
    assert ids[6:-1] == ["7E8 23", "7E8 24", "7E8 25"]


def test_29bit_frames_print_the_id_as_four_bytes_like_pyobd254(make_emulator: MakeEmulator) -> None:
    elm = make_emulator("can29")
    quiet(elm, "ATE0", "ATH1")
    assert ask(elm, "0100") == lines(
        "SEARCHING...", "18 DA F1 10 06 41 00 98 18 00 13 ", "18 DA F1 18 06 41 00 80 08 00 00 "
    )
    assert ask(elm, "ATDPN") == b"A7\r\r>"
    v = CAN29_VIN
    assert ask(elm, "0902") == lines(
        f"18 DA F1 10 10 14 49 02 01 {' '.join(v[0:3])} ",
        f"18 DA F1 10 21 {' '.join(v[3:10])} ",
        f"18 DA F1 10 22 {' '.join(v[10:17])} ",
    )
    assert ask(elm, "03") == lines("18 DA F1 10 04 43 01 03 01 ", "18 DA F1 18 02 43 00 ")
    assert ask(elm, "07") == lines("18 DA F1 10 02 47 00 ", "18 DA F1 18 04 47 01 07 41 ")
    quiet(elm, "ATS0")
    assert ask(elm, "0902") == lines(
        "18DAF1101014490201" + "".join(v[0:3]),
        "18DAF11021" + "".join(v[3:10]),
        "18DAF11022" + "".join(v[10:17]),
    )


def test_29bit_physical_request(make_emulator: MakeEmulator) -> None:
    elm = make_emulator("can29")
    quiet(elm, "ATE0", "ATH1", "ATSP7", "ATSH 18DA18F1")
    assert ask(elm, "0101") == lines("18 DA F1 18 06 41 01 00 07 E5 00 ")
    assert elm.car.request_log[-1].target == "18DA18F1"


# -- K-line (KWP2000) --------------------------------------------------------------------------------


def test_kwp_lines_carry_format_target_source_and_checksum_like_pyobd81(make_emulator: MakeEmulator) -> None:
    elm = make_emulator("kwp")
    quiet(elm, "ATE0", "ATH1")
    assert ask(elm, "0100") == lines("SEARCHING...", "86 F1 10 41 00 98 18 00 13 8B ")
    assert ask(elm, "ATDPN") == b"A5\r\r>"
    assert ask(elm, "ATDP") == b"AUTO, ISO 14230-4 (KWP FAST)\r\r>"
    assert ask(elm, "0101") == lines(kwp(0x10, "41", "01", "81", "07", "E5", "00"))
    quiet(elm, "ATS0")  # the wican424 layout
    assert ask(elm, "0100") == lines("86F1104100981800138B")


def test_kwp_vin_is_five_messages_with_sequence_bytes_like_androbd174(make_emulator: MakeEmulator) -> None:
    elm = make_emulator("kwp")
    quiet(elm, "ATE0", "ATSP5", "0100")
    padded = ["00", "00", "00", *KWP_VIN]
    expected_h0 = [f"49 02 {n + 1:02X} {' '.join(padded[4 * n : 4 * n + 4])} " for n in range(5)]
    assert ask(elm, "0902") == lines(*expected_h0)
    quiet(elm, "ATH1")
    expected_h1 = [kwp(0x10, "49", "02", f"{n + 1:02X}", *padded[4 * n : 4 * n + 4]) for n in range(5)]
    assert ask(elm, "0902") == lines(*expected_h1)


def test_kwp_dtcs_have_no_count_byte(make_emulator: MakeEmulator) -> None:
    elm = make_emulator("kwp")
    quiet(elm, "ATE0", "ATSP5", "0100")
    assert ask(elm, "03") == lines("43 04 01 00 00 00 00 ")
    assert ask(elm, "07") == lines("47 00 00 00 00 00 00 ")


def test_explicit_kline_protocol_prints_bus_init_once_and_again_after_protocol_close(
    make_emulator: MakeEmulator,
) -> None:
    elm = make_emulator("kwp")
    quiet(elm, "ATE0", "ATSP5")
    assert ask(elm, "0100") == lines("BUS INIT: OK", "41 00 98 18 00 13 ")
    assert ask(elm, "0100") == lines("41 00 98 18 00 13 ")
    quiet(elm, "ATPC")
    assert ask(elm, "0100") == lines("BUS INIT: OK", "41 00 98 18 00 13 ")
    assert ask(elm, "ATDPN") == b"5\r\r>"


def test_kline_rejects_multi_pid_requests(make_emulator: MakeEmulator) -> None:
    elm = make_emulator("kwp")
    quiet(elm, "ATE0", "ATSP5", "0100")
    assert ask(elm, "010C0D") == lines("NO DATA")


def test_legacy_and_isotp_helpers() -> None:
    assert j1850_crc(b"123456789") == 0x4B  # the CRC-8/SAE-J1850 check value
    assert legacy_messages(bytes.fromhex("4303013304200171")) == [
        bytes.fromhex("43013304200171"),
    ]
    assert legacy_messages(bytes.fromhex("43040133042001710715")) == [
        bytes.fromhex("43013304200171"),
        bytes.fromhex("43071500000000"),
    ]
    assert legacy_messages(bytes.fromhex("490054400000")) == [bytes.fromhex("49000154400000")]
    assert legacy_messages(bytes.fromhex("7F0912")) == [bytes.fromhex("7F0912")]
    assert isotp_frames(bytes(7)) == [b"\x07" + bytes(7)]
    frames = isotp_frames(bytes(range(20)))
    assert [f[0] for f in frames] == [0x10, 0x21, 0x22] and frames[0][1] == 20


# -- protocol selection and failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "protocol", "status"),
    [
        ("petrol", "8", "CAN ERROR"),  # other bit rate: nobody acknowledges
        ("petrol", "9", "CAN ERROR"),
        ("petrol", "7", "NO DATA"),  # same bit rate, other identifiers: acknowledged, unanswered
        ("petrol", "1", "NO DATA"),  # J1850 as in ltsa11
        ("petrol", "2", "NO DATA"),
        ("petrol", "3", "BUS INIT: ...ERROR"),  # 5-baud inits as in ltsa11
        ("petrol", "4", "BUS INIT: ...ERROR"),
        ("petrol", "5", "BUS INIT: ERROR"),  # fast init as in ltsa11
        ("kwp", "6", "CAN ERROR"),
        ("kwp", "3", "BUS INIT: ...ERROR"),
        ("can29", "6", "NO DATA"),
    ],
)
def test_wrong_explicit_protocol_fails_without_fallback(
    make_emulator: MakeEmulator, scenario: str, protocol: str, status: str
) -> None:
    elm = make_emulator(scenario)
    quiet(elm, "ATE0", f"ATSP{protocol}")
    assert ask(elm, "0100") == lines(status)
    assert ask(elm, "ATDPN") == f"{protocol}\r\r>".encode()
    assert elm.car.request_log == []


def test_try_protocol_does_not_change_the_stored_one(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATSP6", "ATTP8")
    assert ask(elm, "0100") == lines("CAN ERROR")
    quiet(elm, "ATD", "ATE0")
    assert ask(elm, "ATDPN") == b"6\r\r>"
    assert ask(elm, "ATDP") == b"ISO 15765-4 (CAN 11/500)\r\r>"


def test_auto_with_a_wrong_preferred_protocol_falls_back_to_a_search(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATSPA8")
    assert ask(elm, "ATDPN") == b"A8\r\r>"
    assert ask(elm, "0100") == lines("SEARCHING...", "41 00 98 18 00 13 ", "41 00 80 08 00 00 ")
    assert ask(elm, "ATDPN") == b"A6\r\r>"


def test_ignition_off_is_unable_to_connect_like_ltsa11(make_emulator: MakeEmulator) -> None:
    timing = TimingModel()
    elm = make_emulator(timing=timing, faults=EmulatorFaults(ignition_off=True))
    quiet(elm, "ATE0")
    assert ask(elm, "ATIGN") == b"OFF\r\r>"
    chunks = elm.feed(b"0100\r")
    assert text(chunks) == lines("SEARCHING...", "...UNABLE TO CONNECT")
    searched = 6 * timing.search_ms_can + 3 * timing.search_ms_kline
    assert sum(c.delay_s for c in chunks) == pytest.approx(searched / 1000)
    assert ask(elm, "ATDPN") == b"A0\r\r>"
    assert elm.car.request_log == []
    quiet(elm, "ATSP6")
    assert ask(elm, "0100") == lines("CAN ERROR")


def test_ignition_turned_off_after_connecting_gives_no_data(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "0100")
    elm.faults.ignition_off = True
    assert ask(elm, "0100") == lines("NO DATA")


# -- requests ----------------------------------------------------------------------------------------


def test_no_data_for_an_unsupported_pid(make_emulator: MakeEmulator) -> None:
    elm = make_emulator("diesel", timing=TimingModel())
    quiet(elm, "ATE0", "ATSP6")
    chunks = elm.feed(b"01A6\r")
    assert text(chunks) == lines("NO DATA")
    assert chunks[0].delay_s == pytest.approx(0.2)
    assert [r.data for r in elm.car.request_log] == [bytes.fromhex("01A6")]
    quiet(elm, "ATST 19")
    assert elm.feed(b"01A6\r")[0].delay_s == pytest.approx(0.1)


def test_physical_addressing_and_receive_filter(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATH1", "ATSP6", "AT SH 7E1")
    assert ask(elm, "0100") == lines("7E9 06 41 00 80 08 00 00 ")
    assert elm.car.request_log[-1].target == "7E1"
    quiet(elm, "AT SH 7DF", "AT CRA 7E9")
    assert ask(elm, "0100") == lines("7E9 06 41 00 80 08 00 00 ")
    assert elm.car.request_log[-1].target is None
    quiet(elm, "AT CRA 7EX")
    assert ask(elm, "0100") == lines("7E8 06 41 00 98 18 00 13 ", "7E9 06 41 00 80 08 00 00 ")
    quiet(elm, "AT CRA 7EA")
    assert ask(elm, "0100") == lines("NO DATA")
    quiet(elm, "AT CRA")
    assert ask(elm, "0100") == lines("7E8 06 41 00 98 18 00 13 ", "7E9 06 41 00 80 08 00 00 ")


def test_physical_request_to_an_id_nobody_listens_on(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATSP6", "ATSH 7E9")
    assert ask(elm, "04") == lines("NO DATA")
    assert elm.car.requests_for(0x04)[0].target == "7E9"  # it went out on the bus all the same
    assert [e.stored for e in elm.car.ecus] == [["P0133", "P0420"], ["P0715"]]


def test_bare_cr_repeats_the_last_command_so_a_clear_goes_out_twice(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATSP6")
    assert ask(elm, "04") == lines("44 ", "44 ")
    assert text(elm.feed(b"\r")) == lines("44 ", "44 ")
    assert [r.data for r in elm.car.requests_for(0x04)] == [b"\x04", b"\x04"]
    assert elm.command_log[-2:] == ["04", ""]


def test_bare_cr_repeats_at_commands_too(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATRV")
    assert text(elm.feed(b"\r")) == b"12.4V\r\r>"


def test_multi_pid_request(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATH1", "ATSP6", "ATSH7E0")
    assert ask(elm, "01 05 0D") == lines("7E8 05 41 05 3D 0D 00 ")


def test_can_auto_formatting_off_needs_the_pci_and_shows_whole_frames_like_rosaheli(
    make_emulator: MakeEmulator,
) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATSP6", "ATCAF0")
    assert ask(elm, "0902") == lines("NO DATA")
    quiet(elm, "ATH1", "ATSH7E0")
    v = PETROL_VIN
    assert ask(elm, "020902") == lines(
        f"7E8 10 14 49 02 01 {' '.join(v[0:3])} ",
        f"7E8 21 {' '.join(v[3:10])} ",
        f"7E8 22 {' '.join(v[10:17])} ",
    )
    assert ask(elm, "020100") == lines("7E8 06 41 00 98 18 00 13 55 ")
    assert ask(elm, "0201000000000000") == lines("7E8 06 41 00 98 18 00 13 55 ")


def test_response_pending_is_printed_and_the_final_answer_follows() -> None:
    class PendingCar(VirtualCar):
        def respond(self, data: bytes, target: str | None = None) -> list[EcuAnswer]:
            answers = super().respond(data, target)
            return [EcuAnswer(a.ecu, [bytes([0x7F, data[0], 0x78]), *a.messages]) for a in answers]

    timing = TimingModel(response_pending_ms=500)
    elm = Elm327Emulator(PendingCar(load_scenario("diesel")), timing=timing)
    quiet(elm, "ATE0", "ATH1", "ATSP6", "ATST 0A")  # 40 ms: far shorter than the wait for the answer
    chunks = elm.feed(b"0100\r")
    assert text(chunks) == lines("7E8 03 7F 01 78 ", "7E8 06 41 00 98 18 00 13 ")
    assert chunks[1].delay_s == pytest.approx(0.5)


def test_an_ecu_slower_than_st_is_not_heard() -> None:
    scenario = parse_scenario({"protocol": "6", "ecus": [{"address": "7E8", "response_ms": 300}]})
    elm = Elm327Emulator(VirtualCar(scenario))
    quiet(elm, "ATE0", "ATSP6")
    assert ask(elm, "0100") == lines("NO DATA")
    quiet(elm, "ATST FF")
    assert ask(elm, "0100") == lines("41 00 80 10 00 00 ")


# -- timing ------------------------------------------------------------------------------------------


def test_count_digit_returns_without_waiting_st(make_emulator: MakeEmulator) -> None:
    elm = make_emulator(timing=TimingModel(adaptive=False))
    quiet(elm, "ATE0", "ATH1", "ATSP6")
    waited = elm.feed(b"0100\r")
    assert waited[-1] == Chunk(0.2, b"\r>", abortable=True)
    counted = elm.feed(b"0100 2\r")
    assert text(counted) == text(waited)
    assert counted[-1] == Chunk(0.0, b"\r>")
    assert [c.delay_s for c in counted] == pytest.approx([0.02, 0.0, 0.0])


def test_count_digit_stops_listening_after_that_many_frames(make_emulator: MakeEmulator) -> None:
    elm = make_emulator(timing=TimingModel())
    quiet(elm, "ATE0", "ATH1", "ATSP6")
    assert ask(elm, "0100 1") == lines("7E8 06 41 00 98 18 00 13 ")
    assert ask(elm, "09021") == lines(f"7E8 10 14 49 02 01 {' '.join(PETROL_VIN[0:3])} ")
    chunks = elm.feed(b"09023\r")
    assert len(text(chunks).split(b"\r")) == 5 and chunks[-1].delay_s == 0.0


def test_frames_are_paced_by_ecu_response_time_and_frame_gap(make_emulator: MakeEmulator) -> None:
    elm = make_emulator("can29", timing=TimingModel(adaptive=False))
    quiet(elm, "ATE0", "ATH1", "ATSP7")
    chunks = elm.feed(b"0100\r")
    assert [c.delay_s for c in chunks] == pytest.approx([0.015, 0.020, 0.2])  # ECU 15 ms, ECU 35 ms, ST
    chunks = elm.feed(b"0902\r")
    assert [c.delay_s for c in chunks] == pytest.approx([0.015, 0.001, 0.001, 0.2])


def test_a_search_costs_each_protocol_tried(make_emulator: MakeEmulator) -> None:
    timing = TimingModel()
    elm = make_emulator("kwp", timing=timing)
    quiet(elm, "ATE0")
    chunks = elm.feed(b"0100\r")
    # 6 8 1 7 9 2 fail, 3 and 4 fail their inits, 5 (the car's) pays its init and answers.
    searched = 6 * timing.search_ms_can + 3 * timing.search_ms_kline
    assert chunks[0] == Chunk(0.0, b"SEARCHING...\r", abortable=True)
    assert chunks[1].delay_s == pytest.approx((searched + 40) / 1000)  # plus the ECU's 40 ms
    elm = make_emulator("petrol", timing=timing)
    quiet(elm, "ATE0")
    assert elm.feed(b"0100\r")[1].delay_s == pytest.approx(20 / 1000)  # 6 answers at once: the ECU's 20 ms


def test_adaptive_timing_shrinks_the_wait_after_the_last_answer(make_emulator: MakeEmulator) -> None:
    def waits(mode: str) -> list[float]:
        elm = make_emulator("diesel", timing=TimingModel())  # one ECU answering after 30 ms
        quiet(elm, "ATE0", "ATSP6", mode)
        return [elm.feed(b"0100\r")[-1].delay_s for _ in range(8)]

    normal, off, aggressive = waits("ATAT1"), waits("ATAT0"), waits("ATAT2")
    assert off == [0.2] * 8
    assert normal[0] == 0.2 and normal == sorted(normal, reverse=True)
    assert normal[-1] == pytest.approx(0.06, abs=0.005)  # toward 2 x 30 ms
    assert aggressive[-1] < normal[-1]


def test_reset_takes_its_time(make_emulator: MakeEmulator) -> None:
    elm = make_emulator(timing=TimingModel())
    assert [c.delay_s for c in elm.feed(b"ATZ\r")] == [0.0, 1.0]


def test_timing_off_keeps_every_delay_zero(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    for command in (b"ATZ\r", b"0100\r", b"0902\r", b"01A6\r"):
        assert all(c.delay_s == 0.0 for c in elm.feed(command))


# -- interruption ------------------------------------------------------------------------------------


def test_input_arriving_during_a_request_stops_it(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATSP6")
    out = text(elm.feed(b"0100\rAT"))
    assert out == b"0100\rSTOPPED\r\r>"
    assert text(elm.feed(b"I\r")) == b"ATI\rELM327 v1.5\r\r>"
    assert elm.car.requests_for(0x01)  # the request had gone out before the interruption


def test_line_feed_after_cr_does_not_interrupt_like_pyobd81(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    quiet(elm, "ATE0", "ATSP6")
    assert text(elm.feed(b"0100\r\n")) == lines("41 00 98 18 00 13 ", "41 00 80 08 00 00 ")


def test_waiting_chunks_are_marked_abortable(make_emulator: MakeEmulator) -> None:
    elm = make_emulator()
    chunks = elm.feed(b"0100\r")
    assert [c.abortable for c in chunks] == [False, True, True, True, True]
    assert elm.interrupt() == [Chunk(0.0, b"STOPPED\r\r>")]


# -- faults ------------------------------------------------------------------------------------------


def test_garbage_fault_answers_non_elm_bytes(make_emulator: MakeEmulator) -> None:
    elm = make_emulator(faults=EmulatorFaults(garbage=True))
    quiet(elm, "ATE0", "ATSP6")
    out = ask(elm, "0100")
    assert out.endswith(b"\r\r>")
    assert all(b >= 0x80 for b in out[:-3])
    assert ask(elm, "ATI") == b"ELM327 v1.5\r\r>"
    assert elm.car.requests_for(0x01)


def test_lowercase_blank_lines_and_padding_quirks(make_emulator: MakeEmulator) -> None:
    elm = make_emulator(faults=EmulatorFaults(lowercase=True, blank_lines=True, padding_quirk=True))
    quiet(elm, "ATE0", "ATH1", "ATSP6")
    assert ask(elm, "0100") == lines("7e8 06 41 00 98 18 00 13 55 ", "", "7e9 06 41 00 80 08 00 00 55 ")


def test_padding_quirk_like_pyobd257_on_29bit(make_emulator: MakeEmulator) -> None:
    elm = make_emulator("can29", faults=EmulatorFaults(padding_quirk=True))
    quiet(elm, "ATE0", "ATH1", "ATSP7")
    assert ask(elm, "0100") == lines(
        "18 DA F1 10 06 41 00 98 18 00 13 55 ", "18 DA F1 18 06 41 00 80 08 00 00 55 "
    )


def test_echo_quirk_keeps_echoing_after_e0(make_emulator: MakeEmulator) -> None:
    elm = make_emulator(faults=EmulatorFaults(echo_quirk=True))
    quiet(elm, "ATE0")
    assert ask(elm, "ATI") == b"ATI\rELM327 v1.5\r\r>"


def test_silent_after_n_requests_answers_nothing_at_all(make_emulator: MakeEmulator) -> None:
    elm = make_emulator(faults=EmulatorFaults(silent_after=1))
    quiet(elm, "ATE0", "ATSP6")
    assert ask(elm, "0100") != b""
    assert elm.feed(b"0100\r") == []
    assert elm.feed(b"ATZ\r") == []
    assert elm.command_log[-2:] == ["0100", "ATZ"]
    assert len(elm.car.request_log) == 1


def test_disconnect_after_n_requests_asks_the_server_to_drop_the_link(make_emulator: MakeEmulator) -> None:
    elm = make_emulator(faults=EmulatorFaults(disconnect_after=2))
    quiet(elm, "ATE0", "ATSP6", "0100")
    assert not elm.disconnect_requested
    assert ask(elm, "0100") != b""
    assert elm.feed(b"0100\rATI\r") == []
    assert elm.disconnect_requested
    elm.link_reset()
    assert ask(elm, "0100") != b""  # a new client on the same adapter (TCP) is served again
    assert len(elm.car.request_log) == 3
