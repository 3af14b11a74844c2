"""Quick Look: the image in view, large, in a frameless window over the screen. Space or Esc
closes it; the arrow keys step through the history (the main window's view follows)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.imageview import ImageView
from app.widgets import name_widget


class QuickLook(QWidget):
    stepRequested = Signal(int)  # -1 the previous, +1 the next history entry
    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window | Qt.WindowType.FramelessWindowHint)
        name_widget(self, "quickLook", "The image, large (Space or Esc closes)")
        self.setWindowTitle("Quick Look")
        # Dark around the picture whatever the appearance: nothing competes with the image.
        palette = self.palette()
        for role, colour in ((QPalette.ColorRole.Window, "#141414"), (QPalette.ColorRole.Base, "#141414"),
                             (QPalette.ColorRole.Mid, "#141414"), (QPalette.ColorRole.WindowText, "#d8d8d8"),
                             (QPalette.ColorRole.PlaceholderText, "#9a9a9a")):
            palette.setColor(role, QColor(colour))
        self.setPalette(palette)
        self.setAutoFillBackground(True)
        self.view = name_widget(ImageView(), "quickLookView", "The image, large")
        self.view.setToolTip("Space or Esc closes; ←/→ previous/next image; pinch, Ctrl+scroll or a "
                             "double-click zooms")
        self.view.setPalette(palette)
        self.view.stepRequested.connect(self.stepRequested)
        self.caption = QLabel()
        self.caption.setObjectName("quickLookCaption")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setPalette(palette)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 24, 24, 16)
        layout.setSpacing(10)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.caption)

    def show_image(self, image: QImage, caption: str) -> None:
        self.view.set_image(image)
        self.caption.setText(caption)

    def open(self) -> None:
        """Over the whole available screen of the parent window, focused for the keys."""
        screen = self.parentWidget().screen() if self.parentWidget() is not None else self.screen()
        if screen is not None:
            self.setGeometry(screen.availableGeometry())
        self.showMaximized()
        self.raise_()
        self.activateWindow()
        self.view.setFocus()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Space, Qt.Key.Key_Escape):
            self.close()
            event.accept()
            return
        super().keyPressEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        # A click on the dark surround (not the image) closes, as in Finder.
        if event.button() == Qt.MouseButton.LeftButton and not self.view.geometry().contains(event.position().toPoint()):
            self.close()
            return
        super().mouseReleaseEvent(event)

    def closeEvent(self, event) -> None:  # noqa: N802
        super().closeEvent(event)
        self.closed.emit()
