"""The DAG canvas: a Qt-free document mirrored by a scene, edited with undoable gestures."""

from __future__ import annotations

from app.views.canvas.editor import CanvasWindow

__all__ = ["CanvasWindow"]
