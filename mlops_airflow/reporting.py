"""Building blocks for the project's HTML reports: page shell, escaping, tables and inline SVG charts.

Every report is one self-contained page: inline CSS and SVG, no script, nothing fetched,
so it can be stored in the artifact store and opened anywhere. Everything that comes from
data goes through :func:`escape`, either directly or inside a helper here; a helper's
result is :class:`Html`, which the table helper inserts as is. Each SVG a helper returns
is well-formed XML on its own.

Pure Python on purpose: rendering a report must not need numpy, and importing this
module stays cheap.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Tone = Literal["pass", "fail", "warn", "info"]
Shape = Literal["circle", "diamond", "square"]

#: One colour per role, the same in every report.
CANDIDATE = "#1f5fbf"
CHAMPION = "#e07b00"
BASELINE = "#7b7b7b"
PASS = "#2e7d32"
FAIL = "#c62828"
WARN = "#9a6700"
#: Distinguishable line colours for several series (one per class).
SERIES_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1.5em; color: #222; max-width: 1100px;
       line-height: 1.4; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #e3e3e3;
       padding-bottom: .2em; } h3 { font-size: 1em; margin: 0 0 .3em; }
.badge { display: inline-block; padding: .2em .7em; border-radius: .3em; color: #fff; font-weight: bold; }
.badge.pass { background: #2e7d32; } .badge.fail { background: #c62828; }
.badge.warn { background: #f0a500; color: #2b1d00; } .badge.info { background: #607d8b; }
.badge.big { font-size: 1.5em; padding: .25em .8em; letter-spacing: .03em; }
table { border-collapse: collapse; width: 100%; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .35em .5em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.pass td.status { background: #e8f5e9; color: #2e7d32; }
tr.fail td.status { background: #ffebee; color: #c62828; font-weight: bold; }
tr.warn td.status { background: #fff8e1; color: #8d6e00; font-weight: bold; }
tr.highlight td { background: #fff3f3; }
.note { font-size: .85em; color: #555; margin: .3em 0; overflow-wrap: anywhere; }
.figures { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.figure { max-width: 100%; } .figure .note { max-width: 360px; }
svg { max-width: 100%; height: auto; }
svg text { font-size: 11px; fill: #444; }
svg text.strong { font-weight: bold; fill: #222; }
svg text.small { font-size: 10px; fill: #666; }
svg text.pass { fill: #2e7d32; font-weight: bold; } svg text.fail { fill: #c62828; font-weight: bold; }
table.heatmap { width: auto; }
table.heatmap td { text-align: center; min-width: 3.6em; }
table.heatmap td small { display: block; font-size: .8em; opacity: .85; }
table.heatmap td.dark { color: #fff; }
table.kv, table.compact { width: auto; } table.compact { min-width: 50%; } table.kv th { font-weight: normal; color: #555; }
"""


class Html(str):
    """Markup that is already escaped and safe to insert into a page as is."""

    __slots__ = ()


def escape(value: Any) -> str:
    """``value`` as text safe inside HTML and SVG, in element content and in quoted attributes."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A number as a short readable string (``digits`` significant digits); ``n/a`` for None."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def signed(value: Any, digits: int = 4) -> str:
    """Like :func:`fmt`, with an explicit ``+`` on positive numbers (for gains and differences)."""
    text = fmt(value, digits)
    return f"+{text}" if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else text


def badge(text: str, tone: Tone, *, big: bool = False) -> Html:
    return Html(f'<span class="badge {tone}{" big" if big else ""}">{escape(text)}</span>')


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    row_classes: Sequence[str | None] | None = None,
    cell_classes: Sequence[str | None] | None = None,
    css_class: str | None = None,
) -> Html:
    """An HTML table. Cells that are :class:`Html` go in as is, None as an empty cell, numbers
    through :func:`fmt`, anything else escaped. ``cell_classes`` gives a class per column.
    """
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cells = []
        for column, cell in enumerate(row):
            css = cell_classes[column] if cell_classes and column < len(cell_classes) else None
            attr = f' class="{css}"' if css else ""
            cells.append(f"<td{attr}>{_cell(cell)}</td>")
        css = row_classes[index] if row_classes and index < len(row_classes) else None
        attr = f' class="{css}"' if css else ""
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    attr = f' class="{css_class}"' if css_class else ""
    return Html(f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _cell(cell: Any) -> str:
    if isinstance(cell, Html):
        return cell
    if cell is None:
        return ""
    if isinstance(cell, float):
        return escape(fmt(cell))
    return escape(cell)


def kv_table(items: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> Html:
    """A two-column table of labelled values (labels in the first column)."""
    pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in pairs)
    return Html(f'<table class="kv"><tbody>{rows}</tbody></table>')


def page(title: str, body: str, *, extra_css: str = "") -> str:
    """A complete HTML document: ``body`` (already safe HTML) under an escaped ``title``."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{STYLE}{extra_css}</style></head>
