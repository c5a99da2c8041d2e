"""Traces: recorded from the simulator, replayed through the real driver, byte for byte and read for read."""

from __future__ import annotations

import json
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from reliability_support import LEDGER, PETROL_VIN, ROOT, one_error_line, run_cli, run_cli_many

from adapters import open_adapter
from adapters.errors import AdapterProtocolError, AdapterSpecError, LinkError
from adapters.replay import ReplayAdapter, ReplayLink, parse_terminal_log
from adapters.sim.car import VirtualCar
from adapters.sim.elm327 import Elm327Emulator
from adapters.sim.scenario import load_scenario
from adapters.sim.server import TcpServer
from adapters.simulated import SimulatedElmAdapter
from adapters.trace import FORMAT_LINE, TraceFormatError, TraceWriter, TracingLink, read_trace
from obdtool.readout import ReadOptions, read_vehicle
from obdtool.record import scan_document

TRACES = ROOT / "fixtures" / "traces"
SCENARIOS = ["petrol", "diesel", "can29", "kwp", "uds"]
RECORD_HINT = "the trace may be stale: run fixtures/traces/record_traces.py after a driver change"


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A scan document without what must differ between a live read-out and its replay."""
    out = {k: v for k, v in doc.items() if k not in ("started_at", "finished_at")}
    out["adapter"] = {k: v for k, v in doc["adapter"].items() if k not in ("kind", "description")}
    return out


# -- the shipped traces, through the CLI -------------------------------------------------------------------


@pytest.fixture(scope="module")
def scans() -> dict[str, CompletedProcess[str]]:
    """``scan --json`` of every shipped car, live and replayed, plus the recorded faults, side by side."""
    specs = [f"sim:{name}" for name in SCENARIOS] + [
        f"replay:fixtures/traces/{name}.trace" for name in SCENARIOS
    ]
    specs += [
        "sim:petrol?disconnect_after=8",
        "replay:fixtures/traces/petrol-cable-pulled.trace",
        "replay:fixtures/traces/petrol-line-noise.trace",
    ]
    return run_cli_many({spec: (("scan", "--adapter", spec, "--json"), None) for spec in specs})


def scan_json(scans: dict[str, CompletedProcess[str]], adapter: str) -> tuple[int, dict[str, Any], str]:
    done = scans[adapter]
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_shipped_trace_replays_to_the_same_json_as_the_live_simulator(
    scans: dict[str, CompletedProcess[str]], scenario: str
) -> None:
    live_code, live, _ = scan_json(scans, f"sim:{scenario}")
    code, replayed, err = scan_json(scans, f"replay:fixtures/traces/{scenario}.trace")
    assert replayed["error"] is None, f"{replayed['error']} ({RECORD_HINT})"
    assert (code, comparable(replayed)) == (live_code, comparable(live)), err
    assert replayed["adapter"]["kind"] == "replay"
    assert replayed["adapter"]["description"].startswith(f"replay of {scenario}.trace: ELM327")


def test_a_recorded_cable_pull_is_replayed_at_the_same_point(scans: dict[str, CompletedProcess[str]]) -> None:
    LEDGER.fault("adapter:cable-pulled-replayed")
    live_code, live, live_err = scan_json(scans, "sim:petrol?disconnect_after=8")
    code, replayed, err = scan_json(scans, "replay:fixtures/traces/petrol-cable-pulled.trace")
    assert code == live_code == 3
    assert "link closed" in one_error_line(err) and "link closed" in one_error_line(live_err)
    assert replayed["vin"] == live["vin"] == PETROL_VIN  # read before the cable was pulled
    assert [e["address"] for e in replayed["ecus"]] == [e["address"] for e in live["ecus"]]
    LEDGER.partial_readouts_kept += 1


def test_recorded_line_noise_is_replayed(scans: dict[str, CompletedProcess[str]]) -> None:
    LEDGER.fault("adapter:line-noise-replayed")
    code, replayed, err = scan_json(scans, "replay:fixtures/traces/petrol-line-noise.trace")
    assert code == 3
    assert "unreadable characters" in one_error_line(err)
    assert replayed["ecus"]  # what was read before the noise is kept


# -- record and replay in one go (independent of the shipped files) --------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fresh_recording_replays_identically(scenario: str, tmp_path: Path) -> None:
    path = tmp_path / f"{scenario}.trace"
    options = ReadOptions(obfcm=None, uds=False)
    with open_adapter(f"sim:{scenario}", trace=path) as live_adapter:
        live = read_vehicle(live_adapter, options)
    with open_adapter(f"replay:{path}") as replay_adapter:
        replayed = read_vehicle(replay_adapter, options)
        assert isinstance(replay_adapter, ReplayAdapter)
        link = replay_adapter.link
    assert comparable(scan_document(replayed)) == comparable(scan_document(live))
    assert isinstance(link, ReplayLink) and link.finished  # every recorded byte was asked for and served
    assert live_adapter.stats.requests == replay_adapter.stats.requests


def test_trace_option_of_the_cli_records_a_replayable_session(tmp_path: Path) -> None:
    if "--trace" not in run_cli("scan", "--help").stdout:
        pytest.skip("obdtool scan has no --trace option yet (the CLI wiring is a separate change)")
    path = tmp_path / "cli.trace"
    live = run_cli("scan", "--adapter", "sim:petrol", "--trace", str(path), "--json")
    replay = run_cli("scan", "--adapter", f"replay:{path}", "--json")
    assert live.returncode == replay.returncode == 1, replay.stderr
    assert comparable(json.loads(replay.stdout)) == comparable(json.loads(live.stdout))
    refused = run_cli("scan", "--adapter", "simcan:petrol", "--trace", str(path))
    assert refused.returncode == 3
    assert "tracing is not supported for CAN adapters yet" in one_error_line(refused.stderr)


def test_tcp_elm327_trace_replays(tmp_path: Path) -> None:
    """A WiFi adapter's traffic (``tcp://``), traced by open_adapter itself."""
    path = tmp_path / "wifi.trace"
    emulator = Elm327Emulator(VirtualCar(load_scenario("petrol")))
    with TcpServer(emulator) as server, open_adapter(server.url, trace=path) as adapter:
        live = read_vehicle(adapter)
    trace = read_trace(path)
    assert trace.header["adapter"] == "elm327" and trace.header["link"] == server.url
    with open_adapter(f"replay:{path}") as replay:
        assert comparable(scan_document(read_vehicle(replay))) == comparable(scan_document(live))


