"""Watching a batch on the DAG canvas: nodes coloured by their jobs' states, the progress of
scatter nodes, "why pending" on hover, a node's jobs on double-click, retries of failed nodes.

Run-time state is not an edit: the watcher sets the items' colours, texts and tooltips, never
the document or the undo stack, so the file stays unmodified.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QEvent, QObject, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QContextMenuEvent, QHelpEvent, QMouseEvent
from PySide6.QtWidgets import QMenu, QToolTip

from app.engine.service import BatchInfo, EngineService
from app.models.dag_parts import (
    DocumentEvent,
    DocumentReset,
    NodeChanged,
    NodeId,
    NodesAdded,
    NodesRemoved,
)
from app.views.bridge import EngineBridge
from app.views.canvas.node_jobs import (
    FAILED_STATES,
    NodeJobsDialog,
    counts_text,
    node_state,
    progress_text,
)
from app.views.canvas.scene import DagScene
from app.views.canvas.view import CanvasView
from app.views.style import STATE_COLORS

POLL_MS = 1000
SOON_MS = 500  # an engine event about the watched batch brings the next read forward
WHY_FRESH_S = 2.0  # a "why pending" answer is asked again on a hover after this long
WAITING_STATES = frozenset({"Pending", "Ready", "Creating"})
RETRY_CHOICES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Retry", {}),
    ("Retry with twice the memory", {"memory_factor": 2.0}),
    ("Retry on non-preemptible workers", {"non_preemptible": True}),
)
RETRY_ALL_TEXT = "Retry all failed jobs of the batch"


async def read_run(service: EngineService, batch_id: int) -> tuple[BatchInfo, dict[int, str]]:
    """The batch, then its job states (read after it: final when the batch is complete)."""
    row = await service.batch(batch_id)
    return row.batch, await service.job_states(batch_id)


class RunWatcher(QObject):
    """Shows a batch's run on a DagScene: node colours by state, progress, why, jobs, retries.

    Nodes and jobs are matched by name (a scatter node by its expansions' node name); jobs
    whose node was renamed or deleted since the submission are not shown.
    """

    changed = Signal()  # the states were read again and shown
    batch_finished = Signal(str)  # the batch ended: its state (success, failure, cancelled)
    retried = Signal(int)  # a retry was accepted: how many jobs run again

    def __init__(
        self,
        bridge: EngineBridge,
        scene: DagScene,
        view: CanvasView,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.scene = scene
        self.view = view
        self.batch_id: int | None = None
        self.node_states: dict[NodeId, dict[str, int]] = {}
        self.finished = False
        self.batch_state = ""  # as of the last read
        self.dialogs: dict[NodeId, NodeJobsDialog] = {}
        self._job_nodes: dict[int, str] = {}  # job id -> node name
        self._job_order: dict[int, int] = {}  # job id -> its place among the batch's jobs
        self._node_jobs: dict[NodeId, list[int]] = {}
        self._states: dict[int, str] = {}
        self._coloured: set[NodeId] = set()
        self._names_stale = True
        self._why: dict[NodeId, tuple[float, str]] = {}  # node -> (monotonic time, why text)
        self._why_in_flight: set[NodeId] = set()
        self._hovered: tuple[NodeId, QPoint] | None = None
        self._token = 0  # results of an earlier watch are dropped
        self._in_flight = False
        self._read_again = False  # a retry happened while a read was on its way
        self._paused = False  # the canvas was hidden: polling waits until it shows
        self._unsubscribe: Callable[[], None] | None = None
        self._timer = QTimer(self, singleShot=True, interval=POLL_MS)
        self._timer.timeout.connect(self._poll)
        view.viewport().installEventFilter(self)
        bridge.jobs_changed.connect(self._on_engine_event)
        bridge.batch_finished.connect(self._on_engine_event)

    @property
    def watching(self) -> bool:
        return self.batch_id is not None

    # -- watching -------------------------------------------------------------------------------

    def watch(self, batch_id: int) -> None:
        """Show this batch's run on the canvas until it ends (and again after a retry)."""
        self.stop()
        self.batch_id = batch_id
        self._unsubscribe = self.scene.document.subscribe(self._on_document_event)
        token = self._token
        self.bridge.call(
            self.bridge.service.job_nodes(batch_id),
            lambda nodes: self._on_job_nodes(token, nodes),
            on_error=lambda exc: self._on_read_error(token, exc),
        )

    def stop(self) -> None:
        """Stop watching: the nodes lose their run-time colours, texts and tooltips."""
        self._token += 1
        self._timer.stop()
        self._in_flight = self._read_again = self._paused = False
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for dialog in list(self.dialogs.values()):
            if shiboken6.isValid(dialog):
                dialog.close()
        self.dialogs.clear()
        items = self.scene.node_items
        for node_id in self._coloured:
            if (item := items.get(node_id)) is not None:
                item.set_run_state(None)
        if self._coloured:
            self.scene.picture_changed()
        self._coloured.clear()
        self.batch_id = None
        self.finished = False
        self.batch_state = ""
        self.node_states, self._states, self._why = {}, {}, {}
        self._job_nodes, self._job_order, self._node_jobs = {}, {}, {}
        self._why_in_flight.clear()
        self._hovered = None

    def _valid(self, token: int) -> bool:
        return token == self._token and shiboken6.isValid(self)

    def _on_job_nodes(self, token: int, nodes: dict[int, str]) -> None:
        if not self._valid(token):
            return
        self._job_nodes = nodes
        self._job_order = {job_id: k for k, job_id in enumerate(sorted(nodes))}
        self._names_stale = True
        self._refresh()

    def _poll(self) -> None:
        if not self.view.isVisible():
            self._paused = True  # a closed canvas does not read the batch every second
            return
        self._refresh()

    def _refresh(self) -> None:
        if self._in_flight or self.batch_id is None or not self._job_nodes:
            return
        self._timer.stop()
        self._in_flight = True
        token = self._token
        self.bridge.call(
            read_run(self.bridge.service, self.batch_id),
            lambda result: self._on_run(token, *result),
            on_error=lambda exc: self._on_read_error(token, exc),
        )

    def _on_run(self, token: int, batch: BatchInfo, states: dict[int, str]) -> None:
        if not self._valid(token):
            return
        self._in_flight = False
        self.batch_state = batch.state
        if states != self._states or self._names_stale:  # 10,000 unchanged nodes cost ~40 ms
            self._states = states
            self.show_states()
        self.changed.emit()
        if self._read_again:
            self._read_again = False
            self._refresh()
        elif batch.complete:
            if not self.finished:
                self.finished = True
                self.batch_finished.emit(batch.state)
        else:
            self._timer.start(POLL_MS)

    def _on_read_error(self, token: int, exc: Exception) -> None:
        if not self._valid(token):
            return
        self._in_flight = False
        self._timer.stop()  # the batch is gone: say it once, not every second
        self.bridge.user_error.emit(str(exc))

    def _on_engine_event(self, event: Any) -> None:
        if getattr(event, "batch_id", None) != self.batch_id or self.finished:
            return
        if self._timer.isActive() and self._timer.remainingTime() > SOON_MS:
            self._timer.start(SOON_MS)

    def _on_document_event(self, event: DocumentEvent) -> None:
        if not shiboken6.isValid(self):
            return
        if isinstance(event, DocumentReset):
            self.stop()  # another DAG is shown: this batch is not its run
        elif isinstance(event, NodesAdded | NodesRemoved | NodeChanged):
            self._names_stale = True
            if self._states:
                self.show_states()

    # -- showing --------------------------------------------------------------------------------

    def _map_nodes(self) -> None:
        """Which jobs each node stands for, by name (the first node with a name wins)."""
        if not self._names_stale:
            return
        document = self.scene.document
        by_name: dict[str, NodeId] = {}
        for node_id in document.node_ids:
            by_name.setdefault(document.name(node_id), node_id)
        node_jobs: dict[NodeId, list[int]] = {}
        for job_id in sorted(self._job_nodes):
            node_id = by_name.get(self._job_nodes[job_id])
            if node_id is not None:
                node_jobs.setdefault(node_id, []).append(job_id)
        self._node_jobs = node_jobs
        self._names_stale = False

    def show_states(self) -> None:
        """Colour every node by its jobs' states as last read (scatter nodes with progress)."""
        self._map_nodes()
        states = self._states
        self.node_states = {
            node_id: dict(Counter(states[j] for j in job_ids if j in states))
            for node_id, job_ids in self._node_jobs.items()
        }
        items = self.scene.node_items
        picture_changed = False
        for node_id in self._coloured - self.node_states.keys():
            if (item := items.get(node_id)) is not None:
                item.set_run_state(None)
                picture_changed = True
        for node_id, counts in self.node_states.items():
            item = items.get(node_id)
            if item is None:
                continue
            state = node_state(counts)
            fill = STATE_COLORS.get(state) if state else None
            text = progress_text(counts) if len(self._node_jobs[node_id]) > 1 else None
            picture_changed = picture_changed or fill != item.fill
            item.set_run_state(fill, text, self.tooltip_text(node_id))
        self._coloured = set(self.node_states) & items.keys()
        if picture_changed:
            self.scene.picture_changed()  # the overview and the minimap show fills too

    def tooltip_text(self, node_id: NodeId) -> str:
        """A node's state, its jobs' state counts and, while one waits, why."""
        counts = self.node_states.get(node_id, {})
        lines = [
            f"{self.scene.document.name(node_id)} — {node_state(counts) or 'no jobs'}",
            counts_text(counts),
        ]
        why = self._why.get(node_id)
        if why is not None and self.first_waiting_job(node_id) is not None:
            lines.append(why[1])
        return "\n".join(line for line in lines if line)

    # -- questions about nodes ------------------------------------------------------------------

    def node_jobs(self, node_id: NodeId) -> list[int]:
        """The ids of the jobs a node stands for, in id order."""
        self._map_nodes()
        return list(self._node_jobs.get(node_id, []))

    def failed_jobs(self, node_id: NodeId | None = None) -> list[int]:
        """The failed jobs of a node, or of the whole batch."""
        jobs = self.node_jobs(node_id) if node_id is not None else sorted(self._states)
        return [j for j in jobs if self._states.get(j) in FAILED_STATES]

    def first_waiting_job(self, node_id: NodeId) -> int | None:
        return next(
            (j for j in self._node_jobs.get(node_id, []) if self._states.get(j) in WAITING_STATES),
            None,
        )

    # -- hover: why it waits --------------------------------------------------------------------

    def hover(self, node_id: NodeId, global_pos: QPoint) -> None:
        """The pointer rests on a node: ask why its first waiting job waits (unless fresh)."""
        self._hovered = (node_id, global_pos)
        job_id = self.first_waiting_job(node_id)
        cached = self._why.get(node_id)
        fresh = cached is not None and time.monotonic() - cached[0] < WHY_FRESH_S
        if job_id is None or fresh or node_id in self._why_in_flight or self.batch_id is None:
            return
        self._why_in_flight.add(node_id)
        token = self._token
        self.bridge.call(
            self.bridge.service.why(self.batch_id, job_id),
            lambda text: self._on_why(token, node_id, text),
            on_error=lambda exc: self._on_why(token, node_id, str(exc)),
        )

    def _on_why(self, token: int, node_id: NodeId, text: str) -> None:
        if not self._valid(token):
            return
        self._why_in_flight.discard(node_id)
        self._why[node_id] = (time.monotonic(), text)
        item = self.scene.node_items.get(node_id)
        if item is None:
            return
        tooltip = self.tooltip_text(node_id)
        item.set_run_state(item.fill, item.run_text, tooltip)
        if self._hovered is not None and self._hovered[0] == node_id and QToolTip.isVisible():
            QToolTip.showText(self._hovered[1], tooltip, self.view.viewport())

    # -- a node's jobs --------------------------------------------------------------------------

    def open_node_jobs(self, node_id: NodeId) -> NodeJobsDialog | None:
        """Show a node's jobs with their attempts and logs (a window that does not block)."""
        jobs = self.node_jobs(node_id)
        if self.batch_id is None or not jobs:
            return None
        dialog = self.dialogs.get(node_id)
        if dialog is None or not shiboken6.isValid(dialog):
            first, last = self._job_order[jobs[0]], self._job_order[jobs[-1]]
            dialog = NodeJobsDialog(
                self.bridge,
                self.batch_id,
                self.scene.document.name(node_id),
                jobs,
                offset=first,
                limit=last - first + 1,
                parent=self.view.window(),
            )
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.finished.connect(lambda _result, n=node_id: self.dialogs.pop(n, None))
            self.changed.connect(dialog.refresh)
            self.dialogs[node_id] = dialog
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog

    # -- retries --------------------------------------------------------------------------------

    def node_menu(self, node_id: NodeId) -> QMenu:
        """The context menu of a watched node: its jobs, and retries of its failed jobs."""
        menu = QMenu(self.view)
        menu.addAction("Show jobs…").triggered.connect(lambda: self.open_node_jobs(node_id))
        menu.addSeparator()
        has_failed = bool(self.failed_jobs(node_id))
        for text, options in RETRY_CHOICES:
            action = menu.addAction(text)
            action.setEnabled(has_failed)
            action.triggered.connect(lambda *_args, kw=options: self.retry_node(node_id, **kw))
        menu.addSeparator()
        retry_all = menu.addAction(RETRY_ALL_TEXT)
        retry_all.setEnabled(bool(self.failed_jobs()))
        retry_all.triggered.connect(self.retry_all_failed)
        return menu

    def retry_node(
        self, node_id: NodeId, *, memory_factor: float = 1.0, non_preemptible: bool = False
    ) -> None:
        """Run a node's failed jobs again (and the jobs their failure cancelled)."""
        self._retry(
            self.failed_jobs(node_id), memory_factor=memory_factor, non_preemptible=non_preemptible
        )

    def retry_all_failed(self) -> None:
        """Run every failed job of the batch again."""
        self._retry(self.failed_jobs())

    def _retry(
        self, job_ids: list[int], *, memory_factor: float = 1.0, non_preemptible: bool = False
    ) -> None:
        if self.batch_id is None or not job_ids:
            return
        token = self._token
        # a refusal (the batch still runs) goes to the bridge's user_error
        self.bridge.call(
            self.bridge.service.retry_jobs(
                self.batch_id,
                job_ids,
                memory_factor=memory_factor,
                non_preemptible=non_preemptible,
            ),
            lambda n: self._on_retried(token, n),
        )

    def _on_retried(self, token: int, n_jobs: int) -> None:
        if not self._valid(token) or not n_jobs:
            return
        self.bridge.batches_changed.emit()
        self.finished = False
        self._why.clear()
        self.retried.emit(n_jobs)
        if self._in_flight:
            self._read_again = True  # the read on its way may predate the retry
        else:
            self._refresh()

    # -- the pointer on the canvas --------------------------------------------------------------

    def _node_at(self, view_pos: QPoint) -> NodeId | None:
        item = self.scene.node_at(self.view.mapToScene(view_pos))
        return item.node_id if item is not None and item.node_id in self._node_jobs else None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Show and self._paused:
            self._paused = False
            self._refresh()
        if self.batch_id is None or kind not in _POINTER_EVENTS:
            return False
        if isinstance(event, QHelpEvent):
            if (node_id := self._node_at(event.pos())) is not None:
                self.hover(node_id, event.globalPos())
            return False  # the view shows the node's tooltip
        if isinstance(event, QMouseEvent):
            node_id = self._node_at(event.position().toPoint())
            if node_id is None or event.button() != Qt.MouseButton.LeftButton:
                return False  # a double click elsewhere edits as before
            self.open_node_jobs(node_id)
            return True
        if isinstance(event, QContextMenuEvent):
            if (node_id := self._node_at(event.pos())) is None:
                return False
            menu = self.node_menu(node_id)
            menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            menu.popup(event.globalPos())
            return True
        return False


_POINTER_EVENTS = frozenset(
    {QEvent.Type.ToolTip, QEvent.Type.MouseButtonDblClick, QEvent.Type.ContextMenu}
)
