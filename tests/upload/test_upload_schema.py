"""The record schema: examples validate, non-vehicle data is refused, a refusal carries no values."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from upload_support import load_example

from upload.errors import RecordInvalidError
from upload.schema import SCHEMA_FILE, SCHEMA_VERSION, load_schema, validate_record


def _invalid(record: dict[str, Any]) -> RecordInvalidError:
    with pytest.raises(RecordInvalidError) as caught:
        validate_record(record)
    return caught.value


def _edited(edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    record = copy.deepcopy(load_example())
    edit(record)
    return record


@pytest.mark.parametrize("name", ["visit-example.json", "clear-example.json"])
def test_examples_are_valid(name: str) -> None:
    validate_record(load_example(name))


def test_schema_is_package_data_and_cached() -> None:
    text = resources.files("upload").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    assert json.loads(text) == load_schema()
    assert load_schema() is load_schema()
    assert load_schema()["properties"]["schema_version"]["const"] == SCHEMA_VERSION == "1.0"
    assert load_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def _object_schemas(node: object, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node or "patternProperties" in node:
            yield where, node
        for key, value in node.items():
            yield from _object_schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _object_schemas(value, f"{where}/{index}")


def test_every_object_level_forbids_unlisted_properties() -> None:
    checked = 0
    for where, node in _object_schemas(load_schema()):
        if "/if" in where or "/then" in where or "/else" in where:
            continue  # conditions refine an object already closed elsewhere
        assert "additionalProperties" in node, where
        if "properties" in node or "patternProperties" in node:
            assert node["additionalProperties"] is False, where
        else:  # free-form maps: keys restricted by propertyNames, values by a schema
            assert "propertyNames" in node, where
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda r: r.__setitem__("customer_name", "Erika Mustermann"), "$.customer_name"),
        (lambda r: r["vehicle"].__setitem__("customer_name", "Erika Mustermann"), "$.vehicle.customer_name"),
        (lambda r: r["vehicle"].__setitem__("owner_phone", "+49 30 1234567"), "$.vehicle.owner_phone"),
        (lambda r: r["ecus"][0].__setitem__("email", "owner@example.com"), "$.ecus[0].email"),
        (lambda r: r["mileage"].__setitem__("address", "Hauptstr. 1"), "$.mileage.address"),
        (lambda r: r["obfcm"].__setitem__("position", [52.5, 13.4]), "$.obfcm.position"),
        (lambda r: r["adapter"].__setitem__("gps", "52.5,13.4"), "$.adapter.gps"),
        (lambda r: r["tool"].__setitem__("user", "tech1"), "$.tool.user"),
        (lambda r: r["ecus"][0]["dtcs"][0].__setitem__("note", "x"), "$.ecus[0].dtcs[0].note"),
        (lambda r: r["ecus"][0]["software"].__setitem__("owner", "x"), "$.ecus[0].software.owner"),
        (lambda r: r["obfcm"]["ecus"][0]["itid17"].__setitem__("gps", 1), "$.obfcm.ecus[0].itid17.gps"),
    ],
)
def test_personal_fields_are_refused_with_their_path(
    edit: Callable[[dict[str, Any]], object], path: str
) -> None:
    error = _invalid(_edited(edit))
    assert error.path == path
    assert "not part of the record" in error.reason
    assert str(error).startswith("The record is not valid at ")


_LISTED = set(load_schema()["properties"])


@given(st.text(min_size=1, max_size=30).filter(lambda name: name not in _LISTED))
def test_any_unlisted_top_level_field_is_refused(name: str) -> None:
    record = load_example()
    record[name] = "x"
    assert _invalid(record).path == f"$.{name}"


def test_refused_obfcm_cannot_carry_values() -> None:
    record = _edited(lambda r: r["obfcm"].__setitem__("state", "refused"))
    error = _invalid(record)
    assert error.path == "$.obfcm.ecus"
    assert "refused" in error.reason
    record["obfcm"]["ecus"] = []
    validate_record(record)


def test_clear_report_only_on_clear_records() -> None:
    clear = load_example("clear-example.json")
    assert _invalid(_edited(lambda r: r.__setitem__("clear", clear["clear"]))).path == "$.clear"
    as_visit = copy.deepcopy(clear)
    as_visit["kind"] = "visit"
    assert _invalid(as_visit).path == "$.clear"
    no_report = copy.deepcopy(clear)
    no_report["clear"] = None
    assert "clear" in _invalid(no_report).reason


@pytest.mark.parametrize("vin", ["WVWZZZ1KZ8W000001", "1HGCM82633A004352", None])
def test_vin_accepted(vin: str | None) -> None:
    validate_record(_edited(lambda r: r["vehicle"].__setitem__("vin", vin)))


@pytest.mark.parametrize(
    "vin", ["WVWZZZ1KZ8W00000I", "WVWZZZ1KZ8W00000O", "wvwzzz1kz8w000001", "WVWZZZ1KZ8W0000", ""]
)
def test_vin_refused(vin: str) -> None:
    assert _invalid(_edited(lambda r: r["vehicle"].__setitem__("vin", vin))).path == "$.vehicle.vin"


@pytest.mark.parametrize(
    "stamp", ["2025-03-14T09:26:53Z", "2025-03-14T09:26:53.5Z", "2025-12-31T23:59:60.123456Z"]
)
def test_utc_timestamps_accepted(stamp: str) -> None:
    validate_record(_edited(lambda r: r.__setitem__("created_at", stamp)))


@pytest.mark.parametrize(
    "stamp",
    ["2025-03-14T09:26:53+01:00", "2025-03-14 09:26:53Z", "2025-13-14T09:26:53Z", "2025-03-14T09:26Z", ""],
)
def test_non_utc_or_malformed_timestamps_refused(stamp: str) -> None:
    error = _invalid(_edited(lambda r: r.__setitem__("created_at", stamp)))
    assert error.path == "$.created_at"
    assert "RFC 3339" in error.reason


@pytest.mark.parametrize("code", ["P0301", "C1234", "B0A1F", "U0100-00", "P2BAC-1F"])
def test_dtc_codes_accepted(code: str) -> None:
    validate_record(_edited(lambda r: r["ecus"][0]["dtcs"][0].__setitem__("code", code)))


@pytest.mark.parametrize("code", ["X0301", "P030", "p0301", "P0301-0", "P0301-000", "P03G1"])
def test_dtc_codes_refused(code: str) -> None:
    assert _invalid(_edited(lambda r: r["ecus"][0]["dtcs"][0].__setitem__("code", code))).path.endswith(
        ".code"
    )


def test_uds_identification_keys_are_limited_to_f18x_f19x() -> None:
    validate_record(
        _edited(lambda r: r["ecus"][0]["software"]["uds_identification"].__setitem__("F19E", "x"))
    )
    error = _invalid(
        _edited(lambda r: r["ecus"][0]["software"]["uds_identification"].__setitem__("F200", "x"))
    )
    assert error.path == "$.ecus[0].software.uds_identification.F200"


def test_missing_required_field_is_named() -> None:
    error = _invalid(_edited(lambda r: r["vehicle"].pop("vin")))
    assert error.path == "$.vehicle.vin"
    assert error.reason == "this property is required"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_refused(value: float) -> None:
    assert _invalid(_edited(lambda r: r["mileage"].__setitem__("km", value))).path == "$.mileage.km"


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda r: r.__setitem__("schema_version", "2.0"), "$.schema_version"),
        (lambda r: r.__setitem__("record_id", "not-a-uuid"), "$.record_id"),
        (lambda r: r.__setitem__("record_id", "3F2B8C1E-6D4A-4F0B-9A7E-2C5D8E1F0A93"), "$.record_id"),
        (lambda r: r.__setitem__("workshop_id", "Werkstatt Müller"), "$.workshop_id"),
        (lambda r: r["adapter"].__setitem__("kind", "usb"), "$.adapter.kind"),
        (lambda r: r["mileage"].__setitem__("km", -1), "$.mileage.km"),
        (lambda r: r["ecus"][0].__setitem__("address", "7e8"), "$.ecus[0].address"),
        (lambda r: r["ecus"][0]["dtcs"][0].__setitem__("uds_status", 256), "$.ecus[0].dtcs[0].uds_status"),
        (lambda r: r["obfcm"]["ecus"][0]["raw"][0].__setitem__("itid", "18"), "$.obfcm.ecus[0].raw[0].itid"),
        (
            lambda r: r["obfcm"]["ecus"][0]["raw"][0].__setitem__("raw_hex", "49 17"),
            "$.obfcm.ecus[0].raw[0].raw_hex",
        ),
        (lambda r: r["ecus"][0]["readings"].__setitem__("Owner Name", "x"), "$.ecus[0].readings"),
        (lambda r: r["ecus"][0]["readings"].__setitem__("owner_name", "x"), "$.ecus[0].readings"),
        (
            lambda r: r["ecus"][0]["freeze_frame"]["values"].__setitem__("gps_lat", 52.5),
            "$.ecus[0].freeze_frame.values",
        ),
    ],
)
def test_field_constraints(edit: Callable[[dict[str, Any]], object], path: str) -> None:
    error = _invalid(_edited(edit))
    assert error.path == path
    assert len(str(error)) < 400


def test_non_object_record_refused() -> None:
    with pytest.raises(RecordInvalidError) as caught:
        validate_record([])  # type: ignore[arg-type]
    assert caught.value.path == "$"
