"""The main window: batches and one batch's jobs, pools, the dashboard; menus, drops, status."""

from __future__ import annotations

from dataclasses import replace

import shiboken6
from PySide6.QtCore import QByteArray, Qt, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTabWidget,
)

from app import __version__
from app.engine.service import PoolConfig
from app.views.batch_view import BatchPanel
from app.views.batches import BatchesPanel
from app.views.bridge import EngineBridge
from app.views.canvas import CanvasWindow
from app.views.dashboard import DashboardPanel
from app.views.icons import app_icon
from app.views.notifications import TrayNotifier
from app.views.pools import PoolsPanel
from app.views.settings import DesktopSettings, SettingsDialog, local_pool_changes, qsettings
from app.views.status import StatusPanel
from app.views.submit import SubmitFlow, dropped_dag_files

TAB_BATCHES, TAB_POOLS, TAB_DASHBOARD = range(3)


class MainWindow(QMainWindow):
    """LabBatch's window. Closing it asks the app to shut the engine down first."""

    close_requested = Signal()

    def __init__(self, bridge: EngineBridge, settings: DesktopSettings) -> None:
        super().__init__()
        self.bridge = bridge
        self.settings = settings
        self.may_close = False  # set by the app once the engine has stopped
        self.last_error = ""
        self.canvases: list[CanvasWindow] = []
        self.setWindowTitle(f"LabBatch — {bridge.service.user}")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)

        self.batches = BatchesPanel(bridge)
        self.batch_view = BatchPanel(bridge)
        self.batch_splitter = QSplitter(Qt.Orientation.Vertical)
        self.batch_splitter.addWidget(self.batches)
        self.batch_splitter.addWidget(self.batch_view)
        self.batch_splitter.setStretchFactor(1, 2)
        self.pools = PoolsPanel(bridge)
        self.dashboard = DashboardPanel(bridge)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.batch_splitter, "Batches")
        self.tabs.addTab(self.pools, "Pools")
        self.tabs.addTab(self.dashboard, "Dashboard")
        self.setCentralWidget(self.tabs)
        self.status = StatusPanel(bridge)
        self.setStatusBar(self.status)

        self.submit_flow = SubmitFlow(bridge, self)
        self.submit_flow.default_pool = settings.default_pool
        self.submit_flow.submitted.connect(self.open_batch)
        self.submit_flow.failed.connect(lambda text: self.status.showMessage(text, 8000))
        self.notifier = TrayNotifier(bridge, app_icon(), self)
        self.notifier.enabled = settings.notifications
        self.notifier.notified.connect(lambda t, m: self.status.showMessage(f"{t}: {m}", 10000))
        self.batches.batch_opened.connect(self.open_batch)
        self.batches.batch_deleted.connect(self._on_batch_deleted)
        bridge.user_error.connect(self.show_error)
        bridge.internal_error.connect(self.show_error)
        self._make_actions()
        self.restore_window_state()

    # -- actions and menus ----------------------------------------------------------------------

    def _make_actions(self) -> None:
        def action(text: str, shortcut: QKeySequence | str, slot: object, tip: str = "") -> QAction:
            act = QAction(text, self)
            act.setShortcut(QKeySequence(shortcut))
            act.setStatusTip(tip or text)
            act.triggered.connect(slot)
            return act

        self.submit_action = action(
            "&Submit DAG…",
            QKeySequence.StandardKey.Open,
            self.choose_dag,
            "Open a DAG file and submit it",
        )
        self.canvas_action = action(
            "New DAG &canvas", "Ctrl+E", self.new_canvas, "Draw a DAG in the canvas editor"
        )
        self.open_canvas_action = action(
            "Open in ca&nvas…", "Ctrl+Shift+O", self.choose_canvas_file, "Edit a DAG file"
        )
        self.import_action = action(
            "&Import into canvas…",
            "Ctrl+I",
            self.choose_import,
            "A hailtop.batch-style script, GraphML or DOT graph, drawn in the canvas",
        )
        self.settings_action = action("Se&ttings…", "Ctrl+,", self.edit_settings)
        self.quit_action = action("&Quit", QKeySequence.StandardKey.Quit, self.close)
        self.show_batches_action = action(
            "&Batches", "Ctrl+1", lambda: self.tabs.setCurrentIndex(TAB_BATCHES)
        )
        self.show_pools_action = action(
            "&Pools", "Ctrl+2", lambda: self.tabs.setCurrentIndex(TAB_POOLS)
        )
        self.show_dashboard_action = action(
            "&Dashboard", "Ctrl+3", lambda: self.tabs.setCurrentIndex(TAB_DASHBOARD)
        )
        self.refresh_action = action("&Refresh", QKeySequence.StandardKey.Refresh, self.refresh)
        self.about_action = action("&About LabBatch", "", self.about)
        self.open_log_action = action("Open the &log file", "", self.open_log)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addActions([self.submit_action])
        file_menu.addSeparator()
        file_menu.addActions([self.canvas_action, self.open_canvas_action, self.import_action])
        file_menu.addSeparator()
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        view_menu = menu.addMenu("&View")
        view_menu.addActions(
            [self.show_batches_action, self.show_pools_action, self.show_dashboard_action]
        )
        view_menu.addSeparator()
        view_menu.addAction(self.refresh_action)
        help_menu = menu.addMenu("&Help")
        help_menu.addActions([self.open_log_action, self.about_action])

    def choose_dag(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Submit a DAG", "", "DAG files (*.yaml *.yml *.json);;All files (*)"
        )
        if path:
            self.submit_flow.start(path)

    def new_canvas(self) -> CanvasWindow:
        """A canvas editor window of its own (it stays open beside this one)."""
        canvas = CanvasWindow(self.bridge)
        canvas.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.canvases.append(canvas)
        canvas.destroyed.connect(lambda: self.canvases.remove(canvas))
        canvas.show()
        return canvas

    def choose_canvas_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a DAG in the canvas", "", "DAG files (*.yaml *.yml *.json)"
        )
        if path:
            self.new_canvas().open_file(path, ask=False)

    def choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Import a DAG into the canvas",
            "",
            "Scripts and graphs (*.py *.graphml *.dot *.gv *.yaml *.yml *.json)",
        )
        if path:
            self.import_into_canvas(path)

    def import_into_canvas(self, path: str) -> None:
        """Import a script or graph off the event loop, then draw it in a new canvas."""
        message = f"Importing {path}…"
        self.status.showMessage(message)

        def ended(_task: object) -> None:  # done, refused or failed: the message goes
            if shiboken6.isValid(self.status) and self.status.currentMessage() == message:
                self.status.clearMessage()

        task = self.bridge.call(
            self.bridge.service.import_dag(path),
            lambda imported: self.new_canvas().load_data(imported.data, source=imported.source),
        )
        task.add_done_callback(ended)

    def open_batch(self, batch_id: int) -> None:
        self.tabs.setCurrentIndex(TAB_BATCHES)
        self.batches.refresh()
        self.batch_view.show_batch(batch_id)

    def _on_batch_deleted(self, batch_id: int) -> None:
        if self.batch_view.batch_id == batch_id:
            self.batch_view.clear()

    def refresh(self) -> None:
        self.batches.refresh()
        self.pools.refresh()

    def show_error(self, message: str) -> None:
        self.last_error = message
        self.status.showMessage(message, 10000)
        box = QMessageBox(QMessageBox.Icon.Warning, "LabBatch", message, parent=self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # not exec(): the window keeps running while the message shows

    def about(self) -> None:
        QMessageBox.about(
            self,
            "About LabBatch",
            f"<b>LabBatch {__version__}</b><br>Run job DAGs on a fair-shared pool of workers, "
            "and watch them live.",
        )

    def open_log(self) -> None:
        if self.bridge.log_file:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.bridge.log_file))

    # -- settings -------------------------------------------------------------------------------

    def edit_settings(self) -> None:
        self.bridge.call(self.bridge.service.pools(), self._show_settings)

    def _show_settings(self, pools: list[object]) -> None:
        names = [row.pool.name for row in pools]  # type: ignore[attr-defined]
        local = next((row.pool for row in pools if row.pool.name == "local"), None)  # type: ignore[attr-defined]
        shown = self.settings
        if isinstance(local, PoolConfig):  # the stored pool is the truth
            shown = replace(
                shown,
                local_workers=local.max_instances,
                local_cores=local.worker_cores_mcpu / 1000,
                local_price_per_core_hour_usd=float(local.price_per_core_hour_usd or 0),
            )
        dialog = SettingsDialog(shown, names, self)
        if dialog.exec() != SettingsDialog.DialogCode.Accepted:
            return
        self.apply_settings(dialog.settings())

    def apply_settings(self, settings: DesktopSettings) -> None:
        """Keep the settings, and store the local pool's size and price with the pool."""
        settings.save()
        self.settings = settings
        self.notifier.enabled = settings.notifications
        self.submit_flow.default_pool = settings.default_pool
        self.bridge.call(
            self.bridge.service.set_pool("local", **local_pool_changes(settings)),
            lambda _pool: self.bridge.pools_changed.emit(),
        )

    # -- window state, drops, close -------------------------------------------------------------

    def restore_window_state(self) -> None:
        store = qsettings()
        geometry = store.value("window/geometry")
        if isinstance(geometry, QByteArray) and self.restoreGeometry(geometry):
            pass
        else:
            self.resize(1280, 800)
        state = store.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        splitter = store.value("window/batch_splitter")
        if isinstance(splitter, QByteArray):
            self.batch_splitter.restoreState(splitter)
        tab = store.value("window/tab", TAB_BATCHES)
        self.tabs.setCurrentIndex(int(str(tab)) if str(tab).isdigit() else TAB_BATCHES)

    def save_window_state(self) -> None:
        store = qsettings()
        store.setValue("window/geometry", self.saveGeometry())
        store.setValue("window/state", self.saveState())
        store.setValue("window/batch_splitter", self.batch_splitter.saveState())
        store.setValue("window/tab", self.tabs.currentIndex())
        store.sync()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if dropped_dag_files(paths):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        for path in dropped_dag_files(paths):
            self.submit_flow.start(path)
        event.acceptProposedAction()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.may_close:
            event.accept()
            return
        for canvas in list(self.canvases):
            if not canvas.close():  # the user kept a canvas with unsaved changes open
                event.ignore()
                return
        self.save_window_state()
        event.ignore()
        self.status.showMessage("Stopping the driver and the local workers…")
        self.setEnabled(False)
        self.close_requested.emit()
