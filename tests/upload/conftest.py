"""Shared fixtures for the upload tests: records, real TLS material, a real receiver, an in-memory keyring."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from upload_support import TOKEN, MemoryKeyring, SleepRecorder, TlsFiles, load_example, tls_files

from upload.client import UploadClient
from upload.outbox import Outbox
from upload.receiver import ReceiverServer


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    """A valid record with a fresh record_id; keyword arguments replace top-level fields, ``vin=`` the VIN."""

    def factory(*, vin: str | None = "WVWZZZ1KZ8W000001", **changes: Any) -> dict[str, Any]:
        record = copy.deepcopy(load_example())
        record["record_id"] = str(uuid.uuid4())
        record["vehicle"]["vin"] = vin
        record.update(changes)
        return record

    return factory


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A test CA and a server certificate for the loopback names, as PEM files."""
    return tls_files(tmp_path_factory.mktemp("tls"), "127.0.0.1", "localhost", "::1")


@pytest.fixture(scope="session")
def other_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A second, unrelated CA and server certificate: clients trusting ``tls`` must refuse it."""
    return tls_files(tmp_path_factory.mktemp("other-tls"), "127.0.0.1", "localhost")


@pytest.fixture
def receiver(tmp_path: Path, tls: TlsFiles) -> Iterator[ReceiverServer]:
    """A running HTTPS reference receiver on 127.0.0.1 with a fresh store."""
    server = ReceiverServer(tmp_path / "receiver-store", TOKEN, certfile=tls.certfile)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_client(tls: TlsFiles, sleeps: SleepRecorder) -> Iterator[Callable[..., UploadClient]]:
    """Build UploadClients that trust the test CA and never really sleep; all are closed afterwards."""
    clients: list[UploadClient] = []

    def factory(url: str, token: str = TOKEN, **options: Any) -> UploadClient:
        options.setdefault("ca_file", tls.ca_file)
        options.setdefault("sleep", sleeps)
        options.setdefault("timeout", 5.0)
        options.setdefault("backoff_base", 0.01)
        options.setdefault("tool_version", "0.1.0-test")
        client = UploadClient(url, token, **options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "data" / "outbox.sqlite3")
    yield box
    box.close()


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    """Install MemoryKeyring for one test and put the previous backend back afterwards."""
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)
