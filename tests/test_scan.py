"""The pure planning of scans: diffing, sidecars, metadata precedence."""

from __future__ import annotations

from alicefs.backends.base import ObjectInfo
from alicefs.catalog import FileMeta, ReplicaIndex
from alicefs.media import classify_name
from alicefs.scan import (
    ListingComparer,
    companions_of,
    comparable,
    merge_metadata,
    paths_needing_metadata,
    project_of,
    sidecars_for,
    stem_index,
)
from alicefs.signatures import Signatures
from alicefs.xmp import XmpMetadata


def index(trusted=None, unhashed=(), missing=(), written=()):
    """`written`: the files a scan found new, which the catalog has by the time the scan asks
    it for every path."""
    trusted = dict(trusted or {})
    return ReplicaIndex(Signatures(trusted.items()), set(unhashed), set(missing),
                        lambda: [list(trusted)],
                        lambda: [list(trusted), list(unhashed), list(written)])


def test_project_of():
    assert project_of("proj/a/b.png") == "proj"
    assert project_of("root.png") == "_unsorted"


def test_comparable_values_match_what_the_catalog_loads():
    info = ObjectInfo("p/a", 10, 100, 1, "etag")
    assert comparable(info, object_store=False) == (10, 100, 1)
    assert comparable(info, object_store=True) == (10, "etag")


def test_comparer_classifies_a_listing():
    comparer = ListingComparer(index(
        {"p/same": (10, 100, 1), "p/changed": (10, 100, 1), "p/gone": (10, 100, 1),
         "p/back": (10, 100, 1), "p/already-missing": (10, 100, 1), "p/renamed": (10, 100, 1)},
        unhashed={"p/unhashed"}, missing={"p/back", "p/already-missing"}, written={"p/new"}))
    to_read = comparer.add([
        ObjectInfo("p/same", 10, 100, 1),
        ObjectInfo("p/changed", 10, 200, 1),  # same size, touched in place
        ObjectInfo("p/renamed", 10, 100, 2),  # replaced by rename: new inode
        ObjectInfo("p/new", 5, 1, 9),
        ObjectInfo("p/back", 10, 100, 1),
        ObjectInfo("p/unhashed", 10, 100, 1),  # never finished hashing
    ])
    assert [i.key for i in to_read] == ["p/changed", "p/renamed", "p/new", "p/unhashed"]
    assert (comparer.new_files, comparer.changed_files, comparer.unchanged_files) == (1, 3, 2)
    assert comparer.reappeared == ["p/back"]
    assert comparer.vanished() == ["p/gone"]
    assert (comparer.files, comparer.bytes) == (6, 55)
    assert comparer.listed_keys() == {"p/same", "p/changed", "p/renamed", "p/new", "p/back",
                                    "p/unhashed"}


def test_object_stores_compare_change_tokens_not_mtimes():
    comparer = ListingComparer(index({"p/a": (10, "etag1"), "p/b": (10, "etag1")}),
                               object_store=True)
    to_read = comparer.add([ObjectInfo("p/a", 10, 5, None, "etag1"),
                            ObjectInfo("p/b", 10, 5, None, "etag2")])
    assert [i.key for i in to_read] == ["p/b"]


def test_comparer_takes_what_the_lister_found_unchanged_by_its_bare_key():
    comparer = ListingComparer(index({"p/a": (10, 100, 1), "p/b": (20, 100, 2),
                                      "p/c": (30, 100, 3)}, missing={"p/b"}))
    trusted = comparer.index.trusted
    assert not trusted.take_if_unchanged("p/a", (10, 100, 2))  # as the lister does
    assert trusted.take_if_unchanged("p/a", (10, 100, 1))
    assert trusted.take_if_unchanged("p/b", (20, 100, 2))
    assert comparer.add(["p/a", "p/b"]) == []
    assert (comparer.unchanged_files, comparer.bytes, comparer.reappeared) == (2, 30, ["p/b"])
    assert comparer.vanished() == ["p/c"]
    assert comparer.listed_keys() == {"p/a", "p/b"}


