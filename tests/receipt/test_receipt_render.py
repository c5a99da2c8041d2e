"""The receipt's content: the facts of the record, in the customer's language, and nothing else."""

from __future__ import annotations

import copy
import html
import re
from datetime import UTC
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from receipt_support import (
    OSLO_WINTER,
    PHEV_RAW_HEX,
    PHEV_VALUES,
    PHEV_VIN,
    RECEIPT,
    SENT_AT,
    WORKSHOP,
    example,
    phev_record,
    visible_text,
)

from obdtool.errors import ObdToolError
from obdtool.i18n import LANGUAGES, catalog, parse_po, po_path
from obdtool.receipt import (
    RIGHTS_TEXT,
    WorkshopInfo,
    default_rights_text,
    html_to_pdf,
    render_receipt,
    write_receipt,
)
from upload.schema import validate_record

ROOT = Path(__file__).resolve().parents[2]


ALLOWED_TAGS = {
    *("html", "head", "meta", "title", "style", "body", "header", "section", "div", "span", "strong", "br"),
    *("h1", "h2", "p", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "th", "td"),
}


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


def _markup(page: str) -> tuple[set[str], set[str]]:
    """Every element and attribute name the browser will see."""
    parser = _Markup()
    parser.feed(page)
    return parser.tags, parser.attributes


def _render(record: dict[str, Any], lang: str, state: str = "sent", **kw: Any) -> str:
    options: dict[str, Any] = {
        "state": state,
        "sent_at": SENT_AT if state == "sent" else None,
        "receipt": RECEIPT if state == "sent" else None,
        "lang": lang,
        "workshop": WORKSHOP,
        "zone": OSLO_WINTER,
    }
    options.update(kw)
    return render_receipt(record, **options)


def test_phev_records_are_valid_records() -> None:
    for refused in (True, False):
        record = phev_record(refused=refused)
        validate_record(record)
        assert record["vehicle"]["vin"] == PHEV_VIN
        assert [e["address"] for e in record["ecus"]] == ["7E8", "7EA"]


def test_norwegian_refusal_confirms_the_refusal_and_shows_no_values() -> None:
    page = _render(phev_record(refused=True), "nb", state="held")
    text = visible_text(page)
    assert '<html lang="nb">' in page
    assert "Avlesing av kjøretøydata – kundens kopi" in text
    assert (
        "Eieren av bilen reserverte seg mot innsamling og overføring av disse dataene den "
        "26.11.2026 kl. 09:00 (UTC+01:00). Ingen forbruksdata ble lest ut fra bilen, og ingen ble sendt."
    ) in text
    assert "Etter eierens ønske blir opplysningene liggende hos verkstedet" in text
    assert "reservasjonen med tidspunkt, men ingen forbruksverdier" in text
    for value in (*PHEV_VALUES["nb"], *PHEV_VALUES["en"], *PHEV_RAW_HEX, "1530", "28744", "655"):
        assert value not in page
    assert "Kjørelengde" not in text  # not even the empty table


