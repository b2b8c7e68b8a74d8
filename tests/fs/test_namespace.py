"""The mount's in-memory namespace, driven directly (no FUSE)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alicefs.backends.base import DirInfo
from alicefs.catalog import NamespaceCodes
from alicefs.fs import namespace as namespace_module
from alicefs.fs.namespace import (
    PROJECTS_VIEW,
    FileNode,
    Namespace,
    Replica,
    Replicas,
    location_view,
    logical_path_of,
    type_view,
    view_path,
)


def node(path: str, category: str = "image", locations: tuple[str, ...] = ("a",)) -> FileNode:
    return FileNode(path, {loc: Replica(1, 1) for loc in locations}, category, "image/png")


def check(ns: Namespace) -> None:
    """Consistency: every file is listed in its views' directories and every inode maps back."""
    for vpath in ns.files:
        for view in ns.views_of(vpath):
            parent, _, name = vpath.rpartition("/")
            assert name in ns.dirs[view][parent].children, (view, vpath)
    for tree in ns.dirs.values():
        for vpath, directory in tree.items():
            for name in directory.children:
                child = f"{vpath}/{name}" if vpath else name
                assert child in tree or child in ns.files, child
    file_inodes = [(PROJECTS_VIEW, vp, n.inode) for vp, n in ns.files.items()
                   if n.inode is not None]
    for view, vpath, inode in file_inodes + [(v, vp, i) for v, table in ns._inodes.items()
                                             for vp, i in table.items()]:
        entry = ns.entry(inode)
        group = ns.link_group(vpath) if view == PROJECTS_VIEW else None
        if group is None:
            assert (entry.view, entry.vpath) == (view, vpath)
        else:  # hard links: the inode stands for one of the names
            assert entry.view == view and vpath in group.names and entry.vpath in group.names
            assert all(ns.inode_of(view, name) == inode for name in group.names)


def test_view_paths_for_root_files():
    assert view_path("x.png") == "_unsorted/x.png"
    assert view_path("p/x.png") == "p/x.png"
    assert logical_path_of("_unsorted/x.png") == "x.png"
    assert logical_path_of("_unsorted/sub/x.png") == "_unsorted/sub/x.png"


def test_files_show_in_projects_types_and_locations():
    ns = Namespace({"a": "A", "b": "B"}, 0, 0, 1)
    ns.add_file(node("p/sub/x.png", locations=("a", "b")))
    ns.add_file(node("p/y.mp4", category="video", locations=("b",)))
    assert ns.children(PROJECTS_VIEW, "p") == ["sub", "y.mp4"]
    assert ns.children(type_view("image"), "p") == ["sub"]
    assert ns.children(type_view("video"), "p") == ["y.mp4"]
    assert ns.children(location_view("a"), "p") == ["sub"]
    assert ns.children(location_view("b"), "p") == ["sub", "y.mp4"]
    check(ns)


def test_rename_keeps_inodes_and_prunes_empty_directories():
    ns = Namespace({"a": "A"}, 0, 0, 1)
    ns.add_file(node("p/sub/x.png"))
    inode = ns.inode_of(PROJECTS_VIEW, "p/sub/x.png")
    type_inode = ns.inode_of(type_view("image"), "p/sub/x.png")
    ns.rename_file("p/sub/x.png", "q/x.png")
    assert ns.inode_of(PROJECTS_VIEW, "q/x.png") == inode
    assert ns.inode_of(type_view("image"), "q/x.png") == type_inode
    assert not ns.is_dir(PROJECTS_VIEW, "p/sub") and not ns.is_dir(PROJECTS_VIEW, "p")
    assert ns.files["q/x.png"].logical_path == "q/x.png"
    check(ns)


def test_rename_changes_category_with_the_name():
    ns = Namespace({"a": "A"}, 0, 0, 1)
    ns.add_file(node("p/x.png.tmp", category="other"))
    ns.rename_file("p/x.png.tmp", "p/x.png", ("image", "image/png"))
    assert ns.children(type_view("image"), "p") == ["x.png"]
    assert not ns.is_dir(type_view("other"), "p")
    check(ns)


