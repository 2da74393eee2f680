"""`python -m textscd_lib …` is the same as the `textscd` command."""

from textscd_lib.cli.main import main

raise SystemExit(main())
