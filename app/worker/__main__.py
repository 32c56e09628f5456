"""Entry point: ``python -m app.worker --port P --name NAME --cores N --work-dir DIR``."""

from __future__ import annotations

import sys

from app.worker.main import main

if __name__ == "__main__":
    sys.exit(main())