<body>
{body}
</body></html>
"""


# -- SVG ------------------------------------------------------------------------------------


def svg(width: float, height: float, content: str, *, label: str = "") -> Html:
    aria = f' aria-label="{escape(label)}"' if label else ""
    return Html(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img"{aria}>{content}</svg>'
    )


def _text(x: float, y: float, text: Any, *, anchor: str = "start", css: str = "", extra: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    anchor_attr = f' text-anchor="{anchor}"' if anchor != "start" else ""
    return f'<text x="{x:.1f}" y="{y:.1f}"{anchor_attr}{cls}{extra}>{escape(text)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, colour: str = "#999", *, width: float = 1, dash: str = "") -> str:
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        f'stroke-width="{width}"{dash_attr}/>'
    )


def _marker(x: float, y: float, shape: Shape, colour: str, size: float = 5, tip: str = "") -> str:
    title = f"<title>{escape(tip)}</title>" if tip else ""
    if shape == "square":
        return (
            f'<rect x="{x - size * 0.85:.1f}" y="{y - size * 0.85:.1f}" width="{size * 1.7:.1f}" '
            f'height="{size * 1.7:.1f}" fill="{colour}" stroke="#fff" stroke-width="1">{title}</rect>'
        )
    if shape == "diamond":
        s = size * 1.2
        return (
            f'<polygon points="{x:.1f},{y - s:.1f} {x + s:.1f},{y:.1f} {x:.1f},{y + s:.1f} {x - s:.1f},{y:.1f}" '
            f'fill="{colour}" stroke="#fff" stroke-width="1">{title}</polygon>'
        )
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{size:.1f}" fill="{colour}" stroke="#fff" stroke-width="1">{title}</circle>'


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high < low:
        low, high = high, low
    if high == low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    value = first * step
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else round(value, 12))
        first += 1
        value = first * step
    return ticks


def _domain(values: Iterable[float | None], *, pad: float = 0.06) -> tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if high == low:
        spread = abs(low) * 0.1 or 1.0
        return low - spread, high + spread
    margin = (high - low) * pad
    return low - margin, high + margin


def _scale(low: float, high: float, start: float, end: float) -> Any:
    span = (high - low) or 1.0

    def to_pixel(value: float) -> float:
        return start + (min(max(value, low), high) - low) / span * (end - start)

    return to_pixel


def even_sample(n: int, limit: int) -> list[int]:
    """At most ``limit`` indices of ``range(n)``, evenly spaced, first and last included."""
    if n <= limit:
        return list(range(n))
    if limit <= 1:
        return [0][:limit]
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def histogram_svg(histogram: Mapping[str, Any], *, width: int = 320, height: int = 110, colour: str = "#5c6bc0") -> Html:
    """Bars of ``histogram["counts"]``, with the outer ``edges`` (if given) labelled under the axis."""
    counts = [int(c) for c in histogram.get("counts") or []]
    if not counts:
        return Html("")
    edges = histogram.get("edges")
    plot_height = height - 18
    top = max(counts) or 1
    bar = width / len(counts)
    bars = []
    for index, count in enumerate(counts):
        bar_height = plot_height * count / top
        label = f"{count}"
        if edges:
            label = f"[{fmt(edges[index])}, {fmt(edges[index + 1])}): {count}"
        bars.append(
            f'<rect x="{index * bar:.1f}" y="{plot_height - bar_height:.1f}" width="{max(bar - 1, 1):.1f}" '
            f'height="{bar_height:.1f}" fill="{colour}"><title>{escape(label)}</title></rect>'
        )
    axis = _line(0, plot_height, width, plot_height)
    if edges:
        axis += _text(0, height - 4, fmt(edges[0])) + _text(width, height - 4, fmt(edges[-1]), anchor="end")
    return svg(width, height, "".join(bars) + axis)


def bar_svg(
    items: Sequence[tuple[str, float | None]],
    *,
    width: int = 320,
    label_width: int = 110,
    highlight: Iterable[int] = (),
    reference: tuple[float, str] | None = None,
    origin: float = 0.0,
    colour: str = "#26a69a",
    highlight_colour: str = FAIL,
    max_label: int = 18,
) -> Html:
    """Horizontal bars, one per ``(label, value)``, from ``origin``, each value printed at its bar's end.

    Bars at the ``highlight`` indices take ``highlight_colour``; ``reference`` draws a dashed
    vertical line at a value with a label (e.g. the overall metric; with ``origin`` at the
    same value the bars show each item's difference to it). None values show ``n/a``.
    """
    if not items:
        return Html("")
    row = 18
    top_pad = 16 if reference else 0
    height = top_pad + row * len(items) + 2
    marked = set(highlight)
    values = [v for _, v in items if v is not None]
    extra = [reference[0]] if reference else []
    low = min([origin, *values, *extra])
    high = max([origin, *values, *extra])
    if high == low:
        high = low + (abs(low) or 1.0)
    value_room = 60
    # Room on the left for values printed past bars that run left of the origin.
    to_x = _scale(low, high, label_width + (value_room if low < origin else 0), width - value_room)
    zero = to_x(origin)
    parts = []
    for index, (label, value) in enumerate(items):
        y = top_pad + index * row
        text = str(label)
        short = text if len(text) <= max_label else text[: max_label - 1] + "…"
        parts.append(_text(label_width - 4, y + 12, short, anchor="end"))
        if value is None:
            parts.append(_text(zero + 4, y + 12, "n/a", css="small"))
            continue
        end = to_x(value)
        fill = highlight_colour if index in marked else colour
        parts.append(
            f'<rect x="{min(zero, end):.1f}" y="{y + 3}" width="{max(abs(end - zero), 1):.1f}" height="{row - 6}" '
            f'fill="{fill}"><title>{escape(text)}: {escape(fmt(value))}</title></rect>'
        )
        css = "strong" if index in marked else ""
        if value < origin:
            parts.append(_text(end - 4, y + 12, fmt(value), anchor="end", css=css))
        else:
            parts.append(_text(max(zero, end) + 4, y + 12, fmt(value), css=css))
    parts.append(_line(zero, top_pad, zero, height, "#999"))
    if reference:
        x = to_x(reference[0])
        parts.append(_line(x, top_pad - 2, x, height, "#333", dash="4 3"))
        parts.append(_text(x, top_pad - 5, f"{reference[1]} {fmt(reference[0])}", anchor="middle", css="small"))
    return svg(width, height, "".join(parts))


# -- line charts and scatter plots -----------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One line of a :func:`line_chart_svg`."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    colour: str = CANDIDATE
    dashed: bool = False


@dataclass(frozen=True)
class Guide:
    """A straight reference line from (x1, y1) to (x2, y2), dashed, named in the legend."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = ""
    colour: str = "#888"


def _axes(
    x_low: float, x_high: float, y_low: float, y_high: float,
    left: float, top: float, right: float, bottom: float,
    x_label: str, y_label: str, x_ticks: Sequence[float] | None = None,
) -> str:  # fmt: skip
    """Frame, grid, ticks and axis titles of a plot area spanning (left, top)-(right, bottom).

    ``x_ticks`` replaces the automatic round ticks (e.g. whole numbers for versions)."""
    to_x = _scale(x_low, x_high, left, right)
    to_y = _scale(y_low, y_high, bottom, top)
    parts = [f'<rect x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" height="{bottom - top:.1f}" fill="#fcfcfc" stroke="#bbb"/>']
    for tick in nice_ticks(x_low, x_high, 5) if x_ticks is None else x_ticks:
        x = to_x(tick)
        parts.append(_line(x, top, x, bottom, "#eee"))
        parts.append(_line(x, bottom, x, bottom + 4, "#999"))
        parts.append(_text(x, bottom + 15, fmt(tick, 3), anchor="middle"))
    for tick in nice_ticks(y_low, y_high, 5):
        y = to_y(tick)
        parts.append(_line(left, y, right, y, "#eee"))
        parts.append(_line(left - 4, y, left, y, "#999"))
        parts.append(_text(left - 6, y + 4, fmt(tick, 3), anchor="end"))
    if x_label:
        parts.append(_text((left + right) / 2, bottom + 31, x_label, anchor="middle", css="strong"))
    if y_label:
        middle = (top + bottom) / 2
        parts.append(_text(13, middle, y_label, anchor="middle", css="strong", extra=f' transform="rotate(-90 13 {middle:.1f})"'))
    return "".join(parts)


def _legend(entries: Sequence[tuple[str, str, bool]], left: float, top: float) -> str:
    """Legend rows (label, colour, dashed) starting at (left, top), 16 px apart."""
    parts = []
    for index, (label, colour, dashed) in enumerate(entries):
        y = top + index * 16
        parts.append(_line(left, y - 4, left + 22, y - 4, colour, width=2.5, dash="5 3" if dashed else ""))
        parts.append(_text(left + 28, y, label))
    return "".join(parts)


def line_chart_svg(
    series: Sequence[Series],
    *,
    x_label: str = "",
    y_label: str = "",
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    guides: Sequence[Guide] = (),
    diagonal: bool = False,
    x_ticks: Sequence[float] | None = None,
    width: int = 340,
    height: int = 320,
) -> Html:
    """Lines through (x, y) points on shared axes with ticks, a legend under the plot and optional
    dashed guides (``diagonal`` adds y = x, the chance line of a ROC curve); ``x_ticks`` fixes the x ticks.

    ``height`` is that of the plot with its axes; the legend adds a row per series or named guide.
    """
    lines = [s for s in series if len(s.x) and len(s.x) == len(s.y)]
    if diagonal:
        low = x_range[0] if x_range else 0.0
        high = x_range[1] if x_range else 1.0
        guides = [Guide(low, low, high, high, "chance"), *guides]
    xs = [v for s in lines for v in s.x] + [v for g in guides for v in (g.x1, g.x2)]
    ys = [v for s in lines for v in s.y] + [v for g in guides for v in (g.y1, g.y2)]
    x_low, x_high = x_range or _domain(xs, pad=0.02)
    y_low, y_high = y_range or _domain(ys, pad=0.04)
    left, top, right, bottom = 52.0, 10.0, width - 12.0, height - 40.0
    to_x = _scale(x_low, x_high, left, right)
    to_y = _scale(y_low, y_high, bottom, top)
    parts = [_axes(x_low, x_high, y_low, y_high, left, top, right, bottom, x_label, y_label, x_ticks)]
    for guide in guides:
        parts.append(_line(to_x(guide.x1), to_y(guide.y1), to_x(guide.x2), to_y(guide.y2), guide.colour, width=1.2, dash="5 4"))
    for line in lines:
        points = " ".join(f"{to_x(x):.1f},{to_y(y):.1f}" for x, y in zip(line.x, line.y, strict=True))
        dash = ' stroke-dasharray="6 3"' if line.dashed else ""
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{line.colour}" stroke-width="2" '
            f'stroke-linejoin="round"{dash}><title>{escape(line.label)}</title></polyline>'
        )
    entries = [(s.label, s.colour, s.dashed) for s in lines] + [(g.label, g.colour, True) for g in guides if g.label]
    parts.append(_legend(entries, left, height + 6))
    return svg(width, height + 16 * len(entries) + 4, "".join(parts))


