"""`oppu-desktop`: the window. Heavy libraries load later, off the GUI thread, where used."""

import argparse
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="oppu-desktop",
                                     description="OPPU: a private assistant that learns from "
                                                 "your writing.")
    parser.add_argument("--profile", help="open this profile (default: the last one used)")
    parser.add_argument("--page", choices=["chat", "writing", "model", "settings"],
                        help="start on this page")
    # For bench/startup.py: print when the window is first on screen (or when the profile
    # and its writing are open and listed), then quit.
    parser.add_argument("--exit-when-shown", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--exit-when-ready", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--screenshot", metavar="DIR",
                        help="walk through the pages, save a PNG of each into DIR, then quit "
                             "(for documentation; the retrain it starts is cancelled)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from oppu.core import data_root, go_offline

    go_offline()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from oppu.app.resources import style_sheet
    from oppu.app.shell import Shell

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("OPPU")
    app.setDesktopFileName("oppu-desktop")
    app.setStyleSheet(style_sheet())
    root = data_root()
    shell = Shell(root)
    if args.page:
        shell.window.show_page(args.page)
    controllers = []

    def start() -> None:
        """Core, SQLAlchemy and the profile load once the window is on screen."""
        from oppu.app.controller import AppController

        controller = AppController(root, profile_name=args.profile, shell=shell)
        controllers.append(controller)
        sys.excepthook = controller.unexpected_error
        if args.exit_when_ready:
            from oppu.app.startup_probe import report_ready

            report_ready(controller)
        if args.screenshot:
            from oppu.app.screenshot_tour import start_tour

            start_tour(controller, args.screenshot)

    shell.window.exposed.connect(lambda: QTimer.singleShot(0, start))
    quit_on_signals(app)
    shell.window.show()
    if args.exit_when_shown:
        from oppu.app.startup_probe import report_first_expose

        report_first_expose(shell.window)
    code = app.exec()
    for controller in controllers:
        controller.shutdown()
    return code


def quit_on_signals(app) -> None:
    """SIGINT or SIGTERM (Ctrl-C, logout) close the app cleanly: a training run is cancelled
    and recorded, not orphaned. Python sees a signal only when it runs, hence the timer."""
    import signal

    from PySide6.QtCore import QTimer

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_args: app.quit())
    timer = QTimer(app)
    timer.timeout.connect(lambda: None)
    timer.start(300)


if __name__ == "__main__":
    sys.exit(main())
