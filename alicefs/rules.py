"""Placement rules: pure functions from a file's attributes and the locations to a target.

Semantics (DESIGN.md §4, docs/rules.md): a location with no rules matches every file; otherwise
it matches when ANY of its rules matches, and a rule matches when ALL of its conditions hold.
The target is the highest-priority active location that matches and has room. Nothing here does
I/O or reads the clock: `now` and free space are arguments, so every answer is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from alicefs.humanize import human_bytes
from alicefs.media import CATEGORIES, classify_name, extension_of

SECONDS_PER_DAY = 86400.0
GIB = 1 << 30
DEFAULT_RESERVE_BYTES = GIB
DEFAULT_RESERVE_FRACTION = 0.05


@dataclass(frozen=True)
class Rule:
    """One rule: every condition that is not None must hold."""

    max_age_days: float | None = None
    min_age_days: float | None = None
    include_types: tuple[str, ...] | None = None
    exclude_types: tuple[str, ...] | None = None
    max_size_bytes: int | None = None
    min_size_bytes: int | None = None
    require_tags: tuple[str, ...] | None = None
    exclude_tags: tuple[str, ...] | None = None
    min_quality_stars: int | None = None
    max_quality_stars: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The rule as settings.yaml would spell it (set conditions only)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def describe(self) -> str:
        parts = []
        for key, value in self.to_dict().items():
            shown = ",".join(value) if isinstance(value, list) else value
            parts.append(f"{key}={shown}")
        return " AND ".join(parts) if parts else "(matches everything)"


RULE_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Rule))


@dataclass(frozen=True)
class FileAttrs:
    """What placement knows about a file."""

    logical_path: str
    size: int
    mtime: float  # seconds since the epoch
    mime_type: str
    category: str
    tags: frozenset[str] = frozenset()
    quality: int | None = None  # stars 0-5, None when unrated

    @classmethod
    def from_name(
        cls,
        logical_path: str,
        size: int,
        mtime: float,
        tags: Iterable[str] = (),
        quality: int | None = None,
    ) -> FileAttrs:
        media = classify_name(logical_path)
        return cls(logical_path, size, mtime, media.mime_type, media.category,
                   frozenset(tags), quality)

    @property
    def extension(self) -> str:
        return extension_of(self.logical_path)

    def age_days(self, now: float) -> float:
        """Age in days; a file stamped in the future counts as brand new, not negative."""
        return max(0.0, (now - self.mtime) / SECONDS_PER_DAY)


def type_matches(token: str, attrs: FileAttrs) -> bool:
    """Does one `include_types`/`exclude_types` entry describe this file?

    Accepted forms, all case-insensitive: a category (`video`), a MIME type (`video/mp4`), a
    wildcard (`video/*`) and an extension (`.mp4`). `video/mov` style entries (a category and an
    extension, as the user guide writes them) also match by extension, so they work although
    the registered MIME type of .mov is video/quicktime.
    """
    token = token.strip().lower()
    mime = attrs.mime_type.lower()
    if token.startswith("."):
        return attrs.extension == token
    if "/" not in token:
        return attrs.category == token
    major, minor = token.split("/", 1)
    if minor == "*":
        return attrs.category == major or mime.split("/", 1)[0] == major
    if mime == token:
        return True
    return attrs.category == major and attrs.extension == "." + minor


def _folded(tags: Iterable[str]) -> frozenset[str]:
    return frozenset(t.casefold() for t in tags)


@dataclass(frozen=True)
class ConditionResult:
    key: str
    holds: bool
    detail: str  # the observed value against the limit, for `explain`


@dataclass(frozen=True)
class _Condition:
    key: str
    holds: Callable[[Any, FileAttrs, float], bool]  # (limit, attrs, age_days) -> holds
    observed: Callable[[Any, FileAttrs, float], str]


def _fmt_days(age: float) -> str:
    return f"age {age:.1f} days"


def _types_shown(attrs: FileAttrs) -> str:
    ext = f", {attrs.extension}" if attrs.extension else ""
    return f"type {attrs.mime_type} ({attrs.category}{ext})"


def _tags_shown(attrs: FileAttrs) -> str:
    return "tags " + (",".join(sorted(attrs.tags)) if attrs.tags else "(none)")


def _quality_shown(attrs: FileAttrs) -> str:
    return "unrated" if attrs.quality is None else f"quality {attrs.quality} stars"


_CONDITIONS: tuple[_Condition, ...] = (
    _Condition("max_age_days", lambda lim, a, age: age <= lim,
               lambda lim, a, age: f"{_fmt_days(age)} ≤ {lim}"),
    _Condition("min_age_days", lambda lim, a, age: age >= lim,
               lambda lim, a, age: f"{_fmt_days(age)} ≥ {lim}"),
    _Condition("include_types", lambda lim, a, age: any(type_matches(t, a) for t in lim),
               lambda lim, a, age: f"{_types_shown(a)} in [{', '.join(lim)}]"),
    _Condition("exclude_types", lambda lim, a, age: not any(type_matches(t, a) for t in lim),
               lambda lim, a, age: f"{_types_shown(a)} not in [{', '.join(lim)}]"),
    _Condition("max_size_bytes", lambda lim, a, age: a.size <= lim,
               lambda lim, a, age: f"size {a.size} ≤ {lim}"),
    _Condition("min_size_bytes", lambda lim, a, age: a.size >= lim,
               lambda lim, a, age: f"size {a.size} ≥ {lim}"),
    _Condition("require_tags", lambda lim, a, age: _folded(lim) <= _folded(a.tags),
               lambda lim, a, age: f"{_tags_shown(a)} include all of [{', '.join(lim)}]"),
    _Condition("exclude_tags", lambda lim, a, age: not (_folded(lim) & _folded(a.tags)),
               lambda lim, a, age: f"{_tags_shown(a)} include none of [{', '.join(lim)}]"),
    _Condition("min_quality_stars", lambda lim, a, age: a.quality is not None and a.quality >= lim,
               lambda lim, a, age: f"{_quality_shown(a)} ≥ {lim}"),
    _Condition("max_quality_stars", lambda lim, a, age: a.quality is not None and a.quality <= lim,
               lambda lim, a, age: f"{_quality_shown(a)} ≤ {lim}"),
)


def rule_matches(rule: Rule, attrs: FileAttrs, now: float) -> bool:
    age = attrs.age_days(now)
    for cond in _CONDITIONS:
        limit = getattr(rule, cond.key)
        if limit is not None and not cond.holds(limit, attrs, age):
            return False
    return True


def evaluate_rule(rule: Rule, attrs: FileAttrs, now: float) -> tuple[ConditionResult, ...]:
    """Every set condition of the rule with whether it holds and why."""
    age = attrs.age_days(now)
    results = []
    for cond in _CONDITIONS:
        limit = getattr(rule, cond.key)
        if limit is not None:
            results.append(ConditionResult(cond.key, cond.holds(limit, attrs, age),
                                           cond.observed(limit, attrs, age)))
    return tuple(results)


# ---------------------------------------------------------------------------------------------
# Locations and placement


class LocationStatus(StrEnum):
    ACTIVE = "active"  # readable, writable, a placement target
    ARCHIVED = "archived"  # readable; holds what it has, receives nothing new
    OFFLINE = "offline"  # unreachable; neither read nor written


@dataclass(frozen=True)
class PlacementPolicy:
    """What placement needs to know about a location."""

    location_id: str
    name: str
    priority: int
    status: LocationStatus
    rules: tuple[Rule, ...]
    min_free_bytes: int | None  # None: the default reserve


@dataclass(frozen=True)
class SpaceInfo:
    free_bytes: int
    total_bytes: int


def reserve_bytes(policy: PlacementPolicy, space: SpaceInfo) -> int:
    """Bytes that must stay free: the location's own setting, else the smaller of 1 GiB and 5 %.

    The smaller of the two, so that a small disk (a 16 GB card) is still usable while a large one
    keeps a full GiB of headroom.
    """
    if policy.min_free_bytes is not None:
        return policy.min_free_bytes
    return min(DEFAULT_RESERVE_BYTES, math.ceil(space.total_bytes * DEFAULT_RESERVE_FRACTION))


def has_room(policy: PlacementPolicy, space: SpaceInfo | None, size: int,
             already_there: bool) -> bool:
    """Can the location take `size` more bytes and keep its reserve?

    `space` None means unlimited or unknown (object stores). A file already in the location
    needs no more space, which keeps a file that fits where it is from being judged homeless.
    """
    if space is None:
        return True
    needed = 0 if already_there else size
    return space.free_bytes - needed >= reserve_bytes(policy, space)


def location_matches(policy: PlacementPolicy, attrs: FileAttrs, now: float) -> bool:
    return not policy.rules or any(rule_matches(r, attrs, now) for r in policy.rules)


def by_preference(locations: Iterable[PlacementPolicy]) -> list[PlacementPolicy]:
    """Highest priority first; ties broken by name then id so the order is total."""
    return sorted(locations, key=lambda p: (-p.priority, p.name, p.location_id))


class PlacementReason(StrEnum):
    MATCHED = "matched"  # the highest-priority matching location with room
    STAYS = "stays"  # nothing with room matches: an existing file stays where it is
    # A new file that no location with room matches goes to the highest-priority location with
    # room. (DESIGN.md's "else the highest-priority location with no rules" never applies: a
    # location without rules matches every file, so it would have been MATCHED.)
    FALLBACK_PRIORITY = "fallback_priority"
    NO_ROOM = "no_room"  # new file and no active location has room: ENOSPC


@dataclass(frozen=True)
class Placement:
    location: PlacementPolicy | None
    reason: PlacementReason


def target_location(
    attrs: FileAttrs,
    locations: Sequence[PlacementPolicy],
    free_space: Mapping[str, SpaceInfo | None],
    now: float,
    current_location_id: str | None = None,
) -> Placement:
    """Where the file belongs. `current_location_id` None means a new file.

    Missing entries in `free_space` count as unlimited.
    """
    candidates = [p for p in by_preference(locations) if p.status is LocationStatus.ACTIVE]

    def room(p: PlacementPolicy) -> bool:
        return has_room(p, free_space.get(p.location_id), attrs.size,
                        already_there=p.location_id == current_location_id)

    for p in candidates:
        if location_matches(p, attrs, now) and room(p):
            return Placement(p, PlacementReason.MATCHED)
    if current_location_id is not None:
        current = next((p for p in locations if p.location_id == current_location_id), None)
        return Placement(current, PlacementReason.STAYS)
    for p in candidates:
        if room(p):
            return Placement(p, PlacementReason.FALLBACK_PRIORITY)
    return Placement(None, PlacementReason.NO_ROOM)


@dataclass(frozen=True)
class LocationVerdict:
    """How one location judged one file, for `explain`."""

    policy: PlacementPolicy
    rule_results: tuple[tuple[ConditionResult, ...], ...]  # one tuple per rule
    matches: bool
    space: SpaceInfo | None
    room: bool


@dataclass(frozen=True)
class Explanation:
    attrs: FileAttrs
    placement: Placement
    verdicts: tuple[LocationVerdict, ...]  # in preference order


def explain(
    attrs: FileAttrs,
    locations: Sequence[PlacementPolicy],
    free_space: Mapping[str, SpaceInfo | None],
    now: float,
    current_location_id: str | None = None,
) -> Explanation:
    verdicts = []
    for p in by_preference(locations):
        space = free_space.get(p.location_id)
        verdicts.append(LocationVerdict(
            policy=p,
            rule_results=tuple(evaluate_rule(r, attrs, now) for r in p.rules),
            matches=location_matches(p, attrs, now),
            space=space,
            room=has_room(p, space, attrs.size, p.location_id == current_location_id),
        ))
    placement = target_location(attrs, locations, free_space, now, current_location_id)
    return Explanation(attrs, placement, tuple(verdicts))


_REASON_TEXT = {
    PlacementReason.MATCHED: (
        "the highest-priority active location whose rules match and that has room"
    ),
    PlacementReason.STAYS: "no active location with room matches; the file stays where it is",
    PlacementReason.FALLBACK_PRIORITY: (
        "no location with room matches; a new file goes to the highest-priority active "
        "location with room"
    ),
    PlacementReason.NO_ROOM: "no active location has room for this file",
}


def reason_text(reason: PlacementReason) -> str:
    return _REASON_TEXT[reason]


def format_explanation(explanation: Explanation) -> str:
    """A human-readable account of the decision, one location per paragraph."""
    a = explanation.attrs
    lines = [
        f"{a.logical_path}: {a.size} bytes, {_types_shown(a)}, {_tags_shown(a)}, "
        f"{_quality_shown(a)}",
    ]
    target = explanation.placement.location
    lines.append(f"target: {target.name if target else '(none)'} "
                 f"— {reason_text(explanation.placement.reason)}")
    for v in explanation.verdicts:
        p = v.policy
        state = "matches" if v.matches else "does not match"
        status = "" if p.status is LocationStatus.ACTIVE else f", {p.status.value}: not a target"
        room = "room" if v.room else "no room"
        if v.space is not None:
            room += (f" ({human_bytes(v.space.free_bytes)} of "
                     f"{human_bytes(v.space.total_bytes)} free)")
        lines.append(f"  {p.name} [{p.location_id}] priority {p.priority}: {state}, {room}{status}")
        if not p.rules:
            lines.append("    no rules: matches every file")
        for i, results in enumerate(v.rule_results):
            verdict = "holds" if all(r.holds for r in results) else "fails"
            lines.append(f"    rule {i + 1} {verdict}:")
            for r in results:
                lines.append(f"      {'✓' if r.holds else '✗'} {r.key}: {r.detail}")
    return "\n".join(lines)


__all__ = [
    "CATEGORIES",
    "RULE_KEYS",
    "ConditionResult",
    "Explanation",
    "FileAttrs",
    "LocationStatus",
    "LocationVerdict",
    "Placement",
    "PlacementPolicy",
    "PlacementReason",
    "Rule",
    "SpaceInfo",
    "evaluate_rule",
    "explain",
    "format_explanation",
    "location_matches",
    "rule_matches",
    "target_location",
    "type_matches",
]