def test_directory_rename_moves_everything_below():
    ns = Namespace({"a": "A"}, 0, 0, 1)
    for path in ("p/d/1.png", "p/d/e/2.png", "p/other.png"):
        ns.add_file(node(path))
    ns.make_dir(PROJECTS_VIEW, "p/d/empty", 0o755)
    dir_inode = ns.inode_of(PROJECTS_VIEW, "p/d")
    deep_inode = ns.inode_of(PROJECTS_VIEW, "p/d/e/2.png")
    ns.rename_dir("p/d", "p/renamed")
    assert sorted(ns.files) == ["p/other.png", "p/renamed/1.png", "p/renamed/e/2.png"]
    assert ns.inode_of(PROJECTS_VIEW, "p/renamed") == dir_inode
    assert ns.inode_of(PROJECTS_VIEW, "p/renamed/e/2.png") == deep_inode
    assert ns.is_dir(PROJECTS_VIEW, "p/renamed/empty")
    assert not ns.is_dir(PROJECTS_VIEW, "p/d")
    check(ns)


class NotWalked(dict):
    """A table that must not be walked whole (each directory rename did, for every file,
    on the trio thread): looking up is fine, iterating fails."""

    def _refuse(self, *args, **kwargs):
        raise AssertionError("walked every entry")

    __iter__ = keys = items = values = _refuse  # type: ignore[assignment]


def test_a_directory_rename_walks_only_what_it_holds():
    ns = Namespace({"a": "A", "b": "B"}, 0, 0, 1)
    for path in ("p/d/1.png", "p/d/e/2.txt", "p/d/e/f/3.png", "p/other.png", "q/x.png"):
        ns.add_file(node(path, "text" if path.endswith(".txt") else "image", ("a", "b")))
    ns.make_dir(PROJECTS_VIEW, "p/d/empty", 0o755)
    ns.add_existing_dirs("b", [DirInfo("p/d/e/f", 0o700, 5, 6, 7)])
    for view in (PROJECTS_VIEW, type_view("image"), location_view("b")):  # the kernel's
        for vpath in ("p/d", "p/d/e", "p/d/e/f", "p/d/e/f/3.png", "p/other.png"):
            if ns.is_dir(view, vpath) or vpath in ns.files:
                ns.inode_of(view, vpath)
    inodes = {(view, vp): ino for view, table in ns._inodes.items() for vp, ino in table.items()}
    deep = ns.inode_of(PROJECTS_VIEW, "p/d/e/f/3.png")
    ns.files = NotWalked(ns.files)
    ns._inodes = {view: NotWalked(table) for view, table in ns._inodes.items()}
    assert sorted(ns.files_under("p/d")) == ["p/d/1.png", "p/d/e/2.txt", "p/d/e/f/3.png"]
    ns.rename_dir("p/d", "p/r")
    ns.files = dict(dict.items(ns.files))
    ns._inodes = {view: dict(dict.items(table)) for view, table in ns._inodes.items()}
    assert sorted(ns.files) == ["p/other.png", "p/r/1.png", "p/r/e/2.txt", "p/r/e/f/3.png",
                                "q/x.png"]
    for (view, vpath), inode in inodes.items():  # each kept its inode under the new name
        renamed = "p/r" + vpath[3:] if vpath.startswith("p/d") else vpath
        assert ns.inode_of(view, renamed) == inode, (view, vpath)
    assert ns.inode_of(PROJECTS_VIEW, "p/r/e/f/3.png") == deep
    assert ns.is_dir(PROJECTS_VIEW, "p/r/empty") and not ns.is_dir(PROJECTS_VIEW, "p/d")
    assert ns.dirs[location_view("b")]["p/r/e/f"].mode & 0o777 == 0o700
    assert not any(vp.startswith("p/d") for tree in ns.dirs.values() for vp in tree)
    check(ns)


def test_replacing_rename_and_removal():
    ns = Namespace({"a": "A"}, 0, 0, 1)
    ns.add_file(node("p/new.txt", category="text"))
    ns.add_file(node("p/old.txt", category="text"))
    ns.rename_file("p/new.txt", "p/old.txt")
    assert list(ns.files) == ["p/old.txt"]
    ns.remove_file("p/old.txt")
    assert ns.files == {} and not ns.is_dir(PROJECTS_VIEW, "p")
    check(ns)


def test_missing_replicas_leave_the_location_view():
    ns = Namespace({"a": "A", "b": "B"}, 0, 0, 1)
    file = node("p/x.png", locations=("a", "b"))
    ns.add_file(file)
    before = ns.views_of("p/x.png")
    file.replicas["b"].state = "missing"
    ns.reindex("p/x.png", before)
    assert ns.children(location_view("b"), "p") == []
    assert ns.children(location_view("a"), "p") == ["x.png"]
    check(ns)