def scatter_svg(
    x: Sequence[float],
    y: Sequence[float],
    *,
    x_label: str = "",
    y_label: str = "",
    zero_line: bool = True,
    hlines: Sequence[tuple[float, str]] = (),
    max_points: int = 2000,
    colour: str = CANDIDATE,
    width: int = 520,
    height: int = 320,
) -> Html:
    """Points (x, y) on axes with ticks; a solid y = 0 line and dashed labelled horizontal lines.

    More than ``max_points`` points are thinned to an evenly spaced, deterministic subset.
    """
    pairs = [(a, b) for a, b in zip(x, y, strict=False) if math.isfinite(a) and math.isfinite(b)]
    pairs = [pairs[i] for i in even_sample(len(pairs), max_points)]
    x_low, x_high = _domain([a for a, _ in pairs], pad=0.03)
    y_low, y_high = _domain([b for _, b in pairs] + ([0.0] if zero_line else []) + [v for v, _ in hlines], pad=0.05)
    left, top, right, bottom = 58.0, 10.0, width - 40.0, height - 40.0
    to_x = _scale(x_low, x_high, left, right)
    to_y = _scale(y_low, y_high, bottom, top)
    parts = [_axes(x_low, x_high, y_low, y_high, left, top, right, bottom, x_label, y_label)]
    radius = 2.6 if len(pairs) <= 500 else 2.0
    parts.append(f'<g fill="{colour}" fill-opacity="0.45">')
    parts.extend(f'<circle cx="{to_x(a):.1f}" cy="{to_y(b):.1f}" r="{radius}"/>' for a, b in pairs)
    parts.append("</g>")
    if zero_line:
        parts.append(_line(left, to_y(0.0), right, to_y(0.0), "#222", width=1.3))
    for value, label in hlines:
        yy = to_y(value)
        parts.append(_line(left, yy, right, yy, "#555", dash="5 4"))
        parts.append(_text(right + 3, yy + 4, label, css="small"))
    return svg(width, height, "".join(parts))


