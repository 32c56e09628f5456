"""The "New pool" dialog, and how the pool view names a cloud pool's settings.

The dialog only gathers values: the engine's `create_pool` checks them (with the cloud
package's own rules), and its refusal shows inline in red while the dialog keeps the values.
Each cloud's settings are declared once here as `CloudField`s; a page of editors is built from
them and the pool view's summary uses the same labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.engine.service import (
    CLOUD_BOOT_TIME_S,
    MACHINE_TYPE_KEY,
    PoolConfig,
    machine_type_cores,
)
from app.views.bridge import EngineBridge

ERROR_COLOR = "#e53935"  # refusals and problems, here and in the pools panel
CLOUD_NAMES = {"local": "Local (this computer)", "gcp": "Google Compute Engine", "azure": "Azure"}
DEFAULT_CLOUD_CORES = 4.0  # the default machine types have 4 cores
DEFAULT_LOCAL_CORES = 1.0
MAX_COUNT = 10_000
MAX_IDLE_TIMEOUT_S = 7 * 24 * 3600


class FieldKind(StrEnum):
    """How a cloud setting is typed in and stored."""

    TEXT = "text"  # a string; left out when empty
    LIST = "list"  # comma-separated in the editor, a list of strings in the config
    NUMBER = "number"  # a whole number
    FLAG = "flag"  # a checkbox; stored only when on


@dataclass(frozen=True, slots=True)
class CloudField:
    """One key of a cloud pool's ``config`` (``storage.endpoint``: a key of its ``storage``
    mapping), with its editor's label, default and help."""

    key: str
    label: str
    kind: FieldKind = FieldKind.TEXT
    default: str | int = ""
    minimum: int = 0
    maximum: int = 65535
    advanced: bool = False
    tip: str = ""


_ALLOW_FROM_TIP = (
    "Addresses or CIDR ranges LabBatch dials the workers from, comma-separated: usually this "
    "computer's public address (curl -s https://ifconfig.me)"
)
_REQUIREMENT_TIP = "The pip requirement VMs install the worker from (default: this release)"
_STORAGE_ENDPOINT = CloudField(
    "storage.endpoint",
    "Storage endpoint:",
    advanced=True,
    tip="Another object storage address (a private endpoint, or an emulator)",
)
SCRATCH_EXAMPLES = {"gcp": "gs://<bucket>/<prefix>", "azure": "az://<account>/<container>/<prefix>"}
WARNING_COLOR = "#fb8c00"  # things that work but cost: a bucket in another region

GCP_FIELDS = (
    CloudField("project", "Project:", tip="The Google Cloud project ID (required)"),
    CloudField(
        "zones",
        "Zones:",
        FieldKind.LIST,
        "us-central1-a",
        tip="Zones tried in order, comma-separated; a full zone moves on to the next",
    ),
    CloudField("machine_type", "Machine type:", default="n2-standard-4"),
    CloudField("allow_from", "Allow from:", FieldKind.LIST, tip=_ALLOW_FROM_TIP),
    CloudField("boot_disk_gb", "Boot disk (GB):", FieldKind.NUMBER, 20, 10, 65536),
    CloudField("image", "Image:", advanced=True, tip="Boot image (default Debian 12)"),
    CloudField("network", "Network:", advanced=True),
    CloudField("subnetwork", "Subnetwork:", advanced=True),
    CloudField("network_tag", "Network tag:", advanced=True, tip="Default labbatch-worker"),
    CloudField("worker_port", "Worker port:", FieldKind.NUMBER, 8443, 1, 65535, advanced=True),
    CloudField("worker_requirement", "Worker requirement:", advanced=True, tip=_REQUIREMENT_TIP),
    CloudField(
        "use_internal_ip",
        "Use internal IP:",
        FieldKind.FLAG,
        advanced=True,
        tip="Dial the VMs' internal address (a VPN, or a driver in the same VPC)",
    ),
    CloudField(
        "api_endpoint",
        "API endpoint:",
        advanced=True,
        tip="Another Compute Engine API address (a private endpoint)",
    ),
    CloudField(
        "storage.signing_service_account",
        "Signing service account:",
        advanced=True,
        tip="Sign the workers' URLs as this service account (see docs/clouds.md)",
    ),
    CloudField(
        "storage.user_project",
        "Requester-pays project:",
        advanced=True,
        tip="Bill reads of requester-pays buckets to this project",
    ),
    _STORAGE_ENDPOINT,
)
AZURE_FIELDS = (
    CloudField("subscription_id", "Subscription ID:", tip="Required"),
    CloudField("resource_group", "Resource group:", tip="Required"),
    CloudField("location", "Location:", default="eastus"),
    CloudField("vm_size", "VM size:", default="Standard_D4s_v5"),
    CloudField(
        "fallback_vm_sizes",
        "Fallback VM sizes:",
        FieldKind.LIST,
        tip="Sizes tried in order when Azure has no capacity, comma-separated (same cores)",
    ),
    CloudField("subnet_id", "Subnet ID:", tip="ARM id of the subnet the VMs join (required)"),
    CloudField("ssh_public_key", "SSH public key:", tip="Azure needs one for Linux VMs"),
    CloudField("allow_from", "Allow from:", FieldKind.LIST, tip=_ALLOW_FROM_TIP),
    CloudField(
        "image", "Image:", advanced=True, tip="publisher:offer:sku:version (default Debian 12)"
    ),
    CloudField("worker_port", "Worker port:", FieldKind.NUMBER, 8443, 1, 65535, advanced=True),
    CloudField("worker_requirement", "Worker requirement:", advanced=True, tip=_REQUIREMENT_TIP),
    CloudField(
        "use_private_ip",
        "Use private IP:",
        FieldKind.FLAG,
        advanced=True,
        tip="Dial the VMs' private address (a VPN, or a driver in the same network)",
    ),
    CloudField(
        "base_url",
        "Resource Manager URL:",
        advanced=True,
        tip="Another Azure Resource Manager address (a private endpoint)",
    ),
    _STORAGE_ENDPOINT,
)
CLOUD_FIELDS: dict[str, tuple[CloudField, ...]] = {"gcp": GCP_FIELDS, "azure": AZURE_FIELDS}
# what the pool view shows of a cloud pool, in this order
SUMMARY_KEYS = {
    "gcp": ("project", "zones", "machine_type"),
    "azure": ("subscription_id", "resource_group", "location", "vm_size"),
}


