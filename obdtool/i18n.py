"""Customer-facing language: which one a run uses, and the message catalogue behind it.

The vehicle owner hears the OBFCM refusal question and takes home the receipt, so both exist in
Norwegian bokmål (``nb``) and English (``en``). Texts live in ordinary gettext catalogues,
``obdtool/locale/<lang>/LC_MESSAGES/obdtool.po``, which translators can edit with any PO tool.

Why the ``.po`` file is read at run time and no ``.mo`` file is committed: a compiled ``.mo`` in
the repository is a second copy of every text that silently goes stale when someone edits the
``.po`` and forgets to rebuild, and ``msgfmt`` (gettext-tools) is not on every workshop PC or
CI image. So :func:`parse_po` reads the source, :func:`compile_mo` turns it into the standard
binary ``.mo`` layout in memory, and the standard library's :class:`gettext.GNUTranslations`
does the lookup and the plural rules from there -- exactly what it would do with a file made by
``msgfmt``. The catalogues are small; this costs about a millisecond, once per language.

Messages use named ``{placeholders}`` (``python-brace-format``), so a translation may reorder
them; sentences are never assembled from translated fragments.
"""

from __future__ import annotations

import ast
import functools
import gettext
import io
import os
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Final

from obdtool.errors import UsageError

__all__ = [
    "DEFAULT_LANG",
    "DOMAIN",
    "LANGUAGES",
    "N_",
    "Catalog",
    "PoEntry",
    "PoError",
    "catalog",
    "compile_mo",
    "format_number",
    "normalise_lang",
    "parse_po",
    "po_path",
    "resolve_lang",
    "translator",
]

DOMAIN: Final = "obdtool"
LANGUAGES: Final = ("nb", "en")
DEFAULT_LANG: Final = "en"

# Locale variables in the order POSIX gives them precedence: the first one set decides.
_LOCALE_VARIABLES: Final = ("LC_ALL", "LC_MESSAGES", "LANG")
# Norwegian locales: bokmål, the generic "no" and nynorsk all get the bokmål texts.
_NORWEGIAN_PREFIXES: Final = ("nb", "no", "nn")
_MO_MAGIC: Final = 0x950412DE
_NO_BREAK_SPACE: Final = "\u00a0"


def N_(message: str) -> str:
    """Mark a text for the catalogue without translating it yet (for tables built at import)."""
    return message


# -- choosing the language -----------------------------------------------------------------------


def normalise_lang(value: str) -> str | None:
    """``nb``/``no``/``nn``/``nb_NO.UTF-8`` -> ``nb``; ``en``/``en_GB`` -> ``en``; else None."""
    head = re.split(r"[_.@-]", value.strip().lower(), maxsplit=1)[0]
    if head in _NORWEGIAN_PREFIXES:
        return "nb"
    if head == "en":
        return "en"
    return None


