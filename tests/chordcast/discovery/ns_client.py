"""Run inside a test namespace: lookups through a node there, printed as JSON.

    ns_client.py lookups VIA KEY...      -> [owner address, ...]
    ns_client.py first-lookup VIA SECS OWNER -> {"t": wall time of the first lookup that
                                            reached OWNER, the oracle's owner of the probe key}
    ns_client.py ring VIA                -> [[address, successor address], ...] along the ring
"""

from __future__ import annotations

import json
import sys
import time

from chordcast import BlockingClient, ClientError

PROBE_KEY = "first-lookup-probe"


def main() -> None:
    cmd, via, *rest = sys.argv[1:]
    if cmd == "lookups":
        with BlockingClient(via) as client:
            print(json.dumps([client.lookup(k).owner.address for k in rest]))
    elif cmd == "first-lookup":
        deadline = time.monotonic() + float(rest[0])
        while time.monotonic() < deadline:
            try:
                with BlockingClient(via, timeout=2) as client:
                    if client.lookup(PROBE_KEY).owner.address == rest[1]:
                        print(json.dumps({"t": time.time()}))
                        return
            except ClientError:
                pass  # not serving yet, or not joined yet
            time.sleep(0.02)
        sys.exit("no successful lookup before the deadline")
    elif cmd == "ring":
        with BlockingClient(via) as client:
            infos = client.ring()
        print(json.dumps([[i.node.address, i.successors[0].address if i.successors else None]
                          for i in infos]))


if __name__ == "__main__":
    main()
