"""Charts drawn as inline SVG text: horizontal bars and monthly lines, for offline pages.

No script, no web font, nothing fetched: each chart is one `<svg>` element to put in an
HTML page as it is (the oversight pack; any page that wants the same look, such as a breach
review page, can import `bar_chart` and `line_chart` from here). The charts print and read
in black and white: every line has its own colour and also its own marker and dash, and a
second bar series is hatched.

Text is laid out with the advance widths of DejaVu Sans (`text_width`), the font Chromium
falls back to on Debian for the stack in `FONT` and the widest of the fonts it names, so a
label measured to fit its box fits in any of them. Labels too long for their column wrap.

A "rest" group (values outside the agreed categories, `other=` its name) is drawn apart
from the categories: grey, dotted, listed last, whatever its size.

The SVG carries what a test or a reader's tool needs: `data-x-start`/`data-x-end` (the
monthly axis, YYYY-MM), a `<g class="series">` per line with its `data-series`,
`data-colour`, `data-dash` and `data-marker`, and a `<g class="category">` per bar group
with its `data-category`.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"
FONT_SIZE = 12
TITLE_SIZE = 15

# Okabe-Ito, readable by people with colour-blindness, then Paul Tol's muted tones: 16
# colours, none of them grey (grey is kept for the rest group and for reference lines).
PALETTE = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
    "#8C510A", "#01665E", "#762A83", "#B2182B", "#332288", "#999933", "#88CCEE",
    "#44AA99", "#AA4499",
)  # fmt: skip
OTHER_COLOUR = "#8a8a8a"  # the rest group: values outside the agreed categories
REFERENCE_COLOUR = "#444444"
WITHHELD = "withheld"
# Line styles for black-and-white reading: a marker shape and a dash per series.
MARKERS = ("circle", "square", "triangle", "diamond")
DASHES = ("", "7 4", "2 3")

# Advance widths of DejaVu Sans for ASCII 32..126, in hundredths of the font size,
# measured in Chromium (canvas measureText) for weights 400 and 600.
_WIDTHS = {
    False: (
        31.8, 40.1, 46.0, 83.8, 63.6, 95.0, 78.0, 27.5, 39.0, 39.0, 50.0, 83.8, 31.8, 36.1,
        31.8, 33.7, 63.6, 63.6, 63.6, 63.6, 63.6, 63.6, 63.6, 63.6, 63.6, 63.6, 33.7, 33.7,
        83.8, 83.8, 83.8, 53.1, 100.0, 68.4, 68.6, 69.8, 77.0, 63.2, 57.5, 77.5, 75.2, 29.5,
        29.5, 65.6, 55.7, 86.3, 74.8, 78.7, 60.3, 78.7, 69.5, 63.5, 61.1, 73.2, 68.4, 98.9,
        68.5, 61.1, 68.5, 39.0, 33.7, 39.0, 83.8, 50.0, 50.0, 61.3, 63.5, 55.0, 63.5, 61.5,
        35.2, 63.5, 63.4, 27.8, 27.8, 57.9, 27.8, 97.4, 63.4, 61.2, 63.5, 63.5, 41.1, 52.1,
        39.2, 63.4, 59.2, 81.8, 59.2, 59.2, 52.5, 63.6, 33.7, 63.6, 83.8,
    ),
    True: (
        34.8, 45.6, 52.1, 83.8, 69.6, 100.2, 87.2, 30.6, 45.7, 45.7, 52.3, 83.8, 38.0, 41.5,
        38.0, 36.5, 69.6, 69.6, 69.6, 69.6, 69.6, 69.6, 69.6, 69.6, 69.6, 69.6, 40.0, 40.0,
        83.8, 83.8, 83.8, 58.0, 100.0, 77.4, 76.2, 73.4, 83.0, 68.3, 68.3, 82.1, 83.7, 37.2,
        37.2, 77.5, 63.7, 99.5, 83.7, 85.0, 73.3, 85.0, 77.0, 72.0, 68.2, 81.2, 77.4, 110.3,
        77.1, 72.4, 72.5, 45.7, 36.5, 45.7, 83.8, 50.0, 50.0, 67.5, 71.6, 59.3, 71.6, 67.8,
        43.5, 71.6, 71.2, 34.3, 34.3, 66.5, 34.3, 104.2, 71.2, 68.7, 71.6, 71.6, 49.3, 59.5,
        47.8, 71.2, 65.2, 92.4, 64.5, 65.2, 58.2, 71.2, 36.5, 71.2, 83.8,
    ),
}  # fmt: skip
_WIDE = 100.0  # any other character: as wide as "@", wider than most glyphs


def text_width(text: str, size: float = FONT_SIZE, bold: bool = False) -> float:
    """The width `text` takes in pixels at `size` (an upper bound for the fonts of FONT)."""
    table = _WIDTHS[bold]
    units = sum(table[o - 32] if 32 <= (o := ord(ch)) < 127 else _WIDE for ch in text)
    return units * size / 100


def wrap(text: str, max_width: float, size: float = FONT_SIZE, bold: bool = False) -> list[str]:
    """`text` in lines no wider than `max_width` (a word too long alone is cut)."""
    lines: list[str] = []
    for word in text.split():
        while text_width(word, size, bold) > max_width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and text_width(word[:cut], size, bold) > max_width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        if lines and text_width(f"{lines[-1]} {word}", size, bold) <= max_width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def month_label(v: dt.date) -> str:
    return v.strftime("%b %Y")


def fmt_number(v: object) -> str:
    """A figure as the charts print it by default."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, dt.date):
        return v.strftime("%b %Y") if v.day == 1 else v.isoformat()
    return str(v)


