"""The pre-service check against the physical limit of its link, and against python-OBD on the same link.

Run from the repository root (about five minutes; ``--quick`` takes about one)::

    .venv/bin/python benchmarks/bench_check.py [--quick] [--json test-output/bench.json]

**The link.** obdtool's ELM327 emulator on a real pseudo-terminal (``adapters.sim.server.PtyServer``) in
front of the virtual car ``petrol`` (two ECUs on CAN 11-bit/500k), with timing on
(``adapters.sim.elm327.TimingModel``): bytes paced at 38400 baud both ways, every ECU answering 20 ms after a
request, the ELM327's waiting rules (``AT ST``, adaptive timing, the response-count digit) and protocol
searches that cost what they cost. obdtool's real ELM327 driver talks to it through pyserial as it would to
a USB adapter; python-OBD 0.7.3 is run on the very same kind of link (a fresh emulator for every contender,
so no one inherits another's adapter state).

**What is measured.** Wall time, requests to the car and bytes each way of the full pre-service check
(connect, ECU discovery, VIN, 03/07/0A, MIL, odometer and distance counters, freeze frame, CALID/CVN/ECU
names, OBFCM with the owner's consent: what ``obdtool check`` reads on an ELM327), first with an empty
protocol memory and then with the protocol remembered. The connect alone. python-OBD against obdtool on the
items python-OBD can fetch. ``obdtool --help`` against a bare interpreter. The outbox flushed to the
reference receiver on loopback with 10k and 100k records queued, and the peak memory of the flushing
process. Every figure is a median of several runs unless said otherwise.

**The physical minimum** is computed here from first principles, see :func:`physical_minimum`. Tests never
assert wall-clock times; this script is where times are measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import outbox_bench  # noqa: E402  (a sibling script, found through this script's own folder)

from adapters.elm327 import Elm327Adapter, ProtocolMemory  # noqa: E402
from adapters.link import SerialLink  # noqa: E402
from adapters.sim.car import VirtualCar  # noqa: E402
from adapters.sim.elm327 import Elm327Emulator, TimingModel  # noqa: E402
from adapters.sim.scenario import load_scenario  # noqa: E402
from adapters.sim.server import PtyServer  # noqa: E402
from obdtool.readout import COUNTER_PIDS, FREEZE_PIDS, ObfcmConsent, ReadOptions, read_vehicle  # noqa: E402

SCENARIO = "petrol"
BAUD = 38400
ECU_MS = 20.0
MAX_PIDS = 6  # Service 01 PIDs one request may carry on CAN (ISO 15765-4)
MAX_FREEZE_PAIRS = 3  # 02 + three (PID, frame) pairs: the seven bytes an ELM327 sends in one frame
PYOBD_PIDS = (0x01, 0x21, 0x31, 0x30, 0x4D, 0x4E, 0x1C)  # STATUS, DISTANCE_*, WARMUPS, RUN_TIME_MIL, ...


@dataclass(frozen=True)
class Settings:
    """How much to measure: the full run or ``--quick``."""

    check_runs: int
    pyobd_runs: int
    cli_runs: int
    queue_sizes: tuple[int, ...]
    reference_limit: int


FULL = Settings(check_runs=7, pyobd_runs=3, cli_runs=21, queue_sizes=(10_000, 100_000), reference_limit=5_000)
QUICK = Settings(check_runs=3, pyobd_runs=1, cli_runs=7, queue_sizes=(2_000, 20_000), reference_limit=1_000)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- the link ------------------------------------------------------------------------------------------------


def timing() -> TimingModel:
    return TimingModel(baud=BAUD, ecu_response_ms=ECU_MS)


@contextlib.contextmanager
def emulated_link() -> Iterator[tuple[str, Elm327Emulator]]:
    """A fresh virtual car behind a fresh emulated ELM327 on a pseudo-terminal; yields (device, emulator)."""
    emulator = Elm327Emulator(VirtualCar(load_scenario(SCENARIO)), timing=timing())
    with PtyServer(emulator) as server:
        yield server.path, emulator


def consent() -> ObfcmConsent:
    return ObfcmConsent(refused=False, decided_at=datetime.now(UTC))


def full_check() -> ReadOptions:
    """What ``obdtool check`` reads on an ELM327 when the owner accepts OBFCM (UDS is for CAN adapters)."""
    return ReadOptions(obfcm=consent())


def common_items() -> ReadOptions:
    """The items python-OBD can fetch too, plus what our read-out always reads (0A, ECU names)."""
    return ReadOptions(freeze_frames=False, obfcm=None)


def run_ours(
    path: str, emulator: Elm327Emulator, memory: ProtocolMemory, options: ReadOptions
) -> dict[str, Any]:
    """Connect obdtool's ELM327 driver to ``path``, read the car, close; the figures of that one run."""
    log_start = len(emulator.command_log)
    adapter = Elm327Adapter(SerialLink(path).open, remember=memory)
    started = time.perf_counter()
    adapter.open()
    connected = time.perf_counter()
    try:
        result = read_vehicle(adapter, options)
    finally:
        finished = time.perf_counter()
        adapter.close()
    if result.error or result.vin is None:
        raise RuntimeError(f"the benchmark read-out failed: {result.error or 'no VIN'}")
    commands = [c.replace(" ", "").upper() for c in emulator.command_log[log_start:]]
    obd = [c for c in commands if not c.startswith("AT")]
    return {
        "wall_s": finished - started,
        "connect_s": connected - started,
        "readout_s": finished - connected,
        "requests": adapter.stats.requests,
        "bytes_out": adapter.stats.bytes_out,
        "bytes_in": adapter.stats.bytes_in,
        "at_commands": len(commands) - len(obd),
        "requests_with_count": sum(1 for c in obd if len(c) % 2),
        "requests_without_count": [c for c in obd if len(c) % 2 == 0],
    }


