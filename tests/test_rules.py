from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alicefs.rules import (
    GIB,
    FileAttrs,
    LocationStatus,
    PlacementPolicy,
    PlacementReason,
    Rule,
    SpaceInfo,
    evaluate_rule,
    explain,
    format_explanation,
    location_matches,
    rule_matches,
    target_location,
    type_matches,
)

NOW = 1_800_000_000.0
DAY = 86400.0


def attrs(path="proj/a.png", size=1000, age_days=0.0, tags=(), quality=None) -> FileAttrs:
    return FileAttrs.from_name(path, size, NOW - age_days * DAY, tags, quality)


def policy(name, priority, *rules, status=LocationStatus.ACTIVE, min_free=None):
    return PlacementPolicy(f"id-{name}", name, priority, status, tuple(rules), min_free)


# -- each condition alone ----------------------------------------------------------------------

@pytest.mark.parametrize("rule, file, expected", [
    (Rule(max_age_days=30), attrs(age_days=10), True),
    (Rule(max_age_days=30), attrs(age_days=30), True),
    (Rule(max_age_days=30), attrs(age_days=31), False),
    (Rule(min_age_days=30), attrs(age_days=31), True),
    (Rule(min_age_days=30), attrs(age_days=29.9), False),
    (Rule(include_types=("video",)), attrs("p/v.mp4"), True),
    (Rule(include_types=("video",)), attrs("p/i.png"), False),
    (Rule(exclude_types=("video",)), attrs("p/i.png"), True),
    (Rule(exclude_types=("video",)), attrs("p/v.mp4"), False),
    (Rule(max_size_bytes=100), attrs(size=100), True),
    (Rule(max_size_bytes=100), attrs(size=101), False),
    (Rule(min_size_bytes=100), attrs(size=100), True),
    (Rule(min_size_bytes=100), attrs(size=99), False),
    (Rule(require_tags=("portfolio", "client")), attrs(tags={"portfolio", "client", "x"}), True),
    (Rule(require_tags=("portfolio", "client")), attrs(tags={"portfolio"}), False),
    (Rule(exclude_tags=("nsfw",)), attrs(tags={"portfolio"}), True),
    (Rule(exclude_tags=("nsfw",)), attrs(tags={"NSFW"}), False),
    (Rule(min_quality_stars=4), attrs(quality=4), True),
    (Rule(min_quality_stars=4), attrs(quality=3), False),
    (Rule(min_quality_stars=4), attrs(quality=None), False),
    (Rule(max_quality_stars=2), attrs(quality=2), True),
    (Rule(max_quality_stars=2), attrs(quality=3), False),
    (Rule(max_quality_stars=2), attrs(quality=None), False),
    (Rule(), attrs(), True),
])
def test_each_condition(rule, file, expected):
    assert rule_matches(rule, file, NOW) is expected
    results = evaluate_rule(rule, file, NOW)
    assert all(r.holds for r in results) is expected


def test_future_mtime_counts_as_age_zero():
    file = FileAttrs.from_name("p/a.png", 1, NOW + 10 * DAY)
    assert rule_matches(Rule(max_age_days=0), file, NOW)
    assert not rule_matches(Rule(min_age_days=1), file, NOW)


def test_tags_match_case_insensitively():
    assert rule_matches(Rule(require_tags=("Portfolio",)), attrs(tags={"portfolio"}), NOW)


# -- type matching ------------------------------------------------------------------------------

@pytest.mark.parametrize("token, path, expected", [
    ("image", "p/a.PNG", True),
    ("IMAGE", "p/a.png", True),
    ("image/png", "p/a.PNG", True),
    ("image/*", "p/a.jpeg", True),
    ("video/*", "p/a.jpeg", False),
    (".png", "p/a.PNG", True),
    (".PNG", "p/a.png", True),
    (".jpg", "p/a.jpeg", False),
    ("video/mp4", "p/v.mp4", True),
    ("video/mov", "p/v.MOV", True),  # the guide's spelling; MIME is video/quicktime
    ("video/quicktime", "p/v.mov", True),
    ("video/mov", "p/v.mp4", False),
    ("other", "p/noext", True),
    ("text", "p/prompt.txt", True),
])
def test_type_matching(token, path, expected):
    assert type_matches(token, attrs(path)) is expected


# -- OR of rules, AND within a rule ---------------------------------------------------------------

def test_conditions_within_a_rule_are_anded():
    rule = Rule(max_age_days=30, min_quality_stars=4)
    assert rule_matches(rule, attrs(age_days=1, quality=5), NOW)
    assert not rule_matches(rule, attrs(age_days=1, quality=3), NOW)
    assert not rule_matches(rule, attrs(age_days=40, quality=5), NOW)


