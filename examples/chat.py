"""A serverless group chat over chordcast: the classic chat room, with no chat server.

Every participant attaches to any ring node; the room is a multicast group whose root (a ring
node picked by the room's name) orders the messages, so everyone sees the same conversation.

    python examples/chat.py --via 127.0.0.1:7001 --room lobby --nick alice
    python examples/chat.py --via 127.0.0.1:7002 --room lobby --nick bob

Type a line and press Enter to send it; Ctrl-D or Ctrl-C leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from chordcast import Client, ClientError


def watch_stdin(queue: asyncio.Queue[str | None]) -> None:
    """Feed typed lines into `queue` (None at end of input), without a blocking thread."""
    loop = asyncio.get_running_loop()

    def on_readable() -> None:
        line = sys.stdin.readline()
        if not line:
            loop.remove_reader(sys.stdin)
        queue.put_nowait(line.rstrip("\n") if line else None)

    loop.add_reader(sys.stdin, on_readable)


async def chat(via: list[str], room: str, nick: str) -> int:
    async with Client(via) as client:
        try:
            await client.create(room, creator=nick)
            print(f"* created room {room!r}")
        except ClientError as exc:
            if exc.code != "ALREADY_EXISTS":
                raise
        async with client.join(room, member=nick) as sub:
            print(f"* {nick} joined {room!r} via {sub.access_node}")
            await client.send(room, f"* {nick} joined", sender=nick)

            async def show() -> None:
                async for m in sub:
                    if m.kind == "message":
                        print(f"<{m.sender}> {m.text}" if not m.text.startswith("* ")
                              else m.text, flush=True)
                    elif m.kind == "ended":
                        print("* the room was closed", flush=True)
                        return

            printer = asyncio.ensure_future(show())
            lines: asyncio.Queue[str | None] = asyncio.Queue()
            watch_stdin(lines)
            try:
                while not printer.done():
                    getter = asyncio.ensure_future(lines.get())
                    done, _ = await asyncio.wait({getter, printer},
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                        break
                    line = getter.result()
                    if line is None:
                        break
                    if line.strip():
                        await client.send(room, line, sender=nick)
                await client.send(room, f"* {nick} left", sender=nick)
            finally:
                asyncio.get_running_loop().remove_reader(sys.stdin)
                printer.cancel()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--via", action="append", required=True, metavar="HOST:PORT",
                    help="a ring node to attach to (repeat for fail-over)")
    ap.add_argument("--room", default="lobby")
    ap.add_argument("--nick", required=True)
    args = ap.parse_args()
    try:
        return asyncio.run(chat(args.via, args.room, args.nick))
    except KeyboardInterrupt:
        return 0
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