def test_a_trace_of_a_replay_replays_the_same(tmp_path: Path) -> None:
    second = tmp_path / "second.trace"
    with open_adapter("replay:petrol", trace=second) as adapter:
        first = read_vehicle(adapter)
    assert read_trace(second).host_bytes == read_trace(TRACES / "petrol.trace").host_bytes
    with open_adapter(f"replay:{second}") as adapter:
        assert read_vehicle(adapter).vin == first.vin == PETROL_VIN


# -- strictness: what a replay refuses ------------------------------------------------------------------


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    text = (TRACES / "petrol.trace").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "edited.trace"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_a_trace_from_another_driver_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = _edited(tmp_path, '> "ATE0\\r"', '> "ATM0\\r"')
    adapter = ReplayAdapter(str(path))
    with pytest.raises(AdapterProtocolError) as caught:
        adapter.open()
    assert str(caught.value) == "the replayed trace expected 'ATM0' but the tool sent 'ATE0'"
    adapter.close()


def test_tolerant_replay_serves_the_cars_answers_of_another_drivers_trace(tmp_path: Path) -> None:
    path = _edited(tmp_path, '> "ATE0\\r"', '> "ATM0\\r"')
    with open_adapter(f"replay:{path}?strict=off") as adapter:
        result = read_vehicle(adapter)
    assert result.error is None and result.vin == PETROL_VIN
    assert {"7E8", "7E9"} == set(result.ecus)


