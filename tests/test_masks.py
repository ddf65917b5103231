"""Tests for `keras_mha.masks`: boolean masks, `True` = may attend."""

import numpy as np
import pytest
from keras import ops

from keras_mha.masks import (
    and_masks,
    causal_mask,
    merge_masks,
    padding_mask,
    segment_mask,
)
from tests.layer_test import to_numpy


@pytest.mark.parametrize("query_length, key_length", [(4, 4), (3, 6), (5, 2)])
def test_causal_mask_is_lower_triangular(query_length, key_length):
    mask = to_numpy(causal_mask(query_length, key_length))
    assert mask.shape == (1, query_length, key_length)
    assert mask.dtype == bool
    expected = np.tril(np.ones((query_length, key_length), bool))
    np.testing.assert_array_equal(mask[0], expected)


@pytest.mark.parametrize("offset", [1, 3])
def test_causal_mask_offset(offset):
    mask = to_numpy(causal_mask(2, 6, offset=offset))
    # Query t sits at position t + offset and sees keys 0 ... t + offset.
    expected = np.arange(6)[None, :] <= np.arange(2)[:, None] + offset
    np.testing.assert_array_equal(mask[0], expected)
    # Equals the matching rows of the full mask.
    full = to_numpy(causal_mask(6, 6))[0]
    np.testing.assert_array_equal(mask[0], full[offset : offset + 2])


def test_causal_mask_offset_may_be_a_tensor():
    offset = ops.convert_to_tensor(2, dtype="int32")
    np.testing.assert_array_equal(
        to_numpy(causal_mask(1, 4, offset=offset)), [[[True, True, True, False]]]
    )


def test_and_masks():
    a = np.array([[True, True, False]])
    b = np.array([[True, False, False]])
    assert and_masks() is None
    assert and_masks(None, None) is None
    np.testing.assert_array_equal(to_numpy(and_masks(a)), a)
    np.testing.assert_array_equal(to_numpy(and_masks(None, a, None)), a)
    np.testing.assert_array_equal(to_numpy(and_masks(a, b)), a & b)
    # Non-boolean masks are cast: nonzero means True.
    np.testing.assert_array_equal(to_numpy(and_masks(a.astype("int32"), b)), a & b)
    assert to_numpy(and_masks(a.astype("float32"))).dtype == bool


def test_padding_mask():
    ids = np.array([[5, 3, 0, 0], [7, 0, 2, 1]])
    np.testing.assert_array_equal(to_numpy(padding_mask(ids)), ids != 0)
    np.testing.assert_array_equal(to_numpy(padding_mask(ids, padding_id=1)), ids != 1)


QUERY_MASK = np.array([[1, 1, 0], [1, 0, 0]], bool)  # (B, T)
VALUE_MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], bool)  # (B, S)
KEY_MASK = np.array([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
ATTENTION_MASK = np.random.default_rng(0).random((2, 3, 5)) > 0.4  # (B, T, S)
CAUSAL = np.tril(np.ones((3, 5), bool))


def test_merge_masks_without_masks_is_none():
    assert merge_masks(3, 5) is None


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"query_mask": QUERY_MASK}, QUERY_MASK[:, :, None]),
        ({"value_mask": VALUE_MASK}, VALUE_MASK[:, None, :]),
        ({"key_mask": KEY_MASK}, KEY_MASK[:, None, :]),
        ({"attention_mask": ATTENTION_MASK}, ATTENTION_MASK),
        ({"use_causal_mask": True}, CAUSAL[None]),
        (
            {"query_mask": QUERY_MASK, "value_mask": VALUE_MASK},
            QUERY_MASK[:, :, None] & VALUE_MASK[:, None, :],
        ),
        (
            {"value_mask": VALUE_MASK, "key_mask": KEY_MASK},
            (VALUE_MASK & KEY_MASK)[:, None, :],
        ),
        (
            {
                "query_mask": QUERY_MASK,
                "value_mask": VALUE_MASK,
                "key_mask": KEY_MASK,
                "attention_mask": ATTENTION_MASK,
                "use_causal_mask": True,
            },
            QUERY_MASK[:, :, None]
            & (VALUE_MASK & KEY_MASK)[:, None, :]
            & ATTENTION_MASK
            & CAUSAL[None],
        ),
    ],
)
def test_merge_masks_combinations(kwargs, expected):
    mask = to_numpy(merge_masks(3, 5, **kwargs))
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)
    # Every result broadcasts to (B, T, S).
    np.broadcast_to(mask, (2, 3, 5))


def test_merge_masks_causal_offset():
    mask = to_numpy(merge_masks(1, 5, use_causal_mask=True, causal_offset=2))
    np.testing.assert_array_equal(mask, [[[True, True, True, False, False]]])
    # The offset only matters with `use_causal_mask`.
    assert merge_masks(1, 5, causal_offset=2) is None


def test_merge_masks_casts_integer_masks():
    mask = to_numpy(merge_masks(3, 5, value_mask=VALUE_MASK.astype("int32")))
    np.testing.assert_array_equal(mask, VALUE_MASK[:, None, :])


def test_segment_mask_keeps_each_packed_source_to_itself():
    # Row 0 packs a source of 3 pieces and one of 2, then a padding piece;
    # row 1 holds one source of 4 pieces and 2 of padding.
    segments = np.array([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 0, 0]], "int32")
    mask, positions = segment_mask(ops.convert_to_tensor(segments))
    mask = to_numpy(mask)
    assert mask.shape == (2, 6, 6)
    np.testing.assert_array_equal(mask[0, 3], [0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(mask[0, 0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(mask, segments[:, :, None] == segments[:, None, :])
    np.testing.assert_array_equal(
        to_numpy(positions), [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]]
    )