def test_english_acceptance_shows_the_values() -> None:
    page = _render(phev_record(refused=False), "en")
    text = visible_text(page)
    assert '<html lang="en">' in page
    assert (
        "The vehicle owner did not refuse; the answer was given on 2026-11-26 at 09:00 (UTC+01:00)." in text
    )
    for value in PHEV_VALUES["en"]:
        assert value in text
    for raw in PHEV_RAW_HEX:
        assert raw in text
    assert "The car also gave 3 blocks of data that are kept exactly as the car gave them, undecoded" in text
    assert (
        "The data listed here were sent to the manufacturer on 2026-11-26 at 09:04 (UTC+01:00). "
        f"The manufacturer confirmed receipt with number {RECEIPT['receipt_id']}."
    ) in text
    assert "the software versions and the consumption values shown above" in text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_vehicle_faults_and_software(lang: str) -> None:
    text = visible_text(_render(phev_record(refused=False), lang))
    expected = {
        "en": (
            "Mileage 28,750.2 km (odometer)",
            "Engine warning light (MIL) lit",
            "3 fault codes were found.",
            "Engine control unit (7E8) P0456 Stored (confirmed) Evaporative Emission System Leak",
            "P2610 Pending (not yet confirmed) ECM/PCM Internal Engine Off Timer Performance",
            "Hybrid system control unit (7EA) P0AA6 Stored (confirmed) no description available",
            "Engine control unit (7E8) 89663-42Z41 0003 89663-42Z41 1002 3C9D12A7 00F1E2D3",
            "Hybrid system control unit (7EA) G9510-42130 0201 A5170C3E",
        ),
        "nb": (
            "Kilometerstand 28\u00a0750,2 km (kilometerteller)",
            "Motorlampe (MIL) lyser",
            "Det ble funnet 3 feilkoder.",
            "Motorstyring (7E8) P0456 Lagret (bekreftet) Evaporative Emission System Leak",
            "P2610 Ventende (ikke bekreftet)",
            "Hybridstyring (7EA) P0AA6 Lagret (bekreftet) ingen beskrivelse tilgjengelig",
            "Beskrivelsene er standardteksten (SAE), som bare finnes på engelsk.",
            "Motorstyring (7E8) 89663-42Z41 0003 89663-42Z41 1002 3C9D12A7 00F1E2D3",
        ),
    }[lang]
    assert PHEV_VIN in text
    for phrase in expected:
        assert phrase in text, phrase


@pytest.mark.parametrize("lang", LANGUAGES)
def test_header_workshop_and_rights(lang: str) -> None:
    record = phev_record(refused=True)
    text = visible_text(_render(record, lang))
    assert WORKSHOP.name in text and WORKSHOP.workshop_id in text
    assert record["record_id"] in text
    assert {"en": "Date 2026-11-26 at 09:02 (UTC+01:00)", "nb": "Dato 26.11.2026 kl. 09:02 (UTC+01:00)"}[
        lang
    ] in text
    assert "Thorvald Meyers gate 12, 0555 Oslo" in text
    assert default_rights_text(lang) in text
    assert catalog(lang).gettext(RIGHTS_TEXT) == default_rights_text(lang)


def test_workshop_texts_replace_the_defaults() -> None:
    own = WorkshopInfo(
        "Verksted", "W-1", controller_contact=None, rights_text="Se personvernerklæringen vår."
    )
    text = visible_text(_render(phev_record(refused=True), "nb", workshop=own))
    assert "Se personvernerklæringen vår." in text
    assert default_rights_text("nb") not in text
    assert "Spør verkstedet om kontaktopplysningene til behandlingsansvarlig." in text


@pytest.mark.parametrize(
    ("state", "phrase"),
    [
        ("pending", "Opplysningene her er ikke sendt ennå."),
        ("rejected", "Produsentens system tok ikke imot opplysningene"),
        ("held", "Etter eierens ønske blir opplysningene liggende hos verkstedet"),
        ("sent", "Opplysningene her ble sendt til produsenten den 26.11.2026 kl. 09:04 (UTC+01:00)."),
    ],
)
def test_each_outbox_state_is_told(state: str, phrase: str) -> None:
    text = visible_text(_render(phev_record(refused=False), "nb", state=state))
    assert phrase in text
    if state != "sent":
        assert RECEIPT["receipt_id"] not in text


def test_sent_without_a_receipt_number_still_gives_the_time() -> None:
    text = visible_text(_render(phev_record(refused=False), "en", receipt=None))
    assert "The data listed here were sent to the manufacturer on 2026-11-26 at 09:04 (UTC+01:00)." in text


def test_a_record_without_vin_says_why_it_stays() -> None:
    record = phev_record(refused=False)
    record["vehicle"]["vin"] = None
    text = visible_text(_render(record, "en", state="held"))
    assert "VIN (chassis number) not reported by the car" in text
    assert "The car did not report its VIN, so the data cannot be sent to the manufacturer" in text


def test_times_in_utc_are_labelled() -> None:
    text = visible_text(_render(phev_record(refused=True), "en", zone=UTC))
    assert "on 2026-11-26 at 08:00 (UTC)." in text


