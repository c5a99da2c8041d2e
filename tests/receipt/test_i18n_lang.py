"""Which language a run speaks: --lang, then the config key, then the system locale."""

from __future__ import annotations

import pytest

from obdtool.errors import UsageError
from obdtool.i18n import catalog, format_number, normalise_lang, resolve_lang, translator


@pytest.mark.parametrize(
    ("flag", "config", "environ", "expected"),
    [
        ("nb", "en", {"LANG": "en_GB.UTF-8"}, "nb"),  # the flag wins over everything
        ("en", "nb", {"LANG": "nb_NO.UTF-8"}, "en"),
        (None, "nb", {"LANG": "en_US.UTF-8"}, "nb"),  # then the config key
        (None, "en", {"LANG": "nb_NO.UTF-8"}, "en"),
        (None, None, {"LANG": "nb_NO.UTF-8"}, "nb"),  # then the locale
        (None, None, {"LANG": "no_NO"}, "nb"),
        (None, None, {"LANG": "nn_NO.UTF-8"}, "nb"),  # nynorsk readers get bokmål, not English
        (None, None, {"LANG": "de_DE.UTF-8"}, "en"),
        (None, None, {"LANG": "C.UTF-8"}, "en"),
        (None, None, {}, "en"),
        ("", "", {"LANG": "nb_NO.UTF-8"}, "nb"),  # empty means "not given"
    ],
)
def test_precedence(flag: str | None, config: str | None, environ: dict[str, str], expected: str) -> None:
    assert resolve_lang(flag, config, environ) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LC_ALL": "nb_NO.UTF-8", "LC_MESSAGES": "en_US.UTF-8", "LANG": "en_US.UTF-8"}, "nb"),
        ({"LC_ALL": "C", "LANG": "nb_NO.UTF-8"}, "en"),  # LC_ALL=C overrides a Norwegian LANG
        ({"LC_ALL": "", "LC_MESSAGES": "nb_NO.UTF-8", "LANG": "en_US.UTF-8"}, "nb"),
        ({"LC_MESSAGES": "en_US.UTF-8", "LANG": "nb_NO.UTF-8"}, "en"),
    ],
)
def test_locale_variables_follow_posix_order(environ: dict[str, str], expected: str) -> None:
    assert resolve_lang(None, None, environ) == expected


def test_the_real_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "nb_NO.UTF-8")
    assert resolve_lang(None, None) == "nb"


@pytest.mark.parametrize("value", ["nb", "NB", "no", "nn", "nb_NO", "nb-NO", "nb_NO.UTF-8", "no_NO@euro"])
def test_norwegian_spellings(value: str) -> None:
    assert normalise_lang(value) == "nb"
    assert resolve_lang(value, None, {}) == "nb"


@pytest.mark.parametrize("value", ["de", "sv", "fr_FR", "norsk"])
def test_a_language_without_texts_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match="--lang"):
        resolve_lang(value, None, {})
    with pytest.raises(UsageError, match="config key 'lang'"):
        resolve_lang(None, value, {})
    with pytest.raises(UsageError):
        catalog(value)


def test_translator_is_a_plain_function() -> None:
    assert translator("nb")("Fault memory") == "Feilminne"
    assert translator("en")("Fault memory") == "Fault memory"
    assert translator("nb")("a text that is not in the catalogue") == "a text that is not in the catalogue"


def test_plural_forms_follow_each_language() -> None:
    texts = catalog("nb")
    one, many = "{count} fault code was found.", "{count} fault codes were found."
    assert texts.nformat(one, many, 1) == "Det ble funnet 1 feilkode."
    assert texts.nformat(one, many, 0) == "Det ble funnet 0 feilkoder."
    assert texts.nformat(one, many, 8) == "Det ble funnet 8 feilkoder."
    assert catalog("en").nformat(one, many, 1) == "1 fault code was found."


@pytest.mark.parametrize(
    ("value", "decimals", "nb", "en"),
    [
        (48213.4, 1, "48\u00a0213,4", "48,213.4"),
        (655.12, 2, "655,12", "655.12"),
        (1234567, 0, "1\u00a0234\u00a0567", "1,234,567"),
        (0.0, 1, "0,0", "0.0"),
    ],
)
def test_numbers_are_written_the_local_way(value: float, decimals: int, nb: str, en: str) -> None:
    assert format_number(value, "nb", decimals) == nb
    assert format_number(value, "en", decimals) == en