@dataclass(frozen=True)
class Reference:
    """A dashed reference line (the White rate, a target) with its legend label."""

    label: str
    value: float
    colour: str = REFERENCE_COLOUR


class _Withheld:
    """A figure withheld by disclosure control (drawn and printed as such, never as 0)."""

    def __repr__(self) -> str:
        return WITHHELD


WITHHELD_VALUE = _Withheld()


@dataclass(frozen=True)
class LineStyle:
    """How one series is told apart: colour, and for black and white, dash and marker."""

    colour: str
    dash: str
    marker: str
    hollow: bool = False


def line_styles(names: Sequence[str], other: str | None = None) -> dict[str, LineStyle]:
    """A style per series, no two alike: each its own colour (then marker and dash), the
    rest group grey, dotted and hollow."""
    styles: dict[str, LineStyle] = {}
    i = 0
    for name in names:
        if name == other:
            styles[name] = LineStyle(OTHER_COLOUR, "1.5 3", "circle", hollow=True)
            continue
        styles[name] = LineStyle(
            PALETTE[i % len(PALETTE)], DASHES[(i // len(MARKERS)) % len(DASHES)],
            MARKERS[i % len(MARKERS)],
        )  # fmt: skip
        i += 1
    return styles


def _nice_max(value: float) -> float:
    if value <= 0 or math.isnan(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        top = step * 10**exponent
        if top >= value * 1.02:
            return top
    return 10 ** (exponent + 1)


def _ticks(top: float) -> list[float]:
    """Grid values from 0 to `top` in round steps (1, 2, 2.5 or 5 times a power of 10)."""
    for count in (5, 4, 6, 3, 8):
        step = top / count
        mantissa = step / 10 ** math.floor(math.log10(step))
        if any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5)):
            return [step * i for i in range(count + 1)]
    return [top * i / 5 for i in range(6)]


def _text(
    x: float, y: float, text: str, anchor: str = "start", extra: str = "", size: float = 0
) -> str:
    font = f' font-size="{size:g}"' if size else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{font}{extra}>{_e(text)}</text>'


def _heading(title: str, subtitle: str, width: int) -> tuple[list[str], int]:
    """The chart's title and subtitle, each wrapped to the width; the parts and height."""
    parts: list[str] = []
    y = 0
    for line in wrap(title, width - 2, TITLE_SIZE, bold=True):
        y += 19
        parts.append(_text(0, y - 3, line, extra=' font-weight="600"', size=TITLE_SIZE))
    for line in wrap(subtitle, width - 2) if subtitle else []:
        y += 16
        parts.append(_text(0, y - 2, line, extra=' fill="#444"'))
    return parts, y + 14


def _svg(width: int, height: float, title: str, body: list[str], attrs: str = "") -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {math.ceil(height)}" '
        f'width="100%" style="max-width:{width}px" role="img" aria-label="{_e(title)}" '
        f'font-family="{_e(FONT)}" font-size="{FONT_SIZE}"{attrs}>'
        f"<title>{_e(title)}</title>" + "".join(body) + "</svg>"
    )


