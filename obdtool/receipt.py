"""The customer's copy: a one-page printable receipt of what was read from the car and sent on.

The owner has the right to know what the workshop read and passed to the manufacturer, and a
refusal of OBFCM must be confirmable on request. The receipt is built from the stored record
(the same JSON that goes to the manufacturer) and its outbox state, so it can only show what the
record holds: a refused OBFCM record has no values, and so neither has its receipt.

Output is one self-contained HTML document: inline CSS sized for A4, no scripts, no external
resources, every value HTML-escaped. Any browser prints it; where Chromium is installed,
:func:`html_to_pdf` makes a PDF as well. Texts come from the catalogue (:mod:`obdtool.i18n`).
Values the car reports in English only (the standard SAE fault descriptions) are shown as they
are, and the Norwegian receipt says so.
"""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final

from obdtool.consent import EXPLANATION
from obdtool.errors import ObdToolError
from obdtool.i18n import N_, Catalog, catalog, format_number

__all__ = [
    "RECEIPT_STATES",
    "RIGHTS_TEXT",
    "WorkshopInfo",
    "chromium_command",
    "default_rights_text",
    "find_renderer",
    "html_to_pdf",
    "render_receipt",
    "write_receipt",
]

RECEIPT_STATES: Final = ("pending", "sent", "rejected", "held")

RIGHTS_TEXT: Final = N_(
    "You have the right to see the data read from your car and passed on, and to get a copy of "
    "them free of charge. You may ask for wrong data to be corrected. Contact the data controller "
    "named above. You may also complain to the Norwegian Data Protection Authority (Datatilsynet)."
)

# Browsers that can print HTML to PDF headless, in order of preference.
_TITLES: Final = {
    "visit": N_("Vehicle data read-out: customer copy"),
    "clear": N_("Fault memory clearing: customer copy"),
}
_RENDERERS: Final = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_PDF_TIMEOUT_S: Final = 60.0

# What a control unit is, from the acronym before the dash of its Service 09 ECU name.
_ECU_ROLES: Final = {
    "ECM": N_("Engine control unit"),
    "PCM": N_("Engine control unit"),
    "TCM": N_("Transmission control unit"),
    "HPCM": N_("Hybrid system control unit"),
    "HCU": N_("Hybrid system control unit"),
    "HPC": N_("Hybrid system control unit"),
    "BECM": N_("Battery control unit"),
    "BMS": N_("Battery control unit"),
    "OBCM": N_("Charger control unit"),
    "ABS": N_("Brake control unit"),
}
_DTC_KINDS: Final = {
    "stored": N_("Stored (confirmed)"),
    "pending": N_("Pending (not yet confirmed)"),
    "permanent": N_("Permanent (the car clears it after the repair)"),
    "uds": N_("Manufacturer's fault memory"),
}
_CLEAR_OUTCOMES: Final = {
    "cleared": N_("The fault memory was cleared."),
    "partially_cleared": N_("The fault memory was only partly cleared; some codes remain."),
    "refused": N_("The car refused to clear its fault memory; nothing was cleared."),
    "failed": N_("The clearing could not be confirmed; the workshop will check the car again."),
}
_TRANSFER: Final = {
    "pending": N_(
        "The data listed here have not been sent yet. They wait at the workshop and go to the "
        "manufacturer at the next transfer."
    ),
    "rejected": N_(
        "The manufacturer's system did not accept the data, so they have not been sent. The "
        "workshop will follow this up."
    ),
    "held": N_(
        "At the owner's request, the data are kept at the workshop and will not be sent to the manufacturer."
    ),
}
_CONTENTS: Final = {
    "collected": N_(
        "The record holds the VIN, the mileage, the fault codes, the software versions and the "
        "consumption values shown above."
    ),
    "refused": N_(
        "The record holds the VIN, the mileage, the fault codes, the software versions and the "
        "refusal with its time, but no consumption values."
    ),
    "other": N_("The record holds the VIN, the mileage, the fault codes and the software versions."),
}

