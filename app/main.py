"""Entry points: `create_app(argv)` for tests and scripts, `main()` for `python -m app`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QObject
from PySide6.QtWidgets import QApplication

from app import APP_DISPLAY_NAME, APP_NAME
from app.history import HistoryError, HistoryStore
from app.launchconfig import chosen_data_dir
from app.paths import DataDir, default_data_dir
from app.reindex import reindex
from app.settings import Settings
from app.window import MainWindow, find_icon

log = logging.getLogger("app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=f"{APP_DISPLAY_NAME}: FLUX.1 on MLX")
    parser.add_argument("--model", metavar="PATH", help="model to use: a local folder or .safetensors file, "
                                                        "or a Hugging Face repo id")
    parser.add_argument("--data-dir", metavar="DIR", type=Path,
                        help="where history, images and settings live (default: the app-data folder)")
    parser.add_argument("image", nargs="?", type=Path,
                        help="an image made by mlx-flux whose settings to restore (\"Open With\")")
    return parser


class _FileOpenForwarder(QObject):
    """macOS delivers "Open With" and Dock drops as QFileOpenEvent to the application object;
    hand the file to the newest window, which restores the image's settings."""

    def __init__(self) -> None:
        super().__init__()
        self.window: MainWindow | None = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.FileOpen and self.window is not None and event.file():
            self.window.restore_from_file(Path(event.file()))
            return True
        return False


_file_open = _FileOpenForwarder()


def _arguments(argv: list[str]) -> list[str]:
    """argv with the program name dropped, if it has one (sys.argv style)."""
    args = list(argv)
    if args and not args[0].startswith("-"):
        args = args[1:]
    return args


def create_app(argv: list[str] | None = None) -> tuple[QApplication, MainWindow]:
    """Build the application and its window without entering the event loop.

    A QApplication that already runs (a test's, or a second call) is reused.
    """
    argv = list(sys.argv if argv is None else argv)
    QCoreApplication.setApplicationName(APP_NAME)  # before QStandardPaths is asked anything
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else APP_NAME, *_arguments(argv)])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_DISPLAY_NAME)
    app.setWindowIcon(find_icon())
    # Linux: the .desktop name that window managers and docks (and Qt's badge) match the app by;
    # without one, every badge of an image finished in the background is a Qt warning.
    if not app.desktopFileName():
        app.setDesktopFileName(APP_NAME)
    # Qt may have consumed its own options (-style, -platform); ignore anything else unknown.
    args, _ = build_parser().parse_known_args(_arguments(argv))

    # --data-dir, else the folder chosen in Preferences (launch.ini), else the platform's.
    data_dir = DataDir((args.data_dir or chosen_data_dir() or default_data_dir()).expanduser().resolve())
    problems = []
    if (problem := data_dir.prepare()) is not None:
        problems.append(f"{problem} Images and history can't be saved in this session; use Export.")
        try:  # the images and history already there can still be looked at
            history = HistoryStore.open_read_only(data_dir.database, data_dir.root)
        except HistoryError:
            history = HistoryStore.in_memory(data_dir.root)
    else:
        _log_to(data_dir)
        try:
            history = HistoryStore(data_dir.database, data_dir.root)
            reindex(history, data_dir.images)  # images a quit or crash left out of the history
        except HistoryError as exc:
            # Keep the file untouched for the person (or a newer app) to deal with; run without it.
            problems.append(f"{exc}. This session's images are saved, but not kept in the history.")
            history = HistoryStore.in_memory(data_dir.root)
    settings = Settings(data_dir.settings)
    model = str(Path(args.model).expanduser().resolve()) if args.model and Path(args.model).expanduser().exists() \
        else args.model
    window = MainWindow(data_dir, settings, history, initial_model=model, startup_problems=problems)
    if _file_open.window is None:
        app.installEventFilter(_file_open)
    _file_open.window = window
    if args.image is not None:
        window.restore_from_file(args.image.expanduser())
    return app, window


def _log_to(data_dir: DataDir) -> None:
    """Tracebacks go to a log file in the data dir (the window shows one-line messages)."""
    path = data_dir.root / "mlx-flux.log"
    root = logging.getLogger()
    if any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        return
    try:
        handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    except OSError:
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    build_parser().parse_known_args(_arguments(argv))  # --help and usage errors exit here
    app, window = create_app(argv)
    window.show()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
