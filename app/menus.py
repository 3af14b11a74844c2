"""The window's actions with their shortcuts, the menu bar, and the context menus that reuse them.

Construction only: every action calls a method of the main window, which stays the one place
that knows what Export or Delete does. The actions are attributes of the window
(`window.exportAction`, ...), where tests and scripts look for them.
"""

from __future__ import annotations

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
    w.quitAction = action("Quit", w.close, QKeySequence.StandardKey.Quit)
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
    edit_menu = menu.addMenu("&Edit")
    for item in (w.copyImageAction, w.copyPromptAction, w.reuseSeedAction, None, w.deleteAction):
        edit_menu.addSeparator() if item is None else edit_menu.addAction(item)
    image_menu = menu.addMenu("&Image")
    for item in (w.generateAction, w.cancelAction, w.rerunAction, None, w.useAsInputAction, w.clearInputAction):
        image_menu.addSeparator() if item is None else image_menu.addAction(item)
    menu.addMenu("&Help").addAction(w.aboutAction)

    # The "…" button next to the model picker offers folder or file.
    open_menu = QMenu(w.controls.openModelButton)
    open_menu.addAction(w.openFolderAction)
    open_menu.addAction(w.openFileAction)
    w.controls.openModelButton.setMenu(open_menu)
    w.controls.openModelButton.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)

    # Context menus on the image and the history list.
    w.previewView.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
    w.previewView.addActions([w.copyImageAction, w.exportAction, w.revealAction, w.reuseSeedAction,
                              w.useAsInputAction])
    delete_key = action("Delete Entry…", w.history_controller.delete_selected, [QKeySequence(Qt.Key.Key_Delete),
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