def test_rules_of_a_location_are_ored():
    loc = policy("ssd", 100, Rule(max_age_days=30, min_quality_stars=4),
                 Rule(require_tags=("portfolio",)))
    assert location_matches(loc, attrs(age_days=1, quality=5), NOW)
    assert location_matches(loc, attrs(age_days=400, tags={"portfolio"}), NOW)
    assert not location_matches(loc, attrs(age_days=400, quality=5), NOW)


def test_location_without_rules_matches_everything():
    assert location_matches(policy("any", 1), attrs(age_days=9999, size=10**12), NOW)


# -- the guide's example configuration ------------------------------------------------------------

GUIDE_LOCATIONS = [
    policy("Fast SSD", 100, Rule(max_age_days=30, min_quality_stars=4)),
    policy("Archive HDD", 50, Rule(min_age_days=30, max_age_days=180)),
    policy("S3 Cold Storage", 25, Rule(min_age_days=180)),
]


@pytest.mark.parametrize("file, expected", [
    (attrs(age_days=3, quality=5), "Fast SSD"),
    (attrs(age_days=60, quality=5), "Archive HDD"),
    (attrs(age_days=400), "S3 Cold Storage"),
])
def test_guide_example_placement(file, expected):
    placement = target_location(file, GUIDE_LOCATIONS, {}, NOW, current_location_id="id-x")
    assert placement.location.name == expected
    assert placement.reason is PlacementReason.MATCHED


def test_unmatched_existing_file_stays_where_it_is():
    # 3 days old, unrated: no rule of the guide matches.
    placement = target_location(attrs(age_days=3), GUIDE_LOCATIONS, {}, NOW,
                                current_location_id="id-Archive HDD")
    assert placement.reason is PlacementReason.STAYS
    assert placement.location.name == "Archive HDD"


def test_a_location_without_rules_catches_what_no_rule_matches():
    locations = [*GUIDE_LOCATIONS, policy("Inbox", 10), policy("Other", 5)]
    placement = target_location(attrs(age_days=3), locations, {}, NOW)
    assert (placement.location.name, placement.reason) == ("Inbox", PlacementReason.MATCHED)


def test_unmatched_new_file_without_unruled_locations_goes_to_highest_priority():
    placement = target_location(attrs(age_days=3), GUIDE_LOCATIONS, {}, NOW)
    assert (placement.location.name, placement.reason) == ("Fast SSD",
                                                           PlacementReason.FALLBACK_PRIORITY)


# -- priority, status and space -------------------------------------------------------------------

def test_highest_priority_match_wins_and_ties_are_broken_by_name():
    locations = [policy("b", 10), policy("a", 10), policy("c", 5)]
    assert target_location(attrs(), locations, {}, NOW).location.name == "a"


def test_archived_and_offline_locations_are_never_targets():
    locations = [policy("arch", 100, status=LocationStatus.ARCHIVED),
                 policy("off", 90, status=LocationStatus.OFFLINE), policy("on", 1)]
    assert target_location(attrs(), locations, {}, NOW).location.name == "on"