def test_comparer_reads_the_catalog_again_only_for_files_not_listed():
    reads = []
    trusted = {"p/a": (10, 100, 1), "p/gone": (10, 100, 2), "p/missing": (10, 100, 3)}

    def paths():
        reads.append(1)
        return [["p/a"], ["p/gone", "p/missing"]]

    listed_all = ListingComparer(ReplicaIndex(Signatures(trusted.items()), set(), {"p/missing"},
                                              paths, paths))
    listed_all.add([ObjectInfo("p/a", 10, 100, 1), ObjectInfo("p/gone", 10, 100, 2)])
    assert listed_all.vanished() == [] and reads == []  # only the missing one is left
    one_gone = ListingComparer(ReplicaIndex(Signatures(trusted.items()), set(), {"p/missing"},
                                            paths, paths))
    one_gone.add([ObjectInfo("p/a", 10, 100, 1)])
    assert one_gone.vanished() == ["p/gone"] and reads == [1]


def test_forced_comparer_reads_everything():
    comparer = ListingComparer(index({"p/a": (10, 100, 1)}), force=True)
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


PRIORITY = {"ssd": 100, "hdd": 50}


def test_metadata_precedence_user_then_sidecar_then_embedded():
    media = classify_name("p/a.png")
    sidecar = XmpMetadata(("from-sidecar",), None)
    embedded = XmpMetadata(("from-file",), 3)
    merged = merge_metadata("p/a.png", media, None, sidecar, embedded, "ssd", PRIORITY)
    assert (merged.tags, merged.tags_source, merged.tags_origin) == (
        ("from-sidecar",), "sidecar", "ssd")
    # The sidecar has no rating: the embedded one stays in force.
    assert (merged.quality, merged.quality_source) == (3, "embedded")
    user = FileMeta("p/a.png", "image", "image/png", ("mine",), "user", 5, "user")
    merged = merge_metadata("p/a.png", media, user, sidecar, embedded, "ssd", PRIORITY)
    assert (merged.tags, merged.tags_source, merged.quality, merged.quality_source) == (
        ("mine",), "user", 5, "user")
    merged = merge_metadata("p/a.png", media, None, None, None, "ssd", PRIORITY)
    assert (merged.tags, merged.tags_source, merged.quality) == ((), None, None)


def _scan_in_order(order, found):
    meta = None
    for location in order:
        meta = merge_metadata("p/a.png", classify_name("p/a.png"), meta, *found[location],
                              location, PRIORITY)
    return meta


def test_replicas_in_several_locations_agree_whatever_the_scan_order():
    found = {"ssd": (XmpMetadata(("ssd-sidecar",), 4), None),
             "hdd": (None, XmpMetadata(("hdd-embedded",), 2))}
    a, b = _scan_in_order(["ssd", "hdd"], found), _scan_in_order(["hdd", "ssd"], found)
    assert a == b
    assert (a.tags, a.tags_origin, a.quality) == (("ssd-sidecar",), "ssd", 4)
    # Same source in both: the higher-priority location wins.
    found = {"ssd": (XmpMetadata(("s",), 1), None), "hdd": (XmpMetadata(("h",), 5), None)}
    assert _scan_in_order(["ssd", "hdd"], found) == _scan_in_order(["hdd", "ssd"], found)
    assert _scan_in_order(["hdd", "ssd"], found).tags == ("s",)
    # A better source from a lower-priority location still wins.
    found = {"ssd": (None, XmpMetadata(("embedded",), None)),
             "hdd": (XmpMetadata(("sidecar",), None), None)}
    assert _scan_in_order(["hdd", "ssd"], found).tags == ("sidecar",)


def test_a_location_retracts_only_its_own_values():
    media = classify_name("p/a.png")
    from_ssd = merge_metadata("p/a.png", media, None, XmpMetadata(("t",), 3), None, "ssd",
                              PRIORITY)
    # hdd has nothing to say about it: the ssd's values stay.
    assert merge_metadata("p/a.png", media, from_ssd, None, None, "hdd", PRIORITY) == from_ssd
    # The ssd's sidecar is gone: its values go.
    gone = merge_metadata("p/a.png", media, from_ssd, None, None, "ssd", PRIORITY)
    assert (gone.tags, gone.tags_source, gone.quality, gone.tags_origin) == ((), None, None, None)