def test_hard_links_share_an_inode_through_renames_and_removals():
    ns = Namespace({"a": "ssd"}, 0, 0, 0)
    ns.add_file(node("p/x.png"))
    inode = ns.inode_of(PROJECTS_VIEW, "p/x.png")
    ns.add_file(node("p/y.txt", "document"))
    ns.add_link("p/x.png", "p/y.txt", {"a": 42})
    ns.add_file(node("q/z.png"))
    ns.add_link("p/x.png", "q/z.png", {"a": 42})
    assert ns.inode_of(PROJECTS_VIEW, "q/z.png") == inode
    assert ns.link_count("p/y.txt") == 3 and ns.other_names("p/x.png") == ["p/y.txt", "q/z.png"]
    check(ns)
    ns.rename_file("p/x.png", "p/w.png")  # the name the inode stands for moves with it
    assert ns.entry(inode).vpath == "p/w.png" and ns.link_count("p/w.png") == 3
    check(ns)
    ns.remove_file("p/w.png")  # the inode now stands for another name
    assert ns.entry(inode).vpath in ("p/y.txt", "q/z.png") and ns.link_count("q/z.png") == 2
    check(ns)
    ns.add_file(node("p/other.png"))
    ns.rename_file("p/other.png", "p/y.txt")  # a name replaced by another file
    assert ns.entry(inode).vpath == "q/z.png" and ns.link_count("q/z.png") == 1
    assert ns.inode_of(PROJECTS_VIEW, "p/y.txt") != inode
    check(ns)
    ns.add_file(node("r/v.png"))
    ns.add_link("q/z.png", "r/v.png", {"a": 42})
    ns.split_link("q/z.png")  # replaced behind the mount's back
    assert ns.link_count("r/v.png") == 1 and ns.entry(inode).vpath == "r/v.png"
    assert ns.inode_of(PROJECTS_VIEW, "q/z.png") != inode
    check(ns)


def test_loading_files_in_bulk_builds_what_adding_them_one_by_one_does():
    def nodes() -> list[FileNode]:
        return [node("p/a/x.png"), node("p/b/y.txt", "text", ("a", "b")), node("root.png"),
                node("q/z.mp4", "video", ("b",)), node("p/a/w.png", "image", ("a", "gone")),
                node("x.png"), node("_unsorted/x.png", "text"),  # one projects path
                node("q/y.mp4", "video", ("a",))]  # alone in its directory
    assert_bulk_loads_as_one_by_one(nodes)


def catalog_rows(files: list[FileNode]) -> list[tuple[NamespaceCodes, list[tuple[Any, ...]]]]:
    """What `Catalog.namespace_rows` gives for `files` (of distinct logical paths), in one
    chunk: their rows interleaved, the first replica of each file before any second."""
    locations = tuple(sorted({lid for f in files for lid in f.replicas}))
    states = ("present", "missing", "stale")
    media = tuple(sorted({(f.category, f.mime_type) for f in files}))
    rows = [(locations.index(lid) + 1, f.logical_path, r.size, r.mtime_ns, r.content_hash,
             states.index(r.state) + 1, r.change_token,
             media.index((f.category, f.mime_type)) + 1, list(f.tags) or None, f.quality)
            for rank in range(max((len(f.replicas) for f in files), default=0))
            for f in files for lid, r in list(f.replicas.items())[rank:rank + 1]]
    return [(NamespaceCodes(locations, states, media), rows)]


def assert_bulk_loads_as_one_by_one(nodes: Callable[[], list[FileNode]]) -> None:
    """Namespace.load leaves the files and every view's directories as add_file does, file
    after file (`nodes` makes a fresh set each time: adding gives them inodes)."""
    one_by_one = Namespace({"a": "ssd", "b": "hdd"}, 0, 0, 0)
    for n in nodes():
        one_by_one.add_file(n)
    bulk = Namespace({"a": "ssd", "b": "hdd"}, 0, 0, 0)
    bulk.load(catalog_rows(nodes()))
    check(bulk)

    def files_of(ns: Namespace) -> dict[str, tuple[object, ...]]:
        return {vp: (n.logical_path, n.category, n.mime_type, dict(n.replicas.items()))
                for vp, n in ns.files.items()}
    assert files_of(bulk) == files_of(one_by_one)

    def tree_of(ns: Namespace) -> dict[str, dict[str, list[str]]]:
        return {view: {vp: sorted(d.children) for vp, d in tree.items()}
                for view, tree in ns.dirs.items()}
    assert tree_of(bulk) == tree_of(one_by_one)