def test_full_location_is_skipped_for_the_next_match():
    locations = [policy("ssd", 100), policy("hdd", 50)]
    space = {"id-ssd": SpaceInfo(free_bytes=GIB // 2, total_bytes=100 * GIB)}
    assert target_location(attrs(size=10), locations, space, NOW).location.name == "hdd"


def test_default_reserve_is_smaller_of_one_gib_and_five_percent():
    small = policy("card", 100)
    # 16 GiB card: reserve is 5 % = 0.8 GiB, so 0.9 GiB free still has room for a small file.
    space = {"id-card": SpaceInfo(free_bytes=int(0.9 * GIB), total_bytes=16 * GIB)}
    assert target_location(attrs(size=1000), [small], space, NOW).location.name == "card"
    space = {"id-card": SpaceInfo(free_bytes=int(0.7 * GIB), total_bytes=16 * GIB)}
    assert target_location(attrs(size=1000), [small], space, NOW).reason is PlacementReason.NO_ROOM


def test_explicit_min_free_bytes_is_honoured():
    loc = policy("ssd", 100, min_free=0)
    space = {"id-ssd": SpaceInfo(free_bytes=1000, total_bytes=100 * GIB)}
    assert target_location(attrs(size=1000), [loc], space, NOW).location.name == "ssd"
    assert target_location(attrs(size=1001), [loc], space, NOW).reason is PlacementReason.NO_ROOM


def test_a_file_already_in_a_full_location_still_fits_there():
    # Its own bytes are already counted in the free space: it must not be judged homeless.
    loc = policy("ssd", 100, min_free=0)
    space = {"id-ssd": SpaceInfo(free_bytes=10, total_bytes=100 * GIB)}
    placement = target_location(attrs(size=5000), [loc], space, NOW, current_location_id="id-ssd")
    assert (placement.location.name, placement.reason) == ("ssd", PlacementReason.MATCHED)


def test_no_active_location_with_room_is_no_room_for_a_new_file():
    locations = [policy("ssd", 100, min_free=0)]
    space = {"id-ssd": SpaceInfo(free_bytes=0, total_bytes=GIB)}
    placement = target_location(attrs(size=1), locations, space, NOW)
    assert placement.location is None and placement.reason is PlacementReason.NO_ROOM


# -- explain --------------------------------------------------------------------------------------

def test_explain_says_why_each_location_matched_or_not():
    result = explain(attrs(age_days=60, quality=5), GUIDE_LOCATIONS, {}, NOW)
    assert result.placement.location.name == "Archive HDD"
    by_name = {v.policy.name: v for v in result.verdicts}
    assert not by_name["Fast SSD"].matches
    failed = [c for c in by_name["Fast SSD"].rule_results[0] if not c.holds]
    assert [c.key for c in failed] == ["max_age_days"]
    assert by_name["Archive HDD"].matches
    text = format_explanation(result)
    assert "target: Archive HDD" in text
    assert "✗ max_age_days: age 60.0 days ≤ 30" in text
    assert "✓ min_quality_stars: quality 5 stars ≥ 4" in text


def test_explain_reports_the_fallback():
    result = explain(attrs(age_days=3), GUIDE_LOCATIONS, {}, NOW)
    assert result.placement.reason is PlacementReason.FALLBACK_PRIORITY
    assert "no location with room matches" in format_explanation(result)


# -- properties -----------------------------------------------------------------------------------

rule_strategy = st.builds(
    Rule,
    max_age_days=st.none() | st.integers(0, 400),
    min_age_days=st.none() | st.integers(0, 400),
    include_types=st.none() | st.lists(st.sampled_from(
        ["image", "video", ".png", "video/mp4", "image/*", "text"]), min_size=1, max_size=2
    ).map(tuple),
    max_size_bytes=st.none() | st.integers(0, 10_000),
    min_size_bytes=st.none() | st.integers(0, 10_000),
    require_tags=st.none() | st.lists(st.sampled_from(["a", "b", "c"]), min_size=1,
                                      max_size=2).map(tuple),
    exclude_tags=st.none() | st.lists(st.sampled_from(["a", "b", "c"]), min_size=1,
                                      max_size=2).map(tuple),
    min_quality_stars=st.none() | st.integers(0, 5),
    max_quality_stars=st.none() | st.integers(0, 5),
)

location_strategy = st.lists(
    st.tuples(st.integers(0, 5), st.lists(rule_strategy, max_size=2),
              st.sampled_from(list(LocationStatus)),
              st.none() | st.integers(0, 5000)),
    min_size=1, max_size=5,
).map(lambda specs: [
    PlacementPolicy(f"id{i}", f"loc{i}", prio, status, tuple(rules), 0)
    for i, (prio, rules, status, _free) in enumerate(specs)
])

file_strategy = st.builds(
    lambda path, size, age, tags, quality: attrs(path, size, age, tags, quality),
    st.sampled_from(["p/a.png", "p/b.MP4", "p/c.txt", "p/d", "p/e.JPEG"]),
    st.integers(0, 10_000), st.floats(0, 500), st.sets(st.sampled_from(["a", "b", "c"])),
    st.none() | st.integers(0, 5),
)


def _space_for(locations, data):
    return {p.location_id: (None if free is None else SpaceInfo(free, 10**9))
            for p, free in zip(locations, data, strict=False)}


@settings(max_examples=300, deadline=None)
@given(file_strategy, location_strategy, st.lists(st.none() | st.integers(0, 20_000),
                                                  min_size=5, max_size=5))
def test_target_is_deterministic_and_never_rejecting_or_full(file, locations, frees):
    space = _space_for(locations, frees)
    first = target_location(file, locations, space, NOW)
    # Deterministic: the same inputs, in any order, give the same answer.
    assert target_location(file, list(reversed(locations)), space, NOW) == first
    assert target_location(file, locations, dict(space), NOW) == first
    target = first.location
    if target is None:
        assert first.reason is PlacementReason.NO_ROOM
        return
    assert target.status is LocationStatus.ACTIVE
    free = space.get(target.location_id)
    assert free is None or free.free_bytes >= file.size  # never a full location
    if first.reason is PlacementReason.MATCHED:
        assert location_matches(target, file, NOW)
    else:
        # A location that rejects the file is chosen only when no active location with room
        # accepts it.
        assert not any(location_matches(p, file, NOW) and p.status is LocationStatus.ACTIVE
                       and (space.get(p.location_id) is None
                            or space[p.location_id].free_bytes >= file.size)
                       for p in locations)


@settings(max_examples=200, deadline=None)
@given(file_strategy, location_strategy)
def test_placing_a_file_again_where_it_was_placed_is_stable(file, locations):
    # No ping-pong: once a file sits at its target, its target is where it sits.
    first = target_location(file, locations, {}, NOW)
    if first.location is None:
        return
    again = target_location(file, locations, {}, NOW,
                            current_location_id=first.location.location_id)
    assert again.location == first.location
