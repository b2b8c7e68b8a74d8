"""What a rescan compares a listing against, held compactly: a rescan holds one entry for
every cataloged file of the location, so at library scale the form decides its memory.

For each file, the values a listed file must show for its cataloged hash to hold
(`scan.comparable`: size, mtime and inode of a local file; size and change token of an
object) are packed into one int, keyed by the hash of the path rather than the path itself:
~120 bytes a file, where a dict of path strings to tuples took ~340 (and the path strings
were a copy of every path of the location).

What that trades away, and why it is safe:
- The size is held as it is (a scan totals the bytes it listed). The other values are held
  as their 64-bit hash: a file changed in place to the very same size is taken as unchanged
  only if the hashes of its old and new (mtime, inode) collide, a 2**-64 chance.
- Cataloged paths whose hashes collide are told apart: they are held by path (`resolve`).
- A listed path that is not cataloged but whose hash is a cataloged path's (a 2**-64 chance
  for each pair: ~5e-8 for a rescan of a million files) is taken for that path. Its values
  are another file's (another inode, another version), so it is read as a changed file and
  cataloged all the same, and the path it was taken for, if it went away, is marked missing
  one scan later (that scan's table holds both by path). Only a hard link or an identical
  copy of that very file would pass as it: then it is cataloged by the first scan of
  another process (the hashes are seeded per process).

Entries are taken (`pop`) as their files are listed, so what is left at the end is what the
listing did not show, and the table shrinks as the scan goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

_MASK64 = (1 << 64) - 1


def _signature(values: tuple[Any, ...]) -> int:
    return (values[0] << 64) | (hash(values[1:]) & _MASK64)  # values[0]: the size


def matches(entry: int, values: tuple[object, ...]) -> bool:
    """Whether a popped entry holds these values."""
    return entry == _signature(values)


class Signatures:
    """Cataloged path -> the values its file must show; see the module's docstring."""

    __slots__ = ("_by_hash", "_by_path", "_collided", "taken_bytes")

    def __init__(self, entries: Iterable[tuple[str, tuple[object, ...]]] = ()):
        self._by_hash: dict[int, int] = {}  # hash(path) -> size << 64 | hash(other values)
        self._by_path: dict[str, int] = {}  # the paths of hashes in `_collided`
        self._collided: set[int] = set()
        self.taken_bytes = 0  # sizes of the entries `take_if_unchanged` took
        added = []
        for path, values in entries:
            self.add(path, values)
            added.append(path)
        if self._collided:
            self.resolve(added)

    def add_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """`add` for (path, *values) rows, in bulk (a rescan loads one per file)."""
        by_hash, collided, mask = self._by_hash, self._collided, _MASK64
        for row in rows:
            key = hash(row[0])
            if key in by_hash or key in collided:
                self.add(row[0], row[1:])
            else:
                by_hash[key] = (row[1] << 64) | (hash(row[2:]) & mask)

    def add(self, path: str, values: tuple[object, ...]) -> None:
        """Hold `path`'s values. When its hash is another's, `resolve` must follow."""
        key = hash(path)
        if key in self._collided:
            self._by_path[path] = _signature(values)
        elif key in self._by_hash:
            self._collided.add(key)
            self._by_path[path] = _signature(values)
        else:
            self._by_hash[key] = _signature(values)

    @property
    def collided(self) -> bool:
        """Whether paths collided: then `resolve` must be given every path added."""
        return bool(self._collided)

    def resolve(self, paths: Iterable[str]) -> None:
        """Hold by path the first of the paths whose hashes collided (the table knew only
        its hash): `paths` is every path added."""
        by_hash, by_path, collided = self._by_hash, self._by_path, self._collided
        for path in paths:
            key = hash(path)
            if key in collided and path not in by_path and key in by_hash:
                by_path[path] = by_hash.pop(key)

    def __len__(self) -> int:
        return len(self._by_hash) + len(self._by_path)

    def _get(self, path: str) -> int | None:
        key = hash(path)
        if self._collided and key in self._collided:
            return self._by_path.get(path)
        return self._by_hash.get(key)

    def __contains__(self, path: str) -> bool:
        return self._get(path) is not None

    def take_if_unchanged(self, path: str, values: tuple[Any, ...]) -> bool:
        """Whether `path` is held with these values; if so its entry is taken, its size
        counted in `taken_bytes` (a lister's test of every file it lists: inlined)."""
        key = hash(path)
        if self._collided and key in self._collided:
            entry = self._by_path.get(path)
            table: dict[Any, int] = self._by_path
            key = path
        else:
            entry = self._by_hash.get(key)
            table = self._by_hash
        if entry is None or entry != (values[0] << 64) | (hash(values[1:]) & _MASK64):
            return False
        del table[key]
        self.taken_bytes += values[0]
        return True

    def pop(self, path: str) -> int | None:
        """Take `path`'s entry (for `matches`): None if it holds none, or it was taken
        already."""
        key = hash(path)
        if self._collided and key in self._collided:
            return self._by_path.pop(path, None)
        return self._by_hash.pop(key, None)

    def left(self, paths: Iterable[str]) -> Iterator[str]:
        """Those of `paths` (paths added) whose entries were not taken."""
        for path in paths:
            if self._get(path) is not None:
                yield path
