"""The editor's actions, menus and toolbar: files, undo, editing, layout and zoom."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

if TYPE_CHECKING:
    from app.views.canvas.editor import CanvasWindow

ZOOM_STEP = 1.25
Key = QKeySequence.StandardKey


def shortcuts(keys: list[Key | str]) -> list[QKeySequence]:
    """The key sequences of ``keys``, each once: a standard key may already hold one of the
    others (Redo is Ctrl+Shift+Z on Linux), and a sequence listed twice on one action is
    "ambiguous" to Qt, which then triggers nothing."""
    unique: list[QKeySequence] = []
    for key in keys:
        for sequence in QKeySequence.keyBindings(key) if isinstance(key, Key) else [key]:
            seq = QKeySequence(sequence)
            if not seq.isEmpty() and seq not in unique:
                unique.append(seq)
    return unique


class EditorActions:
    """Every action of a CanvasWindow, as public attributes (tests trigger them)."""

    def __init__(self, window: CanvasWindow) -> None:
        self.window = window
        view = window.view
        self.new = self._action("&New", [Key.New], window.new_document)
        self.open = self._action("&Open…", [Key.Open], window.open_dialog)
        self.import_ = self._action("&Import…", ["Ctrl+I"], window.import_dialog)
        self.import_.setStatusTip("Draw a hailtop.batch-style script, GraphML or DOT graph")
        self.save = self._action("&Save", [Key.Save], window.save)
        self.save_as = self._action("Save &As…", [Key.SaveAs, "Ctrl+Shift+S"], window.save_as)
        self.close = self._action("&Close", [Key.Close], window.close)
        self.undo = window.undo_stack.createUndoAction(window, "&Undo")
        self.undo.setShortcuts(shortcuts([Key.Undo]))
        self.redo = window.undo_stack.createRedoAction(window, "&Redo")
        self.redo.setShortcuts(shortcuts(["Ctrl+Shift+Z", Key.Redo]))
        # not the standard Delete keys: on X11 they include Ctrl+D, which is Duplicate here
        self.delete = self._action("&Delete", ["Del", "Backspace"], window.delete_selection)
        self.copy = self._action("&Copy", [Key.Copy], window.copy_selection)
        self.paste = self._action("&Paste", [Key.Paste], window.paste)
        self.duplicate = self._action("D&uplicate", ["Ctrl+D"], window.duplicate_selection)
        self.select_all = self._action("Select &All", [Key.SelectAll], window.select_all)
        self.layout = self._action("Auto-&layout", ["Ctrl+L"], window.auto_layout)
        self.fit = self._action("&Fit to View", ["Ctrl+0", "F"], view.fit_all)
        self.zoom_in = self._action("Zoom &In", [Key.ZoomIn], lambda: view.zoom_by(ZOOM_STEP))
        self.zoom_out = self._action(
            "Zoom &Out", [Key.ZoomOut], lambda: view.zoom_by(1 / ZOOM_STEP)
        )
        self.submit = self._action("&Submit…", ["Ctrl+Return", "Ctrl+Enter"], window.submit)
        self.submit.setStatusTip("Check the DAG, show its forecast, and run it")
        self.minimap = self._action("&Minimap", ["Ctrl+M"], lambda: None)
        self.minimap.setCheckable(True)
        self.minimap.setChecked(True)
        self.minimap.toggled.connect(view.minimap.setVisible)
        self.recent_menu = QMenu("Open &Recent", window)
        self._make_menus()
        self.refresh_recent_menu()

    def _action(self, text: str, keys: list[Key | str], slot: Callable[[], object]) -> QAction:
        action = QAction(text, self.window)
        action.setShortcuts(shortcuts(keys))
        action.triggered.connect(lambda _checked=False: slot())
        self.window.addAction(action)  # shortcuts work wherever the focus is in the window
        return action

    def _make_menus(self) -> None:
        menu = self.window.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addActions([self.new, self.open])
        file_menu.addMenu(self.recent_menu)
        file_menu.addAction(self.import_)
        file_menu.addActions([self.save, self.save_as])
        file_menu.addSeparator()
        file_menu.addAction(self.submit)
        file_menu.addSeparator()
        file_menu.addAction(self.close)
        edit_menu = menu.addMenu("&Edit")
        edit_menu.addActions([self.undo, self.redo])
        edit_menu.addSeparator()
        edit_menu.addActions([self.copy, self.paste, self.duplicate, self.delete, self.select_all])
        view_menu = menu.addMenu("&View")
        view_menu.addActions([self.layout, self.fit, self.zoom_in, self.zoom_out, self.minimap])
        toolbar = self.window.addToolBar("Editor")
        toolbar.setObjectName("editor_toolbar")
        toolbar.addActions([self.new, self.open, self.save])
        toolbar.addSeparator()
        toolbar.addActions([self.undo, self.redo])
        toolbar.addSeparator()
        toolbar.addActions([self.layout, self.fit, self.zoom_in, self.zoom_out])
        toolbar.addSeparator()
        toolbar.addAction(self.submit)

    def refresh_recent_menu(self) -> None:
        """List the recently opened or saved files."""
        self.recent_menu.clear()
        for path in self.window.recent_files():
            action = self.recent_menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.triggered.connect(partial(self._open_recent, path))
        self.recent_menu.setEnabled(not self.recent_menu.isEmpty())

    def _open_recent(self, path: str, _checked: bool = False) -> None:
        self.window.open_file(path)
