"""Adapter faults: loose connectors, dying links, clone firmware, stalling ECUs.

Under every fault the promise is the same: what was read before the fault is kept and shown, the
technician gets one sentence on stderr and exit code 3, no traceback, and the adapter answers the next
request normally once the fault has passed.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from reliability_support import LEDGER, PETROL_VIN, cli_env, one_error_line, run_cli, run_cli_many

from adapters import open_adapter
from adapters.elm327 import Elm327Adapter
from adapters.errors import (
    AdapterError,
    AdapterProtocolError,
    BufferFullError,
    BusInitError,
    CanBusError,
    FramingError,
    LinkError,
    LinkTimeoutError,
    StoppedError,
)
from adapters.link import SerialLink, TcpLink
from adapters.sim.car import VirtualCar
from adapters.sim.elm327 import Elm327Emulator, EmulatorFaults
from adapters.sim.scenario import load_scenario
from adapters.sim.server import PtyServer, TcpServer
from adapters.simulated import SimulatedElmAdapter
from obdtool.readout import ReadOptions, read_vehicle
from obdtool.uds import read_uds_ecu
from upload.outbox import Outbox

KWP_VIN = "VF7LCRFJC74355718"

# (fault, scenario, words in the error sentence); each fault hits the request right after the VIN's,
# so what must survive it is known: the VIN and the ECUs found before.
STOPPING_FAULTS = [
    ("noise", "petrol", "unreadable characters"),
    ("noise", "kwp", "unreadable characters"),
    ("truncate", "petrol", "stopped after"),
    ("bad_sequence", "petrol", "a frame was lost or repeated"),
    ("can_error", "petrol", "CAN ERROR"),
    ("bus_init_error", "kwp", "BUS INIT: ...ERROR"),
    ("buffer_full", "petrol", "BUFFER FULL"),
    ("stopped", "petrol", "STOPPED"),
    ("stall", "petrol", "did not finish answering"),
    ("disconnect", "petrol", "link closed"),
    ("disconnect&link=tcp", "petrol", "link closed"),
]


def vin_request_number(scenario: str) -> int:
    """Which OBD request of a clean read-out asks for the VIN (the driver decides the order)."""
    adapter = open_adapter(f"sim:{scenario}")
    assert isinstance(adapter, SimulatedElmAdapter)
    with adapter:
        read_vehicle(adapter, ReadOptions())
    requests = [c for c in adapter.emulator.command_log if c and not c.upper().startswith("AT")]
    return next(i for i, c in enumerate(requests, start=1) if c.upper().startswith("0902"))


def fault_spec(fault: str, scenario: str, after: int) -> str:
    name, _, extra = fault.partition("&")
    return f"sim:{scenario}?{name}_after={after}" + (f"&{extra}" if extra else "")


def _kind(fault: str) -> str:
    name, _, extra = fault.partition("&")
    return f"adapter:{name.replace('_', '-')}{'-tcp' if 'link=tcp' in extra else ''}"


CLONE_QUIRKS = {
    "echo_quirk=on&lowercase=on&blank_lines=on&padding_quirk=on": "clone-output-quirks",
    "no_echo=on": "clone-never-echoes",
    "no_warm_start=on": "clone-without-warm-start",
}


@pytest.fixture(scope="module")
def vin_at() -> dict[str, int]:
    return {scenario: vin_request_number(scenario) for scenario in ("petrol", "kwp")}


@pytest.fixture(scope="module")
def scans(vin_at: dict[str, int]) -> dict[str, CompletedProcess[str]]:
    """Every CLI scan of this module, run side by side (the stall alone takes three seconds)."""
    specs = [fault_spec(fault, scenario, vin_at[scenario]) for fault, scenario, _ in STOPPING_FAULTS]
    specs += [f"sim:petrol?{option}" for option in CLONE_QUIRKS]
    specs += [fault_spec("no_data", "petrol", vin_at["petrol"] - 1)]  # NO DATA for the VIN itself
    specs += ["sim:petrol", "sim:kwp"]  # the clean read-outs a recovered fault must equal
    return run_cli_many({spec: (("scan", "--adapter", spec, "--json"), None) for spec in specs})


def _without_times(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("started_at", "finished_at", "adapter")}


@pytest.mark.parametrize(("fault", "scenario", "words"), STOPPING_FAULTS)
def test_fault_mid_scan_keeps_what_was_read(
    scans: dict[str, CompletedProcess[str]], vin_at: dict[str, int], fault: str, scenario: str, words: str
) -> None:
    """Either the driver gets past the fault (and the read-out is complete) or it stops with one sentence."""
    LEDGER.fault(_kind(fault))
    done = scans[fault_spec(fault, scenario, vin_at[scenario])]
    doc = json.loads(done.stdout)
    if done.returncode != 3:  # recovered (a retry, a resend without the answer count ...)
        LEDGER.outcomes["adapter faults recovered by the driver"] += 1
        assert done.stderr == "" and doc["error"] is None
        assert _without_times(doc) == _without_times(json.loads(scans[f"sim:{scenario}"].stdout))
        return
    LEDGER.outcomes["adapter faults that stopped the read-out with one sentence"] += 1
    line = one_error_line(done.stderr)
    assert words in line and "what was read is shown above" in line
    assert doc["error"] and words in doc["error"]
    assert doc["vin"] == (PETROL_VIN if scenario == "petrol" else KWP_VIN)
    assert doc["ecus"] and all(e["address"] for e in doc["ecus"])
    LEDGER.partial_readouts_kept += 1


@pytest.mark.parametrize("option", CLONE_QUIRKS)
def test_clone_quirks_are_read_like_a_genuine_adapter(
    scans: dict[str, CompletedProcess[str]], option: str
) -> None:
    LEDGER.fault(f"adapter:{CLONE_QUIRKS[option]}")
    done = scans[f"sim:petrol?{option}"]
    assert done.returncode == 1, done.stderr  # the petrol car has faults: a complete read-out
    doc = json.loads(done.stdout)
    assert doc["error"] is None and doc["vin"] == PETROL_VIN
    assert {d["code"] for e in doc["ecus"] for d in e["dtcs"]} >= {"P0133", "P0420", "P0715"}


def test_no_data_for_the_vin_is_a_warning_not_an_error(
    scans: dict[str, CompletedProcess[str]], vin_at: dict[str, int]
) -> None:
    LEDGER.fault("adapter:no-data")
    done = scans[fault_spec("no_data", "petrol", vin_at["petrol"] - 1)]
    doc = json.loads(done.stdout)
    assert done.returncode == 1 and done.stderr == ""
    assert doc["error"] is None and doc["vin"] is None
    assert "the VIN could not be read" in doc["warnings"]


def test_visit_record_is_saved_with_what_was_read_before_the_fault(tmp_path: Path) -> None:
    LEDGER.fault("adapter:stopped")
    env = cli_env(tmp_path)
    done = run_cli(
        "check",
        "--adapter",
        fault_spec("stopped", "petrol", vin_request_number("petrol")),
        "--obfcm",
        "refused",
        "--no-upload",
        "--json",
        env=env,
    )
    assert done.returncode == 3, done.stderr
    assert "the partial record was saved" in one_error_line(done.stderr)
    doc = json.loads(done.stdout)
    with Outbox(tmp_path / "data" / "outbox.sqlite3") as box:
        entry = box.get(doc["record_id"])
    assert entry.state == "held"
    assert entry.body["vehicle"]["vin"] == PETROL_VIN
    assert any(w.startswith("read-out incomplete: the adapter stopped") for w in entry.body["warnings"])
    LEDGER.partial_readouts_kept += 1
    LEDGER.outcomes["visit records saved under a fault"] += 1


# -- the adapter is usable again after a one-shot fault ----------------------------------------------------


@contextmanager
def _adapter(scenario: str = "petrol", **faults: object) -> Iterator[tuple[Elm327Emulator, Elm327Adapter]]:
    """The real driver on a real pty, with short timeouts so that silence costs little."""
    emulator = Elm327Emulator(VirtualCar(load_scenario(scenario)), faults=EmulatorFaults(**faults))  # type: ignore[arg-type]
    with PtyServer(emulator) as server:
        adapter = Elm327Adapter(SerialLink(server.path).open, default_timeout=0.3, link_margin=0.3)
        with adapter:
            yield emulator, adapter


ONE_SHOT = [
    ("noise", b"\x09\x02", AdapterProtocolError),
    ("truncate", b"\x09\x02", FramingError),
    ("bad_sequence", b"\x09\x02", FramingError),
    ("can_error", b"\x09\x02", CanBusError),
    ("bus_init_error", b"\x09\x02", BusInitError),
    ("buffer_full", b"\x09\x02", BufferFullError),
    ("stopped", b"\x09\x02", StoppedError),
    ("stall", b"\x09\x02", LinkTimeoutError),
]


@pytest.mark.parametrize(("fault", "request_bytes", "error"), ONE_SHOT)
def test_next_request_works_after_a_one_shot_fault(
    fault: str, request_bytes: bytes, error: type[AdapterError]
) -> None:
    LEDGER.fault(f"adapter:{fault.replace('_', '-')}-then-recover")
    vin = [("7E8", PETROL_VIN.encode())]
    with _adapter() as (emulator, adapter):
        setattr(emulator.faults, f"{fault}_after", emulator.obd_requests)  # the next request goes wrong
        try:
            replies = adapter.request(request_bytes)
        except AdapterError as exc:
            assert isinstance(exc, error), repr(exc)
            assert str(exc) and "\n" not in str(exc)
        else:  # the driver repaired it itself: then the answer must be the right one
            assert [(r.ecu, r.data[3:]) for r in replies] == vin
        assert [(r.ecu, r.data[3:]) for r in adapter.request(b"\x09\x02")] == vin


def test_no_data_and_ignition_off_are_empty_answers_then_the_car_is_back() -> None:
    LEDGER.fault("adapter:ignition-off-mid-session")
    with _adapter() as (emulator, adapter):
        emulator.faults.no_data_after = emulator.obd_requests
        assert adapter.request(b"\x09\x02") == []
        emulator.faults.ignition_off = True
        assert adapter.request(b"\x01\x00") == []
        emulator.faults.ignition_off = False
        assert {r.ecu for r in adapter.request(b"\x01\x00")} == {"7E8", "7E9"}


def test_a_link_that_goes_silent_for_good_is_reported_each_time() -> None:
    LEDGER.fault("adapter:silent-link")
    with _adapter() as (emulator, adapter):
        emulator.faults.silent_after = emulator.obd_requests
        with pytest.raises(LinkTimeoutError, match="did not finish answering 0902"):
            adapter.request(b"\x09\x02")
        with pytest.raises(LinkTimeoutError, match="not answering any more"):
            adapter.request(b"\x09\x02")


def test_pulled_usb_cable_fails_every_request_until_closed() -> None:
    LEDGER.fault("adapter:pty-closed")
    with _adapter() as (emulator, adapter):
        emulator.faults.disconnect_after = emulator.obd_requests
        with pytest.raises(LinkError, match="link closed"):
            adapter.request(b"\x09\x02")
        with pytest.raises(LinkError):
            adapter.request(b"\x01\x00")
    adapter.close()  # idempotent after the failure


def test_wifi_adapter_that_dropped_the_connection_is_reached_again() -> None:
    LEDGER.fault("adapter:tcp-closed-then-reconnect")
    emulator = Elm327Emulator(VirtualCar(load_scenario("petrol")), faults=EmulatorFaults())
    with TcpServer(emulator) as server:
        adapter = Elm327Adapter(TcpLink(server.host, server.port).open, default_timeout=0.3, link_margin=0.3)
        with adapter:
            emulator.faults.disconnect_after = emulator.obd_requests
            with pytest.raises(LinkError, match="closed the connection"):
                adapter.request(b"\x09\x02")
        emulator.faults.disconnect_after = None
        with adapter:  # the same adapter object connects again, as after a WiFi hiccup
            assert adapter.request(b"\x09\x02")[0].data[3:] == PETROL_VIN.encode()


class _ResettingProxy:
    """A TCP proxy in front of the emulator that resets the connection (RST) when a command is sent.

    :param trigger: the start of the command line (``b"03"`` also matches ``032``, a count digit added).
    """

    def __init__(self, upstream: tuple[str, int], trigger: bytes) -> None:
        self.trigger = trigger
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        client, _ = self._listener.accept()
        upstream = socket.create_connection(self._upstream)
        stop = threading.Event()

        def back() -> None:
            while not stop.is_set():
                try:
                    data = upstream.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                try:
                    client.sendall(data)
                except OSError:
                    return

        threading.Thread(target=back, daemon=True).start()
        buffered = b""
        while True:
            data = client.recv(4096)
            if not data:
                break
            buffered += data
            if any(line.startswith(self.trigger) for line in buffered.split(b"\r")[:-1]):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # RST: what a WiFi adapter that reboots does to the connection
                break
            upstream.sendall(data)
        stop.set()
        upstream.close()

    def close(self) -> None:
        self._listener.close()
        self._thread.join(2)


def test_tcp_reset_mid_scan_keeps_what_was_read() -> None:
    LEDGER.fault("adapter:tcp-reset")
    emulator = Elm327Emulator(VirtualCar(load_scenario("petrol")))
    with TcpServer(emulator) as server:
        proxy = _ResettingProxy((server.host, server.port), trigger=b"03")
        try:
            with open_adapter(f"tcp://127.0.0.1:{proxy.port}") as adapter:
                result = read_vehicle(adapter, ReadOptions())
        finally:
            proxy.close()
    assert result.error is not None and "link closed" in result.error
    assert result.vin == PETROL_VIN and set(result.ecus) == {"7E8", "7E9"}
    LEDGER.partial_readouts_kept += 1


# -- UDS: response-pending storms and busy ECUs -------------------------------------------------------------

STORM_SCENARIO = """
name = "storm"
protocol = "6"
vin = "TMBJR7NS4N8012346"

