"""The OBFCM refusal question: asked before any OBFCM request, answered explicitly, never assumed.

EU Implementing Regulation 2021/392 art. 9 lets the vehicle owner refuse the collection and
transfer of OBFCM data. The question is put as "does the owner refuse?" with two spelled-out
answers and no default, so that neither a stray Enter nor a reflexive "yes" decides it.

The owner hears the question, so it is asked in the customer's language (``nb`` or ``en``, see
:mod:`obdtool.i18n`). The typed answer is understood in either language whatever the question's
language, because the technician at the keyboard may well answer in English.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from obdtool.errors import ConsentRequiredError
from obdtool.i18n import LANGUAGES, N_, catalog
from obdtool.readout import ObfcmConsent

__all__ = [
    "ACCEPT_WORD",
    "EXPLANATION",
    "QUESTION",
    "REFUSE_WORD",
    "RETRY",
    "answer_words",
    "ask_refusal",
    "explanation",
    "from_flag",
    "parse_answer",
    "question",
]

# English source texts; each is the msgid of its catalogue entry.
EXPLANATION: Final = N_(
    "EU rules call for data on this car's fuel and energy consumption (OBFCM): the fuel or "
    "electric energy used and the distance driven, linked to the car's VIN. The workshop sends "
    "the data to the manufacturer, which passes them on to the European Commission. The "
    "Commission publishes only anonymised totals. The owner may refuse, and refusing has no "
    "consequence for the service."
)
QUESTION: Final = N_(
    "Does the vehicle owner refuse OBFCM collection and transfer? Type '{refuse}' or '{accept}'"
)
RETRY: Final = N_("Please type '{refuse}' or '{accept}' -- there is no default.")
REFUSE_WORD: Final = N_("refuse")
ACCEPT_WORD: Final = N_("accept")

# Forms accepted in every language besides each catalogue's own two words (kept from before
# the texts were translated, so scripts and habits that type them keep working).
_EXTRA_ANSWERS: Final = {"refused": True, "accepted": False}
_QUOTES: Final = "'\"«»“”‘’ "


def explanation(lang: str = "en") -> str:
    """What OBFCM data is, who receives it, and that refusing changes nothing for the service."""
    return catalog(lang).gettext(EXPLANATION)


def _words(lang: str) -> dict[str, str]:
    texts = catalog(lang)
    return {"refuse": texts.gettext(REFUSE_WORD), "accept": texts.gettext(ACCEPT_WORD)}


def question(lang: str = "en") -> str:
    """The question itself, naming the two answers to type in this language."""
    return catalog(lang).format(QUESTION, **_words(lang))


def answer_words() -> dict[str, bool]:
    """Every typed answer understood, in any language: word -> "the owner refuses"."""
    words = dict(_EXTRA_ANSWERS)
    for lang in LANGUAGES:
        own = _words(lang)
        words[own["refuse"].casefold()] = True
        words[own["accept"].casefold()] = False
    return words


def parse_answer(text: str) -> bool | None:
    """True for a refusal, False for an acceptance, None for anything else (asked again)."""
    return answer_words().get(text.strip().strip(_QUOTES).casefold())


def from_flag(value: str, *, now: datetime | None = None) -> ObfcmConsent:
    """The decision given on the command line (``--obfcm accepted|refused``)."""
    if value not in ("accepted", "refused"):
        raise ConsentRequiredError("--obfcm takes 'accepted' or 'refused'")
    return ObfcmConsent(refused=value == "refused", decided_at=now or datetime.now(UTC))


def ask_refusal(
    prompt: Callable[[str], str],
    show: Callable[[str], None],
    *,
    interactive: bool,
    attempts: int = 5,
    lang: str = "en",
) -> ObfcmConsent:
    """Ask the technician, who asks the owner; repeat until the answer is one of the two words.

    ``show`` gets the explanation and ``prompt`` the question, both in ``lang``.

    :raises ConsentRequiredError: in a non-interactive run (scripts must pass ``--obfcm``), or
        when no valid answer came after ``attempts`` tries.
    """
    if not interactive:
        raise ConsentRequiredError(
            "OBFCM needs the owner's decision: run interactively, or pass --obfcm accepted|refused"
        )
    texts = catalog(lang)
    show(texts.gettext(EXPLANATION))
    for _ in range(attempts):
        refused = parse_answer(prompt(question(lang)))
        if refused is not None:
            return ObfcmConsent(refused=refused, decided_at=datetime.now(UTC))
        show(texts.format(RETRY, **_words(lang)))
    raise ConsentRequiredError("no decision on OBFCM was given; nothing was read")
