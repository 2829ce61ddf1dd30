"""`python -m tasks.cli`: the same as the `chatq` command."""

import sys

from tasks.cli import main

sys.exit(main())
