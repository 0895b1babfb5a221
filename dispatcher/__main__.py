"""`python -m dispatcher` runs the command line."""

from dispatcher.cli import main

raise SystemExit(main())
