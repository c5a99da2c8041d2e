"""The reference receiver's HTTP contract, spoken to with a plain httpx client over real TLS."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from upload_support import TOKEN, TlsFiles

from upload.receiver import Faults, ReceiverServer, parse_faults

MakeRecord = Callable[..., dict[str, Any]]


@pytest.fixture
def http(receiver: ReceiverServer, tls: TlsFiles) -> Iterator[httpx.Client]:
    import ssl

    context = ssl.create_default_context(cafile=str(tls.ca_file))
    with httpx.Client(base_url=receiver.url, verify=context, timeout=5.0, trust_env=False) as client:
        yield client


def _auth(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", **extra}


def _post(http: httpx.Client, record: dict[str, Any], **headers: str) -> httpx.Response:
    merged = _auth(**{"Idempotency-Key": record.get("record_id", ""), "Content-Type": "application/json"})
    merged.update(headers)
    return http.post("/v1/records", content=json.dumps(record), headers=merged)


def test_health_needs_no_token(http: httpx.Client) -> None:
    response = http.get("/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "schema_version": "1.0"}


def test_post_then_read_back(http: httpx.Client, make_record: MakeRecord) -> None:
    record = make_record()
    created = _post(http, record)
    assert created.status_code == 201
    receipt = created.json()
    assert set(receipt) == {"receipt_id", "received_at"}
    assert receipt["received_at"].endswith("Z")
    assert created.headers["Cache-Control"] == "no-store"

    again = _post(http, record)
    assert again.status_code == 200
    assert again.json() == receipt

    listing = http.get("/v1/records", headers=_auth())
    assert listing.json() == {"record_ids": [record["record_id"]]}
    one = http.get(f"/v1/records/{record['record_id']}", headers=_auth())
    assert one.status_code == 200
    assert one.json() == {"record_id": record["record_id"], **receipt, "record": record}


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"bearer  {TOKEN}z"],
)
def test_token_is_required(http: httpx.Client, make_record: MakeRecord, authorization: str | None) -> None:
    record = make_record()
    headers = {"Idempotency-Key": record["record_id"], "Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    for response in (
        http.post("/v1/records", content=json.dumps(record), headers=headers),
        http.get("/v1/records", headers=headers),
        http.get(f"/v1/records/{record['record_id']}", headers=headers),
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["message"] == "Missing or wrong API token."


def test_idempotency_key_rules(http: httpx.Client, make_record: MakeRecord, receiver: ReceiverServer) -> None:
    record = make_record()
    missing = http.post(
        "/v1/records", content=json.dumps(record), headers=_auth(**{"Content-Type": "application/json"})
    )
    assert missing.status_code == 400
    assert "Idempotency-Key" in missing.json()["message"]
    other = _post(http, record, **{"Idempotency-Key": make_record()["record_id"]})
    assert other.status_code == 400
    assert "must equal" in other.json()["message"]
    assert receiver.received_ids() == []


def test_body_must_be_json_and_match_the_schema(http: httpx.Client, make_record: MakeRecord) -> None:
    record = make_record()
    headers = _auth(**{"Idempotency-Key": record["record_id"], "Content-Type": "application/json"})
    not_json = http.post("/v1/records", content=b"{not json", headers=headers)
    assert not_json.status_code == 422
    assert not_json.json()["path"] == "$"
    nan = http.post("/v1/records", content=json.dumps(record).replace("84215.3", "NaN", 1), headers=headers)
    assert nan.status_code == 422
    record["vehicle"]["customer_name"] = "Erika Mustermann"
    invalid = _post(http, record)
    assert invalid.status_code == 422
    assert invalid.json()["path"] == "$.vehicle.customer_name"
    assert "$.vehicle.customer_name" in invalid.json()["message"]


def test_wrong_media_type_and_unknown_routes(http: httpx.Client, make_record: MakeRecord) -> None:
    record = make_record()
    assert _post(http, record, **{"Content-Type": "text/plain"}).status_code == 415
    assert http.get("/v2/records", headers=_auth()).status_code == 404
    assert http.get(f"/v1/records/{record['record_id']}", headers=_auth()).status_code == 404
    assert http.post("/v1/health", content=b"{}").status_code == 405
    assert http.put("/v1/records", content=b"{}", headers=_auth()).status_code == 405
    assert http.delete(f"/v1/records/{record['record_id']}", headers=_auth()).status_code == 405
    assert http.post("/elsewhere", content=b"{}").status_code == 404


def test_conflicting_record_under_a_known_id(http: httpx.Client, make_record: MakeRecord) -> None:
    record = make_record()
    assert _post(http, record).status_code == 201
    conflict = _post(http, dict(record, workshop_id="OTHER"))
    assert conflict.status_code == 409


def test_faults_are_consumed_in_order(
    http: httpx.Client, receiver: ReceiverServer, make_record: MakeRecord
) -> None:
    receiver.faults.fail_next = 1
    receiver.faults.throttle_next = 1
    receiver.faults.retry_after = 2.5
    record = make_record()
    assert _post(http, record).status_code == 500
    throttled = _post(http, record)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2.5"
    assert _post(http, record).status_code == 201
    receiver.faults.reject_all = True
    assert _post(http, make_record()).status_code == 422
    assert receiver.post_count == 4
    assert receiver.faults == Faults(retry_after=2.5, reject_all=True)


def test_store_is_durable_across_restarts(tmp_path: Path, tls: TlsFiles, make_record: MakeRecord) -> None:
    store = tmp_path / "store"
    record = make_record()
    with ReceiverServer(store, TOKEN) as first, httpx.Client(base_url=first.url, trust_env=False) as client:
        assert _post(client, record).status_code == 201
        receipt = first.receipt(record["record_id"])
    with ReceiverServer(store, TOKEN) as second, httpx.Client(base_url=second.url, trust_env=False) as client:
        again = _post(client, record)
        assert again.status_code == 200
        assert again.json() == receipt
        assert second.received_ids() == [record["record_id"]]
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE((store / "received.sqlite3").stat().st_mode) == 0o600


def test_stop_does_not_wait_for_idle_keep_alive_connections(tmp_path: Path, make_record: MakeRecord) -> None:
    server = ReceiverServer(tmp_path / "store", TOKEN).start()
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        assert client.get("/v1/health").status_code == 200  # leaves an idle keep-alive connection open
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
    assert not any(thread.name.startswith("reference-receiver") for thread in threading.enumerate())
    server.stop()  # twice is fine


def test_log_lines_name_requests_but_not_headers(
    http: httpx.Client, make_record: MakeRecord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _post(http, make_record())
    http.get("/v1/records", headers={"Authorization": "Bearer not-the-token-either"})
    assert "POST /v1/records" in caplog.text
    assert " 201" in caplog.text and " 401" in caplog.text
    assert TOKEN not in caplog.text
    assert "not-the-token-either" not in caplog.text
    assert "Authorization" not in caplog.text


def test_url_needs_a_start_and_repr_hides_the_token(tmp_path: Path) -> None:
    server = ReceiverServer(tmp_path / "store", TOKEN)
    with pytest.raises(RuntimeError):
        _ = server.url
    assert TOKEN not in repr(server)
    assert TOKEN not in repr(vars(server))
    with pytest.raises(ValueError, match="token"):
        ReceiverServer(tmp_path / "store", "")


def test_ipv6_loopback(tmp_path: Path, make_record: MakeRecord) -> None:
    try:
        server = ReceiverServer(tmp_path / "store", TOKEN, host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert server.url.startswith("http://[::1]:")
        with httpx.Client(base_url=server.url, trust_env=False) as client:
            assert _post(client, make_record()).status_code == 201
    finally:
        server.stop()


def test_parse_faults() -> None:
    assert parse_faults("") == Faults()
    assert parse_faults(
        "fail=2, throttle=1,retry-after=0.5,delay=0.1,reset=3,lose-answer=1,reject"
    ) == Faults(
        fail_next=2,
        throttle_next=1,
        retry_after=0.5,
        delay=0.1,
        reset_next=3,
        lose_answer_next=1,
        reject_all=True,
    )
    assert parse_faults("reject=no") == Faults(reject_all=False)
    with pytest.raises(ValueError, match="unknown fault"):
        parse_faults("explode=1")
    with pytest.raises(ValueError, match="needs a number"):
        parse_faults("fail=many")


def test_received_unknown_id(receiver: ReceiverServer) -> None:
    with pytest.raises(KeyError):
        receiver.received("00000000-0000-0000-0000-000000000000")
    assert receiver.received_ids() == []
    assert os.path.exists(receiver.store_path)
