"""Time-ordered UUIDv7 identifiers (RFC 9562), monotonic within the process."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import uuid

__all__ = ["NIL_UUID", "keyed_uuid", "uuid7"]

NIL_UUID = uuid.UUID(int=0)

_PAYLOAD_BITS = 122  # 48 bits of milliseconds + 74 bits of counter/randomness
_COUNTER_BITS = 74
_lock = threading.Lock()
_last_payload = 0
# A private generator seeded from the OS, not os.urandom per id (a system call: a third
# of a recorded turn's cost). Reseeded in a forked child, so parent and child never
# draw the same bits; private, so random.seed() elsewhere cannot make ids collide.
_random = random.Random(os.urandom(32))  # noqa: S311  (ordering and uniqueness, not secrecy)
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def uuid7() -> uuid.UUID:
    """Return a new UUIDv7 that sorts after every one this process made before."""
    global _last_payload
    millis = time.time_ns() // 1_000_000
    random_bits = _random.getrandbits(_COUNTER_BITS)
    payload = (millis << _COUNTER_BITS) | random_bits
    with _lock:
        # Same millisecond (or a clock step back): step forward by a random amount
        # so ids stay strictly increasing, which is what keeps save order stable.
        if payload <= _last_payload:
            payload = _last_payload + 1 + (random_bits & 0xFFFF_FFFF)
        payload &= (1 << _PAYLOAD_BITS) - 1
        _last_payload = payload
    millis_part = payload >> _COUNTER_BITS
    rand_a = (payload >> 62) & 0xFFF
    rand_b = payload & ((1 << 62) - 1)
    value = (millis_part << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def keyed_uuid(key: str, millis: int) -> uuid.UUID:
    """A UUIDv8 laid out as a UUIDv7: ``millis`` first, then a hash of ``key``.

    The same key and time give the same id, so a record that arrives twice
    (or late, after what followed it) is known as the one it is; ids made
    this way still sort by time beside :func:`uuid7` ones.
    """
    digest = hashlib.sha256(key.encode()).digest()
    hashed = int.from_bytes(digest[:10], "big")  # 80 bits, of which 74 are kept
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x8 << 76  # version 8: custom, here a v7 layout whose random bits are a hash
    value |= ((hashed >> 62) & 0xFFF) << 64
    value |= 0b10 << 62  # the RFC 4122 variant
    value |= hashed & ((1 << 62) - 1)
    return uuid.UUID(int=value)
