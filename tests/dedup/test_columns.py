"""Growing numpy columns: the rows as appended, in blocks or joined, strings and keys."""
import numpy as np
import pytest

from midtrain_jax.dedup import columns


def _filled(dtype, shape, batches, seed=0):
  rng = np.random.default_rng(seed)
  column = columns.Column(dtype, None)
  parts = [rng.integers(0, 1000, (n, *shape)).astype(dtype) for n in batches]
  for part in parts:
    column.append(part)
  return column, np.concatenate(parts)


def test_a_column_holds_its_rows_in_order_across_blocks():
  # Rows of 512 bytes: the first block holds 128, the second 256, ...: batches straddle them.
  column, expected = _filled(np.uint32, (128,), [100, 0, 300, 700, 1])
  assert column.rows == 1101 and len(column._blocks) > 3
  np.testing.assert_array_equal(column.finish(), expected)
  assert column.rows == 0 and not column._blocks


def test_blocks_gather_rows_by_number_without_joining():
  column, expected = _filled(np.int64, (4,), [50, 2000, 37])
  blocks = column.blocks()
  assert blocks.shape == expected.shape and len(blocks) == len(expected)
  index = np.random.default_rng(1).integers(0, len(expected), 500)
  np.testing.assert_array_equal(blocks[index], expected[index])
  np.testing.assert_array_equal(blocks[np.zeros(0, np.int64)], expected[:0])
  walked = np.concatenate([rows for _, rows in blocks.parts()])
  np.testing.assert_array_equal(walked, expected)
  assert [first for first, _ in blocks.parts()][:2] == [0, len(blocks._blocks[0])]


def test_a_row_of_another_shape_is_an_error():
  column = columns.Column(np.int64, None)
  column.append(np.zeros((2, 3)))
  with pytest.raises(ValueError, match=r"shape \(4,\) appended to a column of rows of shape"):
    column.append(np.zeros((1, 4)))


def test_strings_come_back_as_given():
  strings = columns.Strings()
  given = ["a.jsonl:1", "", "ünïcödé:2", "x" * 5000]
  strings.append(given[:2])
  strings.append([])
  strings.append(given[2:])
  table = strings.finish()
  assert len(table) == 4 and [table[i] for i in range(4)] == given


def test_keys_are_an_int_table_until_one_is_not_a_tuple_of_as_many_ints():
  keys = columns.Keys()
  keys.append([(0, 1, 2), (0, 1, 3)])
  keys.append([(1, 0, 0)])
  table = keys.finish()
  assert table.dtype == np.int64 and table.tolist() == [[0, 1, 2], [0, 1, 3], [1, 0, 0]]
  for odd in ([(0, 1)], [("a", 1, 2)], [(True, 1, 2)], [(1 << 64, 0, 0)]):
    keys = columns.Keys()
    keys.append([(0, 1, 2)])
    keys.append(odd)
    table = keys.finish()
    assert table.dtype == object and list(table) == [(0, 1, 2), *odd]