def test_a_shortened_trace_ends_the_replay_with_a_sentence(tmp_path: Path) -> None:
    lines = (TRACES / "petrol.trace").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "short.trace"
    path.write_text("\n".join(lines[: len(lines) // 2]) + "\n", encoding="utf-8")
    with open_adapter(f"replay:{path}") as adapter:
        result = read_vehicle(adapter)
    assert result.error is not None and "the replayed trace ends here" in result.error
    assert result.ecus  # the first half was read


def test_replay_link_raises_recorded_failures_and_waits_out_silence(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    path.write_text(
        f'{FORMAT_LINE}\n# link: /dev/ttyUSB0\n0.000000 > "ATI\\r"\n0.001000 < "ELM327 v1.5\\r\\r>"\n'
        '0.002000 > "0100\\r"\n0.500000 ! "the adapter link closed: cable pulled"\n',
        encoding="utf-8",
    )
    waits: list[float] = []
    link = ReplayLink(read_trace(path), sleep=waits.append)
    assert link.description == "/dev/ttyUSB0"
    assert link.read(0.3) == b"" and waits == [0.3]  # nothing is due before the host writes
    link.write(b"AT")
    link.write(b"I\r")  # a write split differently from the recording still matches
    assert link.read(1.0) == b"ELM327 v1.5\r\r>"
    link.write(b"0100\r")
    with pytest.raises(LinkError, match="cable pulled"):
        link.read(1.0)
    link.close()
    with pytest.raises(LinkError):
        link.write(b"ATI\r")


# -- the tracing link -------------------------------------------------------------------------------------


class _FakeLink:
    description = "/dev/fake"

    def __init__(self) -> None:
        self.chunks = [b"OK\r", b"\r>"]
        self.broken = False

    def write(self, data: bytes) -> None:
        if self.broken:
            raise LinkError("the adapter link closed: unplugged")

    def read(self, max_wait: float) -> bytes:
        if self.broken:
            raise LinkError("the adapter link closed: unplugged")
        return self.chunks.pop(0) if self.chunks else b""

    def close(self) -> None:
        pass


def test_tracing_link_records_every_chunk_and_the_failure(tmp_path: Path) -> None:
    clock = iter([10.0, 10.25, 10.5, 10.75, 11.0, 11.25, 11.5]).__next__
    writer = TraceWriter(tmp_path / "t.trace", adapter="elm327", spec="/dev/fake", clock=clock)
    inner = _FakeLink()
    link = TracingLink(inner, writer)
    link.write(b"ATE0\r")
    assert link.read(1) + link.read(1) == b"OK\r\r>"
    assert link.read(0) == b""  # nothing arrived: nothing recorded
    inner.broken = True
    with pytest.raises(LinkError):
        link.write(b"0100\r")
    link.close()
    trace = read_trace(tmp_path / "t.trace")
    assert trace.header["adapter"] == "elm327" and trace.header["link"] == "/dev/fake"
    assert [(e.seconds, e.direction, e.data) for e in trace.events] == [
        (0.25, ">", b"ATE0\r"),
        (0.5, "<", b"OK\r"),
        (0.75, "<", b"\r>"),
        (1.0, "!", b"the adapter link closed: unplugged"),
    ]
    assert not link.needs_baud_detection
    with pytest.raises(LinkError):
        link.set_baudrate(9600)


def test_unwritable_trace_is_reported_before_the_car_is_contacted(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    adapter = open_adapter("sim:petrol", trace=blocker / "t.trace")
    assert isinstance(adapter, SimulatedElmAdapter)
    with pytest.raises(TraceFormatError, match="cannot write the trace file"):
        adapter.open()
    adapter.close()
    assert adapter.car.request_log == []


def test_tracing_can_adapters_is_refused_clearly() -> None:
    for spec in ("simcan:petrol", "can:virtual:x"):
        with pytest.raises(AdapterSpecError, match="tracing is not supported for CAN adapters yet"):
            open_adapter(spec, trace="x.trace")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "not an obdtool trace"),
        ("# obdtool-trace 2\n", "another format version"),
        (f'{FORMAT_LINE}\n0.1 > "ATZ\\r"\n', "line 2: expected"),
        (f'{FORMAT_LINE}\n# c\n0.200000 > "A"\n0.100000 < "B"\n', "line 4: time goes backwards"),
        (f'{FORMAT_LINE}\n0.100000 > "\\q"\n', "line 2: unknown escape"),
        (f'{FORMAT_LINE}\n0.100000 > "a"b"\n', "line 2: unescaped character"),
    ],
)
def test_malformed_trace_files_name_the_line(tmp_path: Path, text: str, words: str) -> None:
    LEDGER.fault("input:malformed-trace")
    path = tmp_path / "bad.trace"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TraceFormatError, match=words):
        read_trace(path)


# -- terminal logs ---------------------------------------------------------------------------------------


def test_terminal_log_of_a_failed_protocol_search_replays_that_failure() -> None:
    done = run_cli("scan", "--adapter", "replay:fixtures/traces/ltsa11-elm-v15-protocol-scan-fail.log")
    assert done.returncode == 3
    assert "no OBD protocol answered" in one_error_line(done.stderr)


def test_terminal_log_of_a_three_ecu_car_replays() -> None:
    done = run_cli(
        "scan", "--adapter", "replay:fixtures/traces/klinereader11-mercedes-a180d-can11-3ecu.log", "--json"
    )
    code, doc, err = done.returncode, json.loads(done.stdout), done.stderr
    assert code == 0, err
    assert [e["address"] for e in doc["ecus"]] == ["7EB", "7E8", "7E9"]
    assert all(e["mil_on"] is False and e["dtcs"] == [] for e in doc["ecus"])  # the capture's truth
    assert "no ECU reports a VIN (09 02 not supported)" in doc["warnings"]  # the log never shows 09 00


def test_terminal_log_reading_rules() -> None:
    log = parse_terminal_log(
        "# source: somewhere\nATZ\nELM327 v1.4\n\n>ATH1\nOK\nATSP6\n"
        ">0100\n0100\n7E8 06 41 00 BE 3F A8 13\n>\n"
    )
    assert log.comments == ("# source: somewhere",)
    assert [(e.command, e.protocol, e.headers) for e in log.exchanges] == [
        ("ATZ", None, False),
        ("ATH1", None, True),
        ("ATSP6", "6", True),  # a command whose prompt the poster cut
        ("0100", "6", True),
    ]
    assert log.exchanges[-1].answer == ("0100", "7E8 06 41 00 BE 3F A8 13")  # echo kept: the reader drops it
    with pytest.raises(AdapterSpecError, match="no ELM327 command found"):
        parse_terminal_log("# only comments\n")


def test_terminal_log_without_a_protocol_needs_the_option(tmp_path: Path) -> None:
    path = tmp_path / "short.log"
    path.write_text(">ATH1\nOK\n>0100\n7E8 06 41 00 BE 3F A8 13\n", encoding="utf-8")
    with pytest.raises(AdapterProtocolError, match=r"replay:FILE\?protocol=6"):
        ReplayAdapter(str(path)).open()
    with open_adapter(f"replay:{path}?protocol=6") as adapter:
        assert adapter.info.protocol_id == "6"
        assert [r.ecu for r in adapter.request(b"\x01\x00")] == ["7E8"]
        assert adapter.request(b"\x09\x02") == []  # not in the log: NO DATA


def test_invalid_vin_from_the_car_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    """A VIN with I, O and Q (never valid) served from a terminal log."""
    LEDGER.fault("input:invalid-vin")
    vin = b"IOQZZZCDZMW123450".hex().upper()
    path = tmp_path / "vin.log"
    path.write_text(
        ">ATH1\nOK\n>0100\n7E8064100BE3FA813\n>0900\n7E806490055400000\n"
        f">0902\n7E81014490201{vin[:6]}\n7E821{vin[6:20]}\n7E822{vin[20:]}\n",
        encoding="utf-8",
    )
    done = run_cli("scan", "--adapter", f"replay:{path}?protocol=6", "--json")
    doc = json.loads(done.stdout)
    assert done.returncode in (0, 1), done.stderr
    assert doc["vin"] is None
    assert any("invalid VIN 'IOQZZZCDZMW123450'" in w for w in doc["warnings"])
