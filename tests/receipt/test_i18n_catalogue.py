"""The catalogue is complete: every text the customer sees has an English and a bokmål entry.

The msgids are collected from the code itself: the first string argument of every ``_``,
``N_``, ``gettext`` and ``format`` call (both arguments of ``_n``, ``ngettext``, ``nformat``) in
the modules whose texts reach the customer.
"""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from obdtool.i18n import LANGUAGES, PoEntry, parse_po, po_path

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER_MODULES = ("obdtool/consent.py", "obdtool/receipt.py")
SINGULAR_MARKERS = {"_", "N_", "gettext", "format"}
PLURAL_MARKERS = {"_n", "ngettext", "nformat"}
# Texts that are the same in bokmål: an international word, units and pure placeholder layouts.
SAME_IN_NB = {"Status", "{value} km", "{value} l", "{unit} ({address})", "{km} km ({source})"}

Msgid = tuple[str, ...]  # (singular,) or (singular, plural)


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and not isinstance(func.value, ast.Constant):
        return func.attr  # "text".format(...) is str.format, not a catalogue lookup
    return None


def msgids_in(path: Path) -> set[Msgid]:
    found: set[Msgid] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        width = 2 if name in PLURAL_MARKERS else 1 if name in SINGULAR_MARKERS else 0
        args = node.args[:width]
        if (
            width
            and len(args) == width
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args)
        ):
            found.add(tuple(a.value for a in args if isinstance(a, ast.Constant)))
    return found


def code_msgids() -> set[Msgid]:
    return set().union(*(msgids_in(ROOT / module) for module in CUSTOMER_MODULES))


def entries(lang: str) -> dict[Msgid, PoEntry]:
    path = ROOT / "obdtool" / po_path(lang)
    out: dict[Msgid, PoEntry] = {}
    for entry in parse_po(path.read_text(encoding="utf-8"), origin=str(path)):
        if entry.msgid:
            key = (entry.msgid,) if entry.msgid_plural is None else (entry.msgid, entry.msgid_plural)
            out[key] = entry
    return out


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_the_scan_finds_the_texts() -> None:
    found = code_msgids()
    assert len(found) > 60
    assert ("refuse",) in found and ("Fault memory",) in found
    assert ("{count} fault code was found.", "{count} fault codes were found.") in found


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_text_in_the_code_is_in_the_catalogue(lang: str) -> None:
    missing = sorted(code_msgids() - set(entries(lang)))
    assert not missing, f"{lang}: add to obdtool/{po_path(lang)}: {missing}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_stale_entries(lang: str) -> None:
    stale = sorted(set(entries(lang)) - code_msgids())
    assert not stale, f"{lang}: no longer used in the code: {stale}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_entry_is_translated_and_none_is_fuzzy(lang: str) -> None:
    for key, entry in entries(lang).items():
        assert not entry.fuzzy, f"{lang}: fuzzy entry {key}"
        assert entry.translated, f"{lang}: empty translation for {key}"
        assert all(s.strip() == s for s in entry.msgstr), f"{lang}: stray whitespace in {key}"


def test_bokmal_differs_from_the_english_source() -> None:
    for key, entry in entries("nb").items():
        if key[0] in SAME_IN_NB:
            continue
        assert all(text not in key for text in entry.msgstr), f"nb: {key} is not translated"


def test_english_entries_keep_the_source_text() -> None:
    """The English catalogue may reword a text; here it still says what the code says."""
    for key, entry in entries("en").items():
        assert tuple(entry.msgstr) == key, f"en: {key} reworded to {entry.msgstr}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_placeholders_match_and_fill(lang: str) -> None:
    for key, entry in entries(lang).items():
        expected = set().union(*(placeholders(k) for k in key))
        for text in entry.msgstr:
            assert placeholders(text) == expected, f"{lang}: placeholders differ in {key}"
            text.format(**dict.fromkeys(expected, "X"))  # braces are balanced and named
        if expected:
            assert "python-brace-format" in entry.flags, f"{lang}: {key} needs '#, python-brace-format'"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_header_declares_utf8_and_plural_rule(lang: str) -> None:
    path = ROOT / "obdtool" / po_path(lang)
    (header,) = [e for e in parse_po(path.read_text(encoding="utf-8")) if e.msgid == ""]
    assert "charset=UTF-8" in header.msgstr[0]
    assert "Plural-Forms: nplurals=2; plural=(n != 1);" in header.msgstr[0]
    assert f"Language: {lang}" in header.msgstr[0]


def test_answer_words_differ_between_languages() -> None:
    nb = entries("nb")
    assert nb[("refuse",)].msgstr == ["nekter"]
    assert nb[("accept",)].msgstr == ["godtar"]
