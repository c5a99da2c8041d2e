"""The ``obdtool`` command: a thin shell over the workflows.

Each command opens what it needs, calls one workflow and renders the result. Errors from every
layer end here as one line and a documented exit code -- never a traceback. Heavy imports happen
inside the commands so that ``obdtool --help`` starts fast.

Exit codes (documented in the README; scripts branch on them):
  0 done, no faults           1 done, faults present (DTCs or MIL)
  2 usage error                3 adapter or car could not be reached / link failed
  4 upload failed (records kept in the outbox)
  5 configuration or local data problem (config file, outbox)
  6 clear refused, not confirmed or incomplete
  70 internal error (a bug: reported in one line; -vv shows the details)
  130 interrupted
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import click

if TYPE_CHECKING:
    from adapters.base import Adapter
    from obdtool.config import Config
    from obdtool.model import ScanResult
    from upload.outbox import Outbox, RecordState

EXIT_OK, EXIT_FAULTS, EXIT_USAGE, EXIT_ADAPTER, EXIT_UPLOAD, EXIT_DATA, EXIT_CLEAR = 0, 1, 2, 3, 4, 5, 6
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

__all__ = ["main"]


def _fail(message: str, code: int) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _exit_code_for(exc: BaseException) -> int | None:
    from adapters.errors import AdapterError
    from obdtool.errors import ConfigError, ObdToolError, UsageError, WorkflowError
    from upload.errors import OutboxError, UploadError

    table: list[tuple[type[BaseException], int]] = [
        (UsageError, EXIT_USAGE),
        (ConfigError, EXIT_DATA),
        (WorkflowError, EXIT_CLEAR),
        (ObdToolError, EXIT_DATA),
        (AdapterError, EXIT_ADAPTER),
        (OutboxError, EXIT_DATA),
        (UploadError, EXIT_UPLOAD),
    ]
    for kind, code in table:
        if isinstance(exc, kind):
            return code
    return None


class _Group(click.Group):
    """Turns every layer's error into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED)
        except Exception as exc:
            code = _exit_code_for(exc)
            if code is None:
                import logging

                logging.getLogger(__name__).debug("internal error", exc_info=True)
                _fail(
                    f"internal error ({exc.__class__.__name__}: {exc}); nothing further was done."
                    " Please report it; run with -vv to see the details",
                    EXIT_INTERNAL,
                )
            _fail(str(exc) or exc.__class__.__name__, code)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 no faults, 1 faults present, 2 usage, 3 adapter/car, 4 upload, 5 config/local data,"
    " 6 clear not done, 70 internal error, 130 interrupted.",
)
@click.version_option(package_name="obdtool")
@click.option("-v", "--verbose", count=True, help="Log to stderr (-vv for raw adapter traffic).")
def main(verbose: int) -> None:
    """Workshop OBD read-out, OBFCM collection with the owner's refusal honoured, and record upload."""
    import logging

    if not verbose:  # library warnings must not add lines to the one-line error contract
        logging.getLogger().addHandler(logging.NullHandler())
    else:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
            stream=sys.stderr,
        )


# -- shared plumbing ----------------------------------------------------------------------------


def _config() -> Config:
    from obdtool.config import load_config

    return load_config()


def _adapter_spec(given: str | None, config: Config) -> str:
    spec = given or config.adapter
    if not spec:
        raise click.UsageError(
            "no adapter given: use --adapter (e.g. /dev/ttyUSB0, tcp://192.168.0.10:35000, sim:petrol)"
        )
    return spec


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], None]]:
    if not enabled or not sys.stderr.isatty():
        yield lambda _msg: None
        return
    from obdtool.render import console

    with console(stderr=True).status("Starting") as status:
        yield status.update


def _open_adapter(spec: str) -> Adapter:
    from adapters import open_adapter

    return open_adapter(spec, trace=click.get_current_context().meta.get("obdtool.trace"))


