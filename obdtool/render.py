"""Rich output for people at the bay; the only module that imports rich.

JSON for scripts is built elsewhere (``obdtool.record``) so both show the same content.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from obdtool.model import ScanResult

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["console", "render_clear", "render_scan"]

_LABELS = {
    "distance_mil_km": "km with MIL on",
    "distance_since_clear_km": "km since clear",
    "minutes_mil": "min with MIL on",
    "minutes_since_clear": "min since clear",
    "warmups_since_clear": "warm-ups since clear",
    "obd_standard": "OBD",
}
_KIND_STYLE = {"stored": "bold red", "pending": "yellow", "permanent": "magenta", "uds": "cyan"}


def console(*, stderr: bool = False) -> Console:
    """A console that degrades to plain text when not on a terminal."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def render_scan(out: Console, result: ScanResult) -> None:
    """The read-out as a technician reads it: car, faults, counters, software, warnings."""
    from rich.table import Table

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("VIN", result.vin or "[yellow]not reported[/]")
    head.add_row("Adapter", result.adapter_description or "-")
    head.add_row("Protocol", result.protocol or "-")
    if result.mileage:
        head.add_row("Mileage", f"{result.mileage.km:,.1f} km  [dim]({result.mileage.source})[/]")
    else:
        head.add_row("Mileage", "[yellow]not available[/]")
    mil = [a for a, e in result.ecus.items() if e.mil_on]
    head.add_row("MIL", f"[bold red]ON[/] ({', '.join(mil)})" if mil else "off")
    out.print(head)

    faults = Table(title="Fault memory", title_justify="left", expand=False)
    for col in ("ECU", "Code", "Status", "Description"):
        faults.add_column(col)
    for ecu in result.ecus.values():
        for d in ecu.dtcs:
            status = d.kind if not d.uds_flags else f"{d.kind}: {', '.join(d.uds_flags)}"
            faults.add_row(ecu.address, d.code, f"[{_KIND_STYLE[d.kind]}]{status}[/]", d.description or "")
    if faults.row_count:
        out.print(faults)
    elif result.ecus:
        out.print("[green]No fault codes stored, pending or permanent.[/]")

    ecus = Table(title="ECUs and software", title_justify="left")
    for col in ("ECU", "Name", "CALID", "CVN", "Counters"):
        ecus.add_column(col)
    for ecu in result.ecus.values():
        counters = "\n".join(
            f"{_LABELS.get(k, k)}: {v}" for k, v in ecu.readings.items() if k != "odometer_km"
        )
        ident = "\n".join(f"{k}: {v}" for k, v in ecu.uds_identification.items())
        ecus.add_row(
            ecu.address,
            (ecu.name or "") + (f"\n{ident}" if ident else ""),
            "\n".join(ecu.calids),
            "\n".join(ecu.cvns),
            counters,
        )
    if result.ecus:
        out.print(ecus)

    for ecu in result.ecus.values():
        if ecu.freeze_frame:
            values = ", ".join(f"{k}={v}" for k, v in ecu.freeze_frame.values.items())
            out.print(f"Freeze frame {ecu.address} ({ecu.freeze_frame.dtc}): {values}")
    _render_obfcm(out, result)
    for ecu in result.ecus.values():
        for err in ecu.errors:
            out.print(f"[yellow]{ecu.address}: {err}[/]")
    for warning in result.warnings:
        out.print(f"[yellow]warning: {warning}[/]")


def _render_obfcm(out: Console, result: ScanResult) -> None:
    obfcm = result.obfcm
    if obfcm is None:
        return
    if obfcm.state == "refused":
        out.print(
            f"OBFCM: [bold]refused by the owner[/] at {obfcm.decided_at:%Y-%m-%d %H:%M UTC} -- nothing read"
        )
        return
    if obfcm.state != "collected":
        out.print(f"OBFCM: not possible -- {obfcm.reason}")
        return
    from rich.table import Table

    table = Table(title="OBFCM (fuel and energy consumption)", title_justify="left")
    for col in ("ECU", "Recent km", "Lifetime km", "Recent l", "Lifetime l", "Raw (unverified)"):
        table.add_column(col)
    for e in obfcm.ecus:
        v: dict[str, Any] = e.itid17 or {}
        raw = ", ".join(f"{r['itid']}: {r['raw_hex']}" for r in e.raw)
        table.add_row(
            e.address,
            *(
                _fmt(v.get(k))
                for k in ("recent_distance_km", "lifetime_distance_km", "recent_fuel_l", "lifetime_fuel_l")
            ),
            raw,
        )
    out.print(table)


def _fmt(value: object) -> str:
    return "n/a" if value is None else str(value)


def render_clear(
    out: Console,
    cleared: dict[str, list[str]],
    remaining: dict[str, list[str]],
    notes: list[str],
    outcome: str,
) -> None:
    """What a clear erased and what is left, per ECU."""
    from rich.table import Table

    table = Table(title=f"Clear: {outcome.replace('_', ' ')}", title_justify="left")
    for col in ("ECU", "Cleared", "Still present"):
        table.add_column(col)
    for address in sorted(set(cleared) | set(remaining)):
        table.add_row(
            address, "\n".join(cleared.get(address, [])) or "-", "\n".join(remaining.get(address, [])) or "-"
        )
    out.print(table)
    for note in notes:
        out.print(f"[yellow]{note}[/]")