_CSS: Final = """
@page { size: A4; margin: 10mm 14mm; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; color: #111; font: 9pt/1.22 "Helvetica Neue", Arial, "Liberation Sans", "DejaVu Sans",
  sans-serif; }
@media screen { body { max-width: 182mm; margin: 8mm auto; } }
header { display: flex; justify-content: space-between; align-items: baseline; gap: 6mm;
  border-bottom: 1.5pt solid #111; padding-bottom: 1.5mm; }
h1 { font-size: 14pt; margin: 0; }
.workshop { font-size: 11pt; font-weight: 700; text-align: right; }
h2 { font-size: 10pt; margin: 2.5mm 0 0.8mm; padding-bottom: 0.3mm; border-bottom: 0.5pt solid #888;
  break-after: avoid; }
p { margin: 0 0 1mm; }
.intro { margin: 1.5mm 0 0; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 0 7mm; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.3mm 4mm; margin: 0; }
dt { font-weight: 600; }
dd { margin: 0; }
table { width: 100%; border-collapse: collapse; font-size: 8.5pt; margin: 0.5mm 0 1mm; }
th, td { text-align: left; vertical-align: top; padding: 0.5mm 1.5mm; border-bottom: 0.5pt solid #bbb; }
th { background: #e9e9e9; font-weight: 600; }
td.num, th.num { text-align: right; }
td.num { white-space: nowrap; }
td.unit { white-space: nowrap; }
.code, .mono { font-family: "DejaVu Sans Mono", Consolas, "Liberation Mono", monospace; }
.code { white-space: nowrap; font-weight: 600; }
.mono { font-size: 7.5pt; word-break: break-all; }
.raw { display: inline-block; margin-right: 5mm; }
.note { color: #444; font-size: 8pt; }
.status { border: 1pt solid #111; padding: 1.2mm 2.5mm; margin: 0.5mm 0 1.2mm; font-weight: 600; }
.warning { border-left: 2pt solid #111; padding-left: 2mm; margin-top: 1mm; }
.contact { white-space: pre-line; }
"""


@dataclass(frozen=True, slots=True)
class WorkshopInfo:
    """Who issues the receipt, and who the owner turns to (workshop configuration).

    ``controller_contact`` is the data controller's name and address or e-mail, printed as
    given (line breaks kept). ``rights_text`` replaces the default statement of the owner's
    rights when the workshop's own privacy notice words it differently.
    """

    name: str
    workshop_id: str
    controller_contact: str | None = None
    rights_text: str | None = None


def default_rights_text(lang: str) -> str:
    """The owner's rights in ``lang``, used when the workshop configured no text of its own."""
    return catalog(lang).gettext(RIGHTS_TEXT)