def _remember_trace(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.meta["obdtool.trace"] = value


trace_option = click.option(
    "--trace",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    expose_value=False,
    callback=_remember_trace,
    help="Write the raw adapter traffic to FILE (ELM327 adapters); replay it with --adapter replay:FILE.",
)


def _outbox() -> Outbox:
    from upload.outbox import Outbox, default_outbox_path

    return Outbox(default_outbox_path())


def _print_json(doc: Any) -> None:
    import json

    click.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))


def _scan_exit(result: ScanResult) -> int:
    if result.error:
        return EXIT_ADAPTER
    return EXIT_FAULTS if result.has_faults else EXIT_OK


adapter_option = click.option(
    "--adapter",
    "-a",
    "adapter_spec",
    metavar="SPEC",
    help="Serial port (/dev/ttyUSB0, COM3), tcp://host:port, can:IFACE:CHANNEL, sim:SCENARIO,"
    " simcan:SCENARIO or replay:TRACE.",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of tables."
)
obfcm_option = click.option(
    "--obfcm",
    type=click.Choice(["accepted", "refused"]),
    help="The vehicle owner's decision on OBFCM collection and transfer (asked interactively when omitted).",
)
uds_option = click.option(
    "--uds/--no-uds", default=None, help="Read UDS identification and fault memory (CAN; default on for CAN)."
)
lang_option = click.option(
    "--lang",
    "lang_flag",
    type=click.Choice(["nb", "en"]),
    help="Language of what the customer sees (refusal question, receipt). Default: config key 'lang',"
    " then the system locale.",
)


def _lang(flag: str | None, config: Config) -> str:
    from obdtool.i18n import resolve_lang

    return resolve_lang(flag, config.lang)


def _write_receipt(entry: Any, config: Config, lang: str, output: Path, *, pdf: bool) -> None:
    """The customer's copy of one outbox entry; a missing PDF renderer is a note, not an error."""
    from obdtool.receipt import WorkshopInfo, html_to_pdf, render_receipt, write_receipt

    workshop = WorkshopInfo(
        name=config.workshop_name or config.workshop_id or "",
        workshop_id=config.workshop_id or "",
        controller_contact=config.controller_contact,
    )
    page = render_receipt(
        entry.body,
        state=entry.state,
        sent_at=entry.sent_at,
        receipt=entry.receipt,
        lang=lang,
        workshop=workshop,
    )
    path = write_receipt(output, page)
    click.echo(f"Customer copy written to {path}", err=True)
    if pdf:
        pdf_path = path.with_suffix(".pdf")
        if html_to_pdf(path, pdf_path):
            click.echo(f"PDF written to {pdf_path}", err=True)
        else:
            click.secho(
                "No PDF: Chromium was not found or could not print; print the HTML file instead.",
                fg="yellow",
                err=True,
            )


def _consent(flag: str | None, *, required: bool, lang: str = "en") -> Any:
    from obdtool import consent

    if flag is not None:
        return consent.from_flag(flag)
    if not required:
        return None
    return consent.ask_refusal(
        lambda q: click.prompt(q, default=None, show_default=False, err=True),
        lambda text: click.echo(text, err=True),
        interactive=sys.stdin.isatty(),
        lang=lang,
    )


def _read_options(adapter_spec: str, uds: bool | None, obfcm: Any) -> Any:
    from obdtool.readout import ReadOptions

    is_can = adapter_spec.startswith(("can:", "simcan:"))
    return ReadOptions(obfcm=obfcm, uds=is_can if uds is None else uds)


# -- read-out -----------------------------------------------------------------------------------


