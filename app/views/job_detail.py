"""One job in detail: its spec, its attempts, why it waits, and its log followed live."""

from __future__ import annotations

import json
from typing import Any

import shiboken6
import yaml
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QFontDatabase, QHideEvent, QShowEvent, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.engine.service import JobDetail, LogChunk
from app.views import style
from app.views.bridge import EngineBridge

LOG_EVERY_MS = 1000
DETAIL_EVERY_MS = 2000
MAX_LOG_LINES = 200_000  # a runaway log must not eat the desktop's memory
FINAL_STATES = frozenset({"Success", "Failed", "Error", "Cancelled"})
WAITING_STATES = frozenset({"Pending", "Ready", "Creating"})
ATTEMPT_COLUMNS = ("Attempt", "Worker", "Start", "End", "Duration", "Reason")
TAB_SPEC, TAB_ATTEMPTS, TAB_WHY, TAB_LOG = range(4)


def _text_view() -> QPlainTextEdit:
    view = QPlainTextEdit()
    view.setReadOnly(True)
    view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
    return view


def spec_text(detail: JobDetail) -> str:
    """A job's spec as YAML, with its name and the jobs it depends on."""
    shown: dict[str, Any] = {"name": detail.job.name, **detail.spec}
    shown["depends_on"] = list(detail.depends_on)
    try:
        return yaml.safe_dump(shown, sort_keys=False, allow_unicode=True, width=100)
    except yaml.YAMLError:
        return json.dumps(shown, indent=2, default=str)


