"""The window's actions with their shortcuts, the menu bar, and the context menus that reuse them.

Construction only: every action calls a method of the main window, which stays the one place
that knows what Export or Delete does. The actions are attributes of the window
(`window.exportAction`, ...), where tests and scripts look for them.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QToolButton

from app import APP_DISPLAY_NAME
from app.imagepanel import FILE_MANAGER

if TYPE_CHECKING:
    from app.window import MainWindow


def make_action(parent: QObject, text: str, slot: Callable[[], object],
                shortcut: QKeySequence | str | list | None = None, name: str | None = None,
                tip: str | None = None) -> QAction:
    action = QAction(text, parent)
    if name:
        action.setObjectName(name)
    if shortcut:
        action.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
    if tip:
        action.setStatusTip(tip)
    action.triggered.connect(lambda checked=False: slot())
    return action


def build_menus(w: MainWindow) -> None:
    """Give the window `w` its actions, its menu bar and the context menus of its image, history
    and queue."""
    action = partial(make_action, w)
    ctrl = Qt.KeyboardModifier.ControlModifier
    w.generateAction = action(
        "Generate", w.generate,
        [QKeySequence(ctrl | Qt.Key.Key_Return), QKeySequence(ctrl | Qt.Key.Key_Enter)], "generateAction")
    w.cancelAction = action("Cancel", w.cancel_all, QKeySequence(Qt.Key.Key_Escape), "cancelAction")
    w.rerunAction = action("Re-run Selected", w.history_controller.rerun_selected, "Ctrl+R", "rerunAction")
    w.openFolderAction = action("Open Model Folder…", w.choose_model_folder, QKeySequence.StandardKey.Open)
    w.openFileAction = action("Open Model File…", w.choose_model_file)
    w.modelManagerAction = action("Models…", w.model_setup.show_manager, "Ctrl+Shift+M", "modelManagerAction",
                                  "Download FLUX.1 models, see what is on disk and what this Mac can run")
    w.addLoraAction = action("Add LoRA…", w.lora_controller.choose_files, None, "addLoraAction",
                             "Add LoRA .safetensors files to the active list")
    w.openLoraFolderAction = action("Open LoRA Folder", w.lora_controller.open_library_folder, None,
                                    "openLoraFolderAction", "The library folder: LoRAs put there are listed in the app")
    w.openInputAction = action("Open Input Image…", w.input_controller.choose_file, "Ctrl+Shift+O",
                               "openInputAction", "Start the next image from an image file")
    w.useAsInputAction = action("Use as Input Image", w.input_controller.use_shown, "Ctrl+Shift+I",
                                "useAsInputAction", "Start the next image from the image in view")
    w.useEntryAsInputAction = action("Use as Input Image", w.history_controller.use_selected_as_input, None,
                                     "useEntryAsInputAction", "Start the next image from this entry's image")
    w.clearInputAction = action("Clear Input Image", w.input_controller.clear, None, "clearInputAction",
                                "Back to text-to-image")
    w.exportAction = action("Export Image…", w.choose_export, "Ctrl+E", "exportAction")
    w.revealAction = action(f"Show in {FILE_MANAGER}", w.reveal_shown, "Ctrl+Shift+R")
    w.openDataAction = action("Open Data Folder", w.open_data_folder)
    # Cmd+Q on a Mac; some Linux platforms name no Quit key, so Ctrl+Q there.
    w.quitAction = action("Quit", w.close, QKeySequence.keyBindings(QKeySequence.StandardKey.Quit)
                          or [QKeySequence("Ctrl+Q")], "quitAction")
    w.quitAction.setMenuRole(QAction.MenuRole.QuitRole)
    w.copyImageAction = action("Copy Image", w.copy_image, "Ctrl+Shift+C", "copyImageAction")
    w.copyPromptAction = action("Copy Prompt", w.history_controller.copy_selected_prompt)
    w.reuseSeedAction = action("Reuse Seed of This Image", w.reuse_seed)
    w.deleteAction = action("Delete Entry…", w.history_controller.delete_selected)
    w.aboutAction = action(f"About {APP_DISPLAY_NAME}", w.about)
    w.aboutAction.setMenuRole(QAction.MenuRole.AboutRole)
    for shortcut in (w.generateAction, w.cancelAction):
        w.addAction(shortcut)  # shortcuts work even with the menu bar hidden

    menu = w.menuBar()
    file_menu = menu.addMenu("&File")
    for item in (w.openFolderAction, w.openFileAction, None, w.openInputAction, None, w.addLoraAction,
                 w.openLoraFolderAction, None,
                 w.exportAction, w.revealAction,
                 w.openDataAction, None, w.quitAction):
        file_menu.addSeparator() if item is None else file_menu.addAction(item)
    file_menu.insertAction(w.openFolderAction, w.modelManagerAction)  # Models… first
    edit_menu = menu.addMenu("&Edit")
    add_standard_edit_actions(w, edit_menu)
    for item in (w.copyImageAction, w.copyPromptAction, w.reuseSeedAction, None, w.deleteAction):
        edit_menu.addSeparator() if item is None else edit_menu.addAction(item)
    image_menu = menu.addMenu("&Image")
    for item in (w.generateAction, w.cancelAction, w.rerunAction, None, w.useAsInputAction, w.clearInputAction):
        image_menu.addSeparator() if item is None else image_menu.addAction(item)
    build_window_menu(w)
    menu.addMenu("&Help").addAction(w.aboutAction)
    build_panel_actions(w)

    # The "…" button next to the model picker offers folder or file.
    open_menu = QMenu(w.controls.openModelButton)
    open_menu.addAction(w.openFolderAction)
    open_menu.addAction(w.openFileAction)
    w.controls.openModelButton.setMenu(open_menu)
    w.controls.openModelButton.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    w.model_setup.connect_menus()

    # Context menus on the image and the history list.
    w.previewView.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
    w.previewView.addActions([w.copyImageAction, w.exportAction, w.revealAction, w.reuseSeedAction,
                              w.useAsInputAction])
    w.deleteKeyAction = delete_key = action("Delete Entry…", w.history_controller.delete_selected, [QKeySequence(Qt.Key.Key_Delete),
                                                             QKeySequence(Qt.Key.Key_Backspace)])
    delete_key.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    w.historyList.addActions([w.rerunAction, w.copyPromptAction, w.useEntryAsInputAction, w.exportAction,
                              w.revealAction, delete_key])
    remove = action("Remove from Queue", w.controls.remove_selected_from_queue)
    w.queueList.addAction(remove)
    # -- history entries: selecting only shows one; these restore from it, when asked ----------
    hc = w.history_controller
    w.usePromptAction = action("Use Prompt", hc.use_prompt, "Ctrl+Alt+P", "usePromptAction",
                               "Replace the prompt with the selected entry's (Undo brings yours back)")
    w.useSeedAction = action("Use Seed", hc.use_seed, "Ctrl+Alt+S", "useSeedAction",
                             "Lock the seed to the selected entry's")
    w.useSettingsAction = action("Use Settings", hc.use_settings, "Ctrl+Alt+U", "useSettingsAction",
                                 "All of the selected entry's settings; a different model is asked for first")
    w.findAction = action("Find in History", hc.focus_search, QKeySequence.StandardKey.Find, "findAction",
                          "Search the history by prompt or seed")
    edit_menu.addSeparator()
    edit_menu.addActions([w.usePromptAction, w.useSeedAction, w.useSettingsAction, w.findAction])
    w.historyList.insertActions(w.rerunAction, [w.useSettingsAction, w.usePromptAction, w.useSeedAction])
    add_preferences_action(w, edit_menu)  # last in Edit (on a Mac it moves to the app menu)


# ==========================================================================================
# Edit (the standard text items), Window, Preferences: what every Mac app has
# ==========================================================================================
def add_standard_edit_actions(w: MainWindow, edit_menu: QMenu) -> None:
    """Undo … Select All at the top of Edit, acting on the focused text field (app/editing.py)."""
    from app.editing import edit_focused

    items = [("Undo", "undo", QKeySequence.StandardKey.Undo), ("Redo", "redo", QKeySequence.StandardKey.Redo),
             None, ("Cut", "cut", QKeySequence.StandardKey.Cut), ("Copy", "copy", QKeySequence.StandardKey.Copy),
             ("Paste", "paste", QKeySequence.StandardKey.Paste),
             ("Select All", "selectAll", QKeySequence.StandardKey.SelectAll)]
    for item in items:
        if item is None:
            edit_menu.addSeparator()
            continue
        text, operation, key = item
        otherwise = w.copy_image if operation == "copy" else None  # nothing typed in focus: the image
        action = make_action(w, text, partial(edit_focused, operation, otherwise), QKeySequence.keyBindings(key),
                             f"{operation}Action")
        setattr(w, f"{operation}Action", action)
        edit_menu.addAction(action)
    edit_menu.addSeparator()


def add_preferences_action(w: MainWindow, edit_menu: QMenu) -> None:
    """Preferences… (Cmd+,): in the application menu on macOS (its menu role), at the end of
    Edit elsewhere."""
    from app.preferences import show_preferences

    keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Preferences) or [QKeySequence("Ctrl+,")]
    w.preferencesAction = make_action(w, "Preferences…", partial(show_preferences, w), keys, "preferencesAction",
                                      "Data folder, default precision, previews, notifications")
    w.preferencesAction.setMenuRole(QAction.MenuRole.PreferencesRole)
    edit_menu.addSeparator()
    edit_menu.addAction(w.preferencesAction)


def build_window_menu(w: MainWindow) -> QMenu:
    """Window: Minimize (Cmd+M), Zoom, and the main window (brings it to the front)."""
    def zoom() -> None:
        w.showNormal() if w.isMaximized() else w.showMaximized()

    def bring_to_front() -> None:
        if w.isMinimized():
            w.showNormal()
        w.raise_()
        w.activateWindow()

    w.minimizeAction = make_action(w, "Minimize", w.showMinimized, "Ctrl+M", "minimizeAction")
    w.zoomAction = make_action(w, "Zoom", zoom, None, "zoomAction", "Fill the screen, or back to the size before")
    w.mainWindowAction = make_action(w, APP_DISPLAY_NAME, bring_to_front, None, "mainWindowAction",
                                     "Bring the main window to the front")
    window_menu = w.menuBar().addMenu("&Window")
    window_menu.setObjectName("windowMenu")
    for item in (w.minimizeAction, w.zoomAction, None, w.mainWindowAction):
        window_menu.addSeparator() if item is None else window_menu.addAction(item)
    return window_menu


# ==========================================================================================
# View: hiding the side panels
# ==========================================================================================
def view_menu(w: MainWindow) -> QMenu:
    """The menu bar's View menu (another part of the app may have made it), else a new one
    placed after Edit."""
    bar = w.menuBar()
    for action in bar.actions():
        if action.menu() is not None and action.text() == "&View":
            return action.menu()
    menu = QMenu("&View", bar)
    actions = bar.actions()
    after_edit = next((actions[i + 1] for i, a in enumerate(actions[:-1]) if a.text() == "&Edit"), None)
    bar.insertMenu(after_edit, menu) if after_edit is not None else bar.addMenu(menu)
    return menu


def build_panel_actions(w: MainWindow) -> list[QAction]:
    """View > Hide Controls (Ctrl+Alt+1, Cmd+Option+1 on macOS) and Hide History (Ctrl+Alt+2): the
    image gets the room; each is remembered between launches (app/panels.py)."""
    from app.panels import toggle_panel, update_panel_actions

    w.toggleControlsAction = make_action(w, "Hide Controls", partial(toggle_panel, w, "controls"), "Ctrl+Alt+1",
                                         "toggleControlsAction", "Show or hide the model, prompt and settings")
    w.toggleHistoryAction = make_action(w, "Hide History", partial(toggle_panel, w, "history"), "Ctrl+Alt+2",
                                        "toggleHistoryAction", "Show or hide the history of images")
    actions = [w.toggleControlsAction, w.toggleHistoryAction]
    menu = view_menu(w)
    if menu.actions():
        menu.addSeparator()
    menu.addActions(actions)
    w.addActions(actions)  # the shortcuts work with the menu bar hidden too
    update_panel_actions(w)
    return actions


def system_adds_full_screen_item() -> bool:
    """Whether the system adds "Enter Full Screen" to the View menu itself (macOS does: ours would
    be a second one)."""
    return sys.platform == "darwin"


def build_view_actions(w: MainWindow) -> list[QAction]:
    """Zoom, grid, compare, Quick Look and full screen (app/viewer.py does them), in the View menu
    (made here unless another part of the menus made it already); returns the actions."""
    v = w.viewer
    action = partial(make_action, w)
    zoom_in = QKeySequence.keyBindings(QKeySequence.StandardKey.ZoomIn) + [QKeySequence("Ctrl+=")]
    w.zoomFitAction = action("Zoom to Fit", lambda: v.zoom("fit"), "Ctrl+0", "zoomFitAction",
                             "The whole image, as large as the view allows")
    w.zoomActualAction = action("Actual Size", lambda: v.zoom("actual"), "Ctrl+1", "zoomActualAction",
                                "One image pixel per screen pixel (100%)")
    w.zoomInAction = action("Zoom In", lambda: v.zoom("in"), zoom_in, "zoomInAction")
    w.zoomOutAction = action("Zoom Out", lambda: v.zoom("out"),
                             QKeySequence.keyBindings(QKeySequence.StandardKey.ZoomOut), "zoomOutAction")
    w.gridAction = action("Show Batch as Grid", v.toggle_grid, None, "gridAction",
                          "The images of the last batch, or of the selected entries, in a grid")
    w.compareAction = action("Compare Selected", v.toggle_compare, None, "compareAction",
                             "The two selected history entries side by side")
    for toggle in (w.gridAction, w.compareAction):
        toggle.setCheckable(True)
    w.quickLookAction = action("Quick Look", v.toggle_quick_look, None, "quickLookAction",
                               "The image, large (Space, on the image or the history)")
    w.fullScreenAction = action("Enter Full Screen", v.toggle_full_screen,
                                QKeySequence.keyBindings(QKeySequence.StandardKey.FullScreen), "fullScreenAction")
    w.fullScreenAction.setMenuRole(QAction.MenuRole.NoRole)
    actions = [w.zoomFitAction, w.zoomActualAction, w.zoomInAction, w.zoomOutAction, None, w.gridAction,
               w.compareAction, w.quickLookAction]
    if system_adds_full_screen_item():
        w.fullScreenAction.setShortcuts([])  # macOS puts its own (Fn+F, Ctrl+Cmd+F) in a menu named View
    else:
        actions += [None, w.fullScreenAction]
    w.addActions([a for a in actions if a is not None])  # shortcuts work in full screen too
    menu = view_menu(w)
    if menu.actions():
        menu.addSeparator()
    for item in actions:
        menu.addSeparator() if item is None else menu.addAction(item)
    separator = QAction(w.previewView)
    separator.setSeparator(True)
    w.previewView.addActions([separator, w.zoomFitAction, w.zoomActualAction])
    # Space is Quick Look only where nobody types: on the image, the grid, the comparison, the history
    # (the image's and the history's context menus list it).
    quick_key = action("Quick Look", v.toggle_quick_look, QKeySequence(Qt.Key.Key_Space), "quickLookKey")
    quick_key.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    for widget in (w.previewView, w.imagePanel.batchGrid, w.imagePanel.compareView, w.historyList):
        widget.addAction(quick_key)
    v.update_actions()
    return [a for a in actions if a is not None]


