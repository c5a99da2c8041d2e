"""``obdtool scan`` end to end: the CLI in its own process, the simulator behind a real pty or TCP port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import ROOT, run_cli
from e2e_support import no_traceback

from adapters.sim.car import VirtualCar
from adapters.sim.elm327 import Elm327Emulator, EmulatorFaults
from adapters.sim.scenario import load_scenario
from adapters.sim.server import PtyServer, TcpServer


@pytest.fixture
def sim_process() -> Iterator[dict[str, str]]:
    """``obdtool sim petrol`` as a foreground process, exactly as the README shows it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "obdtool.cli", "sim", "petrol", "--tcp-port", "0", "--instant"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
    )
    endpoints: dict[str, str] = {}
    assert proc.stdout is not None
    while len(endpoints) < 2:
        line = proc.stdout.readline()
        assert line, f"simulator ended early: {proc.stderr.read() if proc.stderr else ''}"
        kind, _, where = line.strip().partition(": ")
        if kind in ("pty", "tcp"):
            endpoints[kind] = where
    try:
        yield endpoints
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert no_traceback(out, err)


def _expect_petrol(doc: dict[str, object]) -> None:
    assert doc["vin"] == "WVWZZZCDZMW123450"
    ecus = {e["address"]: e for e in doc["ecus"]}  # type: ignore[attr-defined, index]
    assert set(ecus) == {"7E8", "7E9"}
    kinds = {a: sorted((d["code"], d["kind"]) for d in e["dtcs"]) for a, e in ecus.items()}
    assert kinds["7E8"] == [
        ("P0133", "stored"),
        ("P0171", "pending"),
        ("P0420", "permanent"),
        ("P0420", "stored"),
    ]
    assert kinds["7E9"] == [("P0715", "stored"), ("P0730", "pending")]
    assert ecus["7E8"]["software"]["calids"] == ["04E906027HA 4521", "04E906027HB 0012"]
    assert ecus["7E8"]["software"]["cvns"] == ["1A2B3C4D", "0F0E0D0C"]
    assert ecus["7E9"]["software"]["calids"] == ["0CW300041C 3511"]
    assert ecus["7E8"]["name"] == "ECM-EngineControl"
    assert ecus["7E8"]["freeze_frame"]["dtc"] == "P0133"
    assert doc["mileage"] == {"km": 48213.4, "source": "odometer (01 A6)", "ecu": "7E8"}
    assert doc["error"] is None


def test_scan_json_through_the_sim_command_pty_and_tcp(sim_process: dict[str, str]) -> None:
    for adapter in (sim_process["pty"], sim_process["tcp"]):
        done = run_cli("scan", "--adapter", adapter, "--json")
        assert done.returncode == 1, done.stderr  # faults present
        _expect_petrol(json.loads(done.stdout))
        assert no_traceback(done.stdout, done.stderr)


def test_scan_builtin_sim_adapter_json() -> None:
    done = run_cli("scan", "--adapter", "sim:petrol", "--json")
    assert done.returncode == 1, done.stderr
    _expect_petrol(json.loads(done.stdout))


@pytest.mark.parametrize(
    ("scenario", "code", "vin", "source"),
    [
        ("diesel", 0, None, "01 31"),
        ("can29", 1, None, "odometer (01 A6)"),
        ("kwp", 1, None, None),
    ],
)
def test_other_shipped_cars(scenario: str, code: int, vin: None, source: str | None) -> None:
    done = run_cli("scan", "--adapter", f"sim:{scenario}", "--json")
    assert done.returncode == code, done.stderr
    doc = json.loads(done.stdout)
    car = load_scenario(scenario)
    assert doc["vin"] == car.vin
    assert {e["address"] for e in doc["ecus"]} == {e.address for e in car.ecus}
    for spec in car.ecus:
        ecu = next(e for e in doc["ecus"] if e["address"] == spec.address)
        assert sorted(d["code"] for d in ecu["dtcs"] if d["kind"] == "stored") == sorted(spec.stored)
        assert sorted(d["code"] for d in ecu["dtcs"] if d["kind"] == "pending") == sorted(spec.pending)
    if source is not None:
        assert source in doc["mileage"]["source"]


