"""`python -m chordcast ...` is the `chordcast` command."""

import sys

from chordcast.cli.main import main

sys.exit(main())
