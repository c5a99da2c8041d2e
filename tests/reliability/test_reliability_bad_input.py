"""Bad input everywhere else: configuration, adapter strings, scenario files, a damaged outbox.

Each is answered with one sentence that names what to fix (the file, the key, the line), a documented
exit code, and no traceback; a damaged outbox is reported and left exactly as it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from reliability_support import LEDGER, cli_env, example_record, one_error_line, run_cli, run_cli_many

from upload.outbox import Outbox

# -- configuration ---------------------------------------------------------------------------------------

CONFIGS = {
    "toml-syntax": ('endpoint = "https://x.example"\nworkshop_id = \n', ["not valid TOML", "line 2"]),
    "unknown-key": ('adaptr = "sim:petrol"\n', ["unknown key 'adaptr'"]),
    "negative-days": ("retention_days = -4\n", ["key 'retention_days' must be a whole number"]),
    "text-days": ('retention_days = "ninety"\n', ["key 'retention_days'"]),
    "ftp-endpoint": ('endpoint = "ftp://x.example"\n', ["key 'endpoint' must be a URL"]),
    "bad-workshop": ('workshop_id = "bay 3!"\n', ["key 'workshop_id' may hold only"]),
    "number-lang": ("lang = 7\n", ["key 'lang' must be a non-empty text"]),
    "binary-key": ('"\\xff" = 1\n', ["not valid TOML"]),
}


@pytest.fixture(scope="module")
def config_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, CompletedProcess[str]]]:
    calls: dict[str, tuple[tuple[str, ...], dict[str, str] | None]] = {}
    paths: dict[str, Path] = {}
    for name, (text, _) in CONFIGS.items():
        folder = tmp_path_factory.mktemp(f"config-{name}")
        paths[name] = folder / "config.toml"
        paths[name].write_text(text, encoding="utf-8")
        calls[name] = (("scan", "--adapter", "sim:petrol"), cli_env(folder, OBDTOOL_CONFIG=str(paths[name])))
    return {name: (paths[name], done) for name, done in run_cli_many(calls).items()}


@pytest.mark.parametrize("name", CONFIGS)
def test_malformed_config_names_the_file_and_the_key(
    config_runs: dict[str, tuple[Path, CompletedProcess[str]]], name: str
) -> None:
    LEDGER.fault("input:malformed-config")
    config, done = config_runs[name]
    assert done.returncode == 5
    line = one_error_line(done.stderr)
    assert str(config) in line
    for word in CONFIGS[name][1]:
        assert word in line


def test_bad_environment_override_names_the_variable(tmp_path: Path) -> None:
    LEDGER.fault("input:malformed-config")
    done = run_cli("config", "show", env=cli_env(tmp_path, OBDTOOL_RETENTION_DAYS="soon"))
    assert done.returncode == 5
    assert "environment variable OBDTOOL_RETENTION_DAYS" in one_error_line(done.stderr)


def test_config_path_that_is_a_folder(tmp_path: Path) -> None:
    LEDGER.fault("input:malformed-config")
    folder = tmp_path / "config.toml"
    folder.mkdir()
    done = run_cli("config", "show", env=cli_env(tmp_path, OBDTOOL_CONFIG=str(folder)))
    assert done.returncode == 5
    assert f"{folder}: cannot be read" in one_error_line(done.stderr)


# -- adapter strings -------------------------------------------------------------------------------------

ADAPTER_STRINGS = {
    "bogus": "unknown adapter 'bogus'",
    "sim:": "no scenario called ''",
    "sim:petrol?scenario=kwp": "unknown sim option 'scenario'",
    "sim:petrol?engine=maybe": "sim option engine='maybe': use on or off",
    "sim:petrol?disconnect_after=soon": "disconnect_after='soon' is not a number",
    "sim:petrol?noise_after=-1": "must be a whole number",
    "sim:petrol?link=usb": "link='usb'",
    "sim:petrol?a=1&&b": "cannot read the options",
    "simcan:kwp": "is not a CAN car",
    "tcp://": "cannot use 'tcp://'",
    "tcp://127.0.0.1:99999": "bad TCP port",
    "serial:///dev/ttyUSB0?baud=fast": "baud must be a number",
    "can:nosuchinterface:x": "nosuchinterface",
    "replay:": "replay: needs a file",
    "replay:/no/such.trace": "no trace or terminal log",
    "replay:petrol?protocol=6": "protocol= needs strict=off",
    "replay:petrol?strict=maybe": "strict='maybe'",
    "replay:petrol?speed=2": "unknown replay option(s): speed",
    "replay:fixtures/scenarios/petrol.toml": "no ELM327 command found",
}


@pytest.fixture(scope="module")
def adapter_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CompletedProcess[str]]:
    env = cli_env(tmp_path_factory.mktemp("adapters"))
    return run_cli_many({spec: (("scan", "--adapter", spec), env) for spec in ADAPTER_STRINGS})


@pytest.mark.parametrize("spec", ADAPTER_STRINGS)
def test_unknown_or_malformed_adapter_strings(
    adapter_runs: dict[str, CompletedProcess[str]], spec: str
) -> None:
    LEDGER.fault("input:bad-adapter-string")
    done = adapter_runs[spec]
    assert done.returncode == 3, done.stderr
    assert ADAPTER_STRINGS[spec] in one_error_line(done.stderr)


# -- scenario files --------------------------------------------------------------------------------------

SCENARIO = """name = "broken"
protocol = "6"
vin = "WVWZZZCDZMW123450"