random_nodes = st.lists(st.tuples(
    st.sampled_from(["p/a/x.png", "p/a/y.png", "p/b/x.png", "q/x.png", "x.png", "y.png",
                     "_unsorted/x.png", "_unsorted/y.png", "_unsorted/sub/x.png"]),
    st.sampled_from(["image", "video", "text"]),
    # location -> missing? ("gone" is not a location of the namespace)
    st.dictionaries(st.sampled_from(["a", "b", "gone"]), st.booleans(), min_size=1,
                    max_size=3)), max_size=12)


@given(random_nodes)
def test_bulk_loading_matches_adding_one_by_one_whatever_the_files(specs):
    """Files with one copy or several, missing copies, unknown locations, and root files
    whose projects path a file of `_unsorted/` also has."""
    merged: dict[str, tuple[str, dict[str, bool]]] = {}  # as cataloged: a row per location
    for path, category, replicas in specs:
        merged.setdefault(path, (category, {}))[1].update(replicas)

    def nodes() -> list[FileNode]:
        return [FileNode(path, {lid: Replica(1, 1, state="missing" if missing else "present")
                                for lid, missing in replicas.items()}, category, "x/y")
                for path, (category, replicas) in merged.items()]
    assert_bulk_loads_as_one_by_one(nodes)