def _fill(template: str, values: Mapping[str, object]) -> str:
    """Escape the (translated) template and every value, then put the values in their places."""
    return html.escape(template).format(**{k: html.escape(str(v)) for k, v in values.items()})


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _codes(ecus: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    return {(str(e.get("address")), str(d.get("code"))) for e in ecus for d in e.get("dtcs") or []}


class _Page:
    """Renders the sections of one receipt in one language; every text goes through the catalogue."""

    def __init__(self, record: Mapping[str, Any], lang: str, zone: tzinfo | None) -> None:
        self.record = record
        self.lang = lang
        self.texts: Catalog = catalog(lang)
        self.zone = zone

    # -- text helpers --------------------------------------------------------------------------

    def _(self, message: str, /, **values: object) -> str:
        """The translation of ``message`` as HTML, placeholders filled with escaped values."""
        return _fill(self.texts.gettext(message), values)

    def _n(self, singular: str, plural: str, n: int, /, **values: object) -> str:
        """The plural form for ``n`` as HTML; ``{count}`` is ``n``."""
        return _fill(self.texts.ngettext(singular, plural, n), {"count": n, **values})

    def when(self, moment: datetime) -> str:
        """A point in time in the workshop's zone, with the zone's offset so it is unambiguous."""
        local = moment.astimezone(self.zone) if self.zone is not None else moment.astimezone()
        offset = local.utcoffset() or timedelta(0)
        if offset:
            minutes = int(offset.total_seconds() // 60)
            sign = "+" if minutes >= 0 else "-"
            zone = f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        else:
            zone = "UTC"
        return self.texts.format(
            "{date} at {time} ({zone})", date=self.date(local), time=f"{local:%H:%M}", zone=zone
        )

    def date(self, local: datetime) -> str:
        """A date in this language's usual numeric form."""
        return self.texts.format(
            "{year}-{month}-{day}", year=f"{local:%Y}", month=f"{local:%m}", day=f"{local:%d}"
        )

    def when_text(self, value: object) -> str:
        """A record timestamp for display, or a plain "time not recorded"."""
        moment = _parse_time(value)
        return self.when(moment) if moment else self.texts.gettext("time not recorded")

    def number(self, value: object, decimals: int) -> str | None:
        """A number written the local way, or None when the record has no number there."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return format_number(float(value), self.lang, decimals)

    def ecu_label(self, ecu: Mapping[str, Any] | None, address: str) -> str:
        """A control unit in plain words with its address, as plain text."""
        name = (ecu or {}).get("name")
        if not isinstance(name, str) or not name.strip():
            return self.texts.format("Control unit {address}", address=address)
        acronym = name.split("-", 1)[0].strip().upper()
        unit = self.texts.gettext(_ECU_ROLES[acronym]) if acronym in _ECU_ROLES else name.strip()
        return self.texts.format("{unit} ({address})", unit=unit, address=address)

    def table(self, headers: Sequence[tuple[str, str]], rows: Iterable[Sequence[tuple[str, str]]]) -> str:
        """A table of already-escaped cells; each cell is (css class, html)."""
        head = "".join(f'<th class="{cls}">{text}</th>' for cls, text in headers)
        body = "".join(
            "<tr>" + "".join(f'<td class="{cls}">{text}</td>' for cls, text in row) + "</tr>" for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    # -- sections ------------------------------------------------------------------------------

    def header(self, workshop: WorkshopInfo) -> str:
        """Title, issuing workshop and one sentence on what this copy is."""
        record = self.record
        is_clear = record.get("kind") == "clear"
        title = self._(_TITLES["clear" if is_clear else "visit"])
        shown_name = workshop.name or workshop.workshop_id
        if is_clear:
            intro = self._(
                "This copy shows what {workshop} found in your car's fault memory, what was cleared "
                "and what remains, and whether the record was sent to the manufacturer.",
                workshop=shown_name,
            )
        else:
            intro = self._(
                "This copy shows what {workshop} read from your car's diagnostic socket during this "
                "visit, and whether it was sent to the manufacturer.",
                workshop=shown_name,
            )
        return (
            f'<header><h1>{title}</h1><div class="workshop">{html.escape(shown_name)}</div></header>'
            f'<p class="intro">{intro}</p>'
        )

    def summary(self, workshop: WorkshopInfo) -> str:
        """The visit and the vehicle side by side: the facts a customer looks for first."""
        record = self.record
        visit = [
            (self._("Date"), html.escape(self.when_text(record.get("created_at")))),
            (self._("Workshop ID"), html.escape(workshop.workshop_id)),
            (
                self._("Reference"),
                f'<span class="mono">{html.escape(str(record.get("record_id", "")))}</span>',
            ),
        ]
        return (
            f'<div class="cols"><section><h2>{self._("Workshop visit")}</h2>{_facts(visit)}</section>'
            f"<section><h2>{self._('Vehicle')}</h2>{self.vehicle()}</section></div>"
        )

    def vehicle(self) -> str:
        """VIN, mileage with the counter it came from (a customer may compare it with the dash), MIL."""
        record = self.record
        vin = (record.get("vehicle") or {}).get("vin")
        vin_html = (
            f'<span class="code">{html.escape(vin)}</span>' if vin else self._("not reported by the car")
        )
        mileage = record.get("mileage")
        km = self.number((mileage or {}).get("km"), 1 if _has_fraction((mileage or {}).get("km")) else 0)
        if mileage and km is not None:
            mileage_html = self._("{km} km ({source})", km=km, source=self.mileage_source(mileage))
        else:
            mileage_html = self._("not available")
        clear = record.get("clear") if record.get("kind") == "clear" else None
        after = list(clear.get("after") or []) if isinstance(clear, Mapping) else []
        lamp_states = [e.get("mil_on") for e in after or self.fault_ecus()]  # after clearing, if re-read
        if any(s is True for s in lamp_states):
            lamp = self._("lit")
        elif any(s is False for s in lamp_states):
            lamp = self._("not lit")
        else:
            lamp = self._("not reported by the car")
        facts = [
            (self._("VIN (chassis number)"), vin_html),
            (self._("Mileage"), mileage_html),
            (self._("Engine warning light (MIL)"), lamp),
        ]
        notice = ""
        if any(str(w).startswith("read-out incomplete") for w in record.get("warnings") or []):
            notice = (
                '<p class="warning">'
                + self._("The read-out was not complete; some data may be missing from this copy.")
                + "</p>"
            )
        return _facts(facts) + notice

    def mileage_source(self, mileage: Mapping[str, Any]) -> str:
        """The record's technical source note (``odometer (01 A6)``, ...) in plain words."""
        source = str(mileage.get("source") or "")
        if source.startswith("odometer"):
            return self.texts.gettext("odometer")
        if "01 31" in source:
            return self.texts.gettext("distance since the fault memory was last cleared, not the odometer")
        if source.startswith("UDS"):
            return self.texts.gettext("odometer, from the manufacturer's diagnostic data")
        return self.texts.gettext("counter reported by the car")

    def fault_ecus(self) -> list[Mapping[str, Any]]:
        """The ECUs whose fault memory the receipt lists: before clearing for a clear record."""
        clear = self.record.get("clear")
        if self.record.get("kind") == "clear" and isinstance(clear, Mapping):
            return list(clear.get("before") or [])
        return list(self.record.get("ecus") or [])

    def faults(self) -> str:
        """The fault codes found; for a clear record, the outcome and each code's fate."""
        record = self.record
        clear = record.get("clear") if record.get("kind") == "clear" else None
        ecus = self.fault_ecus()
        parts: list[str] = [f"<h2>{self._('Fault memory')}</h2>"]
        count = sum(len(e.get("dtcs") or []) for e in ecus)
        if isinstance(clear, Mapping):
            outcome = str(clear.get("outcome"))
            if outcome in _CLEAR_OUTCOMES:
                parts.append(f'<p class="status">{self._(_CLEAR_OUTCOMES[outcome])}</p>')
        if count == 0:
            parts.append(f"<p>{self._('No fault codes were found.')}</p>")
        else:
            if isinstance(clear, Mapping):
                parts.append(
                    "<p>"
                    + self._n(
                        "Before clearing, {count} fault code was stored.",
                        "Before clearing, {count} fault codes were stored.",
                        count,
                    )
                    + "</p>"
                )
            else:
                parts.append(
                    "<p>"
                    + self._n("{count} fault code was found.", "{count} fault codes were found.", count)
                    + "</p>"
                )
            parts.append(self.fault_table(ecus, clear if isinstance(clear, Mapping) else None))
            if self.lang != "en":
                parts.append(
                    '<p class="note">'
                    + self._("The descriptions are the standard (SAE) wording, which exists in English only.")
                    + "</p>"
                )
        if isinstance(clear, Mapping):
            for refusal in clear.get("ecu_refusals") or []:
                address = str(refusal.get("address", ""))
                parts.append(
                    "<p>"
                    + self._("{unit} refused to clear its fault memory.", unit=self.ecu_label(None, address))
                    + "</p>"
                )
        return "<section>" + "".join(parts) + "</section>"

    def fault_table(self, ecus: Sequence[Mapping[str, Any]], clear: Mapping[str, Any] | None) -> str:
        """One row per code; a code is "cleared" only if a re-read after clearing no longer has it."""
        headers = [
            ("", self._("Control unit")),
            ("", self._("Code")),
            ("", self._("Status")),
            ("", self._("Description")),
        ]
        after_codes: set[tuple[str, str]] | None = None
        if clear is not None:
            headers.append(("", self._("After clearing")))
            after = list(clear.get("after") or [])
            if after:
                after_codes = _codes(after)
            elif clear.get("outcome") == "refused":
                after_codes = _codes(ecus)
        rows: list[list[tuple[str, str]]] = []
        for ecu in ecus:
            address = str(ecu.get("address", ""))
            label = html.escape(self.ecu_label(ecu, address))
            for dtc in ecu.get("dtcs") or []:
                kind = str(dtc.get("kind"))
                description = dtc.get("description")
                row = [
                    ("unit", label),
                    ("code", html.escape(str(dtc.get("code", "")))),
                    ("", self._(_DTC_KINDS[kind]) if kind in _DTC_KINDS else html.escape(kind)),
                    (
                        "",
                        html.escape(description)
                        if isinstance(description, str) and description
                        else self._("no description available"),
                    ),
                ]
                if clear is not None:
                    if after_codes is None:
                        fate = self._("not checked")
                    elif (address, str(dtc.get("code"))) in after_codes:
                        fate = self._("still present")
                    else:
                        fate = self._("cleared")
                    row.append(("", fate))
                rows.append(row)
                label = ""  # the unit is named once, on its first code
        return self.table(headers, rows)

    def software(self) -> str:
        """CALIDs and CVNs per control unit: part of what is sent, so part of what is shown."""
        rows = []
        for ecu in self.record.get("ecus") or self.fault_ecus():
            software = ecu.get("software") or {}
            calids = [html.escape(str(c)) for c in software.get("calids") or []]
            cvns = [html.escape(str(c)) for c in software.get("cvns") or []]
            if not calids and not cvns:
                continue
            rows.append(
                [
                    ("unit", html.escape(self.ecu_label(ecu, str(ecu.get("address", ""))))),
                    ("mono", "<br>".join(calids) or "–"),
                    ("mono", "<br>".join(cvns) or "–"),
                ]
            )
        parts = [f"<h2>{self._('Software versions')}</h2>"]
        if rows:
            headers = [
                ("", self._("Control unit")),
                ("", self._("Calibration ID (CALID)")),
                ("", self._("Verification number (CVN)")),
            ]
            parts.append(self.table(headers, rows))
        else:
            parts.append(f"<p>{self._('The control units reported no software versions.')}</p>")
        return "<section>" + "".join(parts) + "</section>"

    def obfcm(self) -> str:
        """The owner's OBFCM decision, and the values only when the owner did not refuse."""
        obfcm = self.record.get("obfcm") or {}
        state = obfcm.get("state")
        parts = [f"<h2>{self._('Fuel and energy consumption (OBFCM)')}</h2>"]
        if state == "not_applicable":
            parts.append(f"<p>{self._('Consumption data were not part of this job.')}</p>")
            return "<section>" + "".join(parts) + "</section>"
        parts.append(f'<p class="note">{self._(EXPLANATION)}</p>')
        when = self.when_text(obfcm.get("decided_at"))
        if state == "refused":
            parts.append(
                '<p class="status">'
                + self._(
                    "The vehicle owner refused the collection and transfer of these data on {when}. "
                    "No consumption data were read from the car, and none were sent.",
                    when=when,
                )
                + "</p>"
            )
        elif state == "collected":
            parts.append(
                "<p>"
                + self._(
                    "The vehicle owner did not refuse; the answer was given on {when}. "
                    "These values were read:",
                    when=when,
                )
                + "</p>"
            )
            parts.append(self.obfcm_values(obfcm.get("ecus") or []))
        else:
            reason = str(obfcm.get("reason") or "")
            if "InfoType 17" in reason:
                why = self._("The car does not provide consumption data through the diagnostic socket.")
            else:
                why = self._("The car did not answer the request for consumption data.")
            parts.append(
                "<p>"
                + self._("The vehicle owner did not refuse; the answer was given on {when}.", when=when)
                + f" {why} "
                + self._("No consumption data were sent.")
                + "</p>"
            )
        return "<section>" + "".join(parts) + "</section>"

    def obfcm_values(self, ecus: Sequence[Mapping[str, Any]]) -> str:
        """The decoded ITID 17 counters per ECU, and every raw block the record carries, verbatim."""
        not_available = self._("not available")
        rows = []
        raw_lines = []
        for ecu in ecus:
            address = str(ecu.get("address", ""))
            values = ecu.get("itid17") or {}
            cells = [("unit", html.escape(self.ecu_label(self.find_ecu(address), address)))]
            for key, decimals, unit in (
                ("recent_distance_km", 1, "km"),
                ("lifetime_distance_km", 1, "km"),
                ("recent_fuel_l", 2, "l"),
                ("lifetime_fuel_l", 2, "l"),
            ):
                shown = self.number(values.get(key), decimals)
                if shown is None:
                    cells.append(("num", not_available))
                elif unit == "km":
                    cells.append(("num", self._("{value} km", value=shown)))
                else:
                    cells.append(("num", self._("{value} l", value=shown)))
            rows.append(cells)
            for raw in ecu.get("raw") or []:
                raw_lines.append(
                    f'<span class="raw">{html.escape(address)} · {html.escape(str(raw.get("itid")))}: '
                    f"{html.escape(str(raw.get('raw_hex')))}</span>"
                )
        headers = [
            ("", self._("Control unit")),
            ("num", self._("Distance driven, recent")),
            ("num", self._("Distance driven, lifetime")),
            ("num", self._("Fuel used, recent")),
            ("num", self._("Fuel used, lifetime")),
        ]
        parts = [self.table(headers, rows)]
        if raw_lines:
            parts.append(
                '<p class="note">'
                + self._n(
                    "The car also gave {count} block of data that is kept exactly as the car gave it, "
                    "undecoded (for plug-in hybrids: electric driving and charging):",
                    "The car also gave {count} blocks of data that are kept exactly as the car gave them, "
                    "undecoded (for plug-in hybrids: electric driving and charging):",
                    len(raw_lines),
                )
                + "</p>"
            )
            parts.append('<p class="mono">' + " ".join(raw_lines) + "</p>")
        return "".join(parts)

    def find_ecu(self, address: str) -> Mapping[str, Any] | None:
        """The read-out of one ECU, for its name (OBFCM entries carry only the address)."""
        for ecu in self.record.get("ecus") or self.fault_ecus():
            if ecu.get("address") == address:
                found: Mapping[str, Any] = ecu
                return found
        return None

    def transfer(self, state: str, sent_at: str | None, receipt: Mapping[str, Any] | None) -> str:
        """Whether and when the record reached the manufacturer, and what it holds (and does not)."""
        parts = [f"<h2>{self._('Transfer to the manufacturer')}</h2>"]
        has_vin = bool((self.record.get("vehicle") or {}).get("vin"))
        if state == "sent":
            moment = _parse_time(sent_at) or _parse_time((receipt or {}).get("received_at"))
            when = self.when(moment) if moment else self.texts.gettext("time not recorded")
            receipt_id = (receipt or {}).get("receipt_id")
            if receipt_id:
                text = self._(
                    "The data listed here were sent to the manufacturer on {when}. The manufacturer "
                    "confirmed receipt with number {receipt}.",
                    when=when,
                    receipt=receipt_id,
                )
            else:
                text = self._("The data listed here were sent to the manufacturer on {when}.", when=when)
        elif state == "held" and not has_vin:
            text = self._(
                "The car did not report its VIN, so the data cannot be sent to the manufacturer; "
                "they are kept at the workshop."
            )
        else:
            text = self._(_TRANSFER[state])
        parts.append(f'<p class="status">{text}</p>')
        obfcm_state = (self.record.get("obfcm") or {}).get("state")
        contents = _CONTENTS.get(str(obfcm_state), _CONTENTS["other"])
        parts.append(
            "<p>"
            + self._(contents)
            + " "
            + self._("It holds no name, address, phone number or other details about you.")
            + "</p>"
        )
        return "<section>" + "".join(parts) + "</section>"

    def rights(self, workshop: WorkshopInfo) -> str:
        """Whom to ask, and what the owner may ask for: workshop configuration, with a default."""
        contact = (workshop.controller_contact or "").strip()
        contact_html = (
            f'<span class="contact">{html.escape(contact)}</span>'
            if contact
            else self._("Ask the workshop for the data controller's contact details.")
        )
        rights = (workshop.rights_text or "").strip()
        rights_html = html.escape(rights) if rights else self._(RIGHTS_TEXT)
        return (
            f'<section><h2>{self._("Your rights")}</h2><div class="cols">'
            f"<div><strong>{self._('Data controller')}</strong><br>{contact_html}</div>"
            f"<p>{rights_html}</p></div></section>"
        )


def _facts(rows: Sequence[tuple[str, str]]) -> str:
    """A list of (label, value) pairs, both already HTML."""
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _has_fraction(value: object) -> bool:
    return isinstance(value, float) and not value.is_integer()


def render_receipt(
    record: Mapping[str, Any],
    *,
    state: str,
    sent_at: str | None,
    receipt: Mapping[str, Any] | None,
    lang: str,
    workshop: WorkshopInfo,
    zone: tzinfo | None = None,
) -> str:
    """The receipt of one record as a complete HTML document for one A4 page.

    :param record: the record as stored in the outbox (``upload/record-v1.schema.json``).
    :param state: the record's outbox state: ``pending``, ``sent``, ``rejected`` or ``held``.
    :param sent_at: when the outbox marked it sent (RFC 3339), for ``sent``.
    :param receipt: the manufacturer's receipt (``receipt_id``, ``received_at``), for ``sent``.
    :param lang: ``nb`` or ``en``.
    :param zone: the zone times are shown in; None means this computer's local zone.
    :raises ValueError: for an unknown state.
    :raises obdtool.errors.UsageError: for a language without texts.
    """
    if state not in RECEIPT_STATES:
        raise ValueError(f"unknown record state {state!r} (expected one of {', '.join(RECEIPT_STATES)})")
    page = _Page(record, lang, zone)
    title = page._(_TITLES["clear" if record.get("kind") == "clear" else "visit"])
    body = "\n".join(
        (
            page.header(workshop),
            page.summary(workshop),
            page.faults(),
            page.software(),
            page.obfcm(),
            page.transfer(state, sent_at, receipt),
            page.rights(workshop),
        )
    )
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def write_receipt(path: Path | str, document: str) -> Path:
    """Write the receipt as UTF-8, replacing the file in one step so a reader never sees half of it.

    :raises ObdToolError: naming the file when it cannot be written (the record itself is safe).
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(document, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ObdToolError(f"{target}: cannot write the receipt ({exc.strerror or exc})") from exc
    return target


def find_renderer() -> str | None:
    """A headless browser that can print to PDF (Chromium or Chrome), or None."""
    for name in _RENDERERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_command(browser: str, profile_dir: Path, *extra: str, sandbox: bool | None = None) -> list[str]:
    """The headless browser invocation used for printing: no network, no profile, no GPU.

    ``sandbox=None`` keeps Chromium's sandbox except when running as root, where Chromium
    refuses to start with it. Without the sandbox the page is still only our own file, with no
    scripts and no external resources.
    """
    command = [
        browser,
        "--headless",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile_dir}",
    ]
    if sandbox is None:
        sandbox = not (hasattr(os, "geteuid") and os.geteuid() == 0)
    if not sandbox:
        command.append("--no-sandbox")
    return command + list(extra)


def html_to_pdf(html_path: Path | str, pdf_path: Path | str, *, browser: str | None = None) -> bool:
    """Print the receipt to PDF with a headless browser; False (never an error) when that fails.

    A PDF is a convenience next to the HTML, which prints from any browser, so a missing
    renderer, a crash or a timeout only means "no PDF this time". Containers often lack the
    kernel features Chromium's sandbox needs; that one failure is retried without it.
    """
    renderer = browser or find_renderer()
    if renderer is None:
        return False
    source, target = Path(html_path).resolve(), Path(pdf_path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    for sandbox in (None, False):
        with tempfile.TemporaryDirectory(prefix="obdtool-pdf-") as profile:
            command = chromium_command(
                renderer,
                Path(profile),
                "--no-pdf-header-footer",
                f"--print-to-pdf={target}",
                source.as_uri(),
                sandbox=sandbox,
            )
            try:
                done = subprocess.run(command, capture_output=True, timeout=_PDF_TIMEOUT_S, check=False)
            except (OSError, subprocess.SubprocessError):
                return False
        if done.returncode == 0 and target.is_file() and target.stat().st_size > 0:
            return True
        if b"sandbox" not in done.stderr.lower() or "--no-sandbox" in command:
            return False
    return False
