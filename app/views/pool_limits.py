"""The Pools tab's Limits form: a pool's stored limits, kept current, and only what changed.

The form remembers the stored values it shows. A refresh moves untouched fields to the values
stored now (a `labbatch pool set` from a shell, another desktop), and `changes()` holds only
the fields the user edited, so Apply never writes back a stale value over someone else's.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QGroupBox, QPushButton, QSpinBox, QWidget

from app.engine.service import PoolConfig
from app.views.pool_dialog import cores_box, price_box

LIMIT_FIELDS = (
    "min_instances",
    "max_instances",
    "max_live_instances",
    "worker_cores_mcpu",
    "price_per_core_hour_usd",
)
MAX_COUNT = 10_000


def count_box(tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(0, MAX_COUNT)
    box.setToolTip(tip)
    return box


class LimitsForm(QGroupBox):
    """Min / max / max live instances, worker cores and price of one pool, and Apply."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Limits", parent)
        self.min_instances = count_box("Workers kept running even when idle")
        self.max_instances = count_box("Most workers the pool may ever have")
        self.max_live_instances = count_box("Most workers running at once")
        self.worker_cores: QDoubleSpinBox = cores_box("Cores of each new worker")
        self.price: QDoubleSpinBox = price_box()
        self.apply_button = QPushButton("Apply")
        self.pool_name: str | None = None  # the pool the form was filled from
        self._filled: dict[str, Any] = {}  # the stored values shown (LIMIT_FIELDS)
        form = QFormLayout(self)
        form.addRow("Min instances:", self.min_instances)
        form.addRow("Max instances:", self.max_instances)
        form.addRow("Max live instances:", self.max_live_instances)
        form.addRow("Worker cores:", self.worker_cores)
        form.addRow("Price per core-hour:", self.price)
        form.addRow("", self.apply_button)

    def fill(self, pool: PoolConfig) -> None:
        """Show a pool's stored limits in every field (a new pool, or after Apply)."""
        for name in LIMIT_FIELDS:
            self._show(name, getattr(pool, name))
        self.price.setEnabled(pool.cloud == "local")
        self.pool_name = pool.name
        self._filled = {name: getattr(pool, name) for name in LIMIT_FIELDS}

    def follow(self, pool: PoolConfig) -> None:
        """Show limits changed elsewhere in the fields the user has not touched; a field being
        edited keeps what the user typed."""
        form = self.values(pool)
        for name in LIMIT_FIELDS:
            stored = getattr(pool, name)
            if name not in form or stored == self._filled.get(name):
                continue
            if form[name] == self._filled.get(name):  # untouched: follow the store
                self._show(name, stored)
            self._filled[name] = stored

    def values(self, pool: PoolConfig) -> dict[str, Any]:
        """What the form shows, in the units the pool stores."""
        values: dict[str, Any] = {
            "min_instances": self.min_instances.value(),
            "max_instances": self.max_instances.value(),
            "max_live_instances": self.max_live_instances.value(),
            "worker_cores_mcpu": round(self.worker_cores.value() * 1000),
        }
        if pool.cloud == "local":  # cloud pools are priced by their cloud's rates
            price = round(self.price.value(), 4)
            values["price_per_core_hour_usd"] = Decimal(str(price)) if price > 0 else None
        return values

    def changes(self, pool: PoolConfig) -> dict[str, Any]:
        """Only the fields the user changed since they were filled or followed."""
        return {k: v for k, v in self.values(pool).items() if v != self._filled.get(k)}

    def _show(self, name: str, value: Any) -> None:
        editor = self._editor(name)
        editor.blockSignals(True)
        try:
            if name == "worker_cores_mcpu":
                self.worker_cores.setValue(value / 1000)
            elif name == "price_per_core_hour_usd":
                self.price.setValue(float(value or 0))
            else:
                self._counts()[name].setValue(value)
        finally:
            editor.blockSignals(False)

    def _counts(self) -> dict[str, QSpinBox]:
        return {
            "min_instances": self.min_instances,
            "max_instances": self.max_instances,
            "max_live_instances": self.max_live_instances,
        }

    def _editor(self, name: str) -> QWidget:
        others: dict[str, QWidget] = {
            "worker_cores_mcpu": self.worker_cores,
            "price_per_core_hour_usd": self.price,
        }
        return others.get(name) or self._counts()[name]