class Recorder:
    """An observer that keeps what the kernel would be told."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.names: list[tuple[str, str, int]] = []  # (view, path, inode)
        self.attrs: list[tuple[str, str]] = []  # (view, path)

    def name_gone(self, view: str, vpath: str, parent_inode: int, inode: int) -> None:
        parent, _, _ = vpath.rpartition("/")
        assert self.ns.inode_of(view, parent) == parent_inode
        self.names.append((view, vpath, inode))

    def attrs_changed(self, inode: int) -> None:
        entry = self.ns.entry(inode)
        self.attrs.append((entry.view, entry.vpath))

    def gone(self) -> list[tuple[str, str]]:
        """The names really gone (as KernelCache tells the kernel), and forget them."""
        gone = sorted({(view, vpath) for view, vpath, inode in self.names
                       if not self.ns.shows(view, vpath, inode)})
        self.names.clear()
        return gone


def test_the_observer_hears_of_what_the_kernel_was_given_and_changed():
    ns = Namespace({"a": "A", "b": "B"}, 0, 0, 1)
    ns.add_file(node("p/sub/x.png", locations=("a", "b")))
    ns.add_file(node("p/y.png"))
    ns.observer = seen = Recorder(ns)
    image, video, a, b = (type_view("image"), type_view("video"), location_view("a"),
                          location_view("b"))
    # Only what the kernel looked up (what has an inode) can be in its cache.
    for view in (PROJECTS_VIEW, image, a, b):
        ns.inode_of(view, "")
        ns.inode_of(view, "p")
    for view in (PROJECTS_VIEW, image, b):
        ns.inode_of(view, "p/sub")
        ns.inode_of(view, "p/sub/x.png")

    # Within its directory: the directory stays (emptied for a moment only).
    ns.rename_file("p/sub/x.png", "p/sub/w.png")
    assert seen.gone() == sorted([(PROJECTS_VIEW, "p/sub/x.png"), (image, "p/sub/x.png"),
                                  (b, "p/sub/x.png")])  # not in A: never looked up there
    for view in (PROJECTS_VIEW, image, b):
        ns.inode_of(view, "p/sub/w.png")
    ns.inode_of(video, "")
    ns.rename_file("p/sub/w.png", "p/sub/z.mp4", media=("video", "video/mp4"))
    assert seen.gone() == sorted([(PROJECTS_VIEW, "p/sub/w.png"), (image, "p/sub"),
                                  (image, "p/sub/w.png"), (b, "p/sub/w.png")])

    file = ns.files["p/sub/z.mp4"]
    ns.inode_of(b, "p/sub/z.mp4")
    before = ns.views_of("p/sub/z.mp4")
    file.replicas["b"].state = "missing"
    ns.reindex("p/sub/z.mp4", before)
    assert seen.gone() == [(b, "p"), (b, "p/sub"), (b, "p/sub/z.mp4")]  # B held no more
    assert seen.attrs == [(PROJECTS_VIEW, "p/sub/z.mp4")]  # the others have no inode yet
    seen.attrs.clear()
    ns.file_changed("p/sub/z.mp4", but=PROJECTS_VIEW)
    assert seen.attrs == []

    ns.remove_location("b")
    assert seen.gone() == []  # locations/ itself was never looked up
    ns.inode_of("", "locations")
    ns.remove_location("a")
    assert seen.gone() == [("", "locations/A")]
    check(ns)


def test_a_replaced_file_keeps_its_inodes_and_a_removed_one_does_not():
    ns = Namespace({"a": "A"}, 0, 0, 1)
    ns.add_file(node("p/x.png"))
    views = ns.views_of("p/x.png")
    inodes = [ns.inode_of(view, "p/x.png") for view in views]
    ns.add_file(node("p/x.png"))  # new content from a scan: the same file to the kernel
    assert [ns.inode_of(view, "p/x.png") for view in views] == inodes
    check(ns)
    removed = ns.remove_file("p/x.png")
    assert removed is not None and removed.inode is None
    assert all(ns.entry(inode) is None for inode in inodes)
    ns.add_file(removed)  # added again: another file, with new numbers
    assert ns.inode_of(PROJECTS_VIEW, "p/x.png") not in inodes
    check(ns)


def test_a_renamed_file_keeps_its_inode_and_leaves_its_old_name():
    ns = Namespace({"a": "A"}, 0, 0, 1)
    ns.add_file(node("p/x.png"))
    inode = ns.inode_of(PROJECTS_VIEW, "p/x.png")
    ns.rename_file("p/x.png", "q/y.png")
    assert ns.inode_of(PROJECTS_VIEW, "q/y.png") == inode
    assert ns.entry(inode).vpath == "q/y.png" and not ns.shows(PROJECTS_VIEW, "p/x.png", inode)
    ns.rename_dir("q", "r")
    assert ns.inode_of(PROJECTS_VIEW, "r/y.png") == inode and ns.entry(inode).vpath == "r/y.png"
    check(ns)


def test_an_inode_never_given_out_is_unknown():
    ns = Namespace({"a": "A"}, 0, 0, 1)
    ns.add_file(node("p/x.png"))
    inode = ns.inode_of(PROJECTS_VIEW, "p/x.png")
    assert ns.entry(inode + 1) is None and ns.entry(10**12) is None and ns.entry(0) is None


HASH = "5bc7993927bc891ce3dcb784dcd1f3108b06345898d9f24d20927a72e3f3c0e8"


@given(st.text(alphabet="0123456789abcdefABCDEFxg_ +-\u0663", min_size=62, max_size=66))
def test_a_replica_gives_back_any_hash_it_was_given(content_hash):
    assert Replica(1, 2, content_hash).content_hash == content_hash


@pytest.mark.parametrize("content_hash", [
    HASH, "0" * 64, None, "", "h1", HASH.upper(), "+" + HASH[1:], HASH[:31] + "_" + HASH[32:],
    " " + HASH[1:], "0x" + HASH[2:], "\u0663" + HASH[1:], "g" + HASH[1:]])
def test_a_replica_gives_back_the_hash_it_was_given(content_hash):
    replica = Replica(1, 2, content_hash)
    assert replica.content_hash == content_hash
    # Held as its number when that is exact: 64 lowercase hex digits.
    assert (type(replica._digest) is int) == (content_hash in (HASH, "0" * 64))
    replica.content_hash = HASH
    assert replica.content_hash == HASH
    copy = replica.copy()
    assert copy == replica and copy is not replica
    copy.state = "stale"
    assert copy != replica and replica.state == "present"


OPERATIONS = st.lists(st.tuples(
    st.sampled_from(["set", "del", "pop", "setdefault", "get", "in"]),
    st.sampled_from(["a", "b", "c"]), st.integers(0, 3)), max_size=30)


@given(OPERATIONS)
def test_replicas_behave_as_a_dict(operations):
    """Whatever is done to a file's replicas gives what a dict would (the mapping holds one
    copy in slots and more in a dict)."""
    replicas, expected = Replicas(), {}
    for operation, key, size in operations:
        replica = Replica(size, 0)
        if operation == "set":
            replicas[key] = replica
            expected[key] = replica
        elif operation == "del":
            if key in expected:
                del replicas[key]
                del expected[key]
            else:
                with pytest.raises(KeyError):
                    del replicas[key]
        elif operation == "pop":
            assert replicas.pop(key, None) == expected.pop(key, None)
        elif operation == "setdefault":
            assert replicas.setdefault(key, replica) == expected.setdefault(key, replica)
        elif operation == "get":
            assert replicas.get(key) == expected.get(key)
        else:
            assert (key in replicas) == (key in expected)
        assert len(replicas) == len(expected) and bool(replicas) == bool(expected)
        assert list(replicas) == list(expected) and replicas == expected
        assert list(replicas.items()) == list(expected.items())
        assert list(replicas.values()) == list(expected.values())
        assert Replicas(expected) == expected and dict(replicas) == expected
    for key in "abc":
        if key not in expected:
            with pytest.raises(KeyError):
                replicas[key]


def test_a_file_node_made_with_a_dict_holds_replicas():
    file = node("p/x.png", locations=("a", "b"))
    assert type(file.replicas) is Replicas and set(file.replicas) == {"a", "b"}


def test_the_namespace_loads_from_the_catalog_what_it_holds(tmp_path):
    """Every replica's values, hashes of both kinds, states, media types and metadata come
    back as they were cataloged (the rows come coded and chunked)."""
    from alicefs.catalog import Catalog, FileMeta, PosixAttrs
    from alicefs.catalog import Replica as CatalogReplica
    from alicefs.fs.state import load_namespace

    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_replicas([
            CatalogReplica("a", "p/x.png", 10, 20, HASH, 3, None),
            CatalogReplica("b", "p/x.png", 10, 30, "odd-hash", None, "etag"),
            CatalogReplica("a", "root.txt", 1, 2, None),
            CatalogReplica("b", "p/gone.mp4", 5, 6, HASH.upper())])
        catalog.mark_missing("b", ["p/gone.mp4"])
        catalog.put_metadata([FileMeta("p/x.png", "image", "image/png", ("sky",), "user", 4,
                                       "user")])
        catalog.put_posix_attrs([PosixAttrs("root.txt", 0o600, 1234, 5678)])
        ns = Namespace({"a": "A", "b": "B"}, 0, 0, 1)
        load_namespace(ns, catalog)
    x = ns.files["p/x.png"]
    assert x.replicas["a"] == Replica(10, 20, HASH)
    assert x.replicas["b"] == Replica(10, 30, "odd-hash", change_token="etag")
    assert (x.category, x.mime_type, x.tags, x.quality, x.ctime_ns) == (
        "image", "image/png", ("sky",), 4, 30)
    root = ns.files["_unsorted/root.txt"]
    assert (root.category, root.mode & 0o777, root.uid, root.gid) == ("text", 0o600, 1234, 5678)
    gone = ns.files["p/gone.mp4"].replicas["b"]
    assert (gone.state, gone.content_hash, ns.files["p/gone.mp4"].category) == (
        "missing", HASH.upper(), "video")
    check(ns)


def test_locate_answers_as_entry_does():
    ns = Namespace({"a": "A"}, 0, 0, 1)
    ns.add_file(node("p/x.png"))
    for view in ns.views_of("p/x.png"):
        inode = ns.inode_of(view, "p/x.png")
        entry = ns.entry(inode)
        assert ns.locate(inode) == (entry.view, entry.vpath) == (view, "p/x.png")
    removed = ns.inode_of(PROJECTS_VIEW, "p/x.png")
    ns.remove_file("p/x.png")
    assert ns.locate(removed) is None and ns.locate(10**9) is None


def test_a_single_replica_is_the_sole_one():
    assert Replicas({"a": Replica(1, 1)}).sole() == Replica(1, 1)
    assert Replicas({"a": Replica(1, 1), "b": Replica(2, 2)}).sole() is None
    assert Replicas().sole() is None


def test_nodes_made_from_held_rows_leave_the_collectors_generations(monkeypatch):
    """Every full collection walks what the generations hold: nodes made at runtime (a
    first listing of a large library) are frozen out of them a batch at a time."""
    monkeypatch.setattr(namespace_module, "NODES_PER_FREEZE", 3)
    ns = Namespace({"a": "A"}, 0, 0, 1)
    ns.load(catalog_rows([node(f"p/{i}.png") for i in range(7)]))
    before = gc.get_freeze_count()
    try:
        made = [ns.files[f"p/{i}.png"] for i in range(7)]
        assert gc.get_freeze_count() > before
        tracked = {id(obj) for obj in gc.get_objects()}
        assert [id(n) in tracked for n in made] == [False] * 6 + [True]
    finally:
        gc.unfreeze()


def test_rows_coded_otherwise_are_refused_where_rows_are_held():
    ns = Namespace({"a": "A", "b": "B"}, 0, 0, 1)
    ns.load(catalog_rows([node("p/x.png")]))
    with pytest.raises(ValueError):
        ns.load(catalog_rows([node("p/y.png", locations=("b",))]))
    assert list(ns.files["p/x.png"].replicas) == ["a"]