# -- heatmap and interval plots --------------------------------------------------------------


def heatmap_table(
    row_labels: Sequence[Any],
    col_labels: Sequence[Any],
    matrix: Sequence[Sequence[float]],
    *,
    row_title: str = "actual",
    col_title: str = "predicted",
    rgb: tuple[int, int, int] = (31, 95, 191),
) -> Html:
    """A table of counts shaded by their share of the row, that share printed under each count."""
    head = (
        f'<tr><th rowspan="2">{escape(row_title)} ↓</th><th colspan="{len(col_labels)}">{escape(col_title)} →</th></tr>'
        "<tr>" + "".join(f"<th>{escape(label)}</th>" for label in col_labels) + "</tr>"
    )
    rows = []
    for label, counts in zip(row_labels, matrix, strict=False):
        total = sum(counts) or 1
        cells = []
        for count in counts:
            share = count / total
            dark = ' class="dark"' if share > 0.55 else ""
            cells.append(
                f'<td{dark} style="background: rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {0.05 + 0.85 * share:.2f})">'
                f"{escape(fmt(count))}<small>{share:.0%}</small></td>"
            )
        rows.append(f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>")
    return Html(f'<table class="heatmap"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>')


def _off_scale(x: float, y: float, left: bool, marker: Marker, tip: str) -> str:
    """An arrow at the edge of a scale pointing at a value beyond it, with the value beside it."""
    tip_x = x - 7 if left else x + 7
    arrow = (
        f'<polygon points="{tip_x:.1f},{y:.1f} {x:.1f},{y - 5:.1f} {x:.1f},{y + 5:.1f}" fill="{marker.colour}">'
        f"<title>{escape(tip)} (off the scale)</title></polygon>"
    )
    return arrow + _text(x + 4 if left else x - 4, y - 6, fmt(marker.value), anchor="start" if left else "end", css="small")


@dataclass(frozen=True)
class Marker:
    """A point on an :class:`IntervalRow`, with an optional interval [low, high] drawn as an error bar."""

    label: str
    value: float | None
    colour: str = CANDIDATE
    shape: Shape = "circle"
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Reference:
    """A vertical line across an :class:`IntervalRow` at ``value`` (e.g. 0 or a margin)."""

    value: float
    label: str = ""
    dashed: bool = False
    colour: str = "#333"


@dataclass(frozen=True)
class IntervalRow:
    """One row of an :func:`interval_svg`: its own horizontal scale, markers, references and a note."""

    label: str
    markers: Sequence[Marker]
    references: Sequence[Reference] = ()
    note: str = ""
    sublabel: str = ""
    bold: bool = False
    tone: Tone | None = None
    #: The row's scale; by default it spans every marker, interval and reference. Markers
    #: outside it are drawn as arrows at the edge, with their value.
    domain: tuple[float, float] | None = None


def interval_svg(rows: Sequence[IntervalRow], *, width: int = 1050, label_width: int = 220, note_width: int = 330) -> Html:
    """Rows of points with error bars and reference lines, each row on its own scale (metrics differ
    in units), with a legend of the marker kinds on top.

    Markers in a row are offset vertically so that equal values stay visible.
    """
    if not rows:
        return Html("")
    row_height = 50
    legend_height = 24
    height = legend_height + row_height * len(rows)
    left, right = label_width, width - note_width
    parts = []
    legend: dict[str, tuple[str, Shape, bool]] = {}
    for row in rows:
        for marker in row.markers:
            has_bar = marker.low is not None and marker.high is not None
            known = legend.get(marker.label)
            legend[marker.label] = (marker.colour, marker.shape, has_bar or bool(known and known[2]))
    x = float(left)
    for label, (colour, shape, _) in legend.items():
        parts.append(_marker(x + 5, 10, shape, colour))
        parts.append(_text(x + 14, 14, label))
        x += 30 + 7 * len(label)
    if any(bar for _, _, bar in legend.values()):
        parts.append(_line(x + 2, 10, x + 26, 10, "#444", width=1.5))
        parts.append(_line(x + 2, 6, x + 2, 14, "#444", width=1.5) + _line(x + 26, 6, x + 26, 14, "#444", width=1.5))
        parts.append(_text(x + 32, 14, "confidence interval"))
    for index, row in enumerate(rows):
        y0 = legend_height + index * row_height
        mid = y0 + 20
        if index % 2:
            parts.append(f'<rect x="0" y="{y0}" width="{width}" height="{row_height}" fill="#f7f7f7"/>')
        values: list[float | None] = []
        for marker in row.markers:
            values.extend((marker.value, marker.low, marker.high))
        values.extend(r.value for r in row.references)
        low, high = row.domain or _domain(values, pad=0.08)
        start, end = left + 10, right - 10
        to_x = _scale(low, high, start, end)
        css = row.tone if row.tone in ("pass", "fail") else ("strong" if row.bold else "")
        fits = int((label_width - 14) / 7)  # ~7 px per character of bold 11 px text
        label = row.label if len(row.label) <= fits else row.label[: fits - 1] + "…"
        text = _text(left - 10, mid + (0 if row.sublabel else 4), label, anchor="end", css=css)
        parts.append(text if label == row.label else f"<g><title>{escape(row.label)}</title>{text}</g>")
        if row.sublabel:
            parts.append(_text(left - 10, mid + 13, row.sublabel, anchor="end", css="small"))
        parts.append(_line(start, mid, end, mid, "#ccc"))
        for tick in nice_ticks(low, high, 4):
            tx = to_x(tick)
            parts.append(_line(tx, mid + 12, tx, mid + 15, "#aaa"))
            parts.append(_text(tx, mid + 25, fmt(tick, 3), anchor="middle", css="small"))
        # Labels go outward from the lines (the leftmost to its left), so two close lines
        # do not write over each other.
        references = sorted((r for r in row.references if low <= r.value <= high), key=lambda r: r.value)
        for position, ref in enumerate(references):
            rx = to_x(ref.value)
            parts.append(_line(rx, y0 + 4, rx, mid + 12, ref.colour, width=1.2, dash="4 3" if ref.dashed else ""))
            if ref.label:
                first = position == 0 and len(references) > 1
                parts.append(_text(rx - 3 if first else rx + 3, y0 + 10, ref.label, anchor="end" if first else "start", css="small"))
        drawn = [m for m in row.markers if m.value is not None or (m.low is not None and m.high is not None)]
        offsets = [(i - (len(drawn) - 1) / 2) * 7 for i in range(len(drawn))]
        for marker, offset in zip(drawn, offsets, strict=True):
            y = mid + offset
            tip = f"{marker.label}: {fmt(marker.value)}"
            if marker.low is not None and marker.high is not None:
                tip += f" [{fmt(marker.low)}, {fmt(marker.high)}]"
                a, b = to_x(marker.low), to_x(marker.high)
                parts.append(_line(a, y, b, y, marker.colour, width=2))
                for edge, bound in ((a, marker.low), (b, marker.high)):
                    if low <= bound <= high:  # no cap where the interval runs off the scale
                        parts.append(_line(edge, y - 4, edge, y + 4, marker.colour, width=2))
            if marker.value is None:
                continue
            if low <= marker.value <= high:
                parts.append(_marker(to_x(marker.value), y, marker.shape, marker.colour, tip=tip))
            else:
                parts.append(_off_scale(start if marker.value < low else end, y, marker.value < low, marker, tip))
        if row.note:
            parts.append(_text(right + 8, mid + 4, row.note))
    return svg(width, height, "".join(parts))