[[ecus]]
address = "7E8"
pending_responses = {pending}
response_ms = 1
uds = {{ dids = {{ F190 = "@vin", F187 = "04L906056KH" }} }}

[[ecus]]
address = "7E9"
busy_responses = {busy}
uds = {{ dids = {{ F187 = "0DD300041H" }} }}
"""


@pytest.mark.parametrize("spec", ["sim", "simcan"])
def test_uds_0x78_storm_and_busy_ecu_are_waited_out(spec: str, tmp_path: Path) -> None:
    LEDGER.fault(f"adapter:uds-0x78-storm-{spec}")
    LEDGER.fault(f"adapter:uds-0x21-busy-{spec}")
    path = tmp_path / "storm.toml"
    path.write_text(STORM_SCENARIO.format(pending=15, busy=2), encoding="utf-8")
    with open_adapter(f"{spec}:{path}") as adapter:
        result = read_vehicle(adapter, ReadOptions(uds=True))
    assert result.error is None
    assert result.ecus["7E8"].uds_identification["F190"] == "TMBJR7NS4N8012346"
    assert result.ecus["7E9"].uds_identification["F187"] == "0DD300041H"


def test_uds_ecu_busy_for_good_is_a_note_and_the_next_ecu_is_read(tmp_path: Path) -> None:
    LEDGER.fault("adapter:uds-0x21-forever")
    path = tmp_path / "busy.toml"
    path.write_text(STORM_SCENARIO.format(pending=0, busy=200), encoding="utf-8")
    with open_adapter(f"sim:{path}") as adapter:
        busy = read_uds_ecu(adapter, "7E9", busy_delay=0.001)
        fine = read_uds_ecu(adapter, "7E8", busy_delay=0.001)
    assert busy.identification == {}
    assert any("stayed busy (NRC 0x21)" in note for note in busy.notes)
    assert fine.identification["F190"] == "TMBJR7NS4N8012346"


# -- soak: every fault at every request ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("after", range(2, 18))
@pytest.mark.parametrize("fault", [f for f, _, _ in ONE_SHOT if f != "stall"] + ["no_data", "disconnect"])
def test_soak_every_fault_at_every_request(fault: str, after: int) -> None:
    """Each fault at each request of a petrol read-out: never anything but a result or its error."""
    LEDGER.fault(f"adapter:{fault.replace('_', '-')}-soak")
    adapter = open_adapter(f"sim:petrol?{fault}_after={after}")
    with adapter:
        result = read_vehicle(adapter, ReadOptions())
    assert result.error is None or result.error.strip()
    if result.error is None:
        assert result.ecus
