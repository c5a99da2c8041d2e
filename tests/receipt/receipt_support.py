"""Records for the receipt tests, built the way ``obdtool check`` builds them, and a headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from adapters import open_adapter
from obdtool.readout import ObfcmConsent, ReadOptions, read_vehicle
from obdtool.receipt import WorkshopInfo, chromium_command
from obdtool.record import build_visit_record

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"
CHROMIUM = Path("/usr/bin/chromium")
EXAMPLES = ROOT / "upload" / "examples"

PHEV_VIN = "JTMAB3FVXPD047316"
WORKSHOP_ID = "NO-OSL-0007"
WORKSHOP = WorkshopInfo(
    name="Bilservice Grünerløkka AS",
    workshop_id=WORKSHOP_ID,
    controller_contact=(
        "Bilservice Grünerløkka AS\nThorvald Meyers gate 12, 0555 Oslo\npersonvern@bilservice.example"
    ),
)
# Norwegian winter time, fixed so the tests do not depend on the machine's zone or tz database.
OSLO_WINTER = timezone(timedelta(hours=1))
DECIDED_AT = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
CREATED_AT = "2026-11-26T08:02:31Z"
SENT_AT = "2026-11-26T08:04:11.123456Z"
RECEIPT = {
    "receipt_id": "5e0f7c2a-91d3-4b6e-8f10-2c7d9a4b1e55",
    "received_at": "2026-11-26T08:04:11.020Z",
    "duplicate": False,
}

# The OBFCM values of fixtures/scenarios/phev.toml, as each receipt language prints them.
PHEV_VALUES = {
    "en": ("1,530.4 km", "28,744.6 km", "38.21 l", "655.12 l"),
    "nb": ("1\u00a0530,4 km", "28\u00a0744,6 km", "38,21 l", "655,12 l"),
}
PHEV_RAW_HEX = ("491A0100002E1800029A4C000001F4", "491B0100003A98000493E0", "491C0100000C1C0000B7A6")


def record_from_sim(scenario: str, *, refused: bool | None) -> dict[str, Any]:
    """The visit record of a simulated car, as ``obdtool check --adapter sim:<scenario>`` stores it."""
    obfcm = None if refused is None else ObfcmConsent(refused=refused, decided_at=DECIDED_AT)
    with open_adapter(f"sim:{scenario}") as adapter:
        result = read_vehicle(adapter, ReadOptions(obfcm=obfcm))
    assert result.error is None, result.error
    record = build_visit_record(result, workshop_id=WORKSHOP_ID)
    record["created_at"] = CREATED_AT  # the only field that depends on the clock
    return record


@cache
def _phev(refused: bool) -> str:
    return json.dumps(record_from_sim("phev", refused=refused))


def phev_record(*, refused: bool) -> dict[str, Any]:
    """A fresh copy of the PHEV visit record (read once per decision per test run)."""
    record: dict[str, Any] = json.loads(_phev(refused))
    return record


def example(name: str) -> dict[str, Any]:
    """One of the record examples shipped with the schema."""
    record: dict[str, Any] = json.loads((EXAMPLES / f"{name}-example.json").read_text(encoding="utf-8"))
    return record


class _Text(HTMLParser):
    """The visible text of a document: everything outside <head>, <style> and <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "style", "script", "title"):
            self._skip += 1
        elif tag in ("br", "p", "td", "th", "dt", "dd", "h1", "h2", "div", "tr"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "script", "title"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(document: str) -> str:
    """The document's text as a reader sees it, whitespace collapsed to single spaces."""
    parser = _Text()
    parser.feed(document)
    return re.sub(r"[ \t\r\n]+", " ", "".join(parser.parts)).strip()


def chromium(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    """Run headless Chromium with a fresh, throw-away profile (the receipt module's flags, no sandbox)."""
    with tempfile.TemporaryDirectory(prefix="obdtool-test-chromium-") as profile:
        command = chromium_command(str(CHROMIUM), Path(profile), *args, sandbox=False)
        return subprocess.run(command, capture_output=True, timeout=timeout, check=False)


def pdf_page_count(pdf: bytes) -> int:
    """Page objects in a PDF (``/Type /Page``, not ``/Pages``); Chromium writes them uncompressed."""
    return len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", pdf))


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