def _marker(shape: str, x: float, y: float, colour: str, hollow: bool, tip: str = "") -> str:
    fill = "#fff" if hollow else colour
    paint = f'fill="{fill}" stroke="{colour}" stroke-width="1.3"'
    tip = f"<title>{_e(tip)}</title>" if tip else ""
    if shape == "square":
        return f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" {paint}>{tip}</rect>'
    if shape in ("triangle", "diamond"):
        pts = (
            [(x, y - 4), (x + 3.6, y + 2.6), (x - 3.6, y + 2.6)]
            if shape == "triangle"
            else [(x, y - 4), (x + 4, y), (x, y + 4), (x - 4, y)]
        )
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        return f'<polygon points="{points}" {paint}>{tip}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" {paint}>{tip}</circle>'


@dataclass(frozen=True)
class _Key:
    """One legend entry: a swatch (bar), a line sample (line) or a dashed reference."""

    label: str
    kind: str  # "bar", "line", "reference", "hatch", "none"
    colour: str = REFERENCE_COLOUR
    style: LineStyle | None = None


def _key_width(key: _Key) -> float:
    return (30 if key.kind in ("line", "reference") else 18) + text_width(key.label) + 16


def _legend(keys: Sequence[_Key], x: float, y: float, width: float, uid: str) -> tuple:
    """Legend entries in rows from (x, y); returns (svg parts, height used)."""
    if keys and max(_key_width(k) for k in keys) > width:
        width += x  # an entry longer than the plot is wide: use the whole width
        x = 0
    parts, cx, cy = [], x, y
    for key in keys:
        w = _key_width(key)
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 18
        if key.kind in ("line", "reference"):
            style = key.style or LineStyle(key.colour, "6 4", "")
            dash = f' stroke-dasharray="{style.dash}"' if style.dash else ""
            parts.append(
                f'<line x1="{cx:.1f}" y1="{cy - 3:.1f}" x2="{cx + 24:.1f}" y2="{cy - 3:.1f}" '
                f'stroke="{style.colour}" stroke-width="2"{dash}/>'
            )
            if style.marker:
                parts.append(_marker(style.marker, cx + 12, cy - 3, style.colour, style.hollow))
            tx = cx + 30
        else:
            fill = f"url(#{uid}-hatch)" if key.kind == "hatch" else key.colour
            outline = ' stroke="#555" stroke-dasharray="2 2"' if key.kind == "none" else ""
            fill = "#fff" if key.kind == "none" else fill
            parts.append(
                f'<rect x="{cx:.1f}" y="{cy - 9:.1f}" width="12" height="12" fill="{fill}"'
                f"{outline}/>"
            )
            tx = cx + 16
        parts.append(_text(tx, cy + 1, key.label))
        cx += w
    return parts, (cy - y + 18) if keys else 0


def _hatch(uid: str, colour: str) -> str:
    """A hatched fill of `colour`: a second bar series still reads in black and white."""
    return (
        f'<defs><pattern id="{uid}-hatch" patternUnits="userSpaceOnUse" width="6" height="6" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{colour}"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#fff" stroke-width="2.2"/></pattern></defs>'
    )


def _value_label(x: float, y: float, text: str, fill: str = "#222") -> str:
    """A value label with a white halo, readable over grid and reference lines."""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" dy=".35em" fill="{fill}" stroke="#fff" '
        f'stroke-width="3" paint-order="stroke">{_e(text)}</text>'
    )


