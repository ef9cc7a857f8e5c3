"""The printable directory: ``hubnode directory print`` writes one A4 HTML page.

Live services grouped by category in the vocabulary's order, each with who it is for,
cost, hours, where, contacts and whether it is taking people on; plain serif type and
no colour, so it prints well on a library or surgery printer.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated, Final

import typer

from hubnode.commands.common import DataOpt, fail, folder_of, out
from hubnode.commands.directory import Listing, Search, _listings, costs_text, parse_district
from hubnode.events.directory import CATEGORIES, DAYS

_DAY_NAMES: Final = dict(zip(DAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), strict=True))
PRINT_CSS: Final = """
@page { size: A4; margin: 18mm 15mm; }
body { font: 11pt/1.4 Georgia, "Times New Roman", serif; color: #000; max-width: 180mm;
       margin: 0 auto; }
h1 { font-size: 20pt; margin: 0 0 4mm; }
h2 { font-size: 15pt; border-bottom: 1.5pt solid #000; margin: 8mm 0 3mm;
     break-after: avoid; page-break-after: avoid; }
.service { break-inside: avoid; page-break-inside: avoid; margin: 0 0 5mm; }
.service h3 { font-size: 12pt; margin: 0; }
.org { font-style: italic; margin: 0 0 1mm; }
dl { display: grid; grid-template-columns: 28mm 1fr; gap: 0.5mm 3mm; margin: 1mm 0; }
dt { font-weight: bold; }
dd { margin: 0; }
@media screen { body { padding: 10mm; } }
"""


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _service_html(f: Listing) -> str:
    s, e = f.service, html.escape
    rows: list[tuple[str, str]] = []
    if s.eligibility:
        rows.append(("Who it is for", s.eligibility))
    rows.append(("Cost", _first_upper(costs_text(s)) if s.costs else "Ask the service"))
    if s.schedules:
        rows.append(
            (
                "Open",
                "; ".join(
                    f"{', '.join(_DAY_NAMES[d] for d in h.days)} {h.opens} to {h.closes}"
                    + (f" ({h.note})" if h.note else "")
                    for h in s.schedules
                ),
            )
        )
    if s.location:
        loc = s.location
        parts = [loc.name, *loc.address, loc.town, loc.postcode]
        rows.append(("Where", ", ".join(p for p in parts if p)))
    if s.areas:
        rows.append(("Areas", ", ".join(s.areas)))
    for c in s.contacts:
        how = " or ".join(x for x in (c.phone, c.email) if x)
        rows.append(("Contact", f"{c.label}: {how}" if c.label else how))
    if s.url:
        rows.append(("Website", s.url))
    if s.languages:
        rows.append(("Languages", ", ".join(s.languages)))
    if f.capacity:
        status = {"accepting": "Taking people on", "waitlist": "Waiting list"}.get(
            f.capacity["status"], "Full at the moment"
        )
        rows.append(("Places", f"{status} (as of {f.capacity['as_of']})"))
    items = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows)
    return (
        f'<section class="service"><h3>{e(s.name)}</h3><p class="org">{e(s.organisation)}</p>'
        f"<p>{e(s.description)}</p><dl>{items}</dl></section>"
    )


def directory_html(found: list[Listing], *, title: str, stylesheet: str | None = None) -> str:
    """A printable directory: A4, grouped by category in the vocabulary's order.

    ``stylesheet``: the address of :data:`PRINT_CSS` to link instead of inlining it (the
    staff console, whose Content-Security-Policy forbids inline style)."""
    tags = list(CATEGORIES) + sorted(
        {c for f in found for c in f.service.categories} - set(CATEGORIES)
    )
    sections = []
    for tag in tags:
        listed = [f for f in found if tag in f.service.categories]
        if listed:
            heading = html.escape(CATEGORIES.get(tag, tag.replace("-", " ").capitalize()))
            sections.append(f"<h2>{heading}</h2>" + "".join(_service_html(f) for f in listed))
    body = "".join(sections) or "<p>No services are listed.</p>"
    style = (
        f"<style>{PRINT_CSS}</style>"
        if stylesheet is None
        else f'<link rel="stylesheet" href="{html.escape(stylesheet)}">'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>{style}</head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>\n"
    )


def directory_print(
    data: DataOpt,
    out_file: Annotated[Path, typer.Option("--out", help="The .html file to write.")],
    area: Annotated[
        str | None, typer.Option(help="Only services covering this postcode district.")
    ] = None,
) -> None:
    """Write a printable directory (A4, grouped by category) as one HTML file."""
    district = parse_district(area) if area else None
    if not out_file.parent.is_dir():
        fail(f"--out {out_file}: there is no folder {out_file.parent}", 2)
    found = _listings(folder_of(data), Search(area=district))
    title = "Directory of services" + (f" in {district}" if district else "")
    out_file.write_text(directory_html(found, title=title), encoding="utf-8")
    out.print(f"wrote {len(found)} services to {out_file}", markup=False)
