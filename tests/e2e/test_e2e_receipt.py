"""The customer's copy from the command line: ``check --lang nb|en --receipt`` and ``obdtool receipt``."""

from __future__ import annotations

import json
from pathlib import Path

from cli_support import run_cli
from e2e_support import no_traceback

ENV = {"OBDTOOL_WORKSHOP_ID": "NO-OSL-0042", "OBDTOOL_WORKSHOP_NAME": "Bilverksted Oslo"}


def test_refused_in_norwegian_confirms_the_refusal_without_values(tmp_path: Path) -> None:
    out = tmp_path / "out.html"
    done = run_cli(
        "check",
        "--adapter",
        "sim:phev",
        "--obfcm",
        "refused",
        "--lang",
        "nb",
        "--no-upload",
        "--receipt",
        str(out),
        env=ENV,
    )
    assert done.returncode in (0, 1), done.stderr
    assert no_traceback(done.stdout, done.stderr)
    page = out.read_text(encoding="utf-8")
    assert 'lang="nb"' in page
    assert "nekte" in page.lower()
    assert "28744" not in page.replace(" ", "").replace("\u00a0", "")  # the lifetime distance is not there
    assert "Bilverksted Oslo" in page


def test_accepted_in_english_shows_the_values(tmp_path: Path) -> None:
    out = tmp_path / "out.html"
    done = run_cli(
        "check",
        "--adapter",
        "sim:phev",
        "--obfcm",
        "accepted",
        "--lang",
        "en",
        "--no-upload",
        "--receipt",
        str(out),
        "--json",
        env=ENV,
    )
    assert done.returncode in (0, 1), done.stderr
    page = out.read_text(encoding="utf-8")
    assert 'lang="en"' in page
    assert "28,744.6" in page or "28744.6" in page  # the lifetime distance of the scenario
    record_id = json.loads(done.stdout)["record_id"]
    again = tmp_path / "again.html"
    redo = run_cli("receipt", record_id, "--lang", "en", "-o", str(again), env=ENV)
    assert redo.returncode == 0, redo.stderr
    again_page = again.read_text(encoding="utf-8")
    assert "28,744.6" in again_page or "28744.6" in again_page


def test_unknown_record_is_a_data_error() -> None:
    done = run_cli("receipt", "00000000-0000-4000-8000-000000000000", env=ENV)
    assert done.returncode == 5
    assert no_traceback(done.stderr)
