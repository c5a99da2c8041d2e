"""The receipt in a real browser: headless Chromium lays it out on one A4 page with the facts visible.

Each receipt is rendered once per module; the tests then print it to PDF (page count), take an A4
screenshot kept in ``test-output/receipt-<lang>.png`` for people to look at, and read the DOM
Chromium built, to be sure the facts survived parsing and nothing reaches past the page width
(measured by a probe script added to a test copy; the receipt itself has none). A handful of
Chromium runs in all.
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from receipt_support import (
    CHROMIUM,
    OSLO_WINTER,
    OUTPUT,
    PHEV_RAW_HEX,
    PHEV_VALUES,
    PHEV_VIN,
    RECEIPT,
    SENT_AT,
    WORKSHOP,
    chromium,
    example,
    pdf_page_count,
    phev_record,
    png_size,
    visible_text,
)

from obdtool.receipt import html_to_pdf, render_receipt, write_receipt

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium (/usr/bin/chromium) is not installed: apt-get install chromium",
)

# A4 at 96 CSS pixels per inch.
A4_WIDTH_PX, A4_HEIGHT_PX = 794, 1123


@dataclass(frozen=True)
class Rendered:
    lang: str
    html: Path
    pdf: Path
    refused: bool


def _write(name: str, record: dict[str, Any], lang: str, state: str) -> Path:
    page = render_receipt(
        record,
        state=state,
        sent_at=SENT_AT if state == "sent" else None,
        receipt=RECEIPT if state == "sent" else None,
        lang=lang,
        workshop=WORKSHOP,
        zone=OSLO_WINTER,
    )
    return write_receipt(OUTPUT / f"{name}.html", page)


@pytest.fixture(scope="module", params=[("nb", True), ("en", False)], ids=["nb-refused", "en-accepted"])
def rendered(request: pytest.FixtureRequest) -> Rendered:
    """The PHEV receipt: refused and kept local in bokmål, accepted and sent in English."""
    lang, refused = request.param
    source = _write(f"receipt-{lang}", phev_record(refused=refused), lang, "held" if refused else "sent")
    pdf = OUTPUT / f"receipt-{lang}.pdf"
    assert html_to_pdf(source, pdf), "html_to_pdf found Chromium but made no PDF"
    return Rendered(lang, source, pdf, refused)


def test_prints_on_one_a4_page(rendered: Rendered) -> None:
    pdf = rendered.pdf.read_bytes()
    assert pdf.startswith(b"%PDF-")
    assert pdf_page_count(pdf) == 1
    # MediaBox in points: A4 is 595.28 x 841.89 (Chromium writes 594.96 x 841.92).
    box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)
    assert box is not None
    width, height = float(box.group(1)), float(box.group(2))
    assert abs(width - 595.3) < 2 and abs(height - 841.9) < 2


def test_screenshot_at_a4_size(rendered: Rendered) -> None:
    """A PNG of the page at A4 size, kept for a person to judge the layout."""
    shot = OUTPUT / f"receipt-{rendered.lang}.png"
    shot.unlink(missing_ok=True)
    done = chromium(
        "--hide-scrollbars",
        f"--window-size={A4_WIDTH_PX},{A4_HEIGHT_PX}",
        f"--screenshot={shot}",
        rendered.html.resolve().as_uri(),
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert png_size(shot.read_bytes()) == (A4_WIDTH_PX, A4_HEIGHT_PX)
    assert shot.stat().st_size > 20_000  # text was drawn, not a blank page


# Appended to a copy of the receipt (which itself has no script): lists every element whose box
# reaches past the right edge of the body, i.e. past the printable width of the page.
_WIDTH_PROBE = """<script>
(function () {
  var limit = document.body.getBoundingClientRect().right + 0.5, wide = [];
  document.querySelectorAll("body *").forEach(function (e) {
    if (e.getBoundingClientRect().right > limit) wide.push(e.tagName + ": " + e.textContent.slice(0, 60));
  });
  document.body.setAttribute("data-too-wide", JSON.stringify(wide));
})();
</script>"""
# The widest common fallback font, for a machine without Liberation Sans / Arial.
_WIDE_FONT = '<style>body { font-family: "DejaVu Sans", sans-serif !important; }</style>'


def _probe(source: Path, target: Path, *, wide_font: bool = False) -> Path:
    """A copy of the receipt with the width probe (and optionally the wide fallback font)."""
    page = source.read_text(encoding="utf-8")
    extra = (_WIDE_FONT if wide_font else "") + _WIDTH_PROBE
    target.write_text(page.replace("</body>", extra + "</body>"), encoding="utf-8")
    return target


def _rendered_dom(source: Path, tmp_path: Path, *, wide_font: bool = False) -> str:
    """The DOM Chromium built from the receipt, after asserting nothing sticks out of the page width."""
    probe = _probe(source, tmp_path / f"probe-{source.name}", wide_font=wide_font)
    done = chromium("--window-size=794,1123", "--dump-dom", probe.resolve().as_uri())
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    dom = done.stdout.decode("utf-8")
    found = re.search(r'data-too-wide="([^"]*)"', dom)
    assert found is not None, "the width probe did not run"
    assert html.unescape(found.group(1)) == "[]", f"wider than the page: {html.unescape(found.group(1))}"
    return dom


def test_key_facts_are_in_the_rendered_dom(rendered: Rendered, tmp_path: Path) -> None:
    text = visible_text(_rendered_dom(rendered.html, tmp_path))
    assert PHEV_VIN in text
    assert WORKSHOP.name in text
    assert "P0456" in text and "P2610" in text and "P0AA6" in text
    if rendered.refused:
        assert (
            "Eieren av bilen reserverte seg mot innsamling og overføring av disse dataene den 26.11.2026"
            in text
        )
        assert "Kilometerstand 28\u00a0750,2 km" in text
        assert "blir opplysningene liggende hos verkstedet" in text
        for value in (*PHEV_VALUES["nb"], *PHEV_VALUES["en"], *PHEV_RAW_HEX):
            assert value not in text
    else:
        assert "The vehicle owner did not refuse" in text
        assert "Mileage 28,750.2 km (odometer)" in text
        for value in (*PHEV_VALUES["en"], *PHEV_RAW_HEX):
            assert value in text
        assert RECEIPT["receipt_id"] in text


def _busy_scenario(folder: Path) -> Path:
    """Three ECUs and eight fault codes: the most a normal visit brings, still on one page."""
    source = Path(__file__).resolve().parents[2] / "fixtures" / "scenarios" / "phev.toml"
    text = source.read_text(encoding="utf-8")
    text = text.replace('stored = ["P0456"]', 'stored = ["P0456", "P0301", "P0171"]')
    text = text.replace('pending = ["P2610"]', 'pending = ["P2610", "P0420"]')
    text = text.replace('stored = ["P0AA6"]', 'stored = ["P0AA6"]\npending = ["P0A7F"]')
    text += (
        '\n[[ecus]]\naddress = "7E9"\nname = "TCM-TransmisCtrl"\ncalids = ["0CW300041C 3511"]\n'
        'cvns = ["77A0B1C2"]\nstored = ["P0715"]\nvalues = { speed_kmh = 0 }\n'
    )
    busy = folder / "busy.toml"
    busy.write_text(text, encoding="utf-8")
    return busy


@pytest.fixture(scope="module")
def busy_nb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busy visit in bokmål, the longer language and so the worst case for the page length."""
    from receipt_support import record_from_sim

    busy = record_from_sim(str(_busy_scenario(tmp_path_factory.mktemp("busy"))), refused=False)
    assert sum(len(e["dtcs"]) for e in busy["ecus"]) == 8 and len(busy["ecus"]) == 3
    return _write("receipt-busy-nb", busy, "nb", "pending")


def test_a_busy_visit_and_a_clear_still_fit_one_page(busy_nb: Path, tmp_path: Path) -> None:
    clear = _write("receipt-clear-nb", example("clear"), "nb", "sent")
    for source in (busy_nb, clear):
        pdf = tmp_path / f"{source.stem}.pdf"
        assert html_to_pdf(source, pdf), source.name
        assert pdf_page_count(pdf.read_bytes()) == 1, f"{source.name} runs over one page"


def test_a_busy_visit_fits_with_a_wide_fallback_font(busy_nb: Path, tmp_path: Path) -> None:
    """Without Liberation Sans or Arial, Chromium takes a wider font: still one page, no overflow."""
    _rendered_dom(busy_nb, tmp_path, wide_font=True)
    wide = _probe(busy_nb, tmp_path / "busy-nb-wide.html", wide_font=True)
    assert html_to_pdf(wide, tmp_path / "busy-nb-wide.pdf")
    assert pdf_page_count((tmp_path / "busy-nb-wide.pdf").read_bytes()) == 1


def test_renderer_is_found_on_the_path() -> None:
    from obdtool.receipt import find_renderer

    found = find_renderer()
    assert found is not None and Path(found).resolve() == Path(shutil.which("chromium") or "").resolve()
