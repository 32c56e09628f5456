"""The palette of node kinds that a user drags onto the canvas."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QColor, QDrag, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QWidget

from app.views.canvas.items import KIND_COLORS, KIND_LABELS

NODE_KIND_MIME = "application/x-labbatch-node-kind"
KIND_ROLE = Qt.ItemDataRole.UserRole
KIND_TIPS = {
    "bash": "A shell command run on a worker",
    "container": "A command run in a container image",
    "scatter": "One job per value of a variable (scatter: {sample: [a, b, c]})",
}


class NodePalette(QListWidget):
    """Bash, container and scatter jobs: drag one onto the canvas, or double-click it."""

    kind_activated = Signal(str)  # double-click or Enter: add one at the canvas's centre

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        for kind, label in KIND_LABELS.items():
            item = QListWidgetItem(_swatch(KIND_COLORS[kind]), label.capitalize())
            item.setData(KIND_ROLE, kind)
            item.setToolTip(KIND_TIPS[kind])
            self.addItem(item)
        self.itemActivated.connect(lambda item: self.kind_activated.emit(item.data(KIND_ROLE)))

    def kinds(self) -> list[str]:
        """The kinds in the order shown."""
        return [self.item(row).data(KIND_ROLE) for row in range(self.count())]

    def mimeTypes(self) -> list[str]:
        return [NODE_KIND_MIME]

    def mimeData(self, items: list[QListWidgetItem]) -> QMimeData:
        """The dragged kind, as the canvas reads it on a drop."""
        data = QMimeData()
        if items:
            data.setData(NODE_KIND_MIME, str(items[0].data(KIND_ROLE)).encode())
        return data

    def startDrag(self, supported_actions: Qt.DropAction) -> None:
        item = self.currentItem()
        if item is None:
            return
        drag = QDrag(self)
        drag.setMimeData(self.mimeData([item]))
        drag.setPixmap(item.icon().pixmap(24, 24))
        drag.exec(Qt.DropAction.CopyAction)


def _swatch(color: str) -> QIcon:
    pixmap = QPixmap(16, 16)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(color))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawRoundedRect(1, 3, 14, 10, 2, 2)
    painter.end()
    return QIcon(pixmap)
