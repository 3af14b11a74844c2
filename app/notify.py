"""Telling the person that images finished while they were in another app: a notification
(the system tray's message where the platform has one, else the window asks for attention:
the Dock icon bounces, the taskbar entry flashes) and a badge with the number of images
finished meanwhile on the Dock icon (macOS; Qt ignores it elsewhere), cleared when the window
is active again.

The window calls `image_finished` for each finished image; nothing happens while it is active.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QSystemTrayIcon, QWidget


def app_is_active(window: QWidget) -> bool:
    """The person is looking at `window`: the app is the active one and so is the window."""
    return (QGuiApplication.applicationState() == Qt.ApplicationState.ApplicationActive
            and window.isActiveWindow())


def set_badge(count: int) -> None:
    app = QGuiApplication.instance()
    if app is not None and hasattr(app, "setBadgeNumber"):  # Qt >= 6.5
        app.setBadgeNumber(count)


def alert(window: QWidget) -> None:
    QApplication.alert(window, 0)


class FinishNotifier(QObject):
    def __init__(self, window: QWidget, enabled: Callable[[], bool]) -> None:
        super().__init__(window)
        self._window = window
        self._enabled = enabled
        self._tray: QSystemTrayIcon | None = None
        self.badge_count = 0  # images finished while in the background, shown on the Dock icon
        window.installEventFilter(self)
        app = QGuiApplication.instance()
        if app is not None:
            app.applicationStateChanged.connect(self._on_state_changed)

    def image_finished(self, title: str, text: str, last: bool = True) -> None:
        """An image is done; `last`: nothing more is running or queued, so say so (a batch
        notifies once, at its end, and counts every image on the badge)."""
        if app_is_active(self._window) or not self._enabled():
            return
        self.badge_count += 1
        set_badge(self.badge_count)
        if last:
            self._notify(title if self.badge_count == 1 else f"{self.badge_count} images ready", text)

    def clear(self) -> None:
        if self.badge_count:
            self.badge_count = 0
            set_badge(0)
        if self._tray is not None:
            self._tray.hide()  # the icon was there only to carry the message

    def _notify(self, title: str, text: str) -> None:
        if QSystemTrayIcon.isSystemTrayAvailable() and QSystemTrayIcon.supportsMessages():
            if self._tray is None:
                self._tray = QSystemTrayIcon(self._window.windowIcon(), self)
                self._tray.messageClicked.connect(self._bring_back)
            self._tray.show()
            self._tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Information, 8000)
        else:
            alert(self._window)

    def _bring_back(self) -> None:
        self._window.showNormal()
        self._window.raise_()
        self._window.activateWindow()

    def _on_state_changed(self, state: Qt.ApplicationState) -> None:
        if state == Qt.ApplicationState.ApplicationActive and self._window.isActiveWindow():
            self.clear()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if watched is self._window and event.type() == QEvent.Type.WindowActivate:
            self.clear()
        return False
