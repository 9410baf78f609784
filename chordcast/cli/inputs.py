"""Reading a command-line payload: given as text, or from a file (`-`: standard input),
under a size limit; and writing a command's output to a file (`-`: standard output)."""

from __future__ import annotations

import sys


class CannotRead(ValueError):
    """The command line was wrong: both or neither given, or the file cannot be read."""


class TooLarge(ValueError):
    """The payload is over the limit (the operation fails; the command line was fine)."""


def text_or_file(text: str | None, path: str | None, limit: int, arg: str, what: str) -> bytes:
    """`arg` names the positional argument in messages, `what` the payload's kind."""
    if (text is None) == (path is None):
        raise CannotRead(f"give either {arg} or --file F")
    if path is None:
        return str(text).encode("utf-8")
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)  # never more than one byte past the limit
        else:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
    except OSError as exc:
        raise CannotRead(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        where = "standard input" if path == "-" else path
        raise TooLarge(f"{where} is larger than the 1 MiB {what} limit")
    return data


def write_output(path: str, data: bytes) -> None:
    """Write `data` to `path` (`-`: standard output); OSError when it cannot be written."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as out:
        out.write(data)
