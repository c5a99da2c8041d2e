"""``obdtool clear``: snapshot first, guard, explicit confirmation, re-read, audit record."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from e2e_support import no_traceback

from adapters.sim.car import VirtualCar
from adapters.sim.elm327 import Elm327Emulator
from adapters.sim.scenario import load_scenario
from adapters.sim.server import PtyServer
from obdtool.cli import main
from upload.outbox import Outbox, default_outbox_path

ENV = {"OBDTOOL_WORKSHOP_ID": "NO-OSL-0042"}


class Bench:
    """The petrol car on a real pty, with its emulator, so tests can read both logs."""

    def __init__(self, car: VirtualCar, emulator: Elm327Emulator, path: str) -> None:
        self.car, self.emulator, self.path = car, emulator, path


@pytest.fixture
def bench() -> Iterator[Bench]:
    car = VirtualCar(load_scenario("petrol"))
    emulator = Elm327Emulator(car)
    with PtyServer(emulator) as server:
        yield Bench(car, emulator, server.path)


def _cli(*args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), env=ENV, input=stdin, catch_exceptions=False)
    assert no_traceback(result.output, result.stderr)
    return result


def _records() -> list[dict[str, object]]:
    with Outbox(default_outbox_path()) as box:
        return [e.body for e in box.iter_entries(kind="clear")]


def test_clear_with_yes_erases_stored_and_pending_keeps_permanent_and_the_snapshot(bench: Bench) -> None:
    result = _cli("clear", "--adapter", bench.path, "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    engine, gearbox = bench.car.ecus
    assert engine.stored == [] and engine.pending == [] and gearbox.stored == [] and gearbox.pending == []
    assert engine.permanent == ["P0420"]
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "cleared"
    assert any("P0420" in note and "permanent" in note for note in doc["notes"])
    [record] = _records()
    clear = record["clear"]
    assert isinstance(clear, dict) and clear["outcome"] == "cleared"
    before = {e["address"]: {(d["code"], d["kind"]) for d in e["dtcs"]} for e in clear["before"]}
    assert before["7E8"] == {
        ("P0133", "stored"),
        ("P0420", "stored"),
        ("P0171", "pending"),
        ("P0420", "permanent"),
    }
    assert before["7E9"] == {("P0715", "stored"), ("P0730", "pending")}
    before_readings = {e["address"]: e["readings"] for e in clear["before"]}
    assert before_readings["7E8"]["distance_since_clear_km"] == 4120
    after = {e["address"]: {(d["code"], d["kind"]) for d in e["dtcs"]} for e in clear["after"]}
    assert after["7E8"] == {("P0420", "permanent")}
    assert record["vehicle"]["vin"] == "WVWZZZCDZMW123450"  # type: ignore[index]
    assert len(bench.car.requests_for(0x04)) == 1
    assert "" not in bench.emulator.command_log  # never a bare CR: the ELM would repeat the clear


def test_engine_running_refuses_without_force_and_touches_nothing(bench: Bench) -> None:
    bench.car.start_engine()
    result = _cli("clear", "--adapter", bench.path, "--yes")
    assert result.exit_code == 6
    assert "engine is running" in result.stderr
    assert bench.car.requests_for(0x04) == []
    assert bench.car.ecus[0].stored == ["P0133", "P0420"]
    assert _records() == []


def test_force_with_engine_running_reports_the_ecus_refusal_in_plain_words(bench: Bench) -> None:
    bench.car.start_engine()
    result = _cli("clear", "--adapter", bench.path, "--yes", "--force", "--json")
    assert result.exit_code == 6
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "refused"
    assert {r["address"] for r in doc["refusals"]} == {"7E8", "7E9"}
    assert all(r["nrc"] == 0x22 and "engine off" in r["message"] for r in doc["refusals"])
    assert bench.car.ecus[0].stored == ["P0133", "P0420"]
    [record] = _records()
    assert record["clear"]["outcome"] == "refused"  # type: ignore[index]


def test_script_without_yes_changes_nothing_and_says_why(bench: Bench) -> None:
    result = _cli("clear", "--adapter", bench.path)
    assert result.exit_code == 2
    assert "--yes" in result.stderr and "nothing was changed" in result.stderr
    assert bench.car.request_log == []


def test_one_ecu_only(bench: Bench) -> None:
    result = _cli("clear", "--adapter", bench.path, "--ecu", "7e9", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    engine, gearbox = bench.car.ecus
    assert gearbox.stored == [] and gearbox.pending == []
    assert engine.stored == ["P0133", "P0420"]  # untouched
    assert [r.target for r in bench.car.requests_for(0x04)] == ["7E1"]


def test_unknown_ecu_is_refused_before_anything_is_cleared(bench: Bench) -> None:
    result = _cli("clear", "--adapter", bench.path, "--ecu", "7EB", "--yes")
    assert result.exit_code == 6 and "7EB" in result.stderr
    assert bench.car.requests_for(0x04) == []


def test_audit_trail_lists_clear_events(bench: Bench) -> None:
    assert _cli("clear", "--adapter", bench.path, "--yes").exit_code == 0
    listed = _cli("outbox", "list")
    assert "clear" in listed.stdout and "cleared" in listed.stdout
    entries = json.loads(_cli("outbox", "list", "--json").stdout)
    assert [e["kind"] for e in entries] == ["clear"]


def test_uds_clear_over_can() -> None:
    result = _cli("clear", "--adapter", "simcan:uds", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "cleared"
    [record] = _records()
    after = [d for e in record["clear"]["after"] for d in e["dtcs"] if d["kind"] != "permanent"]  # type: ignore[index]
    assert after == []
