"""``botfleet serve`` that stops itself (SIGSTOP) right after its N-th archive batch file is
durable — before that batch's transaction commits — so that a test can kill -9 it exactly in the
window between an archive's write and its commit. N comes from ``STOP_AFTER_ARCHIVE_FILES``;
without it, this is plain ``botfleet serve``. Run as a script by tests/reliability."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from botfleet.archive import writer
from botfleet.cli.main import app

STOP_AFTER = int(os.environ.pop("STOP_AFTER_ARCHIVE_FILES", "0") or 0)

if STOP_AFTER:
    real_write = writer.RunArchive.write
    written = [0]

    def write_then_stop(self: writer.RunArchive, *args: Any) -> Any:
        file = real_write(self, *args)
        written[0] += 1
        if written[0] == STOP_AFTER:
            os.kill(os.getpid(), signal.SIGSTOP)  # the whole process, its transaction open
        return file

    writer.RunArchive.write = write_then_stop  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv = ["botfleet", "serve"]
    app()
