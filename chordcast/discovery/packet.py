"""Discovery packet framing: versioned, size-bounded, optionally authenticated (pure).

    magic "CCDP" | version (1 byte) | flags (1 byte) | body length (2 bytes, big-endian)
    | body (protobuf DiscoveryMessage) | HMAC-SHA256 over everything before it (flag bit 0)

With a cluster key, every packet must carry a valid HMAC, a timestamp within the allowed skew
and a nonce not seen before: an outsider's or a replayed packet is rejected.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from chordcast.v1.discovery_pb2 import DiscoveryMessage

MAGIC = b"CCDP"
VERSION = 1
MAX_PACKET = 1024
HEADER = struct.Struct("!4sBBH")
MAC_LEN = 32
FLAG_MAC = 0x01
NONCE_LEN = 16
MIN_KEY_LEN = 16

# Every reason a packet can be dropped for (metric label values are bounded by this set).
DROP_REASONS = (
    "oversized", "truncated", "bad_magic", "bad_version", "malformed", "unauthenticated",
    "bad_mac", "stale", "replayed", "own", "wrong_id_bits", "not_allowed", "unexpected_kind",
)


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in DROP_REASONS
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class ReplayGuard:
    """Nonces seen within the skew window; bounded, oldest forgotten first."""

    window: float
    capacity: int = 65536

    def __post_init__(self) -> None:
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def check_and_remember(self, nonce: bytes, now: float) -> bool:
        while self._seen and next(iter(self._seen.values())) < now:
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return False
        self._seen[nonce] = now + 2 * self.window
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True


class Codec:
    """`key`: the cluster key, or a keyring (primary first): packets are signed with the
    primary and accepted under any key of the ring, so the key can be rotated without a
    split (add the new key everywhere, make it primary everywhere, drop the old one)."""

    def __init__(self, key: bytes | Sequence[bytes] | None = None,
                 max_skew: float = 30.0) -> None:
        keys = () if key is None else (key,) if isinstance(key, bytes) else tuple(key)
        if any(len(k) < MIN_KEY_LEN for k in keys):
            raise ValueError(f"the cluster key must be at least {MIN_KEY_LEN} bytes")
        self.keys = keys
        self.key = keys[0] if keys else None  # the primary: it signs
        self.max_skew = max_skew
        self.replays = ReplayGuard(max_skew)

    def encode(self, msg: DiscoveryMessage) -> bytes:
        body = msg.SerializeToString()
        flags = FLAG_MAC if self.key else 0
        head = HEADER.pack(MAGIC, VERSION, flags, len(body)) + body
        packet = head + (self._mac(head) if self.key else b"")
        if len(packet) > MAX_PACKET:
            raise ValueError(f"discovery packet of {len(packet)} bytes exceeds {MAX_PACKET}")
        return packet

    def decode(self, data: bytes, now: float) -> DiscoveryMessage:
        """Parse and verify one datagram; `now` is wall-clock seconds (for replay checks)."""
        if len(data) > MAX_PACKET:
            raise Rejected("oversized", f"{len(data)} bytes")
        if len(data) < HEADER.size:
            raise Rejected("truncated", f"{len(data)} bytes")
        magic, version, flags, length = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise Rejected("bad_magic")
        if version != VERSION:
            raise Rejected("bad_version", str(version))
        has_mac = bool(flags & FLAG_MAC)
        end = HEADER.size + length
        if len(data) != end + (MAC_LEN if has_mac else 0):
            raise Rejected("truncated", "length field does not match the datagram")
        if self.key is not None:
            if not has_mac:
                raise Rejected("unauthenticated")
            if not any(hmac.compare_digest(self._mac(data[:end], k), data[end:])
                       for k in self.keys):
                raise Rejected("bad_mac")
        elif has_mac:
            raise Rejected("unauthenticated", "authenticated packet, but we have no cluster key")
        try:
            msg = DiscoveryMessage.FromString(data[HEADER.size:end])
        except DecodeError:
            raise Rejected("malformed", "body is not a DiscoveryMessage") from None
        if msg.kind not in (DiscoveryMessage.PROBE, DiscoveryMessage.ANSWER,
                            DiscoveryMessage.QUERY):
            raise Rejected("malformed", f"unknown kind {msg.kind}")
        if len(msg.nonce) != NONCE_LEN:
            raise Rejected("malformed", "nonce must be 16 bytes")
        if self.key is not None:
            if abs(msg.timestamp_ms / 1000 - now) > self.max_skew:
                raise Rejected("stale", "timestamp outside the allowed clock skew")
            if not self.replays.check_and_remember(msg.nonce, now):
                raise Rejected("replayed")
        return msg

    def _mac(self, data: bytes, key: bytes | None = None) -> bytes:
        key = key or self.key
        assert key is not None
        return hmac.new(key, data, hashlib.sha256).digest()
