"""The mount's in-memory namespace: every directory and file of every view, with inode numbers
that stay the same for the life of the mount.

Built from the catalog in bulk at mount time and kept current by the filesystem's own
operations and by scans, so lookups, readdir, getattr and getxattr never touch DuckDB or the
network. Pure data structure: no I/O here.

Views (DESIGN.md §3), each a tree keyed by "view path":
- `projects/<vpath>`: the union of every location. A file at a location's root (logical path
  `x.png`) has the view path `_unsorted/x.png`.
- `types/<category>/<vpath>`: the same files, grouped by media category.
- `locations/<name>/<vpath>`: one location's replicas.
- `.alicefs/`: status files.
"""

from __future__ import annotations

import gc
import posixpath
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from alicefs.backends.base import DirInfo
from alicefs.layout import LOCATIONS, PROJECTS, STATUS_DIR, TYPES
from alicefs.media import CATEGORIES, classify_name
from alicefs.scan import UNSORTED

if TYPE_CHECKING:
    from alicefs.catalog import NamespaceCodes

ROOT_INODE = 1

# A view is "p" (projects), "t:<category>", "l:<location_id>", "s" (status) or "" (the
# fixed top-level directories).
PROJECTS_VIEW = "p"
STATUS_VIEW = "s"
# The mode a file without POSIX attributes of its own has: one int object for all of them (a
# new `S_IFREG | 0o644` per file is 32 bytes each).
DEFAULT_FILE_MODE = stat.S_IFREG | 0o644
# Nodes made from held rows between two freezes of the collector (`FileTable._node`).
NODES_PER_FREEZE = 65_536


def type_view(category: str) -> str:
    return f"t:{category}"


def location_view(location_id: str) -> str:
    return f"l:{location_id}"


def view_path(logical_path: str) -> str:
    """Where a logical path shows in the projects view."""
    return logical_path if "/" in logical_path else f"{UNSORTED}/{logical_path}"


def logical_path_of(vpath: str) -> str:
    """The logical path a projects-view path stands for (files of `_unsorted/` live at the
    location's root)."""
    head, _, rest = vpath.partition("/")
    if head == UNSORTED and rest and "/" not in rest:
        return rest
    return vpath


class Replica:
    """One location's copy, as the mount knows it. Its hash is held as the number it spells
    (64 bytes of object, where the hex string takes 113 and bytes 80) and shown as hex."""

    __slots__ = ("_digest", "attempted_hash", "change_token", "mtime_ns", "size", "staged",
                 "state", "unsent")

    def __init__(self, size: int, mtime_ns: int, content_hash: str | None = None,
                 state: str = "present", staged: Path | None = None,
                 change_token: str | None = None, attempted_hash: str | None = None,
                 unsent: bool = False):
        self.size = size
        self.mtime_ns = mtime_ns
        self._digest = None if content_hash is None else _packed_hash(content_hash)
        self.state = state  # present | missing | stale (an older version than the primary)
        self.staged = staged  # object stores: newer content waiting in a staging file
        # object stores: the version (ETag, generation) the mount last saw there; an upload
        # replaces only that version (anything else there is another writer's: a conflict)
        self.change_token = change_token
        # object stores: the hash of the last upload tried from the staging file, which may
        # have been published although its answer was lost (then it is ours to replace)
        self.attempted_hash = attempted_hash
        # object stores: the staging file holds content (or an mtime) the store may not
        # have; cleared only by an upload of the version that is still current. Release,
        # fsync and discarding the staging file decide by it alone.
        self.unsent = unsent

    @property
    def content_hash(self) -> str | None:
        digest = self._digest
        return format(digest, "064x") if type(digest) is int else digest

    @content_hash.setter
    def content_hash(self, value: str | None) -> None:
        self._digest = _packed_hash(value)

    def _fields(self) -> tuple[object, ...]:
        return (self.size, self.mtime_ns, self.content_hash, self.state, self.staged,
                self.change_token, self.attempted_hash, self.unsent)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Replica:
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it replaces

    def __repr__(self) -> str:
        names = ("size", "mtime_ns", "content_hash", "state", "staged", "change_token",
                 "attempted_hash", "unsent")
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields(), strict=True))
        return f"Replica({shown})"

    def copy(self) -> Replica:
        return Replica(*self._fields())  # type: ignore[arg-type]