def resolve_lang(flag: str | None, config_lang: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The language of this run: ``--lang``, else the config key ``lang``, else the system locale.

    The locale is the first of ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` that is set (POSIX order):
    a value starting with ``nb``, ``no`` or ``nn`` means bokmål, anything else (``C``, ``de_DE``,
    ...) English, the language every technician here can fall back on.

    :raises UsageError: when the flag or the config names a language that has no catalogue.
    """
    for origin, given in (("--lang", flag), ("config key 'lang'", config_lang)):
        if given:
            lang = normalise_lang(given)
            if lang is None:
                raise UsageError(f"{origin}: no texts in {given!r}; use one of {', '.join(LANGUAGES)}")
            return lang
    for name in _LOCALE_VARIABLES:
        value = environ.get(name, "")
        if value:
            return "nb" if value.lower().startswith(_NORWEGIAN_PREFIXES) else "en"
    return DEFAULT_LANG


# -- the PO source -------------------------------------------------------------------------------


class PoError(ValueError):
    """A catalogue file cannot be read; the message names the file and the line."""


@dataclass(slots=True)
class PoEntry:
    """One message of a PO file. ``msgstr`` has one item, or one per plural form."""

    msgid: str
    msgstr: list[str]
    msgid_plural: str | None = None
    msgctxt: str | None = None
    flags: set[str] = field(default_factory=set)
    line: int = 0

    @property
    def fuzzy(self) -> bool:
        """A translation marked as a guess; gettext never uses it."""
        return "fuzzy" in self.flags

    @property
    def translated(self) -> bool:
        """Every form has a text (an empty ``msgstr`` means "not translated yet")."""
        return bool(self.msgstr) and all(self.msgstr)


_KEYWORD_RE: Final = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(".*")\s*$')


def _unquote(literal: str, where: str) -> str:
    """One PO string literal. PO uses C escapes; those gettext writes mean the same in Python."""
    body = literal[1:-1]
    if len(literal) < 2 or literal[0] != '"' or literal[-1] != '"' or re.search(r'(?<!\\)(\\\\)*"', body):
        raise PoError(f"{where}: expected one quoted string")
    try:
        value = ast.literal_eval(literal)
    except (SyntaxError, ValueError) as exc:
        raise PoError(f"{where}: bad string literal ({exc.__class__.__name__})") from None
    if not isinstance(value, str):
        raise PoError(f"{where}: expected a string")
    return value


@dataclass(slots=True)
class _Draft:
    """The entry being read: its strings so far, its flags and where it started."""

    strings: dict[str, str] = field(default_factory=dict)
    plurals: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    start: int = 0
    last: tuple[str, int | None] | None = None

    @property
    def has_msgstr(self) -> bool:
        return "msgstr" in self.strings or bool(self.plurals)

    def entry(self, origin: str) -> PoEntry | None:
        """The finished entry, or None for a block of comments only."""
        where = f"{origin}:{self.start}"
        if not self.strings and not self.plurals:
            return None
        if "msgid" not in self.strings:
            raise PoError(f"{where}: entry without msgid")
        if "msgid_plural" in self.strings:
            if "msgstr" in self.strings or sorted(self.plurals) != list(range(max(len(self.plurals), 1))):
                raise PoError(f"{where}: a plural entry needs msgstr[0], msgstr[1], ... and no msgstr")
            msgstr = [self.plurals[i] for i in range(len(self.plurals))]
        else:
            if self.plurals or "msgstr" not in self.strings:
                raise PoError(f"{where}: entry needs exactly one msgstr")
            msgstr = [self.strings["msgstr"]]
        return PoEntry(
            msgid=self.strings["msgid"],
            msgstr=msgstr,
            msgid_plural=self.strings.get("msgid_plural"),
            msgctxt=self.strings.get("msgctxt"),
            flags=self.flags,
            line=self.start,
        )


def parse_po(text: str, *, origin: str = "<po>") -> list[PoEntry]:
    """Read the entries of a PO file, header (``msgid ""``) included, obsolete (``#~``) ones skipped.

    :raises PoError: on anything that is not PO syntax, naming ``origin`` and the line.
    """
    entries: list[PoEntry] = []
    draft = _Draft()

    def flush() -> _Draft:
        entry = draft.entry(origin)
        if entry is not None:
            entries.append(entry)
        return _Draft()

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{origin}:{number}"
        if not line:
            draft = flush()
        elif line.startswith("#~"):
            continue
        elif line.startswith("#"):
            if draft.last is not None:
                draft = flush()  # a comment after strings belongs to the next entry
            draft.start = draft.start or number
            if line.startswith("#,"):
                draft.flags |= {flag.strip() for flag in line[2:].split(",") if flag.strip()}
        elif line.startswith('"'):
            if draft.last is None:
                raise PoError(f"{where}: continuation line without a keyword")
            key, index = draft.last
            if index is None:
                draft.strings[key] += _unquote(line, where)
            else:
                draft.plurals[index] += _unquote(line, where)
        else:
            match = _KEYWORD_RE.match(line)
            if match is None:
                raise PoError(f"{where}: not PO syntax: {line[:40]!r}")
            keyword, index_text, literal = match.groups()
            if keyword in ("msgctxt", "msgid") and draft.has_msgstr:
                draft = flush()
            draft.start = draft.start or number
            value = _unquote(literal, where)
            if index_text is not None:
                index = int(index_text)
                if index in draft.plurals:
                    raise PoError(f"{where}: msgstr[{index}] given twice")
                draft.plurals[index] = value
                draft.last = ("msgstr", index)
            else:
                if keyword in draft.strings:
                    raise PoError(f"{where}: {keyword} given twice in one entry")
                draft.strings[keyword] = value
                draft.last = (keyword, None)
    flush()
    seen: set[tuple[str | None, str]] = set()
    for entry in entries:
        identity = (entry.msgctxt, entry.msgid)
        if identity in seen:
            raise PoError(f"{origin}:{entry.line}: msgid {entry.msgid!r} appears twice")
        seen.add(identity)
    return entries


def compile_mo(entries: list[PoEntry]) -> bytes:
    """The GNU ``.mo`` bytes for ``entries``, as ``msgfmt`` would write them (without a hash table).

    Untranslated and fuzzy entries are left out, as ``msgfmt`` does, so a lookup falls back to
    the English source text instead of showing an empty string or a guess. Layout: a 28-byte
    header, two tables of (length, offset) pairs for the sorted keys and their translations,
    then the NUL-terminated strings. Plural forms are joined with NUL; a context is joined to
    the msgid with EOT (0x04).
    """
    pairs: dict[bytes, bytes] = {}
    for entry in entries:
        if entry.fuzzy and entry.msgid:
            continue
        if entry.msgid and not entry.translated:
            continue
        key = entry.msgid
        if entry.msgid_plural is not None:
            key = f"{key}\0{entry.msgid_plural}"
        if entry.msgctxt is not None:
            key = f"{entry.msgctxt}\x04{key}"
        pairs[key.encode("utf-8")] = "\0".join(entry.msgstr).encode("utf-8")
    keys = sorted(pairs)
    count = len(keys)
    header_size = 7 * 4
    originals_at = header_size
    translations_at = originals_at + count * 8
    data_at = translations_at + count * 8
    blob = bytearray()
    originals: list[tuple[int, int]] = []
    translations: list[tuple[int, int]] = []
    for original in keys:
        originals.append((len(original), data_at + len(blob)))
        blob += original + b"\0"
    for original in keys:
        value = pairs[original]
        translations.append((len(value), data_at + len(blob)))
        blob += value + b"\0"
    out = bytearray(struct.pack("<7I", _MO_MAGIC, 0, count, originals_at, translations_at, 0, data_at))
    for length, offset in originals + translations:
        out += struct.pack("<2I", length, offset)
    return bytes(out + blob)


def po_path(lang: str) -> str:
    """Where the PO source of ``lang`` lives, relative to the ``obdtool`` package."""
    return f"locale/{lang}/LC_MESSAGES/{DOMAIN}.po"


def _read_po(lang: str) -> list[PoEntry]:
    resource = resources.files("obdtool").joinpath(po_path(lang))
    return parse_po(resource.read_text(encoding="utf-8"), origin=f"obdtool/{po_path(lang)}")


# -- lookups -------------------------------------------------------------------------------------


class Catalog:
    """The texts of one language, looked up by their English source text (the msgid)."""

    def __init__(self, lang: str, translations: gettext.NullTranslations) -> None:
        self.lang = lang
        self._translations = translations

    def gettext(self, message: str) -> str:
        """The translation of ``message``, or ``message`` itself when the catalogue lacks it."""
        return self._translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """The form of a countable message that fits ``n`` under this language's plural rule."""
        return self._translations.ngettext(singular, plural, n)

    def format(self, message: str, /, **values: object) -> str:
        """Translate, then fill the named ``{placeholders}``."""
        return self.gettext(message).format(**values)

    def nformat(self, singular: str, plural: str, n: int, /, **values: object) -> str:
        """Choose the plural form for ``n``, then fill the placeholders (``{count}`` is ``n``)."""
        return self.ngettext(singular, plural, n).format(count=n, **values)

    def __repr__(self) -> str:
        return f"Catalog({self.lang!r})"


@functools.cache
def catalog(lang: str) -> Catalog:
    """The catalogue of ``nb`` or ``en``, read and compiled once per process.

    :raises UsageError: for a language without a catalogue.
    :raises PoError: when the shipped PO file is damaged (a packaging fault, caught by the tests).
    """
    if lang not in LANGUAGES:
        raise UsageError(f"no texts in {lang!r}; use one of {', '.join(LANGUAGES)}")
    mo = compile_mo(_read_po(lang))
    return Catalog(lang, gettext.GNUTranslations(io.BytesIO(mo)))


def translator(lang: str) -> Callable[[str], str]:
    """``_`` for one language: a function from the English source text to the translation."""
    return catalog(lang).gettext


def format_number(value: float, lang: str, decimals: int = 0) -> str:
    """``48213.4`` -> ``48 213,4`` (nb, no-break space and decimal comma) or ``48,213.4`` (en)."""
    text = f"{value:,.{decimals}f}"
    if lang == "nb":
        return text.replace(",", _NO_BREAK_SPACE).replace(".", ",")
    return text
