"""The PO reader and the .mo writer behind the catalogue, checked against gettext itself."""

from __future__ import annotations

import gettext
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from obdtool.i18n import LANGUAGES, PoError, compile_mo, parse_po, po_path

PACKAGE = Path(__file__).resolve().parents[2] / "obdtool"

SAMPLE = r"""# A translator's comment
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"

#. An extracted comment
#: obdtool/receipt.py
#, python-brace-format
msgid ""
"A long text that "
"goes on over {count} lines."
msgstr ""
"En lang tekst som "
"går over {count} linjer."

msgid "Quote \" and backslash \\ and\ttab"
msgstr "Sitat \" og skråstrek \\ og\ttab"

#, python-brace-format
msgid "{count} code"
msgid_plural "{count} codes"
msgstr[0] "{count} kode"
msgstr[1] "{count} koder"

msgctxt "lamp"
msgid "on"
msgstr "lyser"

#, fuzzy
msgid "A guess"
msgstr "En gjetning"

msgid "Not translated yet"
msgstr ""

#~ msgid "Gone"
#~ msgstr "Borte"
"""


def _translations(mo: bytes) -> gettext.GNUTranslations:
    return gettext.GNUTranslations(io.BytesIO(mo))


def test_parse_reads_every_kind_of_entry() -> None:
    entries = parse_po(SAMPLE)
    by_id = {e.msgid: e for e in entries}
    assert list(by_id) == [
        "",
        "A long text that goes on over {count} lines.",
        'Quote " and backslash \\ and\ttab',
        "{count} code",
        "on",
        "A guess",
        "Not translated yet",
    ]
    assert by_id["A long text that goes on over {count} lines."].msgstr == [
        "En lang tekst som går over {count} linjer."
    ]
    assert by_id["A long text that goes on over {count} lines."].flags == {"python-brace-format"}
    assert by_id["{count} code"].msgid_plural == "{count} codes"
    assert by_id["{count} code"].msgstr == ["{count} kode", "{count} koder"]
    assert by_id["on"].msgctxt == "lamp"
    assert by_id["A guess"].fuzzy
    assert not by_id["Not translated yet"].translated
    assert "Gone" not in by_id  # obsolete entries are history, not texts


def test_compiled_catalogue_works_with_stdlib_gettext() -> None:
    texts = _translations(compile_mo(parse_po(SAMPLE)))
    assert (
        texts.gettext("A long text that goes on over {count} lines.")
        == "En lang tekst som går over {count} linjer."
    )
    assert texts.gettext('Quote " and backslash \\ and\ttab') == 'Sitat " og skråstrek \\ og\ttab'
    assert texts.ngettext("{count} code", "{count} codes", 1) == "{count} kode"
    assert texts.ngettext("{count} code", "{count} codes", 2) == "{count} koder"
    assert texts.pgettext("lamp", "on") == "lyser"
    assert texts.gettext("on") == "on"  # the context keeps it apart from an "on" elsewhere
    assert texts.gettext("A guess") == "A guess"  # fuzzy: never shown
    assert texts.gettext("Not translated yet") == "Not translated yet"  # falls back, never empty
    assert texts.info()["content-type"] == "text/plain; charset=UTF-8"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('msgid "a"\n', "exactly one msgstr"),
        ('msgstr "a"\n', "without msgid"),
        ('msgid "a"\nmsgstr "b"\nmsgid_plural "c"\n', "plural"),
        ('msgid "a"\nmsgid "b"\nmsgstr "c"\n', "given twice"),
        ('msgid "a"\nmsgstr "b"\n\nmsgid "a"\nmsgstr "c"\n', "appears twice"),
        ('msgid "a" "b"\nmsgstr "c"\n', "quoted string"),
        ('msgid "a\nmsgstr "b"\n', "not PO syntax"),
        ('"orphan"\n', "continuation"),
        ('msgid "a"\nmsgstr "b"\nmsgstr "c"\n', "given twice"),
        ('msgid "a"\nmsgid_plural "as"\nmsgstr[1] "b"\n', r"msgstr\[0\]"),
        ("msgid 'a'\nmsgstr 'b'\n", "not PO syntax"),
    ],
)
def test_broken_po_is_reported_with_file_and_line(text: str, message: str) -> None:
    with pytest.raises(PoError, match=message) as raised:
        parse_po(text, origin="x.po")
    assert str(raised.value).startswith("x.po:")


def test_error_names_the_line() -> None:
    with pytest.raises(PoError, match=r"^x\.po:5: "):
        parse_po('msgid "a"\nmsgstr "b"\n\n# comment\nnonsense\n', origin="x.po")


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="msgfmt (gettext-tools) is not installed")
@pytest.mark.parametrize("lang", LANGUAGES)
def test_same_catalogue_as_msgfmt(lang: str, tmp_path: Path) -> None:
    """Our .mo and GNU msgfmt's .mo give gettext exactly the same table (msgfmt also validates)."""
    source = PACKAGE / po_path(lang)
    reference = tmp_path / f"{lang}.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(reference), str(source)], check=True, capture_output=True)
    ours = _translations(compile_mo(parse_po(source.read_text(encoding="utf-8"))))
    theirs = gettext.GNUTranslations(io.BytesIO(reference.read_bytes()))
    assert ours._catalog == theirs._catalog  # type: ignore[attr-defined]
    assert ours.plural(1) == theirs.plural(1) and ours.plural(5) == theirs.plural(5)  # type: ignore[attr-defined]


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="msgfmt (gettext-tools) is not installed")
def test_msgfmt_reads_our_sample_the_same_way(tmp_path: Path) -> None:
    source = tmp_path / "sample.po"
    source.write_text(SAMPLE, encoding="utf-8")
    reference = tmp_path / "sample.mo"
    subprocess.run(["msgfmt", "-o", str(reference), str(source)], check=True, capture_output=True)
    theirs = gettext.GNUTranslations(io.BytesIO(reference.read_bytes()))
    ours = _translations(compile_mo(parse_po(SAMPLE)))
    assert ours._catalog == theirs._catalog  # type: ignore[attr-defined]
