"""The whole job against the built-in simulator: what the README's first command runs.

A virtual car behind an emulated ELM327 on a real pseudo-terminal, a reference receiver on
loopback, a throw-away outbox: the same code paths a workshop uses, end to end, with nothing
to set up and nothing left behind in the user's own outbox, keyring or configuration.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path

from adapters import open_adapter
from obdtool import __version__
from obdtool.config import Config
from obdtool.consent import from_flag
from obdtool.readout import ReadOptions
from obdtool.visit import run_visit, upload_pending

__all__ = ["run_demo"]


def run_demo(scenario: str, obfcm: str) -> int:
    """Check the simulated car, upload its record, show what the receiver got. Returns an exit code."""
    from obdtool.render import console, render_scan
    from upload.client import UploadClient
    from upload.outbox import Outbox
    from upload.receiver import ReceiverServer

    out = console()
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="obdtool-demo-") as tmp:
        root = Path(tmp)
        with ReceiverServer(root / "receiver", token) as receiver, Outbox(root / "outbox.sqlite3") as outbox:
            config = Config(path=root / "config.toml", endpoint=receiver.url, workshop_id="DEMO-WORKSHOP")
            out.print(f"[bold]Simulated car[/] '{scenario}', reference receiver at {receiver.url}")
            out.print(f"The owner's OBFCM decision (simulated): [bold]{obfcm}[/]\n")
            with open_adapter(f"sim:{scenario}") as adapter:
                outcome = run_visit(
                    adapter,
                    ReadOptions(obfcm=from_flag(obfcm)),
                    config=config,
                    outbox=outbox,
                    upload=lambda: upload_pending(
                        outbox, lambda: UploadClient(receiver.url, token, tool_version=__version__)
                    ),
                )
            render_scan(out, outcome.result)
            if outcome.record_id is None or outcome.upload.error:
                out.print(f"[red]not delivered: {outcome.save_error or outcome.upload.error}[/]")
                return 4
            received = receiver.received(outcome.record_id)
            out.print(
                f"\n[bold]The receiver holds record {outcome.record_id}[/] ({receiver.post_count} POST):"
            )
            out.print_json(json.dumps(received))
    return 3 if outcome.result.error else 0
