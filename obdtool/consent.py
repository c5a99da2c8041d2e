"""The OBFCM refusal question: asked before any OBFCM request, answered explicitly, never assumed.

EU Implementing Regulation 2021/392 art. 9 lets the vehicle owner refuse the collection and
transfer of OBFCM data. The question is put as "does the owner refuse?" with two spelled-out
answers and no default, so that neither a stray Enter nor a reflexive "yes" decides it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from obdtool.errors import ConsentRequiredError
from obdtool.readout import ObfcmConsent

__all__ = ["EXPLANATION", "QUESTION", "ask_refusal", "from_flag"]

EXPLANATION = (
    "EU rules ask workshops to read this car's fuel and energy consumption counters (OBFCM: fuel or "
    "energy used and distance driven) and send them, linked to the VIN, to the manufacturer, which "
    "passes them to the European Commission; only anonymised totals are published. The owner may "
    "refuse; refusing has no consequence for the service."
)
QUESTION = "Does the vehicle owner refuse OBFCM collection and transfer? Type 'refuse' or 'accept'"

_ANSWERS = {"refuse": True, "refused": True, "accept": False, "accepted": False}


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
) -> ObfcmConsent:
    """Ask the technician, who asks the owner; repeat until the answer is one of the two words.

    :raises ConsentRequiredError: in a non-interactive run (scripts must pass ``--obfcm``), or
        when no valid answer came after ``attempts`` tries.
    """
    if not interactive:
        raise ConsentRequiredError(
            "OBFCM needs the owner's decision: run interactively, or pass --obfcm accepted|refused"
        )
    show(EXPLANATION)
    for _ in range(attempts):
        answer = prompt(QUESTION).strip().lower()
        if answer in _ANSWERS:
            return ObfcmConsent(refused=_ANSWERS[answer], decided_at=datetime.now(UTC))
        show("Please type 'refuse' or 'accept' -- there is no default.")
    raise ConsentRequiredError("no decision on OBFCM was given; nothing was read")
