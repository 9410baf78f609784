"""The `chordcast` command line: `main.py` builds the parser, one module per command family."""
