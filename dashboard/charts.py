"""Server-rendered SVG charts (no JavaScript chart library): bars with an optional goal line."""

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe


def bar_chart(
    items: list[tuple[str, float | None]],
    *,
    title: str,
    unit: str = "s",
    goal: float | None = None,
    goal_label: str = "",
    width: int = 640,
    height: int = 220,
    maximum: float | None = None,
) -> SafeString:
    """Vertical bars, one per (label, value); None values are drawn as an empty slot."""
    left, right, top, bottom = 44, 10, 26, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _label, v in items if v is not None]
    top_value = maximum or max([*values, goal or 0, 1e-9]) * 1.1
    slot = plot_w / max(len(items), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>',
    ]
    for fraction in (0.5, 1.0):
        y = top + plot_h * (1 - fraction)
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{top_value * fraction:.0f}{escape(unit)}</text>"
        )
    for index, (label, value) in enumerate(items):
        x = left + index * slot
        if value is not None:
            bar_h = plot_h * min(value / top_value, 1.0)
            over = goal is not None and value > goal
            parts.append(
                f'<rect x="{x + slot * 0.15:.1f}" y="{top + plot_h - bar_h:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{bar_h:.1f}" class="bar{" over" if over else ""}">'
                f"<title>{escape(label)}: {value:.1f}{escape(unit)}</title></rect>"
            )
        if len(items) <= 24 or index % 2 == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 14}" class="tick" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    if goal is not None:
        y = top + plot_h * (1 - min(goal / top_value, 1.0))
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" class="goal"/>'
            f'<text x="{left + plot_w}" y="{y - 4:.1f}" class="tick goal-label" text-anchor="end">'
            f"{escape(goal_label)}</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above
