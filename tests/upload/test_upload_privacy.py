"""The API token never reaches a file, a log line, a repr or an error message, whatever happens."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from upload_support import TOKEN, MemoryKeyring, TlsFiles, files_bytes

from upload.client import UploadClient, deliver_pending
from upload.credentials import TokenStore
from upload.errors import UploadError
from upload.outbox import Outbox
from upload.receiver import ReceiverServer

MakeRecord = Callable[..., dict[str, Any]]
WRONG_TOKEN = "wrong-" + TOKEN[::-1]


def _all_text(error: BaseException) -> str:
    """Message, repr and the whole chained traceback of an error."""
    return "".join([str(error), repr(error), *traceback.format_exception(error)])


def test_token_stays_out_of_files_logs_and_errors(
    tmp_path: Path,
    tls: TlsFiles,
    memory_keyring: MemoryKeyring,
    make_record: MakeRecord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, including httpx and httpcore
    errors: list[UploadError] = []
    with ReceiverServer(tmp_path / "store", TOKEN, certfile=tls.certfile) as receiver:
        store = TokenStore.for_endpoint(receiver.url)
        store.set(TOKEN)
        outbox_path = tmp_path / "data" / "outbox.sqlite3"
        with Outbox(outbox_path) as outbox:
            ids = [outbox.add(make_record()) for _ in range(3)]
            bad = make_record()
            bad["vehicle"]["customer_name"] = "x"  # reaches the server only by direct send below

            # A wrong token: auth error noted in the outbox.
            with UploadClient(receiver.url, WRONG_TOKEN, ca_file=tls.ca_file, sleep=lambda s: None) as client:
                report = deliver_pending(outbox, client)
                assert report.stopped_by is not None
                errors.append(report.stopped_by)
                assert WRONG_TOKEN not in repr(client)

            # The right token from the keyring, through a flaky server and a refusal.
            receiver.faults.fail_next = 1
            receiver.faults.reset_next = 1
            with UploadClient(
                receiver.url, store.require(), ca_file=tls.ca_file, sleep=lambda s: None, max_attempts=5
            ) as client:
                report = deliver_pending(outbox, client)
                assert report.sent == 3
                try:
                    client.send(bad)
                except UploadError as exc:
                    errors.append(exc)
                receiver.faults.fail_next = 10
                try:
                    client.send(make_record())
                except UploadError as exc:
                    errors.append(exc)
                for text in (repr(client), str(client), repr(store), str(store), repr(receiver)):
                    assert TOKEN not in text
            assert [outbox.get(record_id).state for record_id in ids] == ["sent"] * 3
            assert outbox.get(ids[0]).last_error is None

        # Other processes' view: the outbox and the receiver's store on disk.
        for secret in (TOKEN, WRONG_TOKEN):
            assert secret.encode() not in files_bytes(outbox_path, receiver.store_path)
    assert len(errors) == 3
    for error in errors:
        for secret in (TOKEN, WRONG_TOKEN):
            assert secret not in _all_text(error)
    for secret in (TOKEN, WRONG_TOKEN):
        assert secret not in caplog.text
        for record in caplog.records:
            assert secret not in repr(record.args)
    assert "Authorization" not in caplog.text
