"""A batch timeline as one self-contained HTML file: no network, no script from elsewhere.

Bars are positioned in percent of the batch's span inside a strip whose width the zoom
buttons (or Ctrl + wheel) multiply, so the file stays small and zooms without a library.
"""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime
from string import Template

from app.engine.timeline import (
    OUTCOME_COLORS,
    STAGING_COLOR,
    AttemptBar,
    Outcome,
    Timeline,
    tick_offsets_s,
)
from app.models.units import format_duration

ROW_PX = 22
LABEL_PX = 170

_STYLE = Template("""
body { font: 13px system-ui, sans-serif; margin: 16px; color: #222; background: #fff; }
h1 { font-size: 18px; margin: 0 0 4px; }
.meta { color: #555; margin-bottom: 8px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
  vertical-align: -2px; border-radius: 2px; }
.tools { margin: 8px 0; }
.tools button { margin-right: 4px; }
.chart { display: flex; border: 1px solid #ccc; }
.labels { flex: 0 0 ${label}px; border-right: 1px solid #ccc; background: #fafafa; }
.labels div { height: ${row}px; line-height: ${row}px; padding: 0 6px; overflow: hidden;
  white-space: nowrap; text-overflow: ellipsis; border-bottom: 1px solid #eee; }
.scroll { flex: 1; overflow-x: auto; }
.strip { position: relative; min-width: 100%; }
.row { position: absolute; left: 0; right: 0; height: ${row}px; border-bottom: 1px solid #eee; }
.bar, .stage { position: absolute; top: 3px; height: ${bar}px; border-radius: 2px;
  min-width: 1px; }
.stage { background: repeating-linear-gradient(45deg, ${stage}, ${stage} 3px, #fff 3px,
  #fff 5px); }
.tick { position: absolute; top: 0; bottom: 0; border-left: 1px dashed #ddd; }
.tick span { position: absolute; bottom: -18px; left: 2px; color: #666; font-size: 11px;
  white-space: nowrap; }
.axis { height: 22px; }
""").substitute(label=LABEL_PX, row=ROW_PX, bar=ROW_PX - 7, stage=STAGING_COLOR)

_SCRIPT = """
(function () {
  var strip = document.getElementById('strip'), zoom = 1;
  function set(z) { zoom = Math.max(1, Math.min(z, 1000)); strip.style.width = (zoom * 100) + '%';
    document.getElementById('zoom').textContent = zoom.toFixed(1) + 'x'; }
  document.getElementById('in').onclick = function () { set(zoom * 1.5); };
  document.getElementById('out').onclick = function () { set(zoom / 1.5); };
  document.getElementById('fit').onclick = function () { set(1); };
  strip.parentNode.addEventListener('wheel', function (e) {
    if (!e.ctrlKey) return;
    e.preventDefault(); set(e.deltaY < 0 ? zoom * 1.25 : zoom / 1.25);
  }, {passive: false});
})();
"""

OUTCOME_LABELS = {
    Outcome.WAITING: "waiting to start",
    Outcome.RUNNING: "running",
    Outcome.SUCCESS: "succeeded",
    Outcome.FAILED: "failed",
    Outcome.ERROR: "error",
    Outcome.CANCELLED: "cancelled",
    Outcome.LOST: "worker lost (retried)",
}


def bar_tip(bar: AttemptBar, now_s: float) -> str:
    """What hovering a bar says (the window uses the same words)."""
    lines = [f"{bar.job_name} (job {bar.job_id}, attempt {bar.attempt}) on {bar.worker}"]
    lines.append(OUTCOME_LABELS[bar.outcome] + (f": {bar.end_reason}" if bar.end_reason else ""))
    if bar.start_s is not None:
        lines.append(f"ran {format_duration(bar.finish_s(now_s) - bar.start_s)}")
    if bar.staging_ms is not None:
        lines.append(f"staging {format_duration(bar.staging_ms / 1000)}")
    return "\n".join(lines)


def _pct(t: float, start: float, span: float) -> float:
    return round(100.0 * (t - start) / span, 4)


def _bar_divs(bar: AttemptBar, timeline: Timeline, span: float) -> str:
    start = timeline.start_s
    parts = []
    if bar.staging_start_s is not None and bar.staging_ms:
        left = _pct(bar.staging_start_s, start, span)
        width = 100.0 * bar.staging_ms / 1000 / span
        parts.append(f'<div class="stage" style="left:{left}%;width:{width:.4f}%"></div>')
    run_from = bar.start_s if bar.start_s is not None else bar.scheduled_s
    left = _pct(run_from, start, span)
    width = max(0.0, _pct(bar.finish_s(timeline.now_s), start, span) - left)
    tip = html.escape(bar_tip(bar, timeline.now_s))
    color = OUTCOME_COLORS[bar.outcome]
    parts.append(
        f'<div class="bar" title="{tip}" data-outcome="{bar.outcome}" '
        f'style="left:{left}%;width:{width:.4f}%;background:{color}"></div>'
    )
    return "".join(parts)


def _ticks(timeline: Timeline) -> str:
    span = timeline.end_s - timeline.start_s
    return "".join(
        f'<div class="tick" style="left:{100.0 * t / span:.2f}%">'
        f"<span>{format_duration(t)}</span></div>"
        for t in tick_offsets_s(span)
    )


def render_html(timeline: Timeline) -> str:
    """The whole HTML document of a timeline."""
    batch = timeline.batch
    span = timeline.end_s - timeline.start_s
    rows = {worker: r for r, worker in enumerate(timeline.workers)}
    by_row: dict[int, list[str]] = {r: [] for r in rows.values()}
    for bar in timeline.bars:
        by_row[rows[bar.worker]].append(_bar_divs(bar, timeline, span))
    strip_rows = "".join(
        f'<div class="row" style="top:{r * ROW_PX}px">{"".join(divs)}</div>'
        for r, divs in by_row.items()
    )
    labels = "".join(f"<div>{html.escape(w)}</div>" for w in timeline.workers)
    counts = timeline.counts()
    legend = "".join(
        f'<span><i style="background:{OUTCOME_COLORS[o]}"></i>{OUTCOME_LABELS[o]} '
        f"({counts[o]})</span>"
        for o in Outcome
    )
    legend += f'<span><i style="background:{STAGING_COLOR}"></i>staging files</span>'
    made = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%d %H:%M UTC")
    started = datetime.fromtimestamp(timeline.start_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    name = html.escape(batch.name or "")
    height = max(1, len(timeline.workers)) * ROW_PX
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Batch {batch.id} timeline</title><style>{_STYLE}</style></head>
<body>
<h1>Batch {batch.id} {name}: timeline</h1>
<div class="meta">{html.escape(batch.state)} · {batch.n_jobs} jobs ·
{timeline.describe()} · started {started} · spans
{format_duration(span)} · made {made}{" (the batch was still running)" if timeline.live else ""}
</div>
<div class="legend">{legend}</div>
<div class="tools"><button id="out">&minus;</button><button id="in">+</button>
<button id="fit">Fit</button> <span id="zoom">1.0x</span> (Ctrl + wheel zooms)</div>
<div class="chart"><div class="labels">{labels}</div>
<div class="scroll"><div class="strip" id="strip">
<div style="position:relative;height:{height}px">{_ticks(timeline)}{strip_rows}</div>
<div class="axis"></div></div></div></div>
<script>{_SCRIPT}</script>
</body></html>
"""