def _uid(title: str) -> str:
    """An id prefix for the chart's patterns, the same for the same title in every run."""
    return f"c{zlib.crc32(title.encode()):08x}"


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[object]]],
    value_format: Callable[[object], str] = fmt_number,
    axis_label: str = "",
    references: Sequence[Reference] = (),
    subtitle: str = "",
    notes: dict[tuple[str, str], str] | None = None,
    width: int = 760,
    other: str | None = None,
) -> str:
    """Horizontal bars, a group per category and a bar per series.

    A value of None is "not available" (or `notes[(series, category)]`); WITHHELD_VALUE
    is "withheld" (disclosure control). The category named `other` (the rest group) is
    drawn last, in grey. Labels longer than the label column (at most 40% of the width)
    wrap onto more lines.
    """
    notes = notes or {}
    # The rest group goes last, its values with it.
    order = sorted(range(len(categories)), key=lambda i: categories[i] == other)
    categories = [categories[i] for i in order]
    series = [(name, [vs[i] for i in order]) for name, vs in series]
    uid = _uid(title)
    natural = max((text_width(c) for c in categories), default=40)
    label_w = min(natural, width * 0.4)
    labels = {c: wrap(c, label_w) for c in categories}
    plot_x = label_w + 10
    formatted = [value_format(v) for _, vs in series for v in vs if isinstance(v, int | float)] + [
        value_format(0)
    ]
    right = max(text_width(t) for t in formatted) + 12
    prefix_w = max((text_width(f"{n}: ") for n, _ in series), default=0) if len(series) > 1 else 0
    missing_texts = [f"{WITHHELD} (too few to show)", "not available", *notes.values()]
    # Notes are written inside the plot: it is at least as wide as the longest one.
    plot_w = max(width - plot_x - right, prefix_w + max(text_width(t) for t in missing_texts))
    width = max(width, math.ceil(plot_x + plot_w + right))
    bar_h = 16 if len(series) > 1 else 20
    body, top = _heading(title, subtitle, width)
    if len(series) > 1:
        body.insert(0, _hatch(uid, PALETTE[1]))
    keys = [
        _Key(name, "hatch" if j == 1 else "bar", PALETTE[j % len(PALETTE)])
        for j, (name, _) in enumerate(series)
    ] if len(series) > 1 else []  # fmt: skip
    keys += [_Key(r.label, "reference", r.colour) for r in references]
    legend, legend_h = _legend(keys, plot_x, top, width - plot_x, uid)
    body += legend
    plot_y = top + legend_h + 4
    heights = [max(bar_h * len(series), 15 * len(labels[c])) + 10 for c in categories]
    plot_h = sum(heights)
    height = plot_y + plot_h + (40 if axis_label else 24)
    values = [float(v) for _, vs in series for v in vs if isinstance(v, int | float)]
    values += [r.value for r in references]
    vmax = _nice_max(max(values, default=1.0))

    def sx(v: float) -> float:
        return plot_x + plot_w * v / vmax

    for t in _ticks(vmax):
        x = sx(t)
        body.append(
            f'<line x1="{x:.1f}" y1="{plot_y}" x2="{x:.1f}" y2="{plot_y + plot_h}" '
            'stroke="#e3e3e3"/>'
        )
        body.append(_text(x, plot_y + plot_h + 14, value_format(t), "middle", ' fill="#555"'))
    for ref in references:
        x = sx(ref.value)
        body.append(
            f'<line x1="{x:.1f}" y1="{plot_y - 2}" x2="{x:.1f}" y2="{plot_y + plot_h}" '
            f'stroke="{ref.colour}" stroke-width="2" stroke-dasharray="6 4">'
            f"<title>{_e(ref.label)}: {_e(value_format(ref.value))}</title></line>"
        )
    gy = plot_y
    for index, (category, group_h) in enumerate(zip(categories, heights, strict=True)):
        lines = labels[category]
        is_other = category == other
        mid = gy + 5 + (group_h - 10) / 2
        body.append(f'<g class="category" data-category="{_e(category)}">')
        for k, line in enumerate(lines):
            y = mid + (k - (len(lines) - 1) / 2) * 15
            style = ' font-style="italic" fill="#555"' if is_other else ""
            body.append(
                f'<text x="{plot_x - 8:.1f}" y="{y:.1f}" dy=".35em" text-anchor="end"'
                f"{style}>{_e(line)}</text>"
            )
        top_bar = mid - bar_h * len(series) / 2
        for j, (name, vs) in enumerate(series):
            v, y = vs[index], top_bar + j * bar_h
            prefix = f"{name}: " if len(series) > 1 else ""
            if not isinstance(v, int | float):
                missing = notes.get((name, category), f"{prefix}not available")
                text = f"{prefix}{WITHHELD} (too few to show)" if v is WITHHELD_VALUE else missing
                body.append(_value_label(plot_x + 4, y + (bar_h - 3) / 2, text, fill="#8a5a00"))
                continue
            w = max(sx(float(v)) - plot_x, 0.5)
            if is_other:
                fill = OTHER_COLOUR
            elif j == 1:
                fill = f"url(#{uid}-hatch)"
            else:
                fill = PALETTE[j % len(PALETTE)]
            body.append(
                f'<rect class="bar" data-series="{_e(name)}" x="{plot_x:.1f}" y="{y:.1f}" '
                f'width="{w:.1f}" height="{bar_h - 3}" fill="{fill}"><title>{_e(prefix)}'
                f"{_e(category)}: {_e(value_format(v))}</title></rect>"
            )
            body.append(_value_label(plot_x + w + 4, y + (bar_h - 3) / 2, value_format(v)))
        body.append("</g>")
        gy += group_h
    body.append(
        f'<line x1="{plot_x:.1f}" y1="{plot_y}" x2="{plot_x:.1f}" y2="{plot_y + plot_h}" '
        'stroke="#333"/>'
    )
    if axis_label:
        body.append(_text(plot_x + plot_w / 2, height - 6, axis_label, "middle", ' fill="#333"'))
    return _svg(width, height, title, body)


