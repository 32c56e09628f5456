"""Entry point: ``python -m app.worker --port P --name NAME --cores N --work-dir DIR``."""

from __future__ import annotations

import gc
import logging
import os
import sys

# Loading aiohttp and the agent makes no garbage worth collecting; the collector's passes over
# the growing heap cost about a tenth of the agent's start-up. What loaded is frozen (later
# collections skip it).
gc.disable()
from app.worker.main import main  # noqa: E402

gc.freeze()
gc.enable()

if __name__ == "__main__":
    code = main()
    # Everything has stopped in order by now; skip the interpreter's teardown of aiohttp and
    # friends (a sixth of a worker's start-and-stop CPU), which a `labbatch run` waits for.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)
