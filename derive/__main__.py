"""python -m derive: see derive.cli."""

from derive.cli import main

raise SystemExit(main())
