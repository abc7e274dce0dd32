"""python -m derive: see derive.cli."""

from .cli import main

raise SystemExit(main())
