"""``obdtool check``, ``upload`` and ``auth``: consent first, record in the outbox, real TLS on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
import trustme
from click.testing import CliRunner, Result
from e2e_support import MemoryKeyring, no_traceback

from adapters.sim.car import VirtualCar
from adapters.sim.elm327 import Elm327Emulator
from adapters.sim.scenario import load_scenario
from adapters.sim.server import PtyServer
from obdtool.cli import main
from upload.outbox import Outbox, default_outbox_path
from upload.receiver import ReceiverServer

TOKEN = "test-token-6f1d2c9a"  # a throw-away credential for the loopback receiver
OBFCM_ITIDS = (0x17, 0x1A, 0x1B, 0x1C)


@pytest.fixture
def tls(tmp_path: Path) -> dict[str, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "server.pem", "key": tmp_path / "server.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return paths


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    try:
        yield ring
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def receiver(tmp_path: Path, tls: dict[str, Path]) -> Iterator[ReceiverServer]:
    with ReceiverServer(tmp_path / "store", TOKEN, certfile=tls["cert"], keyfile=tls["key"]) as server:
        yield server


@pytest.fixture
def car() -> Iterator[tuple[VirtualCar, str]]:
    """The petrol car behind an emulated ELM327 on a real pty; the test keeps the car to read its log."""
    vehicle = VirtualCar(load_scenario("petrol"))
    with PtyServer(Elm327Emulator(vehicle)) as server:
        yield vehicle, server.path


def _env(endpoint: str, tls: dict[str, Path]) -> dict[str, str]:
    return {
        "OBDTOOL_ENDPOINT": endpoint,
        "OBDTOOL_WORKSHOP_ID": "NO-OSL-0042",
        "OBDTOOL_CA_FILE": str(tls["ca"]),
    }


def _cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)
    assert no_traceback(result.output, result.stderr)
    return result


def _login(env: dict[str, str]) -> None:
    result = _cli("auth", "login", env=env, stdin=TOKEN + "\n")
    assert result.exit_code == 0, result.stderr


def test_check_accepted_delivers_exactly_one_record_with_obfcm_values(
    car: tuple[VirtualCar, str], receiver: ReceiverServer, tls: dict[str, Path], memory_keyring: MemoryKeyring
) -> None:
    vehicle, path = car
    env = _env(receiver.url, tls)
    _login(env)
    result = _cli("check", "--adapter", path, "--obfcm", "accepted", "--json", env=env)
    assert result.exit_code == 1, result.stderr  # the petrol car has faults
    doc = json.loads(result.stdout)
    assert doc["upload"]["sent"] == 1 and doc["upload"]["error"] is None
    assert receiver.received_ids() == [doc["record_id"]]
    assert receiver.post_count == 1
    got = receiver.received(doc["record_id"])
    obfcm = got["obfcm"]
    assert obfcm["state"] == "collected"
    values = obfcm["ecus"][0]["itid17"]
    scenario_obfcm = vehicle.scenario.ecus[0].obfcm
    assert scenario_obfcm is not None
    assert values["lifetime_distance_km"] == scenario_obfcm.lifetime_distance_km
    assert values["recent_distance_km"] == scenario_obfcm.recent_distance_km
    assert values["lifetime_fuel_l"] == scenario_obfcm.lifetime_fuel_l
    assert values["recent_fuel_l"] == scenario_obfcm.recent_fuel_l
    assert got["vehicle"]["vin"] == vehicle.scenario.vin
    assert vehicle.requests_for(0x09, 0x17)
    with Outbox(default_outbox_path()) as box:
        entry = box.get(doc["record_id"])
        assert entry.state == "sent" and entry.receipt is not None


def test_check_refused_sends_no_obfcm_request_and_no_values(
    car: tuple[VirtualCar, str], receiver: ReceiverServer, tls: dict[str, Path], memory_keyring: MemoryKeyring
) -> None:
    vehicle, path = car
    env = _env(receiver.url, tls)
    _login(env)
    result = _cli("check", "--adapter", path, "--obfcm", "refused", "--json", env=env)
    assert result.exit_code == 1, result.stderr
    record_id = json.loads(result.stdout)["record_id"]
    got = receiver.received(record_id)
    assert got["obfcm"]["state"] == "refused"
    assert got["obfcm"]["ecus"] == []
    assert got["obfcm"]["decided_at"].endswith("Z")
    for itid in OBFCM_ITIDS:
        assert not vehicle.requests_for(0x09, itid), f"09 {itid:02X} was sent despite the refusal"
    assert vehicle.requests_for(0x09, 0x02)  # the rest of the read-out did happen
    assert "itid17" not in json.dumps(got)


def test_check_without_decision_in_a_script_stops_before_touching_the_car(
    car: tuple[VirtualCar, str], tls: dict[str, Path]
) -> None:
    vehicle, path = car
    result = _cli("check", "--adapter", path, env=_env("https://127.0.0.1:9", tls))
    assert result.exit_code == 2
    assert "--obfcm accepted|refused" in result.stderr
    assert vehicle.request_log == []


def test_interactive_question_has_no_default(car: tuple[VirtualCar, str], tls: dict[str, Path]) -> None:
    from datetime import UTC, datetime

    from obdtool.consent import ask_refusal

    answers = iter(["", "yes", "maybe", "refuse"])
    shown: list[str] = []
    before = datetime.now(UTC)
    decision = ask_refusal(lambda _q: next(answers), shown.append, interactive=True)
    assert decision.refused is True and decision.decided_at >= before
    assert sum("no default" in s for s in shown) == 3  # every non-answer was refused, none assumed


def test_offline_record_waits_then_is_delivered_once(
    car: tuple[VirtualCar, str], tmp_path: Path, tls: dict[str, Path], memory_keyring: MemoryKeyring
) -> None:
    _, path = car
    server = ReceiverServer(tmp_path / "late", TOKEN, certfile=tls["cert"], keyfile=tls["key"])
    server.start()
    url = server.url
    server.stop()  # the endpoint is down during the visit
    env = _env(url, tls)
    _login(env)
    result = _cli("check", "--adapter", path, "--obfcm", "accepted", env=env)
    assert result.exit_code == 1
    assert "waits in the outbox" in result.stdout
    with Outbox(default_outbox_path()) as box:
        assert box.count("pending") == 1
    port = int(url.rsplit(":", 1)[1])
    with ReceiverServer(
        tmp_path / "late", TOKEN, port=port, certfile=tls["cert"], keyfile=tls["key"]
    ) as server:
        first = _cli("upload", env=env)
        second = _cli("upload", env=env)
        assert first.exit_code == 0 and "sent 1" in first.stdout, first.stderr
        assert second.exit_code == 0 and "sent 0" in second.stdout
        assert len(server.received_ids()) == 1 and server.post_count == 1
    with Outbox(default_outbox_path()) as box:
        assert box.count("pending") == 0 and box.count("sent") == 1


def test_no_upload_keeps_the_record_local_for_good(
    car: tuple[VirtualCar, str], receiver: ReceiverServer, tls: dict[str, Path], memory_keyring: MemoryKeyring
) -> None:
    _, path = car
    env = _env(receiver.url, tls)
    _login(env)
    result = _cli("check", "--adapter", path, "--obfcm", "accepted", "--no-upload", "--json", env=env)
    record_id = json.loads(result.stdout)["record_id"]
    assert _cli("upload", env=env).exit_code == 0
    retry = _cli("outbox", "retry", record_id, env=env)
    assert retry.exit_code == 5 and "kept local" in retry.stderr
    assert receiver.post_count == 0
    listed = json.loads(_cli("outbox", "list", "--json", env=env).stdout)
    assert [e["state"] for e in listed] == ["held"]


def test_token_lives_only_in_the_keyring(
    car: tuple[VirtualCar, str],
    receiver: ReceiverServer,
    tls: dict[str, Path],
    memory_keyring: MemoryKeyring,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, path = car
    env = _env(receiver.url, tls)
    _login(env)
    outputs: list[Any] = []
    for args in (
        ("auth", "status"),
        ("check", "--adapter", path, "--obfcm", "accepted", "--json"),
        ("outbox", "list", "--json"),
        ("config", "show"),
        ("-vv", "upload"),
    ):
        result = _cli(*args, env=env)
        outputs += [result.stdout, result.stderr]
    assert "a token is stored" in outputs[0]
    assert TOKEN not in "".join(outputs) + caplog.text
    for file in (tmp_path / "obdtool-home").rglob("*"):
        if file.is_file():
            assert TOKEN.encode() not in file.read_bytes(), file
    assert list(memory_keyring.items.values()) == [TOKEN]
    assert _cli("auth", "logout", env=env).exit_code == 0
    assert memory_keyring.items == {}


def test_plain_http_is_refused_except_on_loopback(
    memory_keyring: MemoryKeyring, tls: dict[str, Path]
) -> None:
    env = {"OBDTOOL_ENDPOINT": "http://obfcm.example.com/api", "OBDTOOL_WORKSHOP_ID": "WS1"}
    result = _cli("auth", "login", env=env, stdin="x\n")
    assert result.exit_code == 4 and "https" in result.stderr.lower()


def test_outbox_export_and_purge_by_vin(
    car: tuple[VirtualCar, str], tls: dict[str, Path], tmp_path: Path
) -> None:
    vehicle, path = car
    env = {"OBDTOOL_WORKSHOP_ID": "NO-OSL-0042"}
    assert _cli("check", "--adapter", path, "--obfcm", "refused", "--no-upload", env=env).exit_code == 1
    vin = vehicle.scenario.vin
    assert vin is not None
    out = tmp_path / "export.json"
    assert _cli("outbox", "export", "--vin", vin, "-o", str(out), env=env).exit_code == 0
    exported = json.loads(out.read_text())
    assert len(exported) == 1 and vin in json.dumps(exported)
    refused = _cli("outbox", "purge", "--vin", vin, env=env)
    assert refused.exit_code == 2  # an erasure needs an explicit yes
    assert "removed 1" in _cli("outbox", "purge", "--vin", vin, "--yes", env=env).stdout
    assert json.loads(_cli("outbox", "list", "--json", env=env).stdout) == []


def test_a_simulated_car_is_never_sent_to_a_real_endpoint(memory_keyring: MemoryKeyring) -> None:
    env = {"OBDTOOL_ENDPOINT": "https://obfcm.manufacturer.invalid/api", "OBDTOOL_WORKSHOP_ID": "NO-OSL-0042"}
    result = _cli("check", "--adapter", "sim:petrol", "--obfcm", "accepted", "--json", env=env)
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["held"] is True and "simulated" in doc["hold_reason"]
    assert doc["upload"]["attempted"] is False
    with Outbox(default_outbox_path()) as box:
        assert box.get(doc["record_id"]).state == "held"


def test_phev_accepted_delivers_itid17_and_the_raw_plug_in_hybrid_infotypes(
    receiver: ReceiverServer, tls: dict[str, Path], memory_keyring: MemoryKeyring
) -> None:
    vehicle = VirtualCar(load_scenario("phev"))
    env = _env(receiver.url, tls)
    _login(env)
    with PtyServer(Elm327Emulator(vehicle)) as server:
        result = _cli("check", "--adapter", server.path, "--obfcm", "accepted", "--json", env=env)
    assert result.exit_code in (0, 1), result.stderr
    doc = json.loads(result.stdout)
    assert receiver.received_ids() == [doc["record_id"]] and receiver.post_count == 1
    got = receiver.received(doc["record_id"])["obfcm"]
    assert got["state"] == "collected"
    spec = next(e.obfcm for e in vehicle.scenario.ecus if e.obfcm is not None)
    assert spec is not None
    [entry] = [e for e in got["ecus"] if e["itid17"] is not None]
    assert entry["itid17"]["lifetime_distance_km"] == spec.lifetime_distance_km
    assert entry["itid17"]["lifetime_fuel_l"] == spec.lifetime_fuel_l
    raw = {r["itid"]: r for e in got["ecus"] for r in e["raw"]}
    assert set(raw) == {f"{i:02X}" for i in spec.raw_infotypes}
    for itid, payload in spec.raw_infotypes.items():
        assert raw[f"{itid:02X}"]["raw_hex"] == f"49{itid:02X}{payload.hex().upper()}"
        assert raw[f"{itid:02X}"]["verified"] is False
