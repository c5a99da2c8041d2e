"""The OBFCM refusal question in the owner's language, answered in either language."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from obdtool import consent
from obdtool.errors import ConsentRequiredError


def _answers(*typed: str) -> tuple[Callable[[str], str], list[str], list[str]]:
    """A prompt that types ``typed`` in turn, and the lists of what was asked and shown."""
    asked: list[str] = []
    shown: list[str] = []
    replies: Iterator[str] = iter(typed)

    def prompt(question: str) -> str:
        asked.append(question)
        return next(replies)

    return prompt, asked, shown


@pytest.mark.parametrize(
    ("lang", "typed", "refused"),
    [
        ("nb", "nekter", True),
        ("nb", "godtar", False),
        ("nb", "refuse", True),  # the technician may answer in English
        ("nb", "ACCEPT", False),
        ("en", "refuse", True),
        ("en", "accept", False),
        ("en", "refused", True),  # the forms accepted before the texts were translated
        ("en", "accepted", False),
        ("en", "Nekter", True),
        ("en", " «godtar» ", False),
    ],
)
def test_answers_in_either_language(lang: str, typed: str, refused: bool) -> None:
    prompt, _asked, shown = _answers(typed)
    decision = consent.ask_refusal(prompt, shown.append, interactive=True, lang=lang)
    assert decision.refused is refused
    assert decision.decided_at.tzinfo is not None


def test_norwegian_run_asks_and_explains_in_bokmal() -> None:
    prompt, asked, shown = _answers("", "ja", "nekter")
    consent.ask_refusal(prompt, shown.append, interactive=True, lang="nb")
    assert shown[0] == consent.explanation("nb")
    assert "EU-kommisjonen" in shown[0] and "understellsnummer (VIN)" in shown[0]
    assert "ingen følger for servicen" in shown[0]
    assert asked == [consent.question("nb")] * 3
    assert (
        asked[0]
        == "Nekter eieren av bilen at OBFCM-data samles inn og overføres? Skriv «nekter» eller «godtar»"
    )
    assert shown[1:] == ["Skriv «nekter» eller «godtar» – ingen av dem er valgt på forhånd."] * 2


def test_english_run_keeps_the_english_texts() -> None:
    prompt, asked, shown = _answers("maybe", "refuse")
    consent.ask_refusal(prompt, shown.append, interactive=True)  # English unless told otherwise
    assert shown[0] == consent.EXPLANATION
    assert (
        asked[0] == "Does the vehicle owner refuse OBFCM collection and transfer? Type 'refuse' or 'accept'"
    )
    assert shown[1] == "Please type 'refuse' or 'accept' -- there is no default."


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_explanation_says_what_who_and_no_consequence(lang: str) -> None:
    text = consent.explanation(lang)
    must = {
        "en": (
            "fuel or electric energy used",
            "distance driven",
            "VIN",
            "manufacturer",
            "European Commission",
            "anonymised",
            "no consequence for the service",
        ),
        "nb": (
            "drivstoff eller strøm",
            "hvor langt",
            "VIN",
            "produsenten",
            "EU-kommisjonen",
            "anonymiserte",
            "ingen følger for servicen",
        ),
    }[lang]
    for phrase in must:
        assert phrase in text, phrase
    assert 3 <= text.count(". ") + 1 <= 5  # a few plain sentences, not a wall of text


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_the_question_names_exactly_the_words_it_accepts(lang: str) -> None:
    question = consent.question(lang)
    words = consent.answer_words()
    named = [w for w in words if w in question]
    assert {words[w] for w in named} == {True, False}


@pytest.mark.parametrize("typed", ["", "ja", "nei", "yes", "no", "nekte", "ok"])
def test_no_answer_is_assumed(typed: str) -> None:
    assert consent.parse_answer(typed) is None


def test_gives_up_after_the_attempts_without_deciding() -> None:
    prompt, asked, _shown = _answers(*["ja"] * 3)
    with pytest.raises(ConsentRequiredError, match="nothing was read"):
        consent.ask_refusal(prompt, lambda _text: None, interactive=True, attempts=3, lang="nb")
    assert len(asked) == 3


def test_non_interactive_run_needs_the_flag_in_any_language() -> None:
    with pytest.raises(ConsentRequiredError, match="--obfcm"):
        consent.ask_refusal(lambda _q: "nekter", lambda _t: None, interactive=False, lang="nb")
