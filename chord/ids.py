"""Identifier space arithmetic: hashing names onto the ring and intervals with wrap-around.

Pure functions only; every other module builds on these.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

MIN_BITS = 3
MAX_BITS = 160  # SHA-1 gives 160 bits; more would invent entropy


class IdError(ValueError):
    """An identifier or identifier-space parameter that cannot be right."""


@dataclass(frozen=True)
class IdSpace:
    """The ring 0 .. 2^bits - 1."""

    bits: int = MAX_BITS

    def __post_init__(self) -> None:
        if not MIN_BITS <= self.bits <= MAX_BITS:
            raise IdError(f"id bits must be between {MIN_BITS} and {MAX_BITS}, got {self.bits}")

    @cached_property  # read on every hop of every message
    def size(self) -> int:
        return 1 << self.bits

    @cached_property
    def hex_digits(self) -> int:
        return (self.bits + 3) // 4

    @cached_property
    def byte_len(self) -> int:
        return (self.bits + 7) // 8

    def hash_bytes(self, data: bytes) -> int:
        return int.from_bytes(hashlib.sha1(data).digest(), "big") % self.size

    def hash_address(self, address: str) -> int:
        """Node id: SHA-1 of the advertised "host:port" string."""
        return self.hash_bytes(address.encode("utf-8"))

    def hash_key(self, key: str) -> int:
        return self.hash_bytes(key.encode("utf-8"))

    def format(self, ident: int) -> str:
        return format(ident, f"0{self.hex_digits}x")

    def parse(self, text: str) -> int:
        """Parse a hex identifier as printed by `format`; anything else is an IdError."""
        try:
            value = int(text, 16)
        except ValueError:
            raise IdError(f"not a hexadecimal identifier: {text!r}") from None
        if not 0 <= value < self.size:
            raise IdError(f"identifier {text!r} is outside the {self.bits}-bit ring")
        return value

    def to_bytes(self, ident: int) -> bytes:
        return ident.to_bytes(self.byte_len, "big")

    def from_bytes(self, data: bytes) -> int:
        if len(data) != self.byte_len:
            raise IdError(f"identifier must be {self.byte_len} bytes, got {len(data)}")
        value = int.from_bytes(data, "big")
        if value >= self.size:
            raise IdError(f"identifier outside the {self.bits}-bit ring")
        return value

    def add(self, ident: int, delta: int) -> int:
        return (ident + delta) % self.size

    def distance(self, a: int, b: int) -> int:
        """Clockwise distance from a to b."""
        return (b - a) % self.size

    def finger_start(self, ident: int, i: int) -> int:
        """Start of finger i (0-based): ident + 2^i. Finger i points at successor(start)."""
        if not 0 <= i < self.bits:
            raise IdError(f"finger index {i} outside 0..{self.bits - 1}")
        return (ident + (1 << i)) % self.size


def between(x: int, a: int, b: int) -> bool:
    """x in the open interval (a, b) clockwise. (a, a) is the whole ring except a."""
    if a < b:
        return a < x < b
    return x > a or x < b if a > b else x != a


def between_right(x: int, a: int, b: int) -> bool:
    """x in the half-open interval (a, b] clockwise. (a, a] is the whole ring."""
    if a < b:
        return a < x <= b
    return x > a or x <= b if a > b else True
