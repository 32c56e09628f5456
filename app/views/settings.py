"""Desktop settings kept in QSettings, and the dialog that edits them."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from decimal import Decimal

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.engine.service import DEFAULT_POOL

ORGANIZATION = "LabBatch"
APPLICATION = "labbatch"


@dataclass(frozen=True, slots=True)
class DesktopSettings:
    """What a user sets once: where the data is, who they are, the local pool, notifications."""

    database_url: str = ""  # empty: the SQLite file in the user data dir (or $LABBATCH_DB)
    user: str = ""  # empty: $LABBATCH_USER or the login name
    default_pool: str = DEFAULT_POOL
    local_workers: int = 1
    local_cores: float = float(os.cpu_count() or 1)
    local_price_per_core_hour_usd: float = 0.0
    notifications: bool = True
    keep_pools_running: bool = False  # on close, hand the pools over to `labbatch serve`

    @classmethod
    def load(cls, store: QSettings | None = None) -> DesktopSettings:
        store = store or qsettings()
        values = {}
        for f in fields(cls):
            default = getattr(cls(), f.name)
            raw = store.value(f"settings/{f.name}", default)
            values[f.name] = _coerce(raw, default)
        return cls(**values)

    def save(self, store: QSettings | None = None) -> None:
        store = store or qsettings()
        for f in fields(self):
            store.setValue(f"settings/{f.name}", getattr(self, f.name))
        store.sync()


def qsettings() -> QSettings:
    """The settings store: an INI file in the user's config dir (~/.config/LabBatch on Linux).

    The INI format is named, not left native, so QSettings.setPath (the tests' temp dir) applies.
    """
    return QSettings(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION
    )


def _coerce(raw: object, default: object) -> object:
    """QSettings hands back strings from INI files: bring each value back to its type."""
    if isinstance(default, bool):
        return raw if isinstance(raw, bool) else str(raw).lower() in ("true", "1", "yes")
    try:
        if isinstance(default, int):
            return int(str(raw))
        if isinstance(default, float):
            return float(str(raw))
    except ValueError:
        return default
    return "" if raw is None else str(raw)


class SettingsDialog(QDialog):
    """Edits DesktopSettings; the local pool's size and price are applied to the pool."""

    def __init__(
        self, settings: DesktopSettings, pools: list[str], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("LabBatch settings")
        self.original = settings
        self.database_url = QLineEdit(settings.database_url)
        self.database_url.setPlaceholderText("default: a SQLite file in your data folder")
        self.database_url.setToolTip(
            "sqlite:///path/to/file.db or postgresql://user@host/db (a lab's shared database)"
        )
        self.user = QLineEdit(settings.user)
        self.user.setPlaceholderText("default: your login name")
        self.default_pool = QComboBox()
        self.default_pool.addItems(pools or [DEFAULT_POOL])
        self.default_pool.setCurrentText(settings.default_pool)
        self.local_workers = QSpinBox()
        self.local_workers.setRange(1, 64)
        self.local_workers.setValue(settings.local_workers)
        self.local_cores = QDoubleSpinBox()
        self.local_cores.setRange(0.25, 512)
        self.local_cores.setSingleStep(0.25)
        self.local_cores.setValue(settings.local_cores)
        self.local_price = QDoubleSpinBox()
        self.local_price.setRange(0, 100)
        self.local_price.setDecimals(4)
        self.local_price.setPrefix("$ ")
        self.local_price.setValue(settings.local_price_per_core_hour_usd)
        self.notifications = QCheckBox("Notify when my batches end and budgets pass 80 %")
        self.notifications.setChecked(settings.notifications)
        self.keep_pools = QCheckBox(
            "Keep pools running after closing (hand over to labbatch serve)"
        )
        self.keep_pools.setChecked(settings.keep_pools_running)

        form = QFormLayout()
        form.addRow("Database URL", self.database_url)
        form.addRow("User name", self.user)
        form.addRow("Default pool", self.default_pool)
        form.addRow("Local workers", self.local_workers)
        form.addRow("Cores per local worker", self.local_cores)
        form.addRow("Local price per core-hour", self.local_price)
        form.addRow(self.notifications)
        form.addRow(self.keep_pools)
        hint = QLabel("A new database URL or user name takes effect when LabBatch restarts.")
        hint.setEnabled(False)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addWidget(buttons)

    def settings(self) -> DesktopSettings:
        """The settings as edited."""
        return replace(
            self.original,
            database_url=self.database_url.text().strip(),
            user=self.user.text().strip(),
            default_pool=self.default_pool.currentText(),
            local_workers=self.local_workers.value(),
            local_cores=self.local_cores.value(),
            local_price_per_core_hour_usd=self.local_price.value(),
            notifications=self.notifications.isChecked(),
            keep_pools_running=self.keep_pools.isChecked(),
        )


def local_pool_changes(settings: DesktopSettings) -> dict[str, object]:
    """The stored settings of the local pool that the desktop settings stand for."""
    n = settings.local_workers
    price = Decimal(str(settings.local_price_per_core_hour_usd))
    return {
        "min_instances": n,
        "max_instances": n,
        "max_live_instances": n,
        "worker_cores_mcpu": round(settings.local_cores * 1000),
        "price_per_core_hour_usd": price if price else None,
    }
