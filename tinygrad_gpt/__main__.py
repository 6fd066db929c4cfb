"""`python -m tinygrad_gpt ...` is the `tinygpt` command."""

from tinygrad_gpt.cli import main

raise SystemExit(main())