def _summary_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def cloud_summary(pool: PoolConfig) -> list[str]:
    """A cloud pool's cloud and key settings as "Label: value" lines; empty for local pools."""
    fields = {f.key: f for f in CLOUD_FIELDS.get(pool.cloud, ())}
    if not fields:
        return []
    spot = "spot" if pool.preemptible else "standard (not spot)"
    lines = [f"Cloud: {CLOUD_NAMES.get(pool.cloud, pool.cloud)}, {spot} VMs"]
    for key in SUMMARY_KEYS[pool.cloud]:
        value = pool.config.get(key)
        if key == MACHINE_TYPE_KEY.get(pool.cloud):  # the engine keeps it out of ``config``
            value = pool.machine_type or value
        if value:
            lines.append(f"{fields[key].label} {_summary_value(value)}")
    return lines


def _list_items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


class CloudPage(QWidget):
    """The editors of one cloud's settings; the advanced ones fold away."""

    def __init__(self, fields: tuple[CloudField, ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.fields = fields
        self._editors: dict[str, QWidget] = {}
        basic = QFormLayout()
        self.advanced = QWidget()
        advanced = QFormLayout(self.advanced)
        advanced.setContentsMargins(0, 0, 0, 0)
        for field in fields:
            editor = self._editor(field)
            editor.setToolTip(field.tip)
            self._editors[field.key] = editor
            (advanced if field.advanced else basic).addRow(field.label, editor)
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setAutoRaise(True)
        self.advanced_toggle.toggled.connect(self._on_advanced_toggled)
        self._on_advanced_toggled(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(basic)
        layout.addWidget(self.advanced_toggle)
        layout.addWidget(self.advanced)
        layout.addStretch(1)

    @staticmethod
    def _editor(field: CloudField) -> QWidget:
        if field.kind is FieldKind.NUMBER:
            box = QSpinBox()
            box.setRange(field.minimum, field.maximum)
            box.setValue(int(field.default))
            return box
        if field.kind is FieldKind.FLAG:
            return QCheckBox()
        line = QLineEdit(str(field.default))
        if field.kind is FieldKind.LIST:
            line.setPlaceholderText("comma-separated")
        return line

    def _on_advanced_toggled(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        arrow = Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow
        self.advanced_toggle.setArrowType(arrow)

    def editor(self, key: str) -> QWidget:
        """The editor of one setting (a QLineEdit, QSpinBox or QCheckBox by its kind)."""
        return self._editors[key]

    def config(self) -> dict[str, Any]:
        """The settings as a pool's ``config``: empty texts, lists and unset flags left out."""
        config: dict[str, Any] = {}
        for field in self.fields:
            editor = self._editors[field.key]
            if isinstance(editor, QSpinBox):
                config[field.key] = editor.value()
            elif isinstance(editor, QCheckBox):
                if editor.isChecked():
                    config[field.key] = True
            elif isinstance(editor, QLineEdit):
                text = editor.text().strip()
                value: str | list[str] = _list_items(text) if field.kind is FieldKind.LIST else text
                if value:
                    config[field.key] = value
        return _nested(config)


def _nested(config: dict[str, Any]) -> dict[str, Any]:
    """``{"storage.endpoint": x}`` as ``{"storage": {"endpoint": x}}``."""
    nested: dict[str, Any] = {}
    for key, value in config.items():
        outer, _, inner = key.partition(".")
        if inner:
            nested.setdefault(outer, {})[inner] = value
        else:
            nested[key] = value
    return nested


def cores_box(tip: str) -> QDoubleSpinBox:
    """A worker-cores editor (0.25 … 1024 cores, in quarters)."""
    box = QDoubleSpinBox()
    box.setRange(0.25, 1024.0)
    box.setDecimals(2)
    box.setSingleStep(0.25)
    box.setSuffix(" cores")
    box.setToolTip(tip)
    return box


def price_box() -> QDoubleSpinBox:
    """A local pool's price per core-hour editor (0 shows as "free")."""
    box = QDoubleSpinBox()
    box.setRange(0.0, 1000.0)
    box.setDecimals(4)
    box.setSingleStep(0.01)
    box.setPrefix("$")
    box.setSpecialValueText("free")
    box.setToolTip("USD per core-hour of a local worker (0 = free)")
    return box


class NewPoolDialog(QDialog):
    """Creates a local, Compute Engine or Azure pool; the engine's refusal shows inline."""

    created = Signal(object)  # PoolConfig, once stored

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New pool")
        self.bridge = bridge
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. gpu-spot (lowercase letters, digits, '-')")
        self.cloud = QComboBox()
        for kind, label in CLOUD_NAMES.items():
            self.cloud.addItem(label, kind)
        self.worker_cores = cores_box("Cores of each worker (a cloud worker: its VM's cores)")
        self.worker_cores.setValue(DEFAULT_LOCAL_CORES)
        self.min_instances = self._count_box(0, "Workers kept running even when idle")
        self.max_instances = self._count_box(4, "Most workers the pool may ever have")
        self.max_live_instances = self._count_box(4, "Most workers running at once")
        self.idle_timeout = QSpinBox()
        self.idle_timeout.setRange(0, MAX_IDLE_TIMEOUT_S)
        self.idle_timeout.setValue(300)
        self.idle_timeout.setSuffix(" s")
        self.idle_timeout.setToolTip("An idle worker above the minimum retires after this long")
        self.spot = QCheckBox("Spot VMs (cheaper; the cloud may take them back)")
        self.price = price_box()
        self.scratch = QLineEdit()
        self.scratch.setToolTip(
            "Where the jobs' output files are kept, in the pool's own cloud; LabBatch checks "
            "that it exists, that you can write there and that it is in the pool's region"
        )
        self.pages = QStackedWidget()
        local_note = QLabel("Workers run as processes on this computer.")
        local_note.setWordWrap(True)
        self._pages: dict[str, QWidget] = {"local": local_note}
        self._pages.update({kind: CloudPage(fields) for kind, fields in CLOUD_FIELDS.items()})
        for page in self._pages.values():
            self.pages.addWidget(page)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {ERROR_COLOR};")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(f"color: {WARNING_COLOR};")
        self.warning.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warning.hide()
        self._warned: PoolConfig | None = None  # the pool the warnings were shown for
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.create_button: QPushButton = self.buttons.addButton(
            "Create", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.create_button.setDefault(True)
        self._cores_edited = False
        self._busy = False
        self._build()
        self.cloud.currentIndexChanged.connect(self._on_cloud_changed)
        for kind in MACHINE_TYPE_KEY:
            editor = self.page(kind).editor(MACHINE_TYPE_KEY[kind])
            assert isinstance(editor, QLineEdit)
            editor.textChanged.connect(self._follow_machine_type)
        self.worker_cores.valueChanged.connect(self._on_cores_edited)
        self.buttons.accepted.connect(self._on_create)
        self.buttons.rejected.connect(self.reject)
        self._on_cloud_changed()

    # -- public -----------------------------------------------------------------------------------

    def set_cloud(self, kind: str) -> None:
        """Choose the cloud (as picking it in the combo box does)."""
        self.cloud.setCurrentIndex(self.cloud.findData(kind))

    @property
    def cloud_kind(self) -> str:
        return str(self.cloud.currentData())

    def page(self, kind: str) -> CloudPage:
        """The settings page of a cloud."""
        page = self._pages[kind]
        assert isinstance(page, CloudPage)
        return page

    def pool_config(self) -> PoolConfig:
        """The pool the form describes (unchecked: the engine checks it)."""
        kind = self.cloud_kind
        cloud = kind != "local"
        price = round(self.price.value(), 4)
        return PoolConfig(
            name=self.name.text().strip(),
            cloud=kind,
            worker_cores_mcpu=round(self.worker_cores.value() * 1000),
            preemptible=cloud and self.spot.isChecked(),
            min_instances=self.min_instances.value(),
            max_instances=self.max_instances.value(),
            max_live_instances=self.max_live_instances.value(),
            idle_timeout_s=float(self.idle_timeout.value()),
            boot_time_s=CLOUD_BOOT_TIME_S if cloud else 0.0,
            price_per_core_hour_usd=Decimal(str(price)) if not cloud and price > 0 else None,
            config=self.page(kind).config() if cloud else {},
            scratch=(self.scratch.text().strip() or None) if cloud else None,
        )

    # -- building ---------------------------------------------------------------------------------

    @staticmethod
    def _count_box(value: int, tip: str) -> QSpinBox:
        box = QSpinBox()
        box.setRange(0, MAX_COUNT)
        box.setValue(value)
        box.setToolTip(tip)
        return box

    def _build(self) -> None:
        self._common = QFormLayout()
        self._common.addRow("Name:", self.name)
        self._common.addRow("Cloud:", self.cloud)
        self._common.addRow("Worker cores:", self.worker_cores)
        self._common.addRow("Min instances:", self.min_instances)
        self._common.addRow("Max instances:", self.max_instances)
        self._common.addRow("Max live instances:", self.max_live_instances)
        self._common.addRow("Idle timeout:", self.idle_timeout)
        self._common.addRow("", self.spot)
        self._common.addRow("Price per core-hour:", self.price)
        self._common.addRow("Scratch location:", self.scratch)
        layout = QVBoxLayout(self)
        layout.addLayout(self._common)
        layout.addWidget(self.pages, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.warning)
        layout.addWidget(self.buttons)

    # -- reacting ---------------------------------------------------------------------------------

    def _on_cores_edited(self) -> None:
        self._cores_edited = True

    def _on_cloud_changed(self) -> None:
        kind = self.cloud_kind
        cloud = kind != "local"
        self.pages.setCurrentWidget(self._pages[kind])
        self._common.setRowVisible(self.spot, cloud)
        self._common.setRowVisible(self.price, not cloud)
        self._common.setRowVisible(self.scratch, cloud)
        self.scratch.setPlaceholderText(SCRATCH_EXAMPLES.get(kind, ""))
        if not self._cores_edited:  # follow the machine type's cores until the user edits
            self.worker_cores.blockSignals(True)
            self.worker_cores.setValue(DEFAULT_CLOUD_CORES if cloud else DEFAULT_LOCAL_CORES)
            self.worker_cores.blockSignals(False)
            self._follow_machine_type()

    def _follow_machine_type(self) -> None:
        """Worker cores follow the machine type's (n2-standard-8: 8) until the user sets them."""
        kind = self.cloud_kind
        if kind == "local" or self._cores_edited:
            return
        editor = self.page(kind).editor(MACHINE_TYPE_KEY[kind])
        assert isinstance(editor, QLineEdit)
        mcpu = machine_type_cores(kind, editor.text().strip())
        if mcpu is not None:
            self.worker_cores.blockSignals(True)
            self.worker_cores.setValue(mcpu / 1000)
            self.worker_cores.blockSignals(False)

    def _on_create(self) -> None:
        if self._busy:
            return
        self._busy = True
        self.create_button.setEnabled(False)
        self._show_error("")
        task = self.bridge.call(
            self._check_then_create(self.pool_config()),
            self._on_created,
            on_error=self._on_refused,
        )
        task.add_done_callback(self._on_finished)

    async def _check_then_create(self, pool: PoolConfig) -> PoolConfig | tuple[str, ...]:
        """The pool once stored, or the warnings of its scratch check when not yet shown."""
        warnings = await self.bridge.service.check_scratch(pool)  # asks the cloud: off the loop
        if warnings and pool != self._warned:
            self._warned = pool
            return warnings
        return await self.bridge.service.create_pool(pool)

    def _on_created(self, result: PoolConfig | tuple[str, ...]) -> None:
        if isinstance(result, tuple):  # works, but costs: the user creates it anyway or not
            self.warning.setText("\n".join(f"⚠ {w}" for w in result))
            self.warning.show()
            self.create_button.setText("Create anyway")
            return
        self.created.emit(result)
        self.accept()

    def _on_refused(self, exc: Exception) -> None:
        self._show_error(str(exc))

    def _on_finished(self, _task: object) -> None:
        if shiboken6.isValid(self):  # the dialog may have been closed meanwhile
            self._busy = False
            self.create_button.setEnabled(True)

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))
        if text:
            self.warning.hide()
            self.create_button.setText("Create")
