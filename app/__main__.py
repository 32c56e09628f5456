"""`python -m app` is the same as the `labbatch` command."""

from app.cli import main

raise SystemExit(main())