def test_tables_for_people() -> None:
    done = run_cli("scan", "--adapter", "sim:petrol")
    assert done.returncode == 1
    for text in (
        "WVWZZZCDZMW123450",
        "P0133",
        "Catalyst System Efficiency Below Threshold",
        "48,213.4 km",
        "odometer (01 A6)",
        "ECM-EngineControl",
        "permanent",
    ):
        assert text in done.stdout


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("disconnect_after=8", "link closed"),
        ("silent_after=8", "did not finish answering"),
        ("garbage=on", "unreadable"),
    ],
)
def test_broken_adapters_give_one_line_and_keep_partial_results(option: str, words: str) -> None:
    done = run_cli("scan", "--adapter", f"sim:petrol?{option}", "--json")
    assert done.returncode == 3
    assert no_traceback(done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
    doc = json.loads(done.stdout)
    assert doc["error"]
    if option != "garbage=on":
        assert doc["vin"] == "WVWZZZCDZMW123450"  # read before the link broke


@pytest.mark.parametrize(
    ("adapter", "words"),
    [
        ("/dev/ttyUSB97", "cannot open /dev/ttyUSB97"),
        ("tcp://127.0.0.1:1", "cannot connect to 127.0.0.1:1"),
        ("sim:petrol?ignition_off=on", "ignition"),
        ("bogus", "unknown adapter"),
        ("sim:nosuchcar", "no scenario called"),
    ],
)
def test_adapter_not_there(adapter: str, words: str) -> None:
    done = run_cli("scan", "--adapter", adapter)
    assert done.returncode == 3
    assert no_traceback(done.stdout, done.stderr)
    assert words in done.stderr and done.stderr.count("\n") == 1


def test_scan_without_adapter_is_a_usage_error() -> None:
    done = run_cli("scan")
    assert done.returncode == 2
    assert "--adapter" in done.stderr


def test_protocol_is_remembered_between_connects(tmp_path: Path) -> None:
    car = VirtualCar(load_scenario("petrol"))
    emulator = Elm327Emulator(car)
    with TcpServer(emulator) as server:
        first = run_cli("scan", "--adapter", server.url, "--json")
        searches_first = [
            c for c in emulator.command_log if c.replace(" ", "").upper() in ("ATSP0", "ATSPA0")
        ]
        log_len = len(emulator.command_log)
        second = run_cli("scan", "--adapter", server.url, "--json")
        second_cmds = emulator.command_log[log_len:]
    assert first.returncode == second.returncode == 1
    assert searches_first
    assert not [c for c in second_cmds if c.replace(" ", "").upper() in ("ATSP0", "ATSPA0")]


def test_quirky_adapter_output_is_read_the_same() -> None:
    faults = EmulatorFaults(lowercase=True, blank_lines=True, echo_quirk=True, padding_quirk=True)
    car = VirtualCar(load_scenario("petrol"))
    with PtyServer(Elm327Emulator(car, faults=faults)) as server:
        done = run_cli("scan", "--adapter", server.path, "--json")
    assert done.returncode == 1, done.stderr
    _expect_petrol(json.loads(done.stdout))


def _uds_expectations(doc: dict[str, object]) -> None:
    car = load_scenario("uds")
    assert doc["vin"] == car.vin
    ecus = {e["address"]: e for e in doc["ecus"]}  # type: ignore[attr-defined]
    engine = ecus["7E8"]
    ident = engine["software"]["uds_identification"]
    for did, value in car.ecus[0].uds["dids"].items():
        if did.startswith("F1") and not value.startswith("hex:"):
            assert ident[did] == (car.vin if value == "@vin" else value)
    uds = [(d["code"], d["uds_status"]) for d in engine["dtcs"] if d["kind"] == "uds"]
    assert ("P0401-00", 0xA9) in uds
    flags = next(d["uds_flags"] for d in engine["dtcs"] if d["code"] == "P0401-00")
    assert "confirmedDTC" in flags and "warningIndicatorRequested" in flags
    assert any("security access denied" in err for err in ecus["7E9"]["errors"])


def test_scan_over_virtual_can_with_uds() -> None:
    done = run_cli("scan", "--adapter", "simcan:uds", "--json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["adapter"]["kind"] == "simcan"
    _uds_expectations(doc)


def test_uds_through_an_elm327_with_physical_addressing() -> None:
    done = run_cli("scan", "--adapter", "sim:uds", "--uds", "--json")
    assert done.returncode == 1, done.stderr
    _uds_expectations(json.loads(done.stdout))