@main.command()
@adapter_option
@trace_option
@json_option
@obfcm_option
@uds_option
@lang_option
def scan(
    adapter_spec: str | None, as_json: bool, obfcm: str | None, uds: bool | None, lang_flag: str | None
) -> None:
    """Read identity, fault memory, mileage and software versions (no record, no upload).

    OBFCM is read only when --obfcm says the owner's decision.
    """
    from obdtool.readout import read_vehicle
    from obdtool.record import scan_document

    config = _config()
    spec = _adapter_spec(adapter_spec, config)
    options = _read_options(spec, uds, _consent(obfcm, required=False, lang=_lang(lang_flag, config)))
    with _progress(not as_json) as say, _open_adapter(spec) as adapter:
        result = read_vehicle(adapter, options, progress=say)
    code = _scan_exit(result)
    if as_json:
        _print_json(scan_document(result))
    else:
        from obdtool.render import console, render_scan

        render_scan(console(), result)
    if result.error:
        _fail(f"{result.error} (what was read is shown above)", code)
    sys.exit(code)


@main.command()
@adapter_option
@trace_option
@json_option
@obfcm_option
@uds_option
@click.option(
    "--no-upload", is_flag=True, help="Keep this visit's record local: the owner objects to any transfer."
)
@lang_option
@click.option(
    "--receipt",
    "receipt_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the customer's copy of this visit (printable HTML, one A4 page) to FILE.",
)
def check(
    adapter_spec: str | None,
    as_json: bool,
    obfcm: str | None,
    uds: bool | None,
    no_upload: bool,
    lang_flag: str | None,
    receipt_path: Path | None,
) -> None:
    """The whole pre-service job: refusal question, read-out, record, outbox, upload."""
    from obdtool.visit import run_visit

    config = _config()
    spec = _adapter_spec(adapter_spec, config)
    lang = _lang(lang_flag, config)
    decision = _consent(obfcm, required=True, lang=lang)  # asked before anything reaches the car
    options = _read_options(spec, uds, decision)
    hold = "kept local at the owner's request (--no-upload)" if no_upload else None
    if hold is None and spec.startswith(SIMULATED) and not _loopback_endpoint(config.endpoint):
        hold = "a simulated or replayed car: its record is never sent to a manufacturer's endpoint"
    outbox = _outbox()
    with outbox, _progress(not as_json) as say, _open_adapter(spec) as adapter:
        outcome = run_visit(
            adapter,
            options,
            config=config,
            outbox=outbox,
            hold=hold,
            upload=None if hold else lambda: _upload_all(outbox, config, quiet=True),
            progress=say,
        )
        entry = outbox.get(outcome.record_id) if receipt_path and outcome.record_id else None
    if receipt_path and entry is not None:
        _write_receipt(entry, config, lang, receipt_path, pdf=False)
    if as_json:
        _print_json(
            {
                "record_id": outcome.record_id,
                "saved": outcome.save_error is None,
                "held": outcome.held,
                "hold_reason": outcome.hold_reason,
                "upload": _summary_json(outcome.upload),
                "record": outcome.record,
            }
        )
    else:
        from obdtool.render import console, render_scan

        out = console()
        render_scan(out, outcome.result)
        if outcome.record_id:
            out.print(f"Record {outcome.record_id} saved in the outbox.")
        if outcome.held:
            out.print(f"Not sent: {outcome.hold_reason}.")
        elif outcome.upload.sent or outcome.upload.duplicates:
            out.print("[green]Sent to the manufacturer.[/]")
        elif outcome.upload.error:
            out.print(
                f"[yellow]Not sent yet: {outcome.upload.error}."
                " It waits in the outbox; run 'obdtool upload'.[/]"
            )
    if outcome.save_error:
        _fail(f"{outcome.save_error} (the read-out is shown above; nothing was saved)", EXIT_DATA)
    if outcome.result.error:
        _fail(f"{outcome.result.error} (the partial record was saved)", EXIT_ADAPTER)
    sys.exit(_scan_exit(outcome.result))


SIMULATED = ("sim:", "simcan:", "replay:")