def _months(start: dt.date, end: dt.date) -> list[dt.date]:
    """The first day of every month from `start`'s to `end`'s, inclusive."""
    out, y, m = [], start.year, start.month
    while (y, m) <= (end.year, end.month):
        out.append(dt.date(y, m, 1))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def line_chart(
    title: str,
    x_values: Sequence[dt.date],
    series: Sequence[tuple[str, Sequence[object]]],
    value_format: Callable[[object], str] = fmt_number,
    axis_label: str = "",
    references: Sequence[Reference] = (),
    subtitle: str = "",
    y_max: float | None = None,
    width: int = 760,
    plot_h: int = 260,
    x_end: dt.date | None = None,
    other: str | None = None,
    absent: Sequence[str] = (),
    monthly: bool = True,
) -> str:
    """Trend lines over dates; a value that is not a number (withheld, not delivered)
    leaves a gap.

    Positions follow the calendar, so a month with no delivery leaves its space. The axis
    runs from the first date to `x_end` (default: the last), so that charts of one page
    can end at the same month. The series named `other` (the rest group) is grey, dotted
    and last; `absent` adds legend entries for groups that are not drawn (a note says why).
    `monthly` dates are first days of months (labels are months); otherwise the dates
    themselves are labelled (quarter ends).
    """
    if not x_values:
        raise ValueError(f"{title}: no dates to draw")
    series = [s for s in series if s[0] != other] + [s for s in series if s[0] == other]
    styles = line_styles([name for name, _ in series], other)
    first = x_values[0]
    end = max(x_end or x_values[-1], x_values[-1])
    body, top = _heading(title, subtitle, width)
    values = [float(v) for _, vs in series for v in vs if isinstance(v, int | float)]
    values += [r.value for r in references]
    vmax = y_max or _nice_max(max(values, default=1.0))
    ticks = _ticks(vmax)
    tick_w = max(text_width(value_format(t)) for t in ticks)
    plot_x = (26 if axis_label else 2) + tick_w + 8
    candidates = _months(first, end) if monthly else list(dict.fromkeys([*x_values, end]))
    label_w = max(text_width(month_label(d)) for d in candidates)
    right = max(16.0, label_w / 2 + 4)
    plot_w = width - plot_x - right
    keys = [_Key(name, "line", style=styles[name]) for name, _ in series]
    keys += [_Key(label, "none") for label in absent]
    keys += [_Key(r.label, "reference", r.colour) for r in references]
    legend, legend_h = _legend(keys, plot_x, top, width - plot_x, _uid(title))
    body += legend
    plot_y = top + legend_h + 8
    height = plot_y + plot_h + 24
    span = (end - first).days

    def sx(d: dt.date) -> float:
        return plot_x + (plot_w * (d - first).days / span if span else plot_w / 2)

    def sy(v: float) -> float:
        return plot_y + plot_h - plot_h * v / vmax

    for t in ticks:
        y = sy(t)
        body.append(
            f'<line x1="{plot_x:.1f}" y1="{y:.1f}" x2="{plot_x + plot_w:.1f}" y2="{y:.1f}" '
            'stroke="#e3e3e3"/>'
        )
        body.append(
            f'<text x="{plot_x - 6:.1f}" y="{y:.1f}" dy=".35em" text-anchor="end" '
            f'fill="#555">{_e(value_format(t))}</text>'
        )
    # Labels back from the axis end (always labelled), as many as fit side by side.
    fit = max(1, int(plot_w // (label_w + 12)))
    step = max(1, math.ceil(len(candidates) / fit))
    shown = candidates[::-1][::step]
    if len(shown) > 1 and sx(shown[-2]) - sx(shown[-1]) < label_w + 12:
        shown.pop()
    if shown[-1] != first and sx(shown[-1]) - sx(first) >= label_w + 12:
        shown.append(first)  # the first month too, when there is room
    for d in shown:
        body.append(
            f'<line x1="{sx(d):.1f}" y1="{plot_y + plot_h}" x2="{sx(d):.1f}" '
            f'y2="{plot_y + plot_h + 4}" stroke="#333"/>'
        )
        body.append(_text(sx(d), plot_y + plot_h + 17, month_label(d), "middle", ' fill="#555"'))
    for ref in references:
        y = sy(ref.value)
        body.append(
            f'<line x1="{plot_x:.1f}" y1="{y:.1f}" x2="{plot_x + plot_w:.1f}" y2="{y:.1f}" '
            f'stroke="{ref.colour}" stroke-width="2" stroke-dasharray="6 4">'
            f"<title>{_e(ref.label)}</title></line>"
        )
    for name, vs in series:
        style = styles[name]
        marker = f"{style.marker}{' hollow' if style.hollow else ''}"
        body.append(
            f'<g class="series" data-series="{_e(name)}" data-colour="{style.colour}" '
            f'data-dash="{style.dash or "solid"}" data-marker="{marker}">'
        )
        runs: list[list[tuple[float, float]]] = [[]]
        for x, v in zip(x_values, vs, strict=True):
            if isinstance(v, int | float):
                runs[-1].append((sx(x), sy(float(v))))
            else:
                runs.append([])
        dash = f' stroke-dasharray="{style.dash}"' if style.dash else ""
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                body.append(
                    f'<polyline points="{points}" fill="none" stroke="{style.colour}" '
                    f'stroke-width="2"{dash}/>'
                )
        for x, v in zip(x_values, vs, strict=True):
            if isinstance(v, int | float):
                tip = f"{name}, {month_label(x)}: {value_format(v)}"
                body.append(
                    _marker(style.marker, sx(x), sy(float(v)), style.colour, style.hollow, tip)
                )
        body.append("</g>")
    body.append(
        f'<line x1="{plot_x:.1f}" y1="{plot_y + plot_h}" x2="{plot_x + plot_w:.1f}" '
        f'y2="{plot_y + plot_h}" stroke="#333"/>'
    )
    if axis_label:
        mid = plot_y + plot_h / 2
        body.append(
            f'<text x="14" y="{mid:.1f}" text-anchor="middle" fill="#333" '
            f'transform="rotate(-90 14 {mid:.1f})">{_e(axis_label)}</text>'
        )
    kind = "month" if monthly else "date"
    fmt = "%Y-%m" if monthly else "%Y-%m-%d"
    attrs = (
        f' data-axis="{kind}" data-x-start="{first.strftime(fmt)}" data-x-end="{end.strftime(fmt)}"'
    )
    return _svg(width, height, title, body, attrs)


# --- number formats the charts and pages share -----------------------------------------


def fmt_count(v: object) -> str:
    return "" if v is None else f"{int(v):,}"


def fmt_rate(v: object) -> str:
    return "" if v is None else f"{float(v):,.2f}"


def fmt_ratio(v: object) -> str:
    return "" if v is None else f"{float(v):.2f}×"


def fmt_share(v: object) -> str:
    return "" if v is None else f"{float(v) * 100:.1f}%"