def _packed_hash(content_hash: str | None) -> int | str | None:
    """A hash of 64 lowercase hex digits as its number, which gives it back exactly;
    anything else as given. Checked by its characters, not by formatting the number back
    (that took 1.2 of 1.7 µs, for every file whose node is made)."""
    if (content_hash is None or len(content_hash) != 64 or not content_hash.isascii()
            or not content_hash.isalnum() or "x" in content_hash  # int() takes a 0x
            or content_hash.lower() != content_hash):
        return content_hash
    try:
        return int(content_hash, 16)
    except ValueError:  # letters past f
        return content_hash


class Replicas(MutableMapping[str, Replica]):
    """A file's replicas by location id: a dict, but the one copy that nearly every file of
    a large library has is held in two slots (56 bytes, where a dict takes 184); a dict only
    from the second copy on, and back to the slots when one is left."""

    __slots__ = ("_id", "_many", "_replica")

    def __init__(self, replicas: Mapping[str, Replica] | None = None):
        self._id: str | None = None
        self._replica: Replica | None = None
        self._many: dict[str, Replica] | None = None
        if replicas:
            self.update(replicas)

    @classmethod
    def one(cls, location_id: str, replica: Replica) -> Replicas:
        """Holding just `replica` (made for every file at a mount's start: no update)."""
        replicas = cls()
        replicas._id, replicas._replica = location_id, replica
        return replicas

    def __getitem__(self, location_id: str) -> Replica:
        if self._many is not None:
            return self._many[location_id]
        if self._id == location_id and self._id is not None:
            return self._replica  # type: ignore[return-value]
        raise KeyError(location_id)

    def get(self, location_id: str, default: Replica | None = None) -> Replica | None:
        if self._many is not None:
            return self._many.get(location_id, default)
        return self._replica if self._id == location_id and self._id is not None else default

    def __contains__(self, location_id: object) -> bool:
        if self._many is not None:
            return location_id in self._many
        return self._id == location_id and self._id is not None

    def __setitem__(self, location_id: str, replica: Replica) -> None:
        if self._many is not None:
            self._many[location_id] = replica
        elif self._id is None or self._id == location_id:
            self._id, self._replica = location_id, replica
        else:
            self._many = {self._id: self._replica, location_id: replica}  # type: ignore[dict-item]
            self._id = self._replica = None

    def __delitem__(self, location_id: str) -> None:
        many = self._many
        if many is not None:
            del many[location_id]
            if len(many) == 1:
                (self._id, self._replica), = many.items()
                self._many = None
        elif self._id == location_id and self._id is not None:
            self._id = self._replica = None
        else:
            raise KeyError(location_id)

    def __len__(self) -> int:
        if self._many is not None:
            return len(self._many)
        return 0 if self._id is None else 1

    def sole(self) -> Replica | None:
        """The replica, when there is exactly one (asked for every file listed)."""
        return self._replica if self._many is None else None

    def __iter__(self) -> Iterator[str]:
        if self._many is not None:
            return iter(self._many)
        return iter(() if self._id is None else (self._id,))

    # Snapshots, not live views (what callers iterate; a tuple is the cheapest for one).
    def items(self) -> Iterable[tuple[str, Replica]]:  # type: ignore[override]
        if self._many is not None:
            return tuple(self._many.items())
        return () if self._id is None else ((self._id, self._replica),)  # type: ignore[return-value]

    def values(self) -> Iterable[Replica]:  # type: ignore[override]
        if self._many is not None:
            return tuple(self._many.values())
        return () if self._id is None else (self._replica,)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Replicas({dict(self.items())!r})"


@dataclass(slots=True)
class FileNode:
    """A logical file: its replicas and what the views and xattrs show of it."""

    logical_path: str
    replicas: Replicas  # a dict given is made one
    category: str
    mime_type: str
    tags: tuple[str, ...] = ()
    quality: int | None = None
    mode: int = DEFAULT_FILE_MODE
    uid: int = 0
    gid: int = 0
    ctime_ns: int = 0
    symlink_target: bytes | None = None
    rdev: int = 0  # a device's number
    atime_ns: int | None = None  # as last set (utimensat); None: shown as the mtime
    version: int = 0  # bumped on every change of content, for the page cache's keep_cache
    created_here: str | None = None  # location id, when created through this mount
    # Its projects/ inode, once the kernel was given one (held here, not in an inode table:
    # a table slot per file costs ~50 bytes, this slot nothing, the object's size class
    # having room for it). The names of a hard-linked file share one.
    inode: int | None = None

    def __post_init__(self) -> None:
        if type(self.replicas) is not Replicas:
            self.replicas = Replicas(self.replicas)

    @property
    def is_symlink(self) -> bool:
        return self.symlink_target is not None

    @property
    def is_special(self) -> bool:
        """A symbolic link, FIFO, socket or device: an entry without content, which lives
        in the local location where it was made (never uploaded, re-placed or migrated)."""
        return not stat.S_ISREG(self.mode)