def _loopback_endpoint(endpoint: str | None) -> bool:
    """True for the reference receiver on this computer (where a simulated car's record may go)."""
    from urllib.parse import urlsplit

    host = urlsplit(endpoint or "").hostname or ""
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _summary_json(summary: Any) -> dict[str, Any]:
    return {
        "attempted": summary.attempted,
        "sent": summary.sent,
        "duplicates": summary.duplicates,
        "rejected": summary.rejected,
        "remaining": summary.remaining,
        "error": summary.error,
    }


def _upload_client(config: Config) -> Any:
    from obdtool.errors import ConfigError
    from upload.client import UploadClient, check_endpoint
    from upload.credentials import TokenStore
    from upload.errors import CredentialError

    if not config.endpoint:
        raise ConfigError("no endpoint configured: run 'obdtool config set endpoint https://...'")
    endpoint = check_endpoint(config.endpoint)
    token = TokenStore.for_endpoint(endpoint).get()
    if not token:
        raise CredentialError("no API token stored for this endpoint: run 'obdtool auth login'")
    cert: Any = None
    if config.client_cert:
        cert = (config.client_cert, config.client_key) if config.client_key else config.client_cert
    from obdtool import __version__

    return UploadClient(endpoint, token, ca_file=config.ca_file, client_cert=cert, tool_version=__version__)


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc


def _upload_all(outbox: Outbox, config: Config, *, quiet: bool) -> Any:
    from obdtool.errors import ConfigError
    from obdtool.visit import UploadSummary, upload_pending
    from upload.errors import UploadError

    try:
        factory = _client_factory(config)
    except (UploadError, ConfigError) as exc:  # not set up for uploads yet: the record waits
        return UploadSummary(attempted=False, error=str(exc), remaining=outbox.count("pending"))
    if quiet or not sys.stderr.isatty():
        return upload_pending(outbox, factory)
    from rich.progress import Progress

    with Progress(transient=True, console=None) as bar:
        task = bar.add_task("Uploading", total=None)
        return upload_pending(
            outbox, factory, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )


def _client_factory(config: Config) -> Callable[[], Any]:
    client = _upload_client(config)
    return lambda: client


@main.command()
def upload() -> None:
    """Send every pending record in the outbox to the manufacturer."""
    config = _config()
    with _outbox() as outbox:
        summary = _upload_all(outbox, config, quiet=False)
    click.echo(
        f"sent {summary.sent}, already there {summary.duplicates}, rejected {summary.rejected}, "
        f"still pending {summary.remaining}"
    )
    if summary.error:
        _fail(f"{summary.error} (records stay in the outbox)", EXIT_UPLOAD)


# -- clear --------------------------------------------------------------------------------------


