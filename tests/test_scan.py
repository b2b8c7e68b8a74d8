"""The pure planning of scans: diffing, sidecars, metadata precedence."""

from __future__ import annotations

from alicefs.backends.base import ObjectInfo
from alicefs.catalog import FileMeta
from alicefs.media import classify_name
from alicefs.scan import (
    ListingComparer,
    companions_of,
    is_unchanged,
    merge_metadata,
    paths_needing_metadata,
    project_of,
    sidecars_for,
    stem_index,
)
from alicefs.xmp import XmpMetadata


def sig(size=10, mtime=100, inode=1, token=None, state="present", content_hash="h"):
    return (size, mtime, inode, token, state, content_hash)


def test_project_of():
    assert project_of("proj/a/b.png") == "proj"
    assert project_of("root.png") == "_unsorted"


def test_unchanged_needs_same_size_mtime_inode_and_a_hash():
    info = ObjectInfo("p/a", 10, 100, 1)
    assert is_unchanged(sig(), info)
    assert not is_unchanged(sig(mtime=101), info)  # same size, touched in place
    assert not is_unchanged(sig(inode=2), info)  # replaced by rename
    assert not is_unchanged(sig(size=11), info)
    assert not is_unchanged(sig(content_hash=None), info)  # never finished hashing


def test_object_stores_compare_change_tokens():
    assert is_unchanged(sig(inode=None, token="etag1"), ObjectInfo("p/a", 10, 5, None, "etag1"))
    assert not is_unchanged(sig(inode=None, token="etag1"),
                            ObjectInfo("p/a", 10, 100, None, "etag2"))


def test_comparer_classifies_a_listing():
    known = {"p/same": sig(), "p/changed": sig(), "p/gone": sig(), "p/back": sig(state="missing"),
             "p/already-missing": sig(state="missing")}
    comparer = ListingComparer(known)
    to_read = comparer.add([ObjectInfo("p/same", 10, 100, 1), ObjectInfo("p/changed", 10, 200, 1),
                            ObjectInfo("p/new", 5, 1, 9), ObjectInfo("p/back", 10, 100, 1)])
    assert [i.key for i in to_read] == ["p/changed", "p/new"]
    assert (comparer.new_files, comparer.changed_files, comparer.unchanged_files) == (1, 1, 2)
    assert [i.key for i in comparer.reappeared] == ["p/back"]
    assert comparer.vanished() == ["p/gone"]
    assert (comparer.files, comparer.bytes) == (4, 35)


def test_forced_comparer_reads_everything():
    comparer = ListingComparer({"p/a": sig()}, force=True)
    assert len(comparer.add([ObjectInfo("p/a", 10, 100, 1)])) == 1


def test_sidecar_names():
    listed = {"p/photo.png", "p/photo.png.xmp", "p/photo.jpg", "p/photo.xmp", "p/other.png",
              "p/sub/photo.png", "p/photo.raw.png"}
    assert sidecars_for("p/photo.png", listed) == ["p/photo.png.xmp", "p/photo.xmp"]
    assert sidecars_for("p/photo.jpg", listed) == ["p/photo.xmp"]
    assert sidecars_for("p/other.png", listed) == []
    assert sidecars_for("p/photo.xmp", listed) == []
    stems = stem_index(listed)
    assert companions_of("p/photo.png.xmp", listed, stems) == ["p/photo.png"]
    assert sorted(companions_of("p/photo.xmp", listed, stems)) == ["p/photo.jpg", "p/photo.png"]


def test_paths_needing_metadata():
    listed = {"p/a.png", "p/a.xmp", "p/b.png"}
    assert paths_needing_metadata(["p/b.png", "p/a.xmp"], ["p/a.xmp"], listed) == {"p/a.png",
                                                                                   "p/b.png"}


def test_metadata_precedence_user_then_sidecar_then_embedded():
    media = classify_name("p/a.png")
    sidecar = XmpMetadata(("from-sidecar",), None)
    embedded = XmpMetadata(("from-file",), 3)
    merged = merge_metadata("p/a.png", media, None, sidecar, embedded)
    assert (merged.tags, merged.tags_source) == (("from-sidecar",), "sidecar")
    # The sidecar has no rating: the embedded one stays in force.
    assert (merged.quality, merged.quality_source) == (3, "embedded")
    user = FileMeta("p/a.png", "image", "image/png", ("mine",), "user", 5, "user")
    merged = merge_metadata("p/a.png", media, user, sidecar, embedded)
    assert (merged.tags, merged.tags_source, merged.quality, merged.quality_source) == (
        ("mine",), "user", 5, "user")
    merged = merge_metadata("p/a.png", media, None, None, None)
    assert (merged.tags, merged.tags_source, merged.quality) == ((), None, None)
