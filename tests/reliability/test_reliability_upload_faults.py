"""Upload faults against the reference receiver: nothing lost, nothing stored twice, nothing refused sent.

The CLI runs in its own process with its configuration in the environment (``OBDTOOL_ENDPOINT``,
``OBDTOOL_WORKSHOP_ID``, ``OBDTOOL_DATA_DIR``, ``OBDTOOL_CONFIG``, ``OBDTOOL_CA_FILE``) and its token from
``EnvKeyring`` (see ``reliability_support``), so the user's own keyring and files are never touched.
"""

from __future__ import annotations

import json
import os
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    LEDGER,
    PETROL_VIN,
    ROOT,
    TOKEN_ENV,
    cli_env,
    example_record,
    has_traceback,
    make_tls,
    note_run,
    one_error_line,
    run_cli,
)

from upload.client import UploadClient, deliver_pending
from upload.outbox import Outbox
from upload.receiver import Faults, ReceiverServer

TOKEN = "tok-" + secrets.token_hex(12)


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    return make_tls(tmp_path / "tls")


@pytest.fixture
def receiver(tmp_path: Path, tls: tuple[Path, Path]) -> Iterator[ReceiverServer]:
    server = ReceiverServer(tmp_path / "receiver", TOKEN, certfile=tls[1])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path: Path, receiver: ReceiverServer, tls: tuple[Path, Path]) -> dict[str, str]:
    return cli_env(tmp_path, OBDTOOL_ENDPOINT=receiver.url, OBDTOOL_CA_FILE=str(tls[0]), **{TOKEN_ENV: TOKEN})


def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "outbox.sqlite3"


def pending_records(tmp_path: Path, count: int) -> list[str]:
    with Outbox(outbox_path(tmp_path)) as box:
        return [box.add(example_record()) for _ in range(count)]


def states(tmp_path: Path) -> dict[str, int]:
    with Outbox(outbox_path(tmp_path)) as box:
        return {state: box.count(state) for state in ("pending", "sent", "rejected", "held")}


def test_flaky_receiver_gets_every_record_exactly_once(
    tmp_path: Path, receiver: ReceiverServer, env: dict[str, str]
) -> None:
    ids = pending_records(tmp_path, 4)
    receiver.faults = Faults(fail_next=1, throttle_next=1, retry_after=0.1)
    for kind in ("http-500", "http-429-retry-after"):
        LEDGER.fault(f"upload:{kind}")
    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sent 4, already there 0, rejected 0, still pending 0"
    received = receiver.received_ids()
    assert sorted(received) == sorted(ids)
    assert states(tmp_path)["sent"] == 4
    LEDGER.delivery(expected=set(ids), received=received, posts=receiver.post_count)


def test_check_uploads_through_a_failing_server(
    tmp_path: Path, receiver: ReceiverServer, env: dict[str, str]
) -> None:
    LEDGER.fault("upload:http-500")
    receiver.faults = Faults(fail_next=1)
    done = run_cli("check", "--adapter", "sim:petrol", "--obfcm", "accepted", "--json", env=env)
    assert done.returncode == 1, done.stderr  # faults in the car; the upload itself succeeded
    doc = json.loads(done.stdout)
    assert doc["upload"]["sent"] == 1 and doc["upload"]["error"] is None
    assert receiver.received_ids() == [doc["record_id"]]
    assert receiver.received(doc["record_id"])["vehicle"]["vin"] == PETROL_VIN
    LEDGER.delivery(expected={doc["record_id"]}, received=receiver.received_ids(), posts=receiver.post_count)


def _faults(mode: str, **values: Any) -> Faults:
    """Receiver faults for one delivery mode: ``batch`` (the client's default) or ``single`` records."""
    if mode == "single" and "no_batch" in {f.name for f in fields(Faults)}:
        values["no_batch"] = True  # an endpoint without the batch path: one POST per record
    return Faults(**values)