def test_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown record state"):
        _render(phev_record(refused=True), "en", state="lost")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_visit_example_with_uds_fault_and_counter_warning(lang: str) -> None:
    record = example("visit")
    text = visible_text(_render(record, lang))
    assert "WVWZZZ1KZ8W000001" in text
    assert {
        "en": "Transmission control unit (7E9) U0100-00 Manufacturer's fault memory",
        "nb": "Girkassestyring (7E9) U0100-00 Produsentens feilminne",
    }[lang] in text
    assert {"en": "1,251.2 km", "nb": "1\u00a0251,2 km"}[lang] in text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_clear_record_says_what_was_cleared_and_what_remains(lang: str) -> None:
    record = example("clear")
    record["clear"]["before"][0]["dtcs"].append(
        {"code": "P0420", "kind": "permanent", "description": None, "uds_status": None, "uds_flags": []}
    )
    record["clear"]["after"][0]["dtcs"].append(
        {"code": "P0420", "kind": "permanent", "description": None, "uds_status": None, "uds_flags": []}
    )
    record["clear"]["outcome"] = "partially_cleared"
    record["clear"]["ecu_refusals"] = [{"address": "7E9", "nrc": 34, "message": "conditionsNotCorrect"}]
    validate_record(record)
    text = visible_text(_render(record, lang))
    expected = {
        "en": (
            "Fault memory clearing: customer copy",
            "The fault memory was only partly cleared; some codes remain.",
            "Before clearing, 2 fault codes were stored.",
            "P0301 Stored (confirmed) Cylinder 1 Misfire Detected cleared",
            "P0420 Permanent (the car clears it after the repair) no description available still present",
            "Control unit 7E9 refused to clear its fault memory.",
            "refusal with its time, but no consumption values",
        ),
        "nb": (
            "Sletting av feilminne – kundens kopi",
            "Feilminnet ble bare delvis slettet; noen koder er igjen.",
            "Før slettingen var 2 feilkoder lagret.",
            "P0301 Lagret (bekreftet) Cylinder 1 Misfire Detected slettet",
            "ingen beskrivelse tilgjengelig fortsatt lagret",
            "Styreenhet 7E9 avviste sletting av feilminnet.",
        ),
    }[lang]
    for phrase in expected:
        assert phrase in text, phrase
    assert "conditionsNotCorrect" not in text  # the technician's detail, not the customer's


def test_clear_without_a_reread_does_not_claim_success() -> None:
    record = example("clear")
    record["clear"]["after"] = []
    record["clear"]["outcome"] = "failed"
    text = visible_text(_render(record, "en"))
    assert "The clearing could not be confirmed" in text
    assert "P0301 Stored (confirmed) Cylinder 1 Misfire Detected not checked" in text


@pytest.mark.parametrize(
    ("reason", "phrase"),
    [
        ("no ECU announces InfoType 17 (the car has no OBFCM read-out over OBD)", "does not provide"),
        ("ECUs announced OBFCM but did not answer", "did not answer"),
    ],
)
def test_obfcm_not_possible_is_explained_in_plain_words(reason: str, phrase: str) -> None:
    record = phev_record(refused=False)
    record["obfcm"] = {
        "state": "not_possible",
        "decided_at": "2026-11-26T08:00:00Z",
        "reason": reason,
        "ecus": [],
    }
    text = visible_text(_render(record, "en"))
    assert phrase in text and "No consumption data were sent." in text
    assert reason not in text


def test_an_itid17_answer_that_could_not_be_decoded_is_shown_raw() -> None:
    record = phev_record(refused=False)
    entry = record["obfcm"]["ecus"][0]
    entry["itid17"] = None
    entry["raw"] = [{"itid": "17", "raw_hex": "4917010000", "verified": False}]
    validate_record(record)
    text = visible_text(_render(record, "nb", state="pending"))
    assert (
        "Motorstyring (7E8) ikke tilgjengelig ikke tilgjengelig ikke tilgjengelig ikke tilgjengelig" in text
    )
    assert "Bilen ga også 1 datablokk som er lagret nøyaktig slik bilen ga den, uten tolkning" in text
    assert "7E8 · 17: 4917010000" in text