class JobDetailPanel(QWidget):
    """Tabs for one job: Spec, Attempts, Why (while it waits) and Log (followed while it runs)."""

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.batch_id: int | None = None
        self.job_id: int | None = None
        self.state: str | None = None
        self.job_detail: JobDetail | None = None

        self.title = QLabel("Select a job to see its spec, attempts and log")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.spec_view = _text_view()
        self.attempts_table = QTableWidget(0, len(ATTEMPT_COLUMNS))
        self.attempts_table.setHorizontalHeaderLabels(list(ATTEMPT_COLUMNS))
        self.attempts_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.attempts_table.verticalHeader().setVisible(False)
        self.attempts_table.horizontalHeader().setStretchLastSection(True)
        self.attempts_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.Interactive
        )
        self.why_view = _text_view()
        self.why_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.log_view = _text_view()
        self.log_view.setMaximumBlockCount(MAX_LOG_LINES)
        self.log_note = QLabel()
        self.log_note.setStyleSheet("color: gray")
        log_page = QWidget()
        log_layout = QVBoxLayout(log_page)
        log_layout.setContentsMargins(0, 0, 0, 0)
        log_layout.addWidget(self.log_view)
        log_layout.addWidget(self.log_note)

        self.tabs = QTabWidget()
        self.tabs.addTab(self.spec_view, "Spec")
        self.tabs.addTab(self.attempts_table, "Attempts")
        self.tabs.addTab(self.why_view, "Why")
        self.tabs.addTab(log_page, "Log")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.tabs)

        self._token = 0  # results for an earlier job are dropped
        self._paused = False  # polling stopped because the panel was hidden
        self._detail_in_flight = False
        self._why_in_flight = False
        self._log_in_flight = False
        self._log_offset = 0
        self._log_live = False  # the last chunk continued a running attempt's log
        self._log_seq = 0  # log reads started for this job
        self._final_after: int | None = None  # a stored log read from this read on is the last
        self._following = False
        self._log_timer = QTimer(self, singleShot=True, interval=LOG_EVERY_MS)
        self._log_timer.timeout.connect(self._poll_log)
        self._detail_timer = QTimer(self, interval=DETAIL_EVERY_MS)
        self._detail_timer.timeout.connect(self._poll_detail)

    # -- public ---------------------------------------------------------------------------------

    def show_job(self, batch_id: int, job_id: int) -> None:
        """Show a job and follow it; asking again for the job shown changes nothing."""
        if (batch_id, job_id) == (self.batch_id, self.job_id):
            return
        self.stop()
        self.batch_id, self.job_id = batch_id, job_id
        self.state, self.job_detail = None, None
        self.title.setText(f"<b>Job {job_id}</b>")
        self.spec_view.setPlainText("")
        self.attempts_table.setRowCount(0)
        self.why_view.setPlainText("")
        self.log_view.setPlainText("")
        self.log_note.setText("loading…")
        self._following = True
        self._detail_timer.start()
        self._fetch_detail()
        self._fetch_why()
        self._poll_log()

    def clear(self) -> None:
        """Show no job."""
        self.stop()
        self.batch_id = self.job_id = None
        self.state, self.job_detail = None, None
        self.title.setText("Select a job to see its spec, attempts and log")
        for view in (self.spec_view, self.why_view, self.log_view):
            view.setPlainText("")
        self.attempts_table.setRowCount(0)
        self.log_note.setText("")

    def stop(self) -> None:
        """Stop polling; results still on their way are dropped."""
        self._token += 1
        self._log_timer.stop()
        self._detail_timer.stop()
        self._following = False
        self._paused = False
        self._detail_in_flight = self._why_in_flight = self._log_in_flight = False
        self._log_offset, self._log_live, self._log_seq = 0, False, 0
        self._final_after = None

    @property
    def following(self) -> bool:
        """True while the log (or the job's state) is still being polled."""
        return self._following

    @property
    def polling(self) -> bool:
        """True while a timer will ask the engine again."""
        return self._log_timer.isActive() or self._detail_timer.isActive()

    @property
    def log_at_bottom(self) -> bool:
        bar = self.log_view.verticalScrollBar()
        return bar.value() >= bar.maximum() - 2

    # -- spec, attempts, why --------------------------------------------------------------------

    def _poll_detail(self) -> None:
        if self.job_id is None:
            self._detail_timer.stop()
            return
        if not self.isVisible():
            self._pause()
            return
        self._fetch_detail()
        if self.state is None or self.state not in FINAL_STATES:
            self._fetch_why()

    def _fetch_detail(self) -> None:
        if self._detail_in_flight or self.batch_id is None or self.job_id is None:
            return
        self._detail_in_flight = True
        token = self._token
        self.bridge.call(
            self.bridge.service.job_detail(self.batch_id, self.job_id),
            lambda detail: self._on_detail(token, detail),
            on_error=lambda exc: self._on_error(token, exc),
        )

    def _on_detail(self, token: int, detail: JobDetail) -> None:
        if token != self._token or not shiboken6.isValid(self):
            return
        self._detail_in_flight = False
        before, self.state = self.state, str(detail.job.state)
        self.job_detail = detail
        job = detail.job
        color = style.STATE_COLORS.get(self.state, "#9e9e9e")
        self.title.setText(
            f"<b>Job {job.job_id} — {_escape(job.name)}</b> · "
            f"<span style='color:{color}'><b>{self.state}</b></span>"
            + (f" · exit code {job.exit_code}" if job.exit_code is not None else "")
            + (f" · {_escape(job.error)}" if job.error else "")
            + (f"<br>{_escape(detail.files)}" if detail.files else "")
        )
        text = spec_text(detail)
        if text != self.spec_view.toPlainText():
            self.spec_view.setPlainText(text)
        self._show_attempts(detail)
        if self.state in FINAL_STATES:
            self._detail_timer.stop()
            if self._final_after is None:
                self._final_after = self._log_seq + 1
            if before is not None and before not in FINAL_STATES:
                self._fetch_why()  # now it tells how the job ended
            if not self._log_in_flight and not self._log_timer.isActive() and self._following:
                self._poll_log()

    def _show_attempts(self, detail: JobDetail) -> None:
        table = self.attempts_table
        table.setRowCount(len(detail.attempts))
        for row, attempt in enumerate(detail.attempts):
            length = (
                attempt.end_time - attempt.start_time
                if attempt.start_time is not None and attempt.end_time is not None
                else None
            )
            values = (
                str(attempt.attempt),
                attempt.instance_name,
                style.clock(attempt.start_time),
                style.clock(attempt.end_time),
                style.duration(length),
                attempt.end_reason or "",
            )
            for column, value in enumerate(values):
                item = table.item(row, column)
                if item is None:
                    table.setItem(row, column, QTableWidgetItem(value))
                elif item.text() != value:
                    item.setText(value)

    def _fetch_why(self) -> None:
        if self._why_in_flight or self.batch_id is None or self.job_id is None:
            return
        self._why_in_flight = True
        token = self._token
        self.bridge.call(
            self.bridge.service.why(self.batch_id, self.job_id),
            lambda text: self._on_why(token, text),
            on_error=lambda exc: self._on_error(token, exc),
        )

    def _on_why(self, token: int, text: str) -> None:
        if token != self._token or not shiboken6.isValid(self):
            return
        self._why_in_flight = False
        if text != self.why_view.toPlainText():
            self.why_view.setPlainText(text)

    def _on_error(self, token: int, exc: Exception) -> None:
        if token != self._token or not shiboken6.isValid(self):
            return
        # the job is gone (its batch deleted): say so here rather than in a dialog every second
        self.stop()
        self.log_note.setText(str(exc))

    # -- log ------------------------------------------------------------------------------------

    def _poll_log(self) -> None:
        if self._log_in_flight or self.batch_id is None or self.job_id is None:
            return
        if not self.isVisible() and self._log_seq > 0:
            self._pause()
            return
        self._log_in_flight = True
        self._log_seq += 1
        seq, token = self._log_seq, self._token
        offset = self._log_offset if self._log_live else 0
        self.bridge.call(
            self.bridge.service.read_log(self.batch_id, self.job_id, offset=offset),
            lambda chunk: self._on_log(token, seq, chunk),
            on_error=lambda exc: self._on_error(token, exc),
        )

    def _on_log(self, token: int, seq: int, chunk: LogChunk) -> None:
        if token != self._token or not shiboken6.isValid(self):
            return
        self._log_in_flight = False
        at_bottom = self.log_at_bottom
        bar = self.log_view.verticalScrollBar()
        scrolled_to = bar.value()
        if chunk.whole or (chunk.live and not self._log_live):
            # a stored log, or the start of a live one: it replaces what was shown
            if chunk.text != self.log_view.toPlainText():
                self.log_view.setPlainText(chunk.text)
                bar.setValue(bar.maximum() if at_bottom else scrolled_to)
        elif chunk.text:
            cursor = QTextCursor(self.log_view.document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(chunk.text)
            if at_bottom:
                bar.setValue(bar.maximum())
        self._log_live = chunk.live
        self._log_offset = chunk.offset
        self.log_note.setText(chunk.note)
        done = not chunk.live and self._final_after is not None and seq >= self._final_after
        if done:
            self._following = False
        elif self.isVisible():
            self._log_timer.start()
        else:
            self._pause()

    # -- visibility -----------------------------------------------------------------------------

    def _pause(self) -> None:
        self._paused = True
        self._log_timer.stop()
        self._detail_timer.stop()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._paused and self.job_id is not None:
            self._paused = False
            if self.state not in FINAL_STATES:
                self._detail_timer.start()
            self._fetch_detail()
            if self._following:
                self._poll_log()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        if self.job_id is not None:
            self._pause()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.stop()
        super().closeEvent(event)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