@pytest.mark.parametrize("mode", ["batch", "single"])
def test_resets_lost_answers_and_errors_in_a_row_lose_nothing_and_store_nothing_twice(
    tmp_path: Path, receiver: ReceiverServer, tls: tuple[Path, Path], mode: str
) -> None:
    ids = pending_records(tmp_path, 6)
    # In the receiver's order: 2 resets, 2 x 500, one 429 (Retry-After 30 s), then 2 answers lost.
    receiver.faults = _faults(
        mode, fail_next=2, reset_next=2, lose_answer_next=2, throttle_next=1, retry_after=30
    )
    for kind, count in (("http-500", 2), ("connection-reset", 2), ("answer-lost-after-storing", 2)):
        LEDGER.fault(f"upload:{kind}", count)
    LEDGER.fault("upload:http-429-retry-after")
    waits: list[float] = []
    with (
        Outbox(outbox_path(tmp_path)) as box,
        UploadClient(receiver.url, TOKEN, ca_file=tls[0], sleep=waits.append, max_attempts=10) as client,
    ):
        report = deliver_pending(box, client)
    assert (report.sent, report.remaining, report.stopped_by) == (6, 0, None)
    assert report.duplicates >= 1  # the copies whose answers were lost came back as "already there"
    assert 30.0 in waits  # Retry-After honoured (and not slept here)
    received = receiver.received_ids()
    assert sorted(received) == sorted(ids)
    LEDGER.delivery(expected=set(ids), received=received, posts=receiver.post_count)


def test_timeouts_are_retried_and_the_late_first_copy_is_not_stored_twice(
    tmp_path: Path, receiver: ReceiverServer, tls: tuple[Path, Path]
) -> None:
    LEDGER.fault("upload:timeout", 2)
    ids = pending_records(tmp_path, 2)
    receiver.faults = Faults(delay=0.6)
    timeouts: list[float] = []

    def sleep(seconds: float) -> None:  # after two timed-out attempts the server becomes quick again
        timeouts.append(seconds)
        if len(timeouts) >= 2:
            receiver.faults.delay = 0.0

    with (
        Outbox(outbox_path(tmp_path)) as box,
        UploadClient(receiver.url, TOKEN, ca_file=tls[0], timeout=0.25, sleep=sleep) as client,
    ):
        report = deliver_pending(box, client)
    time.sleep(0.7)  # let the slow first copies land at the receiver
    assert len(timeouts) >= 2 and report.sent == 2 and report.remaining == 0
    received = receiver.received_ids()
    assert sorted(received) == sorted(ids)  # each once, although some arrived twice
    LEDGER.delivery(expected=set(ids), received=received, posts=receiver.post_count)


def test_certificate_that_does_not_verify_is_refused_and_nothing_is_sent(
    tmp_path: Path, env: dict[str, str]
) -> None:
    LEDGER.fault("upload:tls-untrusted-certificate")
    _, foreign_cert = make_tls(tmp_path / "foreign")  # a server certificate from a CA we do not trust
    ids = pending_records(tmp_path, 2)
    with ReceiverServer(tmp_path / "impostor", TOKEN, certfile=foreign_cert) as impostor:
        done = run_cli("upload", env={**env, "OBDTOOL_ENDPOINT": impostor.url})
        assert done.returncode == 4
        line = one_error_line(done.stderr)
        assert "certificate" in line and "records stay in the outbox" in line
        assert impostor.post_count == 0 and impostor.received_ids() == []
    assert states(tmp_path)["pending"] == len(ids)
    LEDGER.outcomes["records refused by TLS and kept pending"] += len(ids)


