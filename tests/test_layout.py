"""Names of the mount's tree and of conflict copies (pure functions)."""

from __future__ import annotations

from datetime import datetime

from alicefs.layout import conflict_name, logical_candidates

WHEN = datetime(2026, 11, 25, 4, 1, 2)


def test_conflict_copies_sit_beside_the_file_and_keep_its_extension():
    assert (conflict_name("neon/renders/street.png", WHEN, "s3")
            == "neon/renders/street.conflict-20261125-040102-s3.png")
    assert conflict_name("notes", WHEN, "ssd") == "notes.conflict-20261125-040102-ssd"
    assert conflict_name("p/.env", WHEN, "ssd") == "p/.env.conflict-20261125-040102-ssd"


def test_conflict_names_count_up_and_never_contain_a_slash():
    assert (conflict_name("a.tar.gz", WHEN, "cloud/eu", 2)
            == "a.tar.conflict-20261125-040102-cloud_eu-3.gz")


def test_unsorted_paths_have_two_readings():
    assert logical_candidates(["projects", "_unsorted", "x.png"]) == ["x.png", "_unsorted/x.png"]
    assert logical_candidates(["types", "image", "p", "x.png"]) == ["p/x.png"]
    assert logical_candidates(["projects"]) == []