@main.command()
@adapter_option
@trace_option
@click.option(
    "--ecu", "ecus", multiple=True, metavar="ADDR", help="Clear only this ECU (e.g. 7E8); repeatable."
)
@click.option("--yes", is_flag=True, help="Confirm without asking (required when not interactive).")
@click.option("--force", is_flag=True, help="Clear even with the engine running.")
@uds_option
@json_option
def clear(
    adapter_spec: str | None, ecus: tuple[str, ...], yes: bool, force: bool, uds: bool | None, as_json: bool
) -> None:
    """Clear fault memory, deliberately: snapshot, confirmation, re-read, audit record."""
    from obdtool.clear import ClearPlan, run_clear
    from obdtool.errors import UsageError
    from obdtool.record import build_clear_record

    config = _config()
    spec = _adapter_spec(adapter_spec, config)
    interactive = sys.stdin.isatty()
    if not yes and not interactive:
        raise UsageError("clearing fault memory needs --yes in a non-interactive run; nothing was changed")
    if not config.workshop_id:
        from obdtool.errors import ConfigError

        raise ConfigError("no workshop id configured: run 'obdtool config set workshop_id <id>'")
    plan = ClearPlan(
        ecus=[e.upper() for e in ecus],
        force=force,
        uds=spec.startswith(("can:", "simcan:")) if uds is None else uds,
    )
    outbox = _outbox()
    saved: dict[str, str] = {}

    def confirm(before: ScanResult) -> bool:
        if yes:
            return True
        from obdtool.render import console, render_scan

        render_scan(console(), before)
        targets = ", ".join(plan.ecus) or "every ECU"
        answer = click.prompt(
            f"Erase the fault memory of {targets}? This cannot be undone. Type 'yes' to clear",
            default="",
            show_default=False,
        )
        return answer.strip().lower() == "yes"

    def save_before(before: ScanResult) -> None:
        record = build_clear_record(
            before,
            None,
            workshop_id=config.workshop_id or "",
            requested_ecus=plan.ecus,
            outcome="failed",
            refusals=[],
            notes=["clear sent; outcome not yet known"],
        )
        saved["id"] = outbox.add(record, hold=before.vin is None)

    with outbox, _progress(not as_json) as say, _open_adapter(spec) as adapter:
        outcome = run_clear(adapter, plan, confirm=confirm, save_before=save_before, progress=say)
        record = build_clear_record(
            outcome.before,
            outcome.after,
            workshop_id=config.workshop_id,
            requested_ecus=plan.ecus,
            outcome=outcome.outcome,
            refusals=outcome.refusals,
            notes=outcome.notes,
        )
        record["record_id"] = saved["id"]
        outbox.replace_unsent(saved["id"], record)
    if as_json:
        _print_json(
            {
                "record_id": saved["id"],
                "outcome": outcome.outcome,
                "cleared": outcome.cleared,
                "remaining": outcome.remaining,
                "refusals": outcome.refusals,
                "notes": outcome.notes,
            }
        )
    else:
        from obdtool.render import console, render_clear

        render_clear(console(), outcome.cleared, outcome.remaining, outcome.notes, outcome.outcome)
        for refusal in outcome.refusals:
            click.secho(f"{refusal['address']} refused: {refusal['message']}", fg="yellow")
        click.echo(f"Clear record {saved['id']} saved in the outbox.")
    if outcome.outcome != "cleared":
        _fail(f"clear {outcome.outcome.replace('_', ' ')}", EXIT_CLEAR)


@main.command("receipt")
@click.argument("record_id")
@lang_option
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTML file to write (default: receipt-RECORD_ID.html here).",
)
@click.option("--pdf", is_flag=True, help="Also print a PDF beside the HTML (needs Chromium).")
def receipt_command(record_id: str, lang_flag: str | None, output: Path | None, pdf: bool) -> None:
    """Write the customer's copy of one record: what was read, and whether and when it was sent."""
    config = _config()
    with _outbox() as box:
        entry = box.get(record_id)
    _write_receipt(
        entry, config, _lang(lang_flag, config), output or Path(f"receipt-{record_id}.html"), pdf=pdf
    )


# -- simulator and receiver ---------------------------------------------------------------------


@main.command()
@click.argument("scenario")
@click.option(
    "--tcp-port", type=int, default=35000, show_default=True, help="Loopback TCP port (0 = any free)."
)
@click.option("--no-tcp", is_flag=True, help="Serve only the pseudo-terminal.")
@click.option("--no-pty", is_flag=True, help="Serve only TCP.")
@click.option(
    "--realtime/--instant",
    default=True,
    show_default=True,
    help="Pace bytes at the adapter baud rate and add ECU response times.",
)
def sim(scenario: str, tcp_port: int, no_tcp: bool, no_pty: bool, realtime: bool) -> None:
    """Run a virtual car behind an ELM327 on a pseudo-terminal and a loopback TCP port (Ctrl-C stops)."""
    from adapters.sim.elm327 import TimingModel
    from adapters.sim.server import serve

    timing = TimingModel(enabled=True) if realtime else None
    click.echo(
        f"Simulating {scenario}; connect with --adapter <pty path> or --adapter tcp://127.0.0.1:<port>."
        " Ctrl-C stops."
    )
    try:
        serve(
            scenario,
            pty=not no_pty,
            tcp_port=None if no_tcp else tcp_port,
            timing=timing,
            on_ready=click.echo,
        )
    except KeyboardInterrupt:
        click.echo("stopped")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8443, show_default=True)
