"""The side panels (controls on the left, history on the right) can be hidden from the View
menu, so the image gets the whole window (or a narrow one still fits); the choice is kept
between launches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:
    from app.window import MainWindow

PANELS = {"controls": "Controls", "history": "History"}  # settings name -> menu name


def panel(w: MainWindow, name: str) -> QWidget:
    return w.controls if name == "controls" else w.historyPanel


def set_panel_visible(w: MainWindow, name: str, visible: bool) -> None:
    widget = panel(w, name)
    if visible and widget.isHidden():
        widget.show()
        _give_room(w, widget)
    elif not visible:
        if widget.isAncestorOf(w.focusWidget()):  # the keyboard focus must not vanish with it
            w.previewView.setFocus()
        widget.hide()
    w.settings.set_panel_visible(name, visible)
    update_panel_actions(w)


def toggle_panel(w: MainWindow, name: str) -> None:
    set_panel_visible(w, name, panel(w, name).isHidden())


def restore_panels(w: MainWindow) -> None:
    """At launch: the panels as they were left. Dragging a panel's edge past half its minimum
    width collapses it, which is the same as View > Hide (the menu and the next launch agree)."""
    for name in PANELS:
        if not w.settings.panel_visible(name):
            panel(w, name).hide()
    splitter = w.splitter
    splitter.setChildrenCollapsible(True)
    splitter.setCollapsible(splitter.indexOf(w.imagePanel), False)  # the image always stays
    splitter.splitterMoved.connect(lambda *_: _on_dragged(w))  # once: a window restores its panels once
    update_panel_actions(w)


def _on_dragged(w: MainWindow) -> None:
    """A panel dragged to nothing is hidden, as View > Hide would."""
    sizes = w.splitter.sizes()
    for name in PANELS:
        widget = panel(w, name)
        if not widget.isHidden() and sizes[w.splitter.indexOf(widget)] == 0:
            set_panel_visible(w, name, False)


def update_panel_actions(w: MainWindow) -> None:
    for name, label in PANELS.items():
        action = getattr(w, f"toggle{label}Action", None)
        if action is not None:
            action.setText(f"{'Show' if panel(w, name).isHidden() else 'Hide'} {label}")


def _give_room(w: MainWindow, widget: QWidget) -> None:
    """A panel shown again gets at least its preferred width, taken from the image."""
    splitter = w.splitter
    index = splitter.indexOf(widget)
    sizes = splitter.sizes()
    want = max(widget.sizeHint().width(), widget.minimumSizeHint().width(), widget.minimumWidth())
    if sizes[index] < want:
        middle = splitter.indexOf(w.imagePanel)
        sizes[middle] = max(0, sizes[middle] - (want - sizes[index]))
        sizes[index] = want
        splitter.setSizes(sizes)