def ours(options: Callable[[], ReadOptions], runs: int) -> dict[str, Any]:
    """One run with an empty protocol memory, then ``runs`` with the protocol remembered (same adapter)."""
    with tempfile.TemporaryDirectory() as folder, emulated_link() as (path, emulator):
        memory = ProtocolMemory(Path(folder) / "protocols.json")
        first = run_ours(path, emulator, memory, options())
        remembered = [run_ours(path, emulator, memory, options()) for _ in range(runs)]
    summary = {key: median([r[key] for r in remembered]) for key in ("wall_s", "connect_s", "readout_s")}
    last = remembered[-1]
    for key in ("requests", "bytes_out", "bytes_in", "at_commands", "requests_with_count"):
        summary[key] = last[key]
    summary["requests_without_count"] = last["requests_without_count"]
    return {"first_connect": first, "remembered": summary, "remembered_runs": remembered}


def connects(runs: int) -> dict[str, Any]:
    """Connect (open + close, no read-out): first with an empty memory, then with the protocol remembered."""
    with tempfile.TemporaryDirectory() as folder, emulated_link() as (path, _emulator):
        memory = ProtocolMemory(Path(folder) / "protocols.json")
        times = []
        for _ in range(runs + 1):
            adapter = Elm327Adapter(SerialLink(path).open, remember=memory)
            started = time.perf_counter()
            adapter.open()
            times.append(time.perf_counter() - started)
            adapter.close()
    return {"first_s": times[0], "remembered_s": median(times[1:]), "remembered_runs_s": times[1:]}


def python_obd(runs: int, protocol: str | None) -> dict[str, Any]:
    """python-OBD on a fresh emulated link per run: its own connect, then the reference items."""
    from obdtool.pyobd import reference_read

    results = []
    for _ in range(runs):
        with emulated_link() as (path, emulator):
            read = reference_read(path, protocol=protocol)
            read["requests"] = sum(1 for c in emulator.command_log if not c.upper().startswith("AT"))
        if not read["connected"]:
            raise RuntimeError("python-OBD did not connect to the emulator")
        read["wall_s"] = read["connect_s"] + read["items_s"]
        results.append(read)
    return {
        "wall_s": median([r["wall_s"] for r in results]),
        "connect_s": median([r["connect_s"] for r in results]),
        "items_s": median([r["items_s"] for r in results]),
        "requests": results[-1]["requests"],
        "values": results[-1]["values"],
    }


# -- the physical minimum ------------------------------------------------------------------------------------