def test_incomplete_readout_is_flagged() -> None:
    record = phev_record(refused=False)
    record["warnings"] = ["read-out incomplete: the adapter link closed"]
    text = visible_text(_render(record, "nb"))
    assert "Avlesingen ble ikke fullført; noen opplysninger kan mangle i denne kopien." in text
    assert "adapter link" not in text


def test_every_value_is_escaped_and_nothing_is_loaded_or_run() -> None:
    record = phev_record(refused=False)
    record["ecus"][0]["dtcs"][0]["description"] = "<img src=x onerror=alert(1)>"
    record["ecus"][0]["name"] = "Bad<b>-Name"
    record["ecus"][0]["software"]["calids"][0] = "</td><script>"
    hostile = WorkshopInfo(
        name='Verksted "<script>alert(1)</script>"',
        workshop_id="W&1",
        controller_contact="<a href='https://evil.example'>x</a>",
        rights_text="{count} & <i>",
    )
    page = _render(record, "en", workshop=hostile)
    assert "<script" not in page.lower() and "<img" not in page and "<a " not in page and "<i>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;/td&gt;&lt;script&gt;" in page
    assert "W&amp;1" in page and "{count} &amp; &lt;i&gt;" in page
    tags, attributes = _markup(page)
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    assert attributes <= {"lang", "charset", "name", "content", "class"}, attributes
    assert "@import" not in page and "url(" not in page


@pytest.mark.parametrize("lang", LANGUAGES)
def test_one_self_contained_document_for_a4(lang: str) -> None:
    page = _render(phev_record(refused=False), lang)
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page
    assert "@page { size: A4;" in page
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")


@pytest.mark.parametrize("refused", [True, False])
def test_norwegian_receipt_has_no_english_left(refused: bool) -> None:
    """No English source sentence shows through on the bokmål receipt (a text the catalogue missed)."""
    page = _render(phev_record(refused=refused), "nb", state="sent")
    text = visible_text(page)
    path = ROOT / "obdtool" / po_path("nb")
    for entry in parse_po(path.read_text(encoding="utf-8")):
        for source in filter(None, (entry.msgid, entry.msgid_plural)):
            fixed = re.split(r"\{\w+\}", source)
            for piece in fixed:
                if len(piece.strip()) > 12 and piece not in " ".join(entry.msgstr):
                    assert piece.strip() not in text, f"untranslated: {piece.strip()!r}"


def test_write_receipt_writes_utf8_in_one_step(tmp_path: Path) -> None:
    page = _render(phev_record(refused=True), "nb")
    target = write_receipt(tmp_path / "out" / "kvittering.html", page)
    assert target.read_text(encoding="utf-8") == page
    assert [p.name for p in target.parent.iterdir()] == ["kvittering.html"]
    write_receipt(target, "<!DOCTYPE html><p>2</p>")
    assert target.read_text(encoding="utf-8") == "<!DOCTYPE html><p>2</p>"


def test_write_failure_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(ObdToolError, match="cannot write the receipt"):
        write_receipt(blocker / "receipt.html", "<!DOCTYPE html>")


def test_pdf_without_a_renderer_is_false_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_receipt(tmp_path / "r.html", _render(phev_record(refused=True), "en"))
    monkeypatch.setattr("obdtool.receipt.find_renderer", lambda: None)
    assert html_to_pdf(source, tmp_path / "r.pdf") is False
    assert html_to_pdf(source, tmp_path / "r.pdf", browser=str(tmp_path / "no-such-browser")) is False
    failing = tmp_path / "failing-browser"
    failing.write_text("#!/bin/sh\necho 'crashed' >&2\nexit 3\n")
    failing.chmod(0o755)
    assert html_to_pdf(source, tmp_path / "r.pdf", browser=str(failing)) is False
    assert not (tmp_path / "r.pdf").exists()


def test_record_is_not_modified() -> None:
    record = phev_record(refused=False)
    before = copy.deepcopy(record)
    _render(record, "nb")
    assert record == before


def test_escaping_helper_matches_stdlib() -> None:
    """Placeholders are filled after escaping, so a value can never close a tag or open one."""
    page = _render(phev_record(refused=True), "en", workshop=WorkshopInfo("A<B", "W-1"))
    assert html.escape("A<B") in page and "A<B" not in page