def test_killed_during_upload_then_restarted_delivers_every_record_once(
    tmp_path: Path, receiver: ReceiverServer, env: dict[str, str]
) -> None:
    LEDGER.fault("upload:process-killed")
    ids = pending_records(tmp_path, 5)
    receiver.faults = Faults(delay=0.3)  # each POST waits before the records are stored and answered
    process = subprocess.Popen(
        [sys.executable, "-m", "obdtool.cli", "upload"],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while receiver.post_count < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert receiver.post_count >= 1
        time.sleep(0.1)
        process.send_signal(signal.SIGKILL)  # mid-flight: the receiver is still handling the POST
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL and not has_traceback(err)
    time.sleep(0.5)  # the receiver finishes the POST the killed process left behind
    before = states(tmp_path)
    assert before["sent"] < 5 and before["sent"] + before["pending"] == 5  # nothing lost locally either
    receiver.faults.delay = 0.0
    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    received = receiver.received_ids()
    assert sorted(received) == sorted(ids)
    assert states(tmp_path)["sent"] == 5
    LEDGER.delivery(expected=set(ids), received=received, posts=receiver.post_count)


# -- the local disk ---------------------------------------------------------------------------------------


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_full_disk_when_the_record_is_saved_is_reported_and_not_claimed(tmp_path: Path) -> None:
    """The write-ahead log cannot grow (the kernel refuses, as on a full disk) after the read-out."""
    LEDGER.fault("upload:disk-full")
    box = Outbox(outbox_path(tmp_path))
    try:
        box._connection().execute("PRAGMA wal_autocheckpoint=0")  # the log keeps its frames
        for _ in range(8):
            box.add(example_record())
        limit = Path(f"{outbox_path(tmp_path)}-wal").stat().st_size
        env = {**os.environ, **cli_env(tmp_path)}
        done = subprocess.run(
            [sys.executable, "-m", "obdtool.cli", "check", "--adapter", "sim:petrol", "--obfcm", "refused"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=_limit_file_size(limit),
            check=False,
        )
        note_run(done.returncode, done.stdout, done.stderr)
        assert done.returncode == 5
        line = one_error_line(done.stderr)
        assert "Could not save the record" in line and "Nothing was saved" in line
        assert box.count() == 8
    finally:
        box.close()
    LEDGER.outcomes["records not claimed saved on a full disk"] += 1


def _immutable(path: Path) -> bool:
    chattr = shutil.which("chattr")
    return chattr is not None and subprocess.run([chattr, "+i", str(path)], check=False).returncode == 0


@pytest.mark.parametrize("where", ["existing-outbox", "missing-folder"])
def test_read_only_data_folder_is_reported_before_the_car_is_read(tmp_path: Path, where: str) -> None:
    LEDGER.fault("upload:read-only-data-folder")
    folder = tmp_path / "data"
    Outbox(outbox_path(tmp_path)).close()
    data_dir = folder if where == "existing-outbox" else folder / "sub"
    if os.geteuid() != 0:
        folder.chmod(0o500)
    elif not _immutable(folder):
        pytest.skip("running as root without chattr: no way to make a folder read-only")
    try:
        done = run_cli(
            "check",
            "--adapter",
            "sim:petrol",
            "--obfcm",
            "refused",
            env=cli_env(tmp_path, OBDTOOL_DATA_DIR=str(data_dir)),
        )
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        folder.chmod(0o700)
    assert done.returncode == 5
    line = one_error_line(done.stderr)
    assert "damaged" not in line and ("Nothing was saved" in line or "nothing was saved" in line)
    assert done.stdout == ""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["batch", "single"])
def test_soak_killed_again_and_again_then_everything_arrives_once(
    tmp_path: Path, receiver: ReceiverServer, env: dict[str, str], mode: str
) -> None:
    ids = pending_records(tmp_path, 40)
    receiver.faults = _faults(mode, delay=0.05)
    rng = random.Random(mode)
    for _ in range(10):
        LEDGER.fault("upload:process-killed-soak")
        process = subprocess.Popen(
            [sys.executable, "-m", "obdtool.cli", "upload"],
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(rng.uniform(0.3, 1.2))
        process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=10)
        assert not has_traceback(err)
    time.sleep(0.3)
    receiver.faults.delay = 0.0
    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    received = receiver.received_ids()
    assert sorted(received) == sorted(ids)
    assert states(tmp_path)["sent"] == 40
    LEDGER.delivery(expected=set(ids), received=received, posts=receiver.post_count)
