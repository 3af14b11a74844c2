"""Entry point of the frozen MLX Flux app (PyInstaller runs this file, not a package module).

One executable, two faces:
    <exe>                                 opens the GUI (app.main.main, which reads sys.argv)
    <exe> --model DIR --data-dir DIR      the GUI with its own options
    <exe> generate|info|download|quantize ...   behaves exactly like the `mlx-flux` command
    <exe> --help | --version              the command line's help and version
"""

from __future__ import annotations

import multiprocessing
import sys

CLI_COMMANDS = frozenset({"generate", "info", "download", "quantize", "-h", "--help", "--version"})


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # Finder used to pass a process serial number to apps started from it (macOS < 10.9,
    # and still seen with some launchers); it is never an argument for us.
    args = [a for a in args if not a.startswith("-psn_")]
    if args and args[0] in CLI_COMMANDS:
        from mlx_flux.cli import main as cli_main

        return cli_main(args)
    sys.argv[1:] = args
    from app.main import main as gui_main

    return gui_main() or 0


if __name__ == "__main__":
    # Harmless when nothing spawns processes; required if anything ever does in a frozen app.
    multiprocessing.freeze_support()
    sys.exit(main())
