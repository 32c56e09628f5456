"""Submitting a DAG file: every validation problem in one dialog, the forecast before confirming."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.engine.service import Forecast, format_estimate
from app.models.spec import BatchSpec, DagFileError
from app.views import style
from app.views.bridge import EngineBridge

DAG_SUFFIXES = (".yaml", ".yml", ".json")


class ValidationErrorsDialog(QDialog):
    """Lists every problem of a DAG file (file, line, job, field, message)."""

    def __init__(self, path: str, problems: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("The DAG file has problems")
        n = len(problems)
        heading = QLabel(
            f"<b>{Path(path).name}</b> was not submitted: "
            f"{n} problem{'s' if n != 1 else ''} to fix. Nothing was stored."
        )
        self.problems = QListWidget()
        self.problems.addItems(problems)
        self.problems.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(self.problems)
        layout.addWidget(buttons)
        self.resize(640, 320)


class SubmitDialog(QDialog):
    """Shows what a DAG will cost and take, and asks to submit it."""

    def __init__(self, forecast: Forecast, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        spec = forecast.spec
        self.setWindowTitle(f"Submit {spec.name}")
        pools = sorted({e.pool or "" for e in forecast.estimates})
        summary = QLabel(
            f"<b>{spec.name}</b>: {len(spec.jobs):,} jobs, billing project "
            f"<b>{spec.billing_project}</b>, pool{'s' if len(pools) > 1 else ''} "
            f"{', '.join(pools)}"
        )
        low, high = forecast.cost_usd_low, forecast.cost_usd_high
        cost = style.usd(low) if low == high else f"{style.usd(low)} – {style.usd(high)}"
        self.cost = QLabel(f"Expected cost: <b>{cost}</b>")
        self.details = QLabel("\n\n".join(format_estimate(e) for e in forecast.estimates))
        self.details.setWordWrap(True)  # the window's own text colour: readable in any palette
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warnings = QLabel("\n".join(f"⚠ {w}" for w in forecast.warnings))
        self.warnings.setWordWrap(True)
        self.warnings.setToolTip("LabBatch does not price egress: the cloud bills it per GB")
        self.warnings.setVisible(bool(forecast.warnings))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.submit_button = QPushButton("Submit")
        self.submit_button.setDefault(True)
        buttons.addButton(self.submit_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (summary, self.cost, self.details, self.warnings, buttons):
            layout.addWidget(widget)
        self.resize(560, 260)


class SubmitFlow(QObject):
    """Open → validate → forecast → confirm → submit, each step off the event loop.

    `ask` shows a dialog and returns whether the user accepted; tests replace it.
    """

    submitted = Signal(int)  # batch id
    failed = Signal(str)  # what went wrong, for the status bar

    def __init__(self, bridge: EngineBridge, parent: QWidget) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.parent_widget = parent
        self.default_pool = ""
        self.last_dialog: QDialog | None = None

    def ask(self, dialog: QDialog) -> bool:
        return dialog.exec() == QDialog.DialogCode.Accepted

    def start(self, path: str) -> None:
        """Submit the DAG file at ``path`` (after showing its problems or its forecast)."""
        if Path(path).suffix.lower() not in DAG_SUFFIXES:
            self._refuse(path, [f"{path}: not a DAG file (use .yaml, .yml or .json)"])
            return
        self.bridge.call(
            self.bridge.service.load_dag(path),
            lambda spec: self._forecast(path, spec),
            on_error=lambda exc: self._on_load_error(path, exc),
        )

    def submit_data(self, data: object, *, source: str) -> None:
        """Submit DAG data (a drawn DAG): its problems, or its forecast and then the batch."""
        self.bridge.call(
            self.bridge.service.parse_dag_data(data, source=source),
            lambda spec: self._forecast(source, spec),
            on_error=lambda exc: self._on_load_error(source, exc),
        )

    def _on_load_error(self, path: str, exc: Exception) -> None:
        if isinstance(exc, DagFileError):
            self._refuse(path, [str(p) for p in exc.problems])
        else:
            self._refuse(path, [str(exc)])

    def _refuse(self, path: str, problems: list[str]) -> None:
        self.last_dialog = ValidationErrorsDialog(path, problems, self.parent_widget)
        self.failed.emit(f"{Path(path).name}: {len(problems)} problem(s); nothing submitted")
        self.ask(self.last_dialog)

    def _forecast(self, path: str, spec: BatchSpec) -> None:
        spec = with_default_pool(spec, self.default_pool)
        self.bridge.call(
            self.bridge.service.forecast(spec),
            self._confirm,
            on_error=lambda exc: self._refuse(path, [str(exc)]),
        )

    def _confirm(self, forecast: Forecast) -> None:
        self.last_dialog = SubmitDialog(forecast, self.parent_widget)
        if self.ask(self.last_dialog):
            self.bridge.call(
                self.bridge.service.submit(forecast.spec),
                self._on_submitted,
                on_error=lambda exc: self._refuse(forecast.spec.source, [str(exc)]),
            )

    def _on_submitted(self, batch_id: int) -> None:
        self.bridge.batches_changed.emit()
        self.submitted.emit(batch_id)


def with_default_pool(spec: BatchSpec, pool: str) -> BatchSpec:
    """Jobs that name no pool go to the user's default pool."""
    if not pool:
        return spec
    jobs = tuple(job if job.pool else replace(job, pool=pool) for job in spec.jobs)
    return replace(spec, jobs=jobs)


def dropped_dag_files(paths: list[str]) -> list[str]:
    """The DAG files among dropped paths."""
    return [p for p in paths if Path(p).suffix.lower() in DAG_SUFFIXES]
