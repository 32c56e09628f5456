"""A batch's timeline in a window: attempts as bars on their workers' rows, live while it runs.

The data comes from `app.engine.timeline` (the same rows `labbatch timeline` writes as HTML);
this window only draws them. Zoom stretches time (Ctrl + wheel, the toolbar, or +/-), rows
keep their height. Export writes the picture as PNG or the self-contained HTML file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QByteArray, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QCloseEvent,
    QColor,
    QImage,
    QImageWriter,
    QKeySequence,
    QPainter,
    QPen,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QLabel,
    QMainWindow,
    QWidget,
)

from app.engine.service import (
    OUTCOME_COLORS,
    OUTCOME_LABELS,
    STAGING_COLOR,
    AttemptBar,
    Outcome,
    Timeline,
    bar_tip,
    render_html,
    tick_offsets_s,
)
from app.models.units import format_duration
from app.views.bridge import EngineBridge
from app.views.icons import app_icon

ROW_HEIGHT = 24.0
BAR_HEIGHT = 16.0
LABEL_WIDTH = 170.0
AXIS_HEIGHT = 24.0
ZOOM_STEP = 1.5
MAX_ZOOM = 1000.0
LIVE_EVERY_MS = 1000  # while the batch runs


class TimelineView(QGraphicsView):
    """The drawing; Ctrl + wheel zooms time."""

    zoom_requested = Signal(float)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_requested.emit(ZOOM_STEP if event.angleDelta().y() > 0 else 1 / ZOOM_STEP)
            event.accept()
            return
        super().wheelEvent(event)


class TimelineWindow(QMainWindow):
    """One batch's timeline; refreshes every second until the batch is complete.

    Tests replace `ask_save_path(title, default, filter)`, which returns "" when cancelled.
    """

    refreshed = Signal()  # a fresh timeline is drawn

    def __init__(self, bridge: EngineBridge, batch_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.batch_id = batch_id
        self.timeline: Timeline | None = None
        self.zoom = 1.0
        self.ask_save_path = self._ask_save_path
        self.setWindowTitle(f"Batch {batch_id}: timeline — LabBatch")
        self.setWindowIcon(app_icon())
        self.scene = QGraphicsScene(self)
        self.view = TimelineView(self.scene)
        self.view.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        self.view.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.view.zoom_requested.connect(self.zoom_by)
        self.setCentralWidget(self.view)
        self.summary = QLabel("Loading…")
        self.legend = QLabel(_legend_html())
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.statusBar().addWidget(self.summary, 1)
        self.statusBar().addPermanentWidget(self.legend)
        self._make_actions()
        self._in_flight = False
        self._live = QTimer(self, interval=LIVE_EVERY_MS)
        self._live.timeout.connect(self.refresh)
        self.resize(1100, 520)
        self.refresh()

    def _make_actions(self) -> None:
        bar = self.addToolBar("Timeline")
        bar.setObjectName("timeline_toolbar")
        self.zoom_in_action = bar.addAction("Zoom in", lambda: self.zoom_by(ZOOM_STEP))
        self.zoom_in_action.setShortcuts([QKeySequence("Ctrl++"), QKeySequence("Ctrl+=")])
        self.zoom_out_action = bar.addAction("Zoom out", lambda: self.zoom_by(1 / ZOOM_STEP))
        self.zoom_out_action.setShortcut(QKeySequence("Ctrl+-"))
        self.fit_action = bar.addAction("Fit", self.fit)
        self.fit_action.setShortcut(QKeySequence("Ctrl+0"))
        bar.addSeparator()
        self.png_action = bar.addAction("Export PNG…", self.export_png_dialog)
        self.html_action = bar.addAction("Export HTML…", self.export_html_dialog)

    # -- data -----------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the timeline again (skipped while a read is in flight)."""
        if self._in_flight:
            return
        self._in_flight = True
        self.bridge.call(
            self.bridge.service.timeline(self.batch_id),
            self._guard(self._on_timeline),
            on_error=self._guard(self._on_error),
        ).add_done_callback(self._guard(lambda _t: setattr(self, "_in_flight", False)))

    def _guard(self, fn: Callable[..., object]) -> Callable[..., None]:
        """Call ``fn`` only while this window exists (a read may end after it closed)."""

        def call(*args: Any) -> None:
            if shiboken6.isValid(self):
                fn(*args)

        return call

    def _on_error(self, exc: Exception) -> None:
        self._live.stop()
        self.summary.setText(str(exc))

    def _on_timeline(self, timeline: Timeline) -> None:
        self.timeline = timeline
        if timeline.live and not self._live.isActive():
            self._live.start()
        elif not timeline.live:
            self._live.stop()
        self._draw()
        self.refreshed.emit()

    # -- zoom -----------------------------------------------------------------------------------

    def zoom_by(self, factor: float) -> None:
        self.zoom = min(MAX_ZOOM, max(1.0, self.zoom * factor))
        self._draw()

    def fit(self) -> None:
        self.zoom = 1.0
        self._draw()

    def px_per_s(self) -> float:
        """Horizontal scale: at zoom 1 the whole batch fits the view's width."""
        if self.timeline is None:
            return 1.0
        span = self.timeline.end_s - self.timeline.start_s
        width = max(200.0, self.view.viewport().width() - LABEL_WIDTH - 20)
        return width * self.zoom / span

    def bar_rect(self, bar: AttemptBar) -> QRectF:
        """Where a bar's run is drawn in the scene (tests look there)."""
        assert self.timeline is not None
        row = self.timeline.workers.index(bar.worker)
        scale = self.px_per_s()
        begin = bar.start_s if bar.start_s is not None else bar.scheduled_s
        x = LABEL_WIDTH + (begin - self.timeline.start_s) * scale
        width = max(1.0, (bar.finish_s(self.timeline.now_s) - begin) * scale)
        return QRectF(x, row * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2, width, BAR_HEIGHT)

    # -- drawing --------------------------------------------------------------------------------

    def _draw(self) -> None:
        timeline = self.timeline
        self.scene.clear()
        if timeline is None:
            return
        scale = self.px_per_s()
        span = timeline.end_s - timeline.start_s
        height = len(timeline.workers) * ROW_HEIGHT
        width = LABEL_WIDTH + span * scale
        grid = QPen(self.palette().mid().color(), 0, Qt.PenStyle.DashLine)
        text_color = self.palette().text().color()
        for offset_s in tick_offsets_s(span, most=max(2, round(span * scale / 110))):
            x = LABEL_WIDTH + offset_s * scale
            self.scene.addLine(x, 0, x, height, grid)
            label = self.scene.addSimpleText(format_duration(offset_s))
            label.setBrush(text_color)
            label.setPos(x + 2, height + 4)
        for row, worker in enumerate(timeline.workers):
            self.scene.addLine(0, (row + 1) * ROW_HEIGHT, width, (row + 1) * ROW_HEIGHT, grid)
            name = self.scene.addSimpleText(worker)
            name.setBrush(text_color)
            name.setPos(4, row * ROW_HEIGHT + 4)
        no_pen = QPen(Qt.PenStyle.NoPen)
        for bar in timeline.bars:
            rect = self.bar_rect(bar)
            if bar.staging_start_s is not None and bar.staging_ms:
                x = LABEL_WIDTH + (bar.staging_start_s - timeline.start_s) * scale
                stage = QRectF(x, rect.y(), max(1.0, bar.staging_ms / 1000 * scale), BAR_HEIGHT)
                brush = QBrush(QColor(STAGING_COLOR), Qt.BrushStyle.BDiagPattern)
                self.scene.addRect(stage, QPen(QColor(STAGING_COLOR)), brush)
            item = QGraphicsRectItem(rect)
            item.setBrush(QColor(OUTCOME_COLORS[bar.outcome]))
            item.setPen(no_pen)
            item.setToolTip(bar_tip(bar, timeline.now_s))
            item.setData(0, str(bar.outcome))
            self.scene.addItem(item)
        self.scene.setSceneRect(QRectF(0, 0, width + 20, height + AXIS_HEIGHT))
        self.summary.setText(_summary(timeline))

    # -- export ---------------------------------------------------------------------------------

    def export_png(self, path: str | Path) -> None:
        """The whole timeline (not only what is scrolled into view) as a PNG image."""
        rect = self.scene.sceneRect()
        image = QImage(int(rect.width()) + 1, int(rect.height()) + 1, QImage.Format.Format_ARGB32)
        image.fill(self.palette().base().color())
        painter = QPainter(image)
        try:
            self.scene.render(painter, QRectF(image.rect()), rect)
        finally:
            painter.end()
        writer = QImageWriter(str(path), QByteArray(b"png"))
        if not writer.write(image):
            raise OSError(f"could not write {path}: {writer.errorString()}")

    def export_html(self, path: str | Path) -> None:
        """The self-contained HTML file `labbatch timeline` writes."""
        if self.timeline is not None:
            Path(path).write_text(render_html(self.timeline), encoding="utf-8")

    def export_png_dialog(self) -> None:
        name = f"batch-{self.batch_id}-timeline.png"
        if path := self.ask_save_path("Export the timeline as PNG", name, "PNG images (*.png)"):
            self._export(self.export_png, path)

    def export_html_dialog(self) -> None:
        name = f"batch-{self.batch_id}-timeline.html"
        if path := self.ask_save_path("Export the timeline as HTML", name, "HTML (*.html)"):
            self._export(self.export_html, path)

    def _export(self, write: Callable[[str], None], path: str) -> None:
        try:
            write(path)
        except OSError as exc:
            self.statusBar().showMessage(f"Not exported: {exc}", 8000)
            return
        self.statusBar().showMessage(f"Exported {path}", 5000)

    def _ask_save_path(self, title: str, default: str, file_filter: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, title, default, file_filter)
        return path

    def closeEvent(self, event: QCloseEvent) -> None:
        self._live.stop()
        super().closeEvent(event)


def _legend_html() -> str:
    swatch = '<span style="color:{0}">■</span> {1}'
    items = [swatch.format(OUTCOME_COLORS[o], OUTCOME_LABELS[o]) for o in Outcome]
    items.append(swatch.format(STAGING_COLOR, "staging"))
    return " &nbsp; ".join(items)


def _summary(timeline: Timeline) -> str:
    batch = timeline.batch
    live = " · live" if timeline.live else ""
    return (
        f"Batch {batch.id} {batch.name or ''} · {batch.state} · {timeline.describe()} · "
        f"{format_duration(timeline.end_s - timeline.start_s)}{live}"
    )