@dataclass(slots=True)
class Entry:
    """What an inode stands for."""

    view: str
    vpath: str  # "" for the root of a view


@dataclass(slots=True)
class LinkGroup:
    """The names of a file with several hard links: projects paths that share one inode
    number (in `projects/`), and the inode the file has on each local location holding it."""

    names: set[str]
    backing: dict[str, int]  # location id -> st_ino there


@dataclass(slots=True)
class DirNode:
    children: set[str] = field(default_factory=set)
    explicit: bool = False  # made with mkdir: kept when empty
    mode: int = stat.S_IFDIR | 0o755
    mtime_ns: int = 0
    atime_ns: int | None = None  # as last set (utimensat); None: shown as the mtime
    owner: tuple[int, int] | None = None  # (uid, gid) when made through the mount


class FileTable(MutableMapping[str, FileNode]):
    """The files of projects/ by view path. Those loaded at a mount's start are held as the
    catalog's row (`Catalog.namespace_rows`: a tuple its fetch makes anyway) until first
    asked for, and made a `FileNode` then, for good: making a FileNode, Replicas and
    Replica for every file was most of a mount's start, and most of a large library is
    never looked at in a session. Iterating the values or items makes every file's node."""

    __slots__ = ("_codes", "_held", "_made", "_owner", "_recorders")

    def __init__(self, uid: int, gid: int):
        self._held: dict[str, FileNode | tuple[Any, ...]] = {}
        self._owner = (uid, gid)
        self._codes: NamespaceCodes | None = None  # what the coded columns of rows mean
        self._recorders: list[list[str]] = []  # see `recording_stores`
        self._made = 0  # nodes made from rows since the collector last froze them

    def get(self, vpath: str, default: FileNode | None = None) -> FileNode | None:
        held = self._held.get(vpath)
        if held is None:
            return default
        return held if type(held) is not tuple else self._node(vpath, held)

    def __getitem__(self, vpath: str) -> FileNode:
        held = self._held[vpath]
        return held if type(held) is not tuple else self._node(vpath, held)

    def __setitem__(self, vpath: str, node: FileNode) -> None:
        self._held[vpath] = node
        for recorder in self._recorders:
            recorder.append(vpath)

    def __delitem__(self, vpath: str) -> None:
        del self._held[vpath]

    def __contains__(self, vpath: object) -> bool:
        return vpath in self._held

    def __iter__(self) -> Iterator[str]:
        return iter(self._held)

    def __len__(self) -> int:
        return len(self._held)

    def values(self) -> Iterator[FileNode]:  # type: ignore[override]
        for vpath, held in self._held.items():
            yield held if type(held) is not tuple else self._node(vpath, held)

    def items(self) -> Iterator[tuple[str, FileNode]]:  # type: ignore[override]
        for vpath, held in self._held.items():
            yield vpath, held if type(held) is not tuple else self._node(vpath, held)

    @contextmanager
    def recording_stores(self) -> Iterator[list[str]]:
        """The view paths files are stored at (added, or renamed to) while the block runs,
        in order: what a walk over a snapshot of the paths in slices must also visit."""
        recorder: list[str] = []
        self._recorders.append(recorder)
        try:
            yield recorder
        finally:
            self._recorders.remove(recorder)

    def has_replica(self, vpath: str, location_id: str) -> bool:
        """Whether the file at `vpath` has a replica in `location_id` (a held row is not made
        a FileNode to answer)."""
        held = self._held.get(vpath)
        if type(held) is tuple:
            assert self._codes is not None
            return self._codes.locations[held[0] - 1] == location_id
        return held is not None and location_id in held.replicas  # type: ignore[union-attr]

    def holder(self, codes: NamespaceCodes) -> Callable[[str, tuple[Any, ...]], Any]:
        """For rows coded by `codes`: a function that holds a row for a view path unless
        something is held there already, and returns what is held (the row itself, or what
        was there). Rows are held from one load: what their codes stand for is kept once."""
        if self._codes is not None and self._codes != codes:
            raise ValueError("rows coded otherwise are held already")
        self._codes = codes
        return self._held.setdefault

    def logical_path_held(self, held: FileNode | tuple[Any, ...]) -> str:
        """The logical path of what `holder` returned."""
        return held[1] if type(held) is tuple else held.logical_path  # type: ignore[union-attr]

    def add_row(self, vpath: str, row: tuple[Any, ...]) -> None:
        """Another replica's row for the file held at `vpath`."""
        self._add_replica(self[vpath], row)

    def node_of(self, rows: list[tuple[Any, ...]]) -> FileNode:
        """The file of the rows of one logical path, not held."""
        node = self._make(rows[0])
        for row in rows[1:]:
            self._add_replica(node, row)
        return node

    def _add_replica(self, node: FileNode, row: tuple[Any, ...]) -> None:
        location_id, replica = self._replica(row)
        node.replicas[location_id] = replica
        if replica.mtime_ns > node.ctime_ns:
            node.ctime_ns = replica.mtime_ns

    def _replica(self, row: tuple[Any, ...]) -> tuple[str, Replica]:
        """(location id, replica) of a row."""
        location, _, size, mtime_ns, content_hash, state, change_token = row[:7]
        codes = self._codes
        assert codes is not None
        return codes.locations[location - 1], Replica(
            size, mtime_ns, content_hash, codes.states[state - 1], None, change_token)

    def _node(self, vpath: str, row: tuple[Any, ...]) -> FileNode:
        node = self._held[vpath] = self._make(row)
        self._made += 1
        if self._made == NODES_PER_FREEZE:
            # Nodes made at runtime join the collector's generations (those loaded at start
            # were frozen out of them), and each full collection walks them all: making a
            # million (a first `ls -lR`) took 8.3-8.8 s of CPU, 6.0-8.0 s with this. Each
            # batch is collected once, so no cyclic garbage is frozen, then frozen too.
            self._made = 0
            gc.collect()
            gc.freeze()
        return node

    def _make(self, row: tuple[Any, ...]) -> FileNode:
        path, media, tags, quality = row[1], row[7], row[8], row[9]
        codes = self._codes
        assert codes is not None
        if media is None:
            found = classify_name(path)
            category, mime_type = found.category, found.mime_type
        else:
            category, mime_type = codes.media[media - 1]
        uid, gid = self._owner
        location_id, replica = self._replica(row)
        return FileNode(path, Replicas.one(location_id, replica), category, mime_type,
                        tuple(tags) if tags else (), quality, DEFAULT_FILE_MODE, uid, gid,
                        replica.mtime_ns)


