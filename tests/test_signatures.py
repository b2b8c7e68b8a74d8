"""The compact table a rescan compares a listing against."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alicefs import signatures
from alicefs.signatures import Signatures, matches

PATHS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
                max_size=12)
VALUES = st.tuples(st.integers(0, 2**63 - 1), st.integers(-2**63, 2**63 - 1),
                   st.one_of(st.none(), st.integers(0, 2**64 - 1)))


@given(st.dictionaries(PATHS, VALUES, max_size=40), st.lists(PATHS, max_size=20),
       st.lists(st.booleans(), max_size=20))
def test_signatures_answer_as_a_dict_of_paths_would(table, listed, by_lister):
    held = Signatures(table.items())
    in_bulk = Signatures()
    in_bulk.add_rows((path, *values) for path, values in table.items())
    assert all(path in in_bulk for path in table) and len(in_bulk) == len(table)
    expected = dict(table)
    taken_bytes = 0
    for path, lister in zip(listed, by_lister + [False] * len(listed), strict=False):
        values = expected.get(path)
        assert (path in held) == (values is not None)
        if values is not None and lister:  # a lister finding it changed, then unchanged
            assert not held.take_if_unchanged(path, (values[0] + 1, *values[1:]))
            assert not held.take_if_unchanged(path, (values[0], values[1] + 1, values[2]))
            assert held.take_if_unchanged(path, values)
            taken_bytes += values[0]
        elif values is not None:
            entry = held.pop(path)
            assert entry is not None and matches(entry, values)
            assert not matches(entry, (values[0], values[1] ^ 1, values[2]))
        else:
            assert held.pop(path) is None and not held.take_if_unchanged(path, (0, 0, None))
        expected.pop(path, None)
        assert path not in held and held.pop(path) is None
    assert held.taken_bytes == taken_bytes
    assert sorted(held.left([*table, "never\x00added"])) == sorted(expected)
    assert len(held) == len(expected)


def test_object_signatures_compare_change_tokens():
    held = Signatures([("p/a", (10, "etag-1")), ("p/b", (10, None))])
    assert not held.take_if_unchanged("p/a", (10, "etag-2"))
    assert held.take_if_unchanged("p/a", (10, "etag-1"))
    assert not held.take_if_unchanged("p/b", (10, "etag-1"))
    assert held.take_if_unchanged("p/b", (10, None)) and held.taken_bytes == 20


def test_cataloged_paths_whose_hashes_collide_are_told_apart(monkeypatch):
    """Every path hashes alike here: the table holds them by path."""
    monkeypatch.setattr(signatures, "hash", lambda value: 7 if isinstance(value, str)
                        else hash(value), raising=False)
    held = Signatures([("p/a", (1, 2, 3)), ("p/b", (4, 5, 6)), ("p/c", (7, 8, 9))])
    assert held.collided
    assert not held.take_if_unchanged("p/a", (4, 5, 6))
    assert "p/d" not in held and held.pop("p/d") is None
    assert matches(held.pop("p/b"), (4, 5, 6))
    assert list(held.left(["p/a", "p/b", "p/c"])) == ["p/a", "p/c"]
    assert held.take_if_unchanged("p/a", (1, 2, 3)) and len(held) == 1


def test_a_catalog_index_tells_colliding_paths_apart(monkeypatch, tmp_path):
    """The catalog builds the table in chunks, then resolves collisions with a second read."""
    from alicefs.catalog import Catalog, Replica

    monkeypatch.setattr(signatures, "hash", lambda value: 7 if isinstance(value, str)
                        and value.startswith("p/") else hash(value), raising=False)
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_replicas([Replica("loc", path, size, 1, "h", 5, None, "present", 0.0)
                              for size, path in enumerate(["p/a", "p/b", "q/c"])])
        index = catalog.replica_index("loc", object_store=False)
    assert len(index.trusted) == 3 and index.trusted.collided
    assert not index.trusted.take_if_unchanged("p/a", (1, 1, 5))
    assert all(index.trusted.take_if_unchanged(path, (size, 1, 5))
               for size, path in enumerate(["p/a", "p/b", "q/c"]))


@pytest.mark.parametrize("files", [100_000])
def test_a_signature_costs_far_less_than_a_path_and_tuple(files):
    """What the module is for (measured: tracemalloc counts the table's objects)."""
    import tracemalloc

    paths = [f"project/renders/shot-{i // 1000:04}/frame_{i:07}.png" for i in range(files)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = Signatures((p, (i * 7919, 1_700_000_000_000_000_000 + i, 10_000_000 + i))
                          for i, p in enumerate(paths))
        per_file = (tracemalloc.get_traced_memory()[0] - before) / files
    finally:
        tracemalloc.stop()
    assert len(held) == files
    assert per_file < 160, per_file
