"""fastopt._memory: byte spans and the gather that folds many small pieces into one buffer."""
import numpy as np
import pytest
from conftest import THREADS

from fastopt._memory import byte_span, gather


def pieces(rng, dst_size, count):
    """Ascending, disjoint pieces of ``dst`` (holes between some), each with a source array."""
    cuts = np.sort(rng.choice(dst_size + 1, size=2 * count, replace=False))
    starts, stops = cuts[0::2], cuts[1::2]
    sources = [rng.integers(0, 256, stop - start, dtype=np.uint8) for start, stop in zip(starts, stops)]
    return starts, stops, sources


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dst_size, count", [(1, 0), (64, 3), (10_000, 40), (2**20 + 3, 300)])
def test_gather_copies_every_piece_and_nothing_else(dst_size, count, threads, rng):
    dst = np.full(dst_size, 7, np.uint8)
    starts, stops, sources = pieces(rng, dst_size, count)
    expected = dst.copy()
    for start, stop, source in zip(starts, stops, sources):
        expected[start:stop] = source
    gather(dst, starts.astype(np.intp), np.array([byte_span(s)[0] for s in sources], np.uintp),
           (stops - starts).astype(np.intp), threads)
    np.testing.assert_array_equal(dst, expected)


def test_gather_refuses_pieces_outside_or_out_of_order():
    dst, src = np.zeros(16, np.uint8), np.ones(8, np.uint8)
    address = np.array([byte_span(src)[0]] * 2, np.uintp)
    for offsets, lengths in [([0, 12], [4, 8]), ([8, 0], [4, 4]), ([0, 2], [4, 4]), ([-1, 4], [1, 1])]:
        with pytest.raises(ValueError, match="outside the destination, or out of order"):
            gather(dst, np.array(offsets, np.intp), address, np.array(lengths, np.intp), 1)
    with pytest.raises(ValueError, match="one source and one length per offset"):
        gather(dst, np.array([0], np.intp), address, np.array([1], np.intp), 1)
    assert not dst.any()


def test_byte_span_is_the_array_interface():
    a = np.arange(10.0)[2:7]
    start = a.__array_interface__["data"][0]
    assert byte_span(a) == (start, start + a.nbytes)