class KernelObserver(Protocol):
    """Told of every change the kernel may hold a cached answer for (entries and
    attributes are cached for long: see alicefs.fs.kernel_cache). Only for inodes the
    kernel was given (those the namespace numbered): nothing else can be in its cache."""

    def name_gone(self, view: str, vpath: str, parent_inode: int, inode: int) -> None:
        """`vpath` in `view` (its last component, in the directory `parent_inode`) no
        longer stands for `inode`, or went away. Called amid a change that may bring it
        back as it was (a rename within a directory empties it for a moment): whether it
        is really gone is for the observer to ask (`shows`) once the change is done."""

    def attrs_changed(self, inode: int) -> None:
        """What `inode` shows (size, times, mode, owner, links) changed."""


class Namespace:
    """Directories and files of every view, and inode numbers for them."""

    def __init__(self, locations: dict[str, str], uid: int, gid: int, now_ns: int):
        """`locations`: location id -> name, in the order `locations/` lists them."""
        self.locations = dict(locations)
        self.uid, self.gid = uid, gid
        self.now_ns = now_ns
        self.files = FileTable(uid, gid)  # projects-view path -> file
        self.dirs: dict[str, dict[str, DirNode]] = {}  # view -> vpath -> directory
        # view -> view path -> inode (per view, not keyed by (view, path) tuples: a tuple per
        # entry costs more than the entry at library scale); the files of projects/ hold
        # theirs themselves (`FileNode.inode`)
        self._inodes: dict[str, dict[str, int]] = {}
        # inode -> what it stands for, indexed by the inode number (numbers are handed out in
        # order and never reused: a list holds one for 8 bytes, a dict for ~50). A file or
        # directory of projects/ is held as its bare view path (no `Entry` object: most
        # inodes are there); None where an inode was dropped.
        self._entries: list[Entry | str | None] = [None]
        self._links: dict[int, LinkGroup] = {}  # projects-view inode -> its names, if several
        self._fixed: dict[str, list[str]] = {}
        self.observer: KernelObserver | None = None  # set while the kernel is served
        self.inode_of("", "")  # ROOT_INODE
        for view in self._all_views():
            self._dir(view, "")

    # -- inodes -----------------------------------------------------------------------

    def inode_of(self, view: str, vpath: str) -> int:
        node = self.files.get(vpath)
        if node is not None and node.logical_path == vpath:
            # The file's own path string, not the caller's copy (readdir makes one per entry),
            # so the table and the entry add no string of their own.
            vpath = node.logical_path
        if view == PROJECTS_VIEW and node is not None:
            inode = node.inode
            if inode is None:
                inode = node.inode = len(self._entries)
                self._entries.append(vpath)
            return inode
        table = self._inodes.get(view)
        if table is None:
            table = self._inodes[view] = {}
        inode = table.get(vpath)
        if inode is None:
            inode = len(self._entries)
            table[vpath] = inode
            self._entries.append(_entry(view, vpath))
        return inode

    def _known_inode(self, view: str, vpath: str) -> int | None:
        """The inode `vpath` has in `view`, if it was given one."""
        if view == PROJECTS_VIEW:
            node = self.files.get(vpath)
            if node is not None:
                return node.inode
        table = self._inodes.get(view)
        return None if table is None else table.get(vpath)

    def _inode_table(self, view: str) -> dict[str, int]:
        return self._inodes.setdefault(view, {})

    def entry(self, inode: int) -> Entry | None:
        found = self.locate(inode)
        return None if found is None else Entry(*found)

    def locate(self, inode: int) -> tuple[str, str] | None:
        """(view, view path) of `inode`: `entry` without an object of its own (asked for
        every entry listed)."""
        try:
            entry = self._entries[inode]
        except IndexError:
            return None
        if type(entry) is str:
            return PROJECTS_VIEW, entry
        return None if entry is None else (entry.view, entry.vpath)

    def _vpath_of(self, inode: int) -> str:
        """The path a live inode stands for."""
        found = self.locate(inode)
        assert found is not None
        return found[1]

    def _name_gone(self, view: str, parent: str, name: str) -> None:
        """Tell the observer that `name` in `parent` lost its inode or went away."""
        table = self._inodes.get(view)
        if self.observer is None or table is None:
            return
        parent_inode = table.get(parent)
        child = f"{parent}/{name}" if parent else name
        inode = self._known_inode(view, child)
        if parent_inode is not None and inode is not None:
            self.observer.name_gone(view, child, parent_inode, inode)

    def shows(self, view: str, vpath: str, inode: int) -> bool:
        """Whether `vpath` is in `view` as `inode`."""
        if self._known_inode(view, vpath) != inode:
            return False
        parent, name = _split(vpath)
        directory = self.dirs.get(view, {}).get(parent)
        return directory is not None and name in directory.children

    def file_changed(self, vpath: str, *, but: str | None = None) -> None:
        """What the file at `vpath` shows changed: the observer hears of its inode in every
        view it is in (but `but`, a view the kernel itself changed it through)."""
        node = self.files.get(vpath)
        if self.observer is None or node is None:
            return
        for view in self._views_of(vpath, node):
            inode = self._known_inode(view, vpath) if view != but else None
            if inode is not None:
                self.observer.attrs_changed(inode)

    def _move_inode(self, view: str, old: str, new: str) -> None:
        """The file or directory at `old` is now at `new`: it keeps its inode. Not for the
        files of projects/, whose inodes move with them (`_file_moved`)."""
        table = self._inode_table(view)
        inode = table.pop(old, None)
        if inode is None:
            return
        stale = table.pop(new, None)
        if stale is not None and not self._drop_name(view, stale, new):
            self._entries[stale] = None
        table[new] = inode
        self._entries[inode] = _entry(view, new)

    def _file_moved(self, inode: int, old: str, new: str) -> None:
        """The projects/ file `inode` named `old` is now named `new`."""
        group = self._links.get(inode)
        if group is not None:
            group.names.discard(old)
            group.names.add(new)
            if self._vpath_of(inode) != old:
                return  # the inode stands for another of its names
        self._entries[inode] = new

    # -- hard links ---------------------------------------------------------------------

    def add_link(self, vpath: str, new_vpath: str, backing: dict[str, int]) -> None:
        """`new_vpath` (a file already added) is another name of the file at `vpath`: from
        now on both have its projects inode. `backing`: the file's st_ino per location."""
        inode = self.inode_of(PROJECTS_VIEW, vpath)
        node = self.files[new_vpath]
        own = node.inode
        if own is not None and own != inode:
            self._name_gone(PROJECTS_VIEW, *_split(new_vpath))
            if not self._drop_name(PROJECTS_VIEW, own, new_vpath):
                self._entries[own] = None
        node.inode = inode
        group = self._links.setdefault(inode, LinkGroup({vpath}, {}))
        group.names.add(new_vpath)
        group.backing.update(backing)

    def link_group(self, vpath: str) -> LinkGroup | None:
        if not self._links:
            return None  # the usual case, asked on every getattr and record
        node = self.files.get(vpath)
        return None if node is None or node.inode is None else self._links.get(node.inode)

    def link_count(self, vpath: str) -> int:
        if not self._links:
            return 1  # asked for every file listed
        group = self.link_group(vpath)
        return 1 if group is None else len(group.names)

    def other_names(self, vpath: str) -> list[str]:
        group = self.link_group(vpath)
        return [] if group is None else sorted(group.names - {vpath})

    def split_link(self, vpath: str) -> None:
        """`vpath` is no longer a hard link of the others (replaced behind the mount's
        back): it gets an inode of its own."""
        node = self.files.get(vpath)
        inode = None if node is None else node.inode
        if node is None or inode is None or inode not in self._links:
            return
        self._name_gone(PROJECTS_VIEW, *_split(vpath))
        self._drop_name(PROJECTS_VIEW, inode, vpath)
        node.inode = None
        self.inode_of(PROJECTS_VIEW, vpath)

    def _drop_name(self, view: str, inode: int, vpath: str) -> bool:
        """`vpath` no longer names the linked file `inode`: its inode stands for another of
        the names (True), or nothing links it (False: the caller drops the inode)."""
        group = self._links.get(inode) if view == PROJECTS_VIEW else None
        if group is None:
            return False
        group.names.discard(vpath)
        if self._vpath_of(inode) == vpath:
            self._entries[inode] = _entry(view, min(group.names))
        if len(group.names) < 2:
            del self._links[inode]
        for name in group.names:  # one link fewer, in each of their views
            self.file_changed(name)
        return True

    # -- views --------------------------------------------------------------------------

    def _all_views(self) -> Iterator[str]:
        yield PROJECTS_VIEW
        for category in CATEGORIES:
            yield type_view(category)
        for location_id in self.locations:
            yield location_view(location_id)

    def top_level(self, vpath: str) -> list[str] | None:
        """Children of the fixed directories (root, types/, locations/), or None."""
        if vpath == "":
            return [PROJECTS, TYPES, LOCATIONS, STATUS_DIR]
        if vpath == TYPES:
            return [c for c in CATEGORIES if self.dirs[type_view(c)][""].children]
        if vpath == LOCATIONS:
            return list(self.locations.values())
        return None

    def add_location(self, location_id: str, name: str) -> None:
        """A location added (or renamed) while mounted: `locations/<name>/` shows it."""
        old = self.locations.get(location_id)
        if old is not None and old != name:
            self._location_gone(location_id, old)
        self.locations[location_id] = name
        self._dir(location_view(location_id), "")

    def remove_location(self, location_id: str) -> None:
        """A location removed while mounted (its files already removed or re-indexed)."""
        name = self.locations.pop(location_id, None)
        if name is not None:
            self._location_gone(location_id, name)
        self.dirs.pop(location_view(location_id), None)

    def _location_gone(self, location_id: str, name: str) -> None:
        """`locations/<name>` no longer leads to the location's view."""
        parent_inode = self._inode_table("").get(LOCATIONS)
        inode = self._inode_table(location_view(location_id)).get("")
        if self.observer is not None and parent_inode is not None and inode is not None:
            self.observer.name_gone("", f"{LOCATIONS}/{name}", parent_inode, inode)

    def location_id_named(self, name: str) -> str | None:
        return next((lid for lid, n in self.locations.items() if n == name), None)

    def _dir(self, view: str, vpath: str) -> DirNode:
        tree = self.dirs.setdefault(view, {})
        node = tree.get(vpath)
        if node is None:
            node = tree[vpath] = DirNode(mtime_ns=self.now_ns)
            if vpath:
                parent, name = _split(vpath)
                self._dir(view, parent).children.add(name)
        return node

    def _unlink_from(self, view: str, vpath: str) -> None:
        """Remove a name from its parent, pruning directories that only existed because they
        held it."""
        tree = self.dirs.get(view)
        if tree is None:
            return
        parent, name = _split(vpath)
        while True:
            node = tree.get(parent)
            if node is None:
                return
            if name in node.children:
                node.children.discard(name)
                self._name_gone(view, parent, name)
            if node.children or node.explicit or parent == "":
                return
            del tree[parent]
            parent, name = _split(parent)

    def is_dir(self, view: str, vpath: str) -> bool:
        return vpath in self.dirs.get(view, {})

    def children(self, view: str, vpath: str) -> list[str]:
        node = self.dirs.get(view, {}).get(vpath)
        return sorted(node.children) if node else []

    def _views_of(self, vpath: str, node: FileNode) -> list[str]:
        views = [PROJECTS_VIEW, type_view(node.category)]
        views += [location_view(lid) for lid, r in node.replicas.items()
                  if r.state != "missing" and lid in self.locations]
        return views

    # -- files --------------------------------------------------------------------------

    def add_file(self, node: FileNode) -> str:
        """Add (or replace) a file; returns its projects-view path."""
        vpath = view_path(node.logical_path)
        replaced = self.files.get(vpath)
        replacing = replaced is not None
        if replaced is not None:
            self.remove_file(vpath, keep_inode=True)
            node.inode = replaced.inode
        self.files[vpath] = node
        parent, name = _split(vpath)  # one string for the name in every view
        for view in self._views_of(vpath, node):
            self._dir(view, parent).children.add(name)
        if replacing:
            self.file_changed(vpath)
        return vpath

    def load(self, chunks: Iterable[tuple[NamespaceCodes, list[tuple[Any, ...]]]]) -> None:
        """Add the files of `Catalog.namespace_rows` (a mount's start), held as their rows
        (`FileTable`). Names are gathered by directory and by what decides their other views
        (category, and the location of a copy that is not missing); each directory's set in
        each view then grows by one update per group, not a look-up and an add per name and
        view."""
        files = self.files
        groups: dict[tuple[str, str, str | None], list[str]] = {}
        others: dict[str, list[tuple[Any, ...]]] = {}  # logical path -> rows
        for codes, rows in chunks:
            hold = files.holder(codes)
            categories = [category for category, _ in codes.media]
            locations = codes.locations
            missing = codes.states.index("missing") + 1 if "missing" in codes.states else 0
            for row in rows:
                logical = row[1]
                vpath = logical if "/" in logical else view_path(logical)
                held = hold(vpath, row)
                if held is not row:
                    if files.logical_path_held(held) != logical:
                        # A root file and a file of `_unsorted/` with its name: one shows
                        # (the last met, as when added one by one).
                        others.setdefault(logical, []).append(row)
                        continue
                    files.add_row(vpath, row)
                media = row[7]
                cut = vpath.rfind("/")
                key = (vpath[:cut],
                       classify_name(logical).category if media is None else categories[media - 1],
                       None if row[5] == missing else locations[row[0] - 1])
                names = groups.get(key)
                if names is None:
                    groups[key] = [vpath[cut + 1:]]
                else:
                    names.append(vpath[cut + 1:])
        for (parent, category, location_id), names in groups.items():
            self._dir(PROJECTS_VIEW, parent).children.update(names)
            self._dir(type_view(category), parent).children.update(names)
            if location_id in self.locations:
                self._dir(location_view(location_id), parent).children.update(names)
        for rows in others.values():
            self.add_file(files.node_of(rows))

    def remove_file(self, vpath: str, keep_inode: bool = False) -> FileNode | None:
        """Remove a file from every view. With `keep_inode`, its inodes are left for the file
        that replaces it (the caller gives that one `FileNode.inode`)."""
        node = self.files.get(vpath)
        if node is None:
            return None
        for view in self._views_of(vpath, node):
            self._unlink_from(view, vpath)  # while it is in `files`: the observer asks
            if not keep_inode:
                inode = (node.inode if view == PROJECTS_VIEW
                         else self._inode_table(view).pop(vpath, None))
                if inode is not None and not self._drop_name(view, inode, vpath):
                    self._entries[inode] = None
        del self.files[vpath]
        if not keep_inode:
            node.inode = None  # should it be added again, it is a new file
        return node

    def reindex(self, vpath: str, before: list[str]) -> None:
        """A file's category or replicas changed: move it between views. `before` is what
        views_of returned before the change."""
        node = self.files[vpath]
        after = self._views_of(vpath, node)
        parent, name = _split(vpath)
        for view in before:
            if view not in after:
                self._unlink_from(view, vpath)
        for view in after:
            if view not in before:
                self._dir(view, parent).children.add(name)
        self.file_changed(vpath)

    def views_of(self, vpath: str) -> list[str]:
        return self._views_of(vpath, self.files[vpath])

    def rename_file(self, old: str, new: str, media: tuple[str, str] | None = None) -> None:
        """Move a file in every view; it keeps its inodes. A file at `new` is replaced.
        `media` (category, MIME type) is the file's type under its new name."""
        node = self.files[old]
        views = self._views_of(old, node)
        replaced = self.remove_file(new) if new in self.files else None
        for view in views:
            self._unlink_from(view, old)  # while it is in `files`: the observer asks
            if view != PROJECTS_VIEW:
                self._move_inode(view, old, new)
        del self.files[old]
        if node.inode is not None:
            self._file_moved(node.inode, old, new)
        node.logical_path = logical_path_of(new)
        if media is not None:
            node.category, node.mime_type = media
        self.files[new] = node
        parent, name = _split(new)
        for view in self._views_of(new, node):
            self._dir(view, parent).children.add(name)
        del replaced

    def rename_dir(self, old: str, new: str) -> None:
        """Move a directory with everything below it, in every view (walking its subtree in
        each: the work is that of what it holds, never of every file)."""
        # Gathered before anything moves: moving its files prunes the directories they
        # leave, whose inodes must move all the same.
        below = {view: [old, *self._subtree(view, old)[0]]
                 for view, tree in self.dirs.items() if old in tree}
        for vp in self._subtree(PROJECTS_VIEW, old)[1]:
            self.rename_file(vp, new + vp[len(old):])
        for view, dirs in below.items():
            tree = self.dirs[view]
            for vp in dirs:
                node = tree.get(vp)
                if node is None or not node.explicit:
                    continue
                del tree[vp]
                self._unlink_from(view, vp)
                target = self._dir(view, new + vp[len(old):])
                target.explicit, target.mode = True, node.mode
            if old in tree and not tree[old].children:
                del tree[old]
                self._unlink_from(view, old)
            for vp in dirs:
                self._move_inode(view, vp, new + vp[len(old):])

    def add_existing_dirs(self, location_id: str, found: Iterable[DirInfo]) -> None:
        """Directories found on a location's disk: shown (empty or not) in projects/ and in
        that location's view, with the mode, owner and mtime they have there (in projects/,
        those of the first location that has it). Files at a location's root are the
        project `_unsorted`, so its top-level directories are projects as they are."""
        for info in found:
            for view in (PROJECTS_VIEW, location_view(location_id)):
                known = self.dirs.get(view, {}).get(info.key)
                # A directory shown only as the parent of files (from the catalog) is on
                # disk too: it must outlive its last file, and rmdir must find it.
                if known is None or not known.explicit:
                    node = self._dir(view, info.key)
                    shown = (node.mode, node.owner, node.mtime_ns)
                    node.explicit = True
                    node.mode = stat.S_IFDIR | stat.S_IMODE(info.mode)
                    node.owner = (info.uid, info.gid)
                    node.mtime_ns = info.mtime_ns
                    inode = self._inode_table(view).get(info.key)
                    if (self.observer is not None and inode is not None
                            and shown != (node.mode, node.owner, node.mtime_ns)):
                        self.observer.attrs_changed(inode)

    def make_dir(self, view: str, vpath: str, mode: int,
                 owner: tuple[int, int] | None = None) -> DirNode:
        node = self._dir(view, vpath)
        node.explicit = True
        node.mode = stat.S_IFDIR | (mode & 0o7777)
        node.owner = owner or node.owner
        return node

    def remove_dir(self, view: str, vpath: str) -> None:
        tree = self.dirs.get(view, {})
        if vpath in tree:
            del tree[vpath]
            self._unlink_from(view, vpath)
        inode = self._inode_table(view).pop(vpath, None)
        if inode is not None:
            self._entries[inode] = None

    def files_under(self, vpath: str) -> list[str]:
        """The files below the projects/ directory `vpath`."""
        return self._subtree(PROJECTS_VIEW, vpath)[1]

    def _subtree(self, view: str, vpath: str) -> tuple[list[str], list[str]]:
        """(directories, files) below the directory `vpath` of `view`, found by walking it
        (the files of a view are linked into its tree: a file leaves its directory's
        children only when it leaves the view)."""
        tree = self.dirs.get(view, {})
        files = self.files
        found_dirs: list[str] = []
        found_files: list[str] = []
        pending = [vpath]
        while pending:
            parent = pending.pop()
            directory = tree.get(parent)
            if directory is None:
                continue
            prefix = f"{parent}/" if parent else ""
            for name in directory.children:
                child = prefix + name
                # Both, where one location has a file and another a directory of that name.
                if child in tree:
                    found_dirs.append(child)
                    pending.append(child)
                if child in files:
                    found_files.append(child)
        return found_dirs, found_files


def _entry(view: str, vpath: str) -> Entry | str:
    """What `_entries` holds for an inode."""
    return vpath if view == PROJECTS_VIEW else Entry(view, vpath)


def _split(vpath: str) -> tuple[str, str]:
    parent, name = posixpath.split(vpath)
    return parent, name