@click.option("--store", type=click.Path(path_type=Path), default=Path("receiver-store"), show_default=True)
@click.option("--certfile", type=click.Path(exists=True, path_type=Path), help="TLS certificate (PEM).")
@click.option("--keyfile", type=click.Path(exists=True, path_type=Path), help="TLS key (PEM).")
@click.option(
    "--fail", metavar="FAULTS", help="Misbehave for tests, e.g. 'fail=2,throttle=1,retry-after=0.5,reset=1'."
)
def receiver(
    host: str, port: int, store: Path, certfile: Path | None, keyfile: Path | None, fail: str | None
) -> None:
    """Run the reference receiver (the manufacturer endpoint contract) in the foreground.

    The token clients must present is read from standard input (one line) or OBDTOOL_RECEIVER_TOKEN.
    """
    import os

    from upload.receiver import parse_faults, serve_forever

    token = os.environ.get("OBDTOOL_RECEIVER_TOKEN") or (
        sys.stdin.readline().strip()
        if not sys.stdin.isatty()
        else click.prompt("Token clients must send", hide_input=True)
    )
    if not token:
        raise click.UsageError("the receiver needs a token")
    scheme = "https" if certfile else "http"
    click.echo(f"receiving at {scheme}://{host}:{port}/v1/records (Ctrl-C stops)")
    serve_forever(
        store,
        token,
        host=host,
        port=port,
        certfile=certfile,
        keyfile=keyfile,
        faults=parse_faults(fail) if fail else None,
    )


# -- outbox, auth, config -----------------------------------------------------------------------


@main.group()
def outbox() -> None:
    """Look after the records waiting for, or already at, the manufacturer."""


@outbox.command("list")
@click.option("--state", type=click.Choice(["pending", "sent", "rejected", "held"]))
@click.option("--vin")
@json_option
def outbox_list(state: str | None, vin: str | None, as_json: bool) -> None:
    """List records: time, kind (visit/clear), VIN, state; clear events are the audit trail."""
    with _outbox() as box:
        entries = list(box.iter_entries(state=cast("RecordState | None", state), vin=vin))
        if as_json:
            _print_json([_entry_json(e) for e in entries])
            return
        from rich.table import Table

        from obdtool.render import console

        table = Table(title=f"Outbox ({len(entries)} records)", title_justify="left")
        for col in ("Record", "Created", "Kind", "VIN", "State", "Outcome / last error"):
            table.add_column(col)
        for e in entries:
            extra = e.last_error or ""
            if e.kind == "clear":
                body = e.body
                clear_info = body.get("clear") or {}
                ecus = ", ".join(clear_info.get("requested_ecus") or ["all ECUs"])
                extra = f"clear {ecus}: {clear_info.get('outcome')}"
            table.add_row(e.record_id, e.created_at, e.kind, e.vin or "-", e.state, extra)
        console().print(table)


def _entry_json(e: Any) -> dict[str, Any]:
    return {
        "record_id": e.record_id,
        "created_at": e.created_at,
        "kind": e.kind,
        "vin": e.vin,
        "state": e.state,
        "attempts": e.attempts,
        "last_error": e.last_error,
        "receipt": e.receipt,
        "sent_at": e.sent_at,
    }


@outbox.command("show")
@click.argument("record_id")
def outbox_show(record_id: str) -> None:
    """Print one record exactly as it is (or was) sent."""
    with _outbox() as box:
        entry = box.get(record_id)
        _print_json({**_entry_json(entry), "body": entry.body})


@outbox.command("retry")
@click.argument("record_id")
def outbox_retry(record_id: str) -> None:
    """Put a rejected record back in the queue (after the cause was fixed)."""
    with _outbox() as box:
        box.requeue(record_id)
    click.echo(f"{record_id} is pending again; run 'obdtool upload'")


