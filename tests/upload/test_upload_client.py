"""UploadClient against the real reference receiver over real TLS: retries, refusals, idempotency."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from upload_support import TOKEN, SleepRecorder, TlsFiles, tls_files

from upload.client import Receipt, UploadClient, backoff_delay, check_endpoint, parse_retry_after
from upload.errors import (
    CredentialError,
    InsecureEndpointError,
    RecordInvalidError,
    TlsError,
    UploadAuthError,
    UploadError,
    UploadRejectedError,
    UploadRetryableError,
)
from upload.receiver import ReceiverServer

MakeClient = Callable[..., UploadClient]
MakeRecord = Callable[..., dict[str, Any]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- endpoint checks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://records.example.com", "https://records.example.com"),
        ("HTTPS://Records.Example.COM/api/", "https://records.example.com/api"),
        ("https://records.example.com:8443/x/y//", "https://records.example.com:8443/x/y"),
        ("  https://records.example.com  ", "https://records.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.10.20.30", "http://127.10.20.30"),
        ("http://localhost:5000/", "http://localhost:5000"),
        ("http://[::1]:5000", "http://[::1]:5000"),
        ("https://[2001:db8::1]", "https://[2001:db8::1]"),
    ],
)
def test_acceptable_endpoints(url: str, normalised: str) -> None:
    assert check_endpoint(url) == normalised


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com", "plain http"),
        ("http://10.0.0.5", "plain http"),
        ("http://localhost.example.com", "plain http"),
        ("http://[::ffff:8.8.8.8]", "plain http"),
        ("ftp://records.example.com", "https://"),
        ("records.example.com", "https://"),
        ("", "No endpoint"),
        ("https://", "no host"),
        ("https://user:password@records.example.com", "user name or password"),
        ("https://records.example.com/?token=abc", "query"),
        ("https://records.example.com/#x", "fragment"),
        ("https://records.example.com:99999", "port"),
        ("https://bad_host!.com", "not valid"),
    ],
)
def test_refused_endpoints(url: str, why: str) -> None:
    with pytest.raises(InsecureEndpointError, match=why) as caught:
        check_endpoint(url)
    assert "password" not in str(caught.value).replace("user name or password", "")


def test_plain_http_to_a_remote_host_is_refused_before_any_connection(tls: TlsFiles) -> None:
    requests: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: requests.append(request) or httpx.Response(500))
    with pytest.raises(InsecureEndpointError):
        UploadClient("http://example.com", TOKEN, transport=transport)
    assert requests == []


def test_plain_http_to_loopback_is_allowed(
    tmp_path: Path, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    with (
        ReceiverServer(tmp_path / "store", TOKEN) as plain,
        UploadClient(plain.url, TOKEN, sleep=sleeps) as client,
    ):
        assert plain.url.startswith("http://127.0.0.1:")
        record = make_record()
        receipt = client.send(record)
        assert plain.received(record["record_id"]) == record
        assert receipt.duplicate is False


def test_unusable_token_is_refused(tls: TlsFiles) -> None:
    with pytest.raises(CredentialError):
        UploadClient("https://records.example.com", "bad token\r\nX-Evil: 1")


def test_bad_ca_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(TlsError, match="CA file"):
        UploadClient("https://records.example.com", TOKEN, ca_file=missing)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(TlsError, match="CA file"):
        UploadClient("https://records.example.com", TOKEN, ca_file=not_pem)


# -- Retry-After and backoff ---------------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = datetime(2025, 3, 14, 9, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(" 0.25 ", now=now) == 0.25
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now=now) == 0.0
    for unusable in (None, "", "soon", "-3", "nan", "inf"):
        assert parse_retry_after(unusable, now=now) is None


@given(
    attempt=st.integers(min_value=1, max_value=60),
    base=st.floats(min_value=0, max_value=10),
    cap=st.floats(min_value=0, max_value=120),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_grows_stays_capped_and_jitters(attempt: int, base: float, cap: float, draw: float) -> None:
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    delay = backoff_delay(attempt, base=base, cap=cap, draw=draw)
    assert ceiling / 2 <= delay <= ceiling + 1e-9
    assert delay <= cap + 1e-9
    if attempt > 1:
        assert backoff_delay(attempt - 1, base=base, cap=cap, draw=draw) <= delay + 1e-9


def test_client_backoff_uses_its_settings() -> None:
    with UploadClient(
        "https://records.example.com", TOKEN, backoff_base=1.0, backoff_cap=5.0, jitter=lambda: 0.5
    ) as client:
        assert [client.backoff_delay(n) for n in (1, 2, 3, 4, 5)] == [0.75, 1.5, 3.0, 3.75, 3.75]


# -- delivery against the real receiver ----------------------------------------------------------------------


def test_first_delivery_is_created_and_repeat_is_a_duplicate_with_the_same_receipt(
    receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    client = make_client(receiver.url)
    record = make_record()
    first = client.send(record)
    again = client.send(record)
    assert isinstance(first, Receipt)
    assert first.duplicate is False
    assert again.duplicate is True
    assert (again.receipt_id, again.received_at) == (first.receipt_id, first.received_at)
    assert receiver.receipt(record["record_id"]) == {
        "receipt_id": first.receipt_id,
        "received_at": first.received_at,
    }
    assert receiver.received(record["record_id"]) == record
    assert receiver.received_ids() == [record["record_id"]]
    assert receiver.post_count == 2
    assert sleeps.delays == []


def test_two_server_errors_then_success(
    receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    receiver.faults.fail_next = 2
    record = make_record()
    receipt = make_client(receiver.url, jitter=lambda: 0.0).send(record)
    assert receipt.duplicate is False
    assert receiver.post_count == 3
    assert receiver.received_ids() == [record["record_id"]]
    assert sleeps.delays == [0.005, 0.01]  # base 0.01: ceilings 0.01, 0.02 with the jitter at its low end


def test_429_retry_after_is_honoured(
    receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    receiver.faults.throttle_next = 2
    receiver.faults.retry_after = 0.02
    make_client(receiver.url).send(make_record())
    assert sleeps.delays == [0.02, 0.02]
    assert receiver.post_count == 3


def test_retry_after_is_capped(
    receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    receiver.faults.throttle_next = 1
    receiver.faults.retry_after = 3600
    make_client(receiver.url, backoff_cap=0.05).send(make_record())
    assert sleeps.delays == [0.05]


def test_dropped_connection_is_retried(
    receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    receiver.faults.reset_next = 2
    record = make_record()
    receipt = make_client(receiver.url).send(record)
    assert receipt.duplicate is False
    assert receiver.post_count == 3
    assert len(sleeps.delays) == 2
    assert receiver.received_ids() == [record["record_id"]]


def test_lost_answer_is_repaired_by_idempotency(
    receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    receiver.faults.lose_answer_next = 1
    record = make_record()
    receipt = make_client(receiver.url).send(record)
    # The server stored the record but its answer was lost; the retry is recognised, not stored again.
    assert receipt.duplicate is True
    assert receipt.receipt_id == receiver.receipt(record["record_id"])["receipt_id"]
    assert receiver.post_count == 2
    assert receiver.received_ids() == [record["record_id"]]


def test_slow_server_times_out_and_the_resend_is_a_duplicate(
    receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    receiver.faults.delay = 0.3
    record = make_record()
    client = make_client(receiver.url, timeout=0.05, max_attempts=1)
    with pytest.raises(UploadRetryableError, match=r"did not answer within 0\.05 s") as caught:
        client.send(record)
    assert caught.value.status is None
    receiver.faults.delay = 0.0
    deadline = time.monotonic() + 5
    while not receiver.received_ids() and time.monotonic() < deadline:
        time.sleep(0.01)  # the slow request finishes on the server side
    receipt = client.send(record)
    assert receipt.duplicate is True
    assert receiver.received_ids() == [record["record_id"]]


def test_persistent_server_errors_exhaust_the_attempts(
    receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    receiver.faults.fail_next = 100
    with pytest.raises(UploadRetryableError, match="after 3 attempts") as caught:
        make_client(receiver.url, max_attempts=3).send(make_record())
    assert caught.value.attempts == 3
    assert caught.value.status == 500
    assert receiver.post_count == 3
    assert len(sleeps.delays) == 2
    assert receiver.received_ids() == []


def test_connection_refused_is_retryable(
    make_client: MakeClient, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    client = make_client(f"https://127.0.0.1:{_free_port()}", max_attempts=2)
    with pytest.raises(UploadRetryableError, match="could not be reached"):
        client.send(make_record())
    assert len(sleeps.delays) == 1


def test_schema_violation_is_rejected_with_the_servers_message(
    receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    record = make_record()
    record["vehicle"]["customer_name"] = "Erika Mustermann"  # the client does not validate; the server does
    with pytest.raises(UploadRejectedError) as caught:
        make_client(receiver.url).send(record)
    assert caught.value.status == 422
    assert "$.vehicle.customer_name" in caught.value.server_message
    assert "$.vehicle.customer_name" in str(caught.value)
    assert receiver.post_count == 1
    assert sleeps.delays == []
    assert receiver.received_ids() == []


def test_conflicting_body_under_a_known_id_is_rejected(
    receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord
) -> None:
    client = make_client(receiver.url)
    record = make_record()
    client.send(record)
    with pytest.raises(UploadRejectedError) as caught:
        client.send(dict(record, workshop_id="SOMEONE-ELSE"))
    assert caught.value.status == 409


def test_wrong_token_is_an_auth_error_and_not_retried(
    receiver: ReceiverServer, make_client: MakeClient, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    with pytest.raises(UploadAuthError) as caught:
        make_client(receiver.url, token="wrong-token").send(make_record())
    assert caught.value.status == 401
    assert "refused the API token" in str(caught.value)
    assert receiver.post_count == 1
    assert sleeps.delays == []
    assert receiver.received_ids() == []


def test_untrusted_certificate_is_a_tls_error_without_retry(
    tmp_path: Path,
    other_tls: TlsFiles,
    make_client: MakeClient,
    make_record: MakeRecord,
    sleeps: SleepRecorder,
) -> None:
    with ReceiverServer(tmp_path / "store", TOKEN, certfile=other_tls.certfile) as impostor:
        with pytest.raises(TlsError, match="nothing was sent") as caught:
            make_client(impostor.url).send(make_record())  # trusts only the `tls` CA
        assert "certificate" in str(caught.value)
        assert impostor.post_count == 0
        assert impostor.received_ids() == []
    assert sleeps.delays == []


def test_system_trust_store_does_not_trust_the_test_ca(
    receiver: ReceiverServer, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    with UploadClient(receiver.url, TOKEN, sleep=sleeps) as client, pytest.raises(TlsError):
        client.send(make_record())
    assert receiver.post_count == 0


def test_certificate_for_another_name_is_refused(
    tmp_path: Path, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    wrong_name = tls_files(tmp_path / "tls", "records.example.com")
    with ReceiverServer(tmp_path / "store", TOKEN, certfile=wrong_name.certfile) as server:
        with (
            UploadClient(server.url, TOKEN, ca_file=wrong_name.ca_file, sleep=sleeps) as client,
            pytest.raises(TlsError, match=r"mismatch, certificate is not valid"),
        ):
            client.send(make_record())
        assert server.post_count == 0


def test_https_to_a_plain_http_server_is_a_tls_error(
    tmp_path: Path, tls: TlsFiles, make_record: MakeRecord, sleeps: SleepRecorder
) -> None:
    with ReceiverServer(tmp_path / "store", TOKEN) as plain:
        url = plain.url.replace("http://", "https://")
        with UploadClient(url, TOKEN, ca_file=tls.ca_file, sleep=sleeps) as client, pytest.raises(TlsError):
            client.send(make_record())
    assert sleeps.delays == []


def test_record_without_id_is_not_sent(make_client: MakeClient, receiver: ReceiverServer) -> None:
    with pytest.raises(RecordInvalidError, match="record_id"):
        make_client(receiver.url).send({"kind": "visit"})
    assert receiver.post_count == 0


# -- wire details through an injected transport --------------------------------------------------------------


def test_request_headers_and_body(make_record: MakeRecord) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"receipt_id": "r-1", "received_at": "2025-03-14T10:00:00Z"})

    record = make_record()
    with UploadClient(
        "https://records.example.com/base/",
        TOKEN,
        transport=httpx.MockTransport(handler),
        tool_version="1.2.3",
    ) as client:
        assert client.send(record) == Receipt("r-1", "2025-03-14T10:00:00Z", duplicate=False)
    (request,) = seen
    assert str(request.url) == "https://records.example.com/base/v1/records"
    assert request.method == "POST"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Idempotency-Key"] == record["record_id"]
    assert request.headers["User-Agent"] == "obdtool/1.2.3"
    assert request.headers["Content-Type"] == "application/json"
    import json

    assert json.loads(request.content) == record


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(301, headers={"Location": "https://elsewhere.example.com/"}), UploadError),
        (httpx.Response(403, json={"message": "uploads disabled for this workshop"}), UploadAuthError),
        (httpx.Response(404, text="<html>Not Found</html>"), UploadRejectedError),
    ],
)
def test_non_retryable_answers(
    response: httpx.Response, error: type[UploadError], make_record: MakeRecord
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return response

    with (
        UploadClient(
            "https://records.example.com",
            TOKEN,
            transport=httpx.MockTransport(handler),
            sleep=SleepRecorder(),
        ) as client,
        pytest.raises(error) as caught,
    ):
        client.send(make_record())
    assert len(calls) == 1  # neither retried nor redirected
    assert type(caught.value) is error
    assert TOKEN not in str(caught.value)


def test_server_message_is_truncated_and_token_masked(make_record: MakeRecord) -> None:
    long_message = "bad " * 500 + TOKEN

    with (
        UploadClient(
            "https://records.example.com",
            TOKEN,
            transport=httpx.MockTransport(
                lambda request: httpx.Response(400, json={"message": long_message})
            ),
        ) as client,
        pytest.raises(UploadRejectedError) as caught,
    ):
        client.send(make_record())
    assert len(caught.value.server_message) <= 300
    assert TOKEN not in str(caught.value)
    assert TOKEN not in caught.value.server_message


def test_unreadable_receipt_is_retried(make_record: MakeRecord) -> None:
    answers = iter(
        [httpx.Response(201, text="ok"), httpx.Response(200, json={"receipt_id": "r", "received_at": "t"})]
    )
    sleeps = SleepRecorder()
    with UploadClient(
        "https://records.example.com",
        TOKEN,
        transport=httpx.MockTransport(lambda request: next(answers)),
        sleep=sleeps,
    ) as client:
        assert client.send(make_record()) == Receipt("r", "t", duplicate=True)
    assert len(sleeps.delays) == 1


def test_repr_hides_the_token() -> None:
    with UploadClient("https://records.example.com", TOKEN) as client:
        assert TOKEN not in repr(client)
        assert TOKEN not in str(client)
        assert TOKEN not in repr(vars(client))
