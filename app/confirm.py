"""The questions a run asks before it is thrown away: cancel a queue, quit during a run.

Both are window-modal message boxes opened without a nested event loop (`open`), so the run
keeps reporting while the question is up; the answer arrives as a call of `on_answer` with the
clicked button's objectName (the Esc button's when the box is dismissed).
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

Role = QMessageBox.ButtonRole


def ask(parent: QWidget, name: str, text: str, informative: str,
        buttons: list[tuple[str, str, QMessageBox.ButtonRole, str]],
        on_answer: Callable[[str], None]) -> QMessageBox:
    """Open a question; buttons are (label, objectName, role, tooltip), the first is the
    default and the one with RejectRole answers Esc."""
    box = QMessageBox(parent)
    box.setObjectName(name)
    box.setAccessibleName(name)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle(parent.windowTitle())
    box.setText(text)
    box.setInformativeText(informative)
    for i, (label, button_name, role, tip) in enumerate(buttons):
        button = box.addButton(label, role)
        button.setObjectName(button_name)
        button.setAccessibleName(button_name)
        button.setToolTip(tip)
        if i == 0:
            box.setDefaultButton(button)
        if role == Role.RejectRole:
            box.setEscapeButton(button)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def answered(_: int) -> None:
        clicked = box.clickedButton()
        on_answer(clicked.objectName() if clicked is not None else "")

    box.finished.connect(answered)
    box.open()
    return box


def _images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def cancel_question(running: int, queued: int) -> str:
    """ "Cancel the running image and 3 queued?" """
    made = "the running image" if running == 1 else f"the {running} running images"
    if not queued:
        return f"Cancel {made}?"
    return f"Cancel {made} and {queued} queued?" if running else f"Cancel the {_images(queued)} queued?"


def ask_cancel(parent: QWidget, running: int, queued: int, on_answer: Callable[[str], None]) -> QMessageBox:
    return ask(parent, "confirmCancelBox", cancel_question(running, queued),
               "Nothing of an image that is not finished is kept.",
               [("Cancel All", "cancelAllButton", Role.DestructiveRole, "Stop the run and empty the queue"),
                ("Keep Going", "keepGoingButton", Role.RejectRole, "Close this question; the run goes on")],
               on_answer)


def ask_quit(parent: QWidget, running: int, queued: int, on_answer: Callable[[str], None]) -> QMessageBox:
    made = "An image is" if running == 1 else f"{running} images are"
    text = f"{made} being made." if running else "Images are queued."
    kept = f" (the {_images(queued)} queued wait for next time)" if queued else ""
    return ask(parent, "confirmQuitBox", f"{text} Quit anyway?",
               f"Finish, then Quit: the images being made are saved first{kept}.\n"
               "Stop and Quit: stops at the next step; what is unfinished waits in the queue for next time.",
               [("Finish, then Quit", "finishThenQuitButton", Role.AcceptRole,
                 "Quit once the images being made are saved"),
                ("Stop and Quit", "stopAndQuitButton", Role.DestructiveRole,
                 "Stop at the next step and quit; the unfinished images wait in the queue for next time"),
                ("Cancel", "cancelQuitButton", Role.RejectRole, "Keep the app open")],
               on_answer)
