import pytest
from hypothesis import given
from hypothesis import strategies as st

from chord.ids import IdError, IdSpace, between, between_right

BITS = 6
SPACE = IdSpace(BITS)
ident = st.integers(min_value=0, max_value=SPACE.size - 1)


def walk(a: int, b: int) -> list[int]:
    """The points strictly after a up to b, clockwise, by stepping: the definition itself."""
    points, x = [], (a + 1) % SPACE.size
    while True:
        points.append(x)
        if x == b:
            return points
        x = (x + 1) % SPACE.size


@given(ident, ident, ident)
def test_between_right_matches_walk(x: int, a: int, b: int) -> None:
    assert between_right(x, a, b) == (x in walk(a, b))


@given(ident, ident, ident)
def test_between_open_matches_walk(x: int, a: int, b: int) -> None:
    assert between(x, a, b) == (x in walk(a, b) and x != b)


@given(ident, ident)
def test_distance_and_add_are_inverse(a: int, b: int) -> None:
    assert SPACE.add(a, SPACE.distance(a, b)) == b
    assert SPACE.distance(a, b) == len(walk(a, b)) % SPACE.size


@given(ident, st.integers(min_value=0, max_value=BITS - 1))
def test_finger_start_is_power_of_two_ahead(n: int, i: int) -> None:
    start = SPACE.finger_start(n, i)
    assert SPACE.distance(n, start) == 2**i
    assert between_right(start, n, SPACE.add(n, 2 ** (BITS - 1)))


@given(st.integers(min_value=3, max_value=160), st.data())
def test_format_parse_bytes_roundtrip(bits: int, data: st.DataObject) -> None:
    space = IdSpace(bits)
    x = data.draw(st.integers(min_value=0, max_value=space.size - 1))
    text = space.format(x)
    assert len(text) == (bits + 3) // 4 and text == text.lower()
    assert space.parse(text) == x
    assert space.from_bytes(space.to_bytes(x)) == x


def test_hash_is_sha1_mod_2m() -> None:
    # sha1("127.0.0.1:5000") = 4d7c... ; check against hashlib independently of our code path
    import hashlib

    full = int.from_bytes(hashlib.sha1(b"127.0.0.1:5000").digest(), "big")
    assert IdSpace(160).hash_address("127.0.0.1:5000") == full
    assert IdSpace(8).hash_address("127.0.0.1:5000") == full % 256
    assert IdSpace(8).hash_key("k") == int(hashlib.sha1(b"k").hexdigest(), 16) % 256


@pytest.mark.parametrize("bad", ["", "xyz", "-1", "1" * 50])
def test_parse_rejects_garbage(bad: str) -> None:
    with pytest.raises(IdError):
        IdSpace(160).parse(bad)


@pytest.mark.parametrize("bits", [0, 2, 161, -5])
def test_bits_out_of_range(bits: int) -> None:
    with pytest.raises(IdError):
        IdSpace(bits)