def printed_bytes(address: str, message: bytes) -> int:
    """Bytes an ELM327 prints for one CAN message with ``ATH1 ATS0 ATCAF1``: its most compact readable form.

    Headers stay on because two ECUs answer and must be told apart; spaces off. One line per CAN frame: the
    identifier, then the frame in hex, then CR. A single frame shows its PCI byte and data (up to 8 bytes);
    a first frame and each consecutive frame show all 8 bytes.
    """
    if len(message) <= 7:
        return len(address) + 2 * (1 + len(message)) + 1
    frames = 1 + -(-(len(message) - 6) // 7)
    return frames * (len(address) + 16 + 1)


def essential_requests(car: VirtualCar, *, full: bool) -> list[tuple[bytes, str]]:
    """The fewest requests that fetch the information of the check, and why each is needed.

    Counted: the requests whose answers carry the information itself, packed as densely as the protocol
    allows. Service 01: the MIL/DTC-count, distance and time counters and odometer PIDs some ECU has, six
    per request (the CAN limit). Service 09: one InfoType per request (the standard allows no more) for
    the VIN, CALIDs, CVNs, ECU names and OBFCM. 03, 07, 0A: one each (ECU discovery comes free: every OBD
    ECU on CAN answers 03, with a count of 0 if it has nothing). Service 02: the DTC that stored each
    freeze frame and the values the check keeps, three (PID, frame) pairs per request (the seven bytes an
    ELM327 can send in one CAN frame).

    Not counted: the supported-PID and InfoType bitmaps (01 00/20/.., 09 00), which only tell a tester
    that does not know the car what it may ask; every adapter (AT) command, which fetches nothing from
    the car; and every wait for the adapter's timer, which a tester that knew how many frames each answer
    takes would never incur.
    """
    ecus = car.ecus
    service01 = [
        p for p in (COUNTER_PIDS if full else PYOBD_PIDS) if any(p in e.current_pids() for e in ecus)
    ]
    requests: list[tuple[bytes, str]] = [
        (bytes([0x01, *service01[i : i + MAX_PIDS]]), "MIL, DTC count, counters, odometer")
        for i in range(0, len(service01), MAX_PIDS)
    ]
    itids = (0x02, 0x04, 0x06, 0x0A, 0x17, 0x1A, 0x1B, 0x1C) if full else (0x02, 0x04, 0x06)
    names = {0x02: "VIN", 0x04: "CALIDs", 0x06: "CVNs", 0x0A: "ECU names", 0x17: "OBFCM"}
    for itid in itids:
        if any(itid in e.infotypes() for e in ecus):
            requests.append((bytes([0x09, itid]), names.get(itid, "OBFCM (plug-in hybrid)")))
    for service, what in ((0x03, "stored DTCs"), (0x07, "pending DTCs"), (0x0A, "permanent DTCs")):
        if full or service != 0x0A:
            requests.append((bytes([service]), what))
    if full:
        pairs = [0x02] if any(e.freeze_frame_dtc for e in ecus) else []
        pairs += [p for p in FREEZE_PIDS if any(p in e.freeze_pids for e in ecus if e.freeze_frame_dtc)]
        for i in range(0, len(pairs), MAX_FREEZE_PAIRS):
            chunk = pairs[i : i + MAX_FREEZE_PAIRS]
            requests.append((bytes([0x02, *[b for p in chunk for b in (p, 0)]]), "freeze frame"))
    return requests


def physical_minimum(*, full: bool) -> dict[str, Any]:
    """Wire time at the baud rate plus ECU time, for :func:`essential_requests` only.

    For each request: the request line (hex digits, the response-count digit, CR) plus everything the
    adapter prints back (:func:`printed_bytes` for each answer, then a CR and the ``>`` prompt), at 10 bits
    per byte (8N1) at the baud rate; plus the ECU's response time, once per request (ECUs answer in
    parallel). The CAN bus itself (500 kbit/s, about 0.25 ms a frame) and the frames' gaps are left out:
    they overlap with the serial transfer, which is 20 times slower.
    """
    car = VirtualCar(load_scenario(SCENARIO))
    rows = []
    for data, why in essential_requests(car, full=full):
        answers = car.respond(data)
        out = 2 * len(data) + 1 + 1
        back = sum(printed_bytes(a.ecu.address, m) for a in answers for m in a.messages) + 2
        ecu = max((a.ecu.spec.response_ms or car.scenario.ecu_response_ms or ECU_MS) for a in answers)
        rows.append(
            {
                "request": data.hex().upper(),
                "why": why,
                "answers": len(answers),
                "bytes_out": out,
                "bytes_in": back,
                "wire_s": (out + back) * 10 / BAUD,
                "ecu_s": ecu / 1000,
            }
        )
    wire = sum(r["wire_s"] for r in rows)
    ecu_time = sum(r["ecu_s"] for r in rows)
    return {
        "requests": len(rows),
        "bytes_out": sum(r["bytes_out"] for r in rows),
        "bytes_in": sum(r["bytes_in"] for r in rows),
        "wire_s": wire,
        "ecu_s": ecu_time,
        "total_s": wire + ecu_time,
        "detail": rows,
    }


# -- CLI start-up --------------------------------------------------------------------------------------------


def cli_startup(runs: int) -> dict[str, Any]:
    """``obdtool --help`` against ``python -c pass``, interleaved so both see the same machine load."""
    script = Path(sys.executable).with_name("obdtool")
    cli = [str(script), "--help"] if script.exists() else [sys.executable, "-m", "obdtool.cli", "--help"]
    bare = [sys.executable, "-c", "pass"]
    times: dict[str, list[float]] = {"cli": [], "bare": []}
    for _ in range(runs):
        for name, command in (("bare", bare), ("cli", cli)):
            started = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - started)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import obdtool.cli"],
        capture_output=True,
        text=True,
        check=True,
    )
    # What importing the CLI module costs, and what it imports directly (the lines after site's own).
    imports: list[tuple[str, float]] = []
    after_site = False
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S.*)$", line)
        if match is None:
            continue
        cumulative, depth, name = int(match[1]) / 1000, len(match[2]) // 2, match[3]
        if after_site and depth <= 1:
            imports.append(("  " * depth + name, cumulative))
        if name == "site" and depth == 0:
            after_site = True
    return {
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cli)),
        "cli_s": median(times["cli"]),
        "bare_s": median(times["bare"]),
        "cli_min_s": min(times["cli"]),
        "bare_min_s": min(times["bare"]),
        "ratio": median(times["cli"]) / median(times["bare"]),
        "ratio_of_minima": min(times["cli"]) / min(times["bare"]),
        "imports_ms": imports,
        "runs": runs,
    }


