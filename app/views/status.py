"""The status bar: the database, who drives, cores in use and what today cost."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from app.engine.service import MetricsSample
from app.views import style
from app.views.bridge import EngineBridge


class StatusPanel(QStatusBar):
    """Permanent fields fed by the bridge: database, driver lease, cores, spend today."""

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        service = bridge.service
        self.database = QLabel(service.database)
        self.database.setToolTip("The database this desktop uses (Settings ▸ Database URL)")
        self.lease = QLabel()
        self.cores = QLabel("cores: –")
        self.spend = QLabel("today: –")
        for label in (self.database, self.lease, self.cores, self.spend):
            self.addPermanentWidget(label)
        self._on_lease_changed(service.holds_lease)
        bridge.lease_changed.connect(self._on_lease_changed)
        bridge.metrics_sampled.connect(self._on_metrics_sampled)

    def _on_lease_changed(self, held: bool) -> None:
        if held:
            self.lease.setText("driver: this desktop")
            self.lease.setToolTip("This desktop schedules jobs and runs the pools")
        else:
            self.lease.setText("driver: elsewhere")
            self.lease.setToolTip(
                "Another process (a desktop or `labbatch serve`) drives this database; "
                "this desktop takes over if it stops"
            )

    def _on_metrics_sampled(self, sample: MetricsSample) -> None:
        in_use = sample.cores_in_use_mcpu
        total = in_use + sample.cores_free_mcpu
        booting = (
            f", {style.cores(sample.cores_booting_mcpu)} booting"
            if sample.cores_booting_mcpu
            else ""
        )
        self.cores.setText(f"cores: {style.cores(in_use)} / {style.cores(total)} in use{booting}")
        self.spend.setText(f"today: {style.usd(sample.spend_today_usd)}")
        problem = self.bridge.service.problem
        if problem:
            self.showMessage(problem)
