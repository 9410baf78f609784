"""Finding a ring to join: UDP broadcast or IP multicast probes, static seeds and DNS names.

`packet` (framing, authentication, replay protection) and `logic` (the listener's answers, the
newcomer's choice) are pure; `net` holds every socket and interface call; `service` runs them
on asyncio.
"""