[[ecus]]
address = "7E8"
stored = ["P0133"]

[ecus.freeze_frame]
dtc = "P0133"
values = { rpm = 800, coolant_c = 90 }

[[ecus]]
address = "7E9"
stored = ["P0715", "P0730"]
"""


SCENARIO_ERRORS = {
    "bad-dtc": ('"P0730"', '"X0730"', "line 15: ecus[1].stored: 'X0730' is not a DTC"),
    "too-big": (
        "rpm = 800",
        "rpm = 80000000",
        "line 11: ecus[0].freeze_frame.values.rpm: 80000000 does not fit",
    ),
    "missing-address": ('address = "7E9"', 'adress = "7E9"', "line 13: ecus[1].address: expected 7E8..7EF"),
    "misspelt-key": (
        'dtc = "P0133"',
        'dtc = "P0133"\nmil = true',
        "line 11: ecus[0].freeze_frame.mil: unknown key",
    ),
    "protocol": ('protocol = "6"', 'protocol = "Z"', "line 2: protocol: expected one of"),
    "vin": ('vin = "WVWZZZCDZMW123450"', 'vin = "WVWZZZCDZMW12345O"', "line 3: vin: a VIN is 17 characters"),
    "toml-syntax": ("values = {", "values = {{", "line 11"),  # tomllib names the line itself
}


@pytest.fixture(scope="module")
def scenario_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, CompletedProcess[str]]]:
    folder = tmp_path_factory.mktemp("scenarios")
    calls: dict[str, tuple[tuple[str, ...], dict[str, str] | None]] = {}
    for name, (old, new, _) in SCENARIO_ERRORS.items():
        assert old in SCENARIO
        path = folder / f"{name}.toml"
        path.write_text(SCENARIO.replace(old, new, 1), encoding="utf-8")
        calls[name] = (("scan", "--adapter", f"sim:{path}"), cli_env(folder))
    return {name: (folder / f"{name}.toml", done) for name, done in run_cli_many(calls).items()}


@pytest.mark.parametrize("name", SCENARIO_ERRORS)
def test_scenario_errors_name_the_line(
    scenario_runs: dict[str, tuple[Path, CompletedProcess[str]]], name: str
) -> None:
    LEDGER.fault("input:bad-scenario-file")
    path, done = scenario_runs[name]
    assert done.returncode == 3
    line = one_error_line(done.stderr)
    assert str(path) in line and SCENARIO_ERRORS[name][2] in line


# -- a damaged outbox ------------------------------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(b"this is not a database, it was overwritten by something else\n" * 40)
        return
    with Outbox(path) as box:
        for _ in range(20):
            box.add(example_record())
        box._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    if how == "foreign":
        path.unlink()
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (text TEXT)")
        return
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 2, len(data), 4096):  # every page but the first two: b-tree pages broken
        data[offset : offset + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))


DAMAGE = ["garbage", "pages", "foreign"]
COMMANDS = {
    "upload": ("upload",),
    "outbox-list": ("outbox", "list"),
    "check": ("check", "--adapter", "sim:petrol", "--obfcm", "refused"),
}


@pytest.fixture(scope="module")
def outbox_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, bytes, CompletedProcess[str]]]:
    calls: dict[str, tuple[tuple[str, ...], dict[str, str] | None]] = {}
    files: dict[str, tuple[Path, bytes]] = {}
    for how in DAMAGE:
        for command, args in COMMANDS.items():
            key = f"{how}-{command}"
            folder = tmp_path_factory.mktemp(key)
            path = folder / "data" / "outbox.sqlite3"
            path.parent.mkdir(parents=True)
            _damage(path, how)
            files[key] = (path, path.read_bytes())
            env = cli_env(folder, OBDTOOL_ENDPOINT="https://127.0.0.1:9", OBDTOOL_TEST_TOKEN="tok-x")
            calls[key] = (args, env)
    return {key: (*files[key], done) for key, done in run_cli_many(calls).items()}


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("command", COMMANDS)
def test_damaged_outbox_is_reported_and_never_reset(
    outbox_runs: dict[str, tuple[Path, bytes, CompletedProcess[str]]], how: str, command: str
) -> None:
    LEDGER.fault(f"input:damaged-outbox-{how}")
    path, before, done = outbox_runs[f"{how}-{command}"]
    assert done.returncode == 5, done.stderr
    line = one_error_line(done.stderr)
    assert str(path) in line and "left untouched" in line
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
