"""``python -m embedview``: the same as the ``embedview`` command."""

from .cli import main

raise SystemExit(main())