@outbox.command("purge")
@click.option(
    "--older-than-days", type=int, help="Remove sent records older than this (default: retention_days)."
)
@click.option("--vin", help="Remove every record of this VIN (an erasure request); export them first.")
@click.option("--yes", is_flag=True, help="Confirm a --vin purge without asking.")
def outbox_purge(older_than_days: int | None, vin: str | None, yes: bool) -> None:
    """Remove sent records past retention, or all records of one VIN on explicit request."""
    from datetime import timedelta

    from obdtool.errors import UsageError

    with _outbox() as box:
        if vin:
            if not yes and not (
                sys.stdin.isatty() and click.confirm(f"Delete every record of {vin}?", default=False)
            ):
                raise UsageError(
                    "purging a VIN needs --yes (export it first with 'obdtool outbox export --vin')"
                )
            click.echo(f"removed {box.purge_vin(vin)} record(s) of {vin}")
            return
        days = older_than_days if older_than_days is not None else _config().retention_days
        click.echo(f"removed {box.purge_sent(timedelta(days=days))} sent record(s) older than {days} days")


@outbox.command("export")
@click.option("--vin", required=True, help="Export every record of this VIN (an access request).")
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), help="File to write (default: standard output)."
)
def outbox_export(vin: str, output: Path | None) -> None:
    """Export every record of one VIN as JSON, for the owner's right of access."""
    with _outbox() as box:
        import json

        doc = json.dumps(box.export_vin(vin), indent=2, ensure_ascii=False)
    if output:
        output.write_text(doc + "\n", encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(doc)


@main.group()
def auth() -> None:
    """The API token for the manufacturer endpoint, kept in the OS keyring only."""


def _token_store() -> Any:
    from obdtool.errors import ConfigError
    from upload.client import check_endpoint
    from upload.credentials import TokenStore

    config = _config()
    if not config.endpoint:
        raise ConfigError("no endpoint configured: run 'obdtool config set endpoint https://...' first")
    return TokenStore.for_endpoint(check_endpoint(config.endpoint))


@auth.command("login")
def auth_login() -> None:
    """Store the API token (prompted, or one line from standard input when piped)."""
    store = _token_store()
    token = click.prompt("API token", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline().strip()
    if not token:
        raise click.UsageError("no token given")
    store.set(token)
    click.echo("token stored in the OS keyring")


@auth.command("logout")
def auth_logout() -> None:
    """Remove the stored API token."""
    click.echo("token removed" if _token_store().delete() else "no token was stored")


@auth.command("status")
def auth_status() -> None:
    """Say whether a token is stored (never shows it)."""
    click.echo("a token is stored" if _token_store().get() else "no token stored")


@main.group("config")
def config_group() -> None:
    """Show or change the workshop configuration."""


@config_group.command("show")
def config_show() -> None:
    """Print the effective configuration and where it comes from."""
    config = _config()
    click.echo(f"# {config.path}")
    for key, value in config.as_dict().items():
        click.echo(f"{key} = {value if value is not None else '(not set)'}")


@config_group.command("set")
@click.argument("key")
@click.argument("value")
def config_set(key: str, value: str) -> None:
    """Set one key, e.g. 'obdtool config set endpoint https://...'."""
    from obdtool.config import set_value

    click.echo(f"{key} set in {set_value(key, value)}")


# -- the demo -----------------------------------------------------------------------------------


@main.command()
@click.option("--scenario", default="petrol", show_default=True, help="Simulated car to check.")
@click.option(
    "--obfcm",
    type=click.Choice(["accepted", "refused"]),
    default="accepted",
    show_default=True,
    help="The simulated owner's decision.",
)
def demo(scenario: str, obfcm: str) -> None:
    """The whole job on the simulator: check a virtual car and upload to a receiver on loopback."""
    from obdtool.demo import run_demo

    sys.exit(run_demo(scenario, obfcm))


if __name__ == "__main__":  # pragma: no cover
    main()
