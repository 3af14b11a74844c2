"""An inline message strip above the image: errors stay until dismissed, notes fade on their own.

Messages live in the window rather than in modal dialogs, so a failed run never blocks the
next one and a test (or a person) can read what happened.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from typing import Callable

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QStyle, QToolButton, QWidget

INFO_TIMEOUT_MS = 8000
# What a message is about, where something later can make it untrue: a model that could not be
# loaded is old news once a model has loaded (other messages stay until dismissed).
MODEL_LOAD = "model-load"


class MessageBar(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.setAccessibleName("messageBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        # AlternateBase keeps contrast right in both light and dark appearance.
        self.setBackgroundRole(self.palette().ColorRole.AlternateBase)
        self.setAutoFillBackground(True)
        self.kind = ""
        self._buttons: list[QPushButton] = []  # an offer's actions (see show_offer)
        self.topic = ""

        self.icon = QLabel()
        self.label = QLabel()
        self.label.setObjectName("messageLabel")
        self.label.setAccessibleName("messageLabel")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.closeButton = QToolButton()
        self.closeButton.setObjectName("messageCloseButton")
        self.closeButton.setAutoRaise(True)
        self.closeButton.setText("✕")
        self.closeButton.setToolTip("Dismiss")
        self.closeButton.clicked.connect(self.dismiss)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.closeButton, 0, Qt.AlignmentFlag.AlignTop)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.dismiss)
        self.hide()

    def text(self) -> str:
        return self.label.text()

    def show_message(self, text: str, kind: str = "error", topic: str = "") -> None:
        """kind: "error" (stays), "warning" (stays) or "info" (hides after a few seconds);
        `topic`: what it is about, for `dismiss_topic`."""
        icons = {
            "error": QStyle.StandardPixmap.SP_MessageBoxCritical,
            "warning": QStyle.StandardPixmap.SP_MessageBoxWarning,
            "info": QStyle.StandardPixmap.SP_MessageBoxInformation,
        }
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_SmallIconSize)
        self.icon.setPixmap(self.style().standardIcon(icons.get(kind, icons["info"])).pixmap(size, size))
        self.label.setText(text)
        self.kind, self.topic = kind, topic
        self.setAccessibleDescription(text)
        self._clear_buttons()
        self.show()
        if kind == "info":
            self._timer.start(INFO_TIMEOUT_MS)
        else:
            self._timer.stop()

    def show_offer(self, text: str, actions: list[tuple[str, str, str, Callable[[], None]]]) -> None:
        """A message with buttons (label, objectName, tooltip, what it does); it stays until one
        is clicked (which dismisses it) or another message replaces it."""
        self.show_message(text, "warning")
        layout = self.layout()
        for label, name, tip, callback in actions:
            button = QPushButton(label)
            button.setObjectName(name)
            button.setAccessibleName(name)
            button.setToolTip(tip)
            button.setAutoDefault(False)
            button.clicked.connect(lambda checked=False, do=callback: (self.dismiss(), do()))
            layout.insertWidget(layout.indexOf(self.closeButton), button, 0, Qt.AlignmentFlag.AlignTop)
            self._buttons.append(button)

    def _clear_buttons(self) -> None:
        for button in self._buttons:
            button.hide()
            button.deleteLater()
        self._buttons.clear()

    def dismiss(self) -> None:
        self._clear_buttons()
        self._timer.stop()
        self.kind = self.topic = ""
        self.hide()

    def dismiss_topic(self, topic: str) -> None:
        """Dismiss the message shown if it is about `topic` (and leave any other)."""
        if self.kind and self.topic == topic:
            self.dismiss()