# -- outbox --------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _requeue(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE records SET state = 'pending', receipt = NULL, sent_at = NULL, attempts = 0")
    conn.close()


@contextlib.contextmanager
def _endpoint(role: str, folder: Path) -> Iterator[str]:
    port = _free_port()
    args = [str(folder / f"store-{port}"), str(port)] if role == "receiver" else [str(port)]
    child = outbox_bench.start(role, *args)
    try:
        url = f"http://127.0.0.1:{port}"
        outbox_bench.wait_until_up(url)
        yield url
    finally:
        child.terminate()
        child.wait(10)


def outbox_flush(settings: Settings) -> dict[str, Any]:
    """Flush rates and peak memory for each queue size (the flushing process runs alone, see outbox_bench)."""
    os.environ[outbox_bench.TOKEN_ENV] = secrets.token_hex(16)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for size in settings.queue_sizes:
            path = folder / f"outbox-{size}.sqlite3"
            started = time.perf_counter()
            outbox_bench.fill_outbox(path, size)
            filled = time.perf_counter() - started
            row: dict[str, Any] = {"queued": size, "fill_s": filled}
            limit = min(size, settings.reference_limit)
            with _endpoint("receiver", folder) as url:
                row["reference_batch"] = outbox_bench.run_flush(path, url, limit, 100)
            _requeue(path)
            if size == settings.queue_sizes[0]:
                with _endpoint("receiver", folder) as url:
                    row["reference_single"] = outbox_bench.run_flush(path, url, limit // 5, 1)
                _requeue(path)
            with _endpoint("stub", folder) as url:
                row["stub_batch_all"] = outbox_bench.run_flush(path, url, size, 100)
            figures[str(size)] = row
    return figures


# -- report --------------------------------------------------------------------------------------------------


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 0.1 else f"{seconds * 1000:.0f} ms"


def _mark(ok: bool) -> str:
    return "met" if ok else "missed"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def budget(run: dict[str, Any]) -> dict[str, float]:
    """Where a run's time went: bytes on the serial line, ECUs answering, and the rest.

    The rest is the adapter listening for its timer after answers of unknown length, adapter commands
    (each answered at once) and the host's own work.
    """
    wire = (run["bytes_out"] + run["bytes_in"]) * 10 / BAUD
    ecus = run["requests"] * ECU_MS / 1000
    return {"wire_s": wire, "ecu_s": ecus, "rest_s": run["wall_s"] - wire - ecus}


def report(figures: dict[str, Any]) -> str:
    """The Markdown the README takes verbatim, and the notes that explain it."""
    check, minimum, common = figures["check"], figures["minimum_full"], figures["common"]
    common_min, connect, cli = figures["minimum_common"], figures["connect"], figures["cli"]
    pyobd_auto, pyobd_tp = figures["python_obd_auto"], figures["python_obd_protocol"]
    remembered, first = check["remembered"], check["first_connect"]
    ratio = remembered["wall_s"] / minimum["total_s"]
    speedup_first = pyobd_auto["wall_s"] / common["first_connect"]["wall_s"]
    speedup_known = pyobd_tp["wall_s"] / common["remembered"]["wall_s"]
    spent = budget(remembered)
    runs = figures["settings"]["check_runs"]
    lines = [
        f"Link: emulated ELM327 v1.5 on a pseudo-terminal at {BAUD} baud, ECUs answering in {ECU_MS:.0f} ms, "
        f"virtual car '{SCENARIO}' (2 ECUs, CAN 11/500). obdtool figures are medians of {runs} runs.",
        "",
        _row("Measure", "obdtool", "Physical minimum", "python-OBD 0.7.3", "Target", ""),
        "|---|---|---|---|---|---|",
        _row(
            "Full pre-service check, protocol remembered (connect + read-out)",
            f"{_s(remembered['wall_s'])}: {remembered['requests']} requests, "
            f"{remembered['bytes_out']} B out, {remembered['bytes_in']} B in",
            f"{_s(minimum['total_s'])}: {minimum['requests']} requests, "
            f"{minimum['bytes_out']} B out, {minimum['bytes_in']} B in",
            "-",
            f"<= 1.5x minimum: {ratio:.2f}x",
            _mark(ratio <= 1.5),
        ),
        _row(
            "Full pre-service check, first connect (protocol search)",
            f"{_s(first['wall_s'])}: {first['requests']} requests",
            _s(minimum["total_s"]),
            "-",
            "-",
            "",
        ),
        _row(
            "Common items (connect, VIN, 03, 07, CALID, CVN, 7 PIDs), first connect",
            _s(common["first_connect"]["wall_s"]),
            _s(common_min["total_s"]),
            f"{_s(pyobd_auto['wall_s'])} (automatic search; connect {_s(pyobd_auto['connect_s'])})",
            f">= 5x faster: {speedup_first:.1f}x",
            _mark(speedup_first >= 5),
        ),
        _row(
            "Common items, protocol known",
            _s(common["remembered"]["wall_s"]),
            _s(common_min["total_s"]),
            f"{_s(pyobd_tp['wall_s'])} (protocol given; connect {_s(pyobd_tp['connect_s'])})",
            f">= 5x faster: {speedup_known:.1f}x",
            _mark(speedup_known >= 5),
        ),
        _row(
            "Connect, first (empty protocol memory)",
            _s(connect["first_s"]),
            "-",
            _s(pyobd_auto["connect_s"]),
            "-",
            "",
        ),
        _row(
            "Connect, protocol remembered",
            _s(connect["remembered_s"]),
            "-",
            _s(pyobd_tp["connect_s"]),
            "<= 0.5 s",
            _mark(connect["remembered_s"] <= 0.5),
        ),
        _row(
            f"`{cli['command']}` against `python -c pass` (median of {cli['runs']})",
            _s(cli["cli_s"]),
            f"{_s(cli['bare_s'])} (bare interpreter)",
            "-",
            f"<= 2x: {cli['ratio']:.2f}x (fastest runs: {cli['ratio_of_minima']:.2f}x)",
            _mark(cli["ratio"] <= 2),
        ),
    ]
    for size, row in figures["outbox"].items():
        batch, stub = row["reference_batch"], row["stub_batch_all"]
        queued = f"{int(size):,} queued"
        lines.append(
            _row(
                f"Outbox flush, {queued}, to the reference receiver (first {batch['records']:,}, "
                "batches of 100)",
                f"{batch['records_per_s']:,.0f} records/s",
                "-",
                "-",
                ">= 1,000/s",
                _mark(batch["records_per_s"] >= 1000),
            )
        )
        if "reference_single" in row:
            single = row["reference_single"]
            lines.append(
                _row(
                    f"Outbox flush, {queued}, to the reference receiver, one POST per record",
                    f"{single['records_per_s']:,.0f} records/s",
                    "-",
                    "-",
                    "-",
                    "",
                )
            )
        lines.append(
            _row(
                f"Outbox flush, {queued}, whole queue to an endpoint that checks nothing",
                f"{stub['records_per_s']:,.0f} records/s; peak RSS {stub['peak_rss_kib'] / 1024:.0f} MiB",
                "-",
                "-",
                ">= 1,000/s",
                _mark(stub["records_per_s"] >= 1000),
            )
        )
    sizes = list(figures["outbox"].values())
    if len(sizes) >= 2:
        small, large = (sizes[i]["stub_batch_all"]["peak_rss_kib"] for i in (0, -1))
        lines.append(
            _row(
                f"Peak RSS of the flushing process (ru_maxrss), {sizes[0]['queued']:,} vs "
                f"{sizes[-1]['queued']:,} queued",
                f"{small / 1024:.0f} MiB vs {large / 1024:.0f} MiB",
                "-",
                "-",
                "flat",
                _mark(large <= small * 1.1),
            )
        )
    lines += [
        "",
        f"Physical minimum: for each essential request, (request + printed answer) bytes x 10 bits at {BAUD} "
        f"baud, plus the ECUs' {ECU_MS:.0f} ms. Essential for the full check: "
        + ", ".join(f"{r['request']} ({r['why']})" for r in minimum["detail"])
        + ". Not essential: supported-PID/InfoType bitmaps, AT commands, waits for the adapter's timer.",
        f"obdtool's full check (remembered protocol) spent {_s(spent['wire_s'])} on the serial line, "
        f"{_s(spent['ecu_s'])} with ECUs answering, {_s(spent['rest_s'])} otherwise (the adapter listening "
        f"for its timer after answers of unknown length, adapter commands, the host). Sent without a "
        f"response count, because nobody can know their answers' length beforehand: "
        f"{', '.join(remembered['requests_without_count']) or 'none'}; "
        f"{remembered['requests_with_count']} of {remembered['requests']} requests carry one.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer runs and smaller outboxes (about a minute)"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "test-output" / "bench.json", help="figures file")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL

    def step(what: str) -> None:
        print(f"- {what}", file=sys.stderr, flush=True)

    figures: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "system": platform.platform(),
        },
        "settings": {**settings.__dict__, "scenario": SCENARIO, "baud": BAUD, "ecu_ms": ECU_MS},
    }
    step("physical minimum")
    figures["minimum_full"] = physical_minimum(full=True)
    figures["minimum_common"] = physical_minimum(full=False)
    step("obdtool: full pre-service check")
    figures["check"] = ours(full_check, settings.check_runs)
    step("obdtool: common items")
    figures["common"] = ours(common_items, settings.check_runs)
    step("obdtool: connect")
    figures["connect"] = connects(settings.check_runs)
    step("python-OBD: automatic protocol search")
    figures["python_obd_auto"] = python_obd(settings.pyobd_runs, None)
    step("python-OBD: protocol given")
    figures["python_obd_protocol"] = python_obd(settings.pyobd_runs, "6")
    step("CLI start-up")
    figures["cli"] = cli_startup(settings.cli_runs)
    step("outbox flush")
    figures["outbox"] = outbox_flush(settings)
    table = report(figures)
    figures["markdown"] = table
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(table)
    print(f"\nfigures written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
