"""settings.yaml: loading, validation with precise messages, and the resulting Settings.

Every problem in a file is collected and reported at once, each located by file, line and key
path (`settings.yaml:14 storage.locations[1].rules[0].min_quality_stars: expected an integer
0-5, got "four"`). Credential values never appear in a message. Relative paths resolve
against the directory of the config file; `~` and `$VAR`/`${VAR}` expand in paths and in
location `config` values. docs/configuration.md documents every key.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from alicefs.errors import ConfigError, ConfigProblem, UsageError
from alicefs.media import CATEGORIES
from alicefs.model import LocationType, StorageLocation, is_secret_key, location_id_for
from alicefs.rules import RULE_KEYS, LocationStatus, Rule

DEFAULT_PRIORITY = 50
DEFAULT_CACHE_SIZE = 10 << 30
DEFAULT_SCAN_INTERVAL = 300.0
DEFAULT_MIGRATION_CONCURRENCY = 2
DEFAULT_SYNC_INTERVAL = 600.0  # the mount brings replicas level every 10 minutes
CATALOG_FILENAME = "catalog.duckdb"
MAX_NAME_BYTES = 255

KeyPath = tuple[str | int, ...]


def format_key(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _Invalid(ValueError):
    """A value failed a check; the message says what was expected and what was found."""


def _shown(value: Any, secret: bool = False) -> str:
    """How a bad value is quoted in a message: literally, unless it is a credential."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean" if secret else ("true" if value else "false")
    if isinstance(value, str):
        return "a string (value hidden)" if secret else json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return "a number" if secret else repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {json.dumps(close[0])}?" if close else ""


class _Validator:
    """Collects problems for one configuration source."""

    def __init__(self, source: str | None, lines: Mapping[KeyPath, int] | None = None,
                 prefix: KeyPath = ()):
        self.source = source
        self.lines = lines or {}
        self.prefix = prefix
        self.problems: list[ConfigProblem] = []

    def line_of(self, path: KeyPath) -> int | None:
        # A key that is absent has no line: fall back to its nearest present parent.
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def problem(self, path: KeyPath, message: str) -> None:
        self.problems.append(ConfigProblem(self.source, self.line_of(path),
                                           format_key(self.prefix + path), message))

    def check(self, path: KeyPath, value: Any, parse: Callable[[Any], Any]) -> Any:
        """parse(value), or None with a problem recorded when it is invalid."""
        try:
            return parse(value)
        except _Invalid as exc:
            self.problem(path, str(exc))
            return None

    def mapping(self, path: KeyPath, value: Any, allowed: tuple[str, ...] | list[str],
                required: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The mapping at `path` with unknown keys and missing required keys reported."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {_shown(value)}")
            return None
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                self.problem((*path, str(key)),
                             f"unknown key {json.dumps(str(key))}{_did_you_mean(str(key), allowed)}"
                             f" (expected one of: {', '.join(allowed)})")
        for key in required:
            if value.get(key) is None:
                self.problem((*path, key), "missing (required)")
        return value


# ---------------------------------------------------------------------------------------------
# Value parsers: each returns the parsed value or raises _Invalid.


def parse_int(lo: int | None = None, hi: int | None = None, what: str = "an integer"):
    def parse(value: Any) -> int:
        expected = what
        if lo is not None and hi is not None:
            expected = f"{what} {lo}-{hi}"
        elif lo is not None:
            expected = f"{what} ≥ {lo}"
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected {expected}, got {_shown(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _Invalid(f"expected {expected}, got {value}")
        return value
    return parse


def parse_number(lo: float = 0.0):
    def parse(value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise _Invalid(f"expected a number ≥ {lo:g}, got {_shown(value)}")
        if value < lo:
            raise _Invalid(f"expected a number ≥ {lo:g}, got {value}")
        return value
    return parse


_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10, "kb": 10**3,
    "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
    "g": 1 << 30, "gib": 1 << 30, "gb": 10**9,
    "t": 1 << 40, "tib": 1 << 40, "tb": 10**12,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any) -> int:
    """Bytes: an integer, or a string with a unit (`500MB` decimal, `10GiB` or `10G` binary)."""
    expected = 'expected a size in bytes (an integer, or a string such as "10GiB" or "500MB")'
    if isinstance(value, bool):
        raise _Invalid(f"{expected}, got {_shown(value)}")
    if isinstance(value, int):
        if value < 0:
            raise _Invalid(f"{expected} ≥ 0, got {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise _Invalid(f"{expected}, got {_shown(value)}")


def parse_rate(value: Any) -> int:
    """Bytes per second: a size, optionally written as a rate (`50MB/s`, `1GiB/s`)."""
    if isinstance(value, str) and value.strip().endswith("/s"):
        value = value.strip()[:-2]
    try:
        return parse_size(value)
    except _Invalid:
        raise _Invalid('expected bytes per second (an integer, or a string such as "50MB/s" '
                       f'or "1GiB"), got {_shown(value)}') from None


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(value: Any) -> float:
    """Seconds: a number, or a string such as "30s", "5m", "2h", "1d"."""
    expected = 'expected a duration (seconds, or a string such as "5m", "2h", "1d")'
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    raise _Invalid(f"{expected}, got {_shown(value)}")


def parse_interval_or_off(value: Any) -> float | None:
    """A duration, or off (`off`, `false`, 0): None."""
    if value is False or value == 0 or (isinstance(value, str) and value.strip() == "off"):
        return None
    try:
        return parse_duration(value)
    except _Invalid:
        raise _Invalid('expected a duration (seconds, or a string such as "5m", "2h", "1d") '
                       f"or off, got {_shown(value)}") from None


def parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_shown(value)}")
    return value


def parse_str(secret: bool = False):
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise _Invalid(f"expected a non-empty string, got {_shown(value, secret)}")
        return value
    return parse


def parse_choice(choices: tuple[str, ...]):
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            hint = _did_you_mean(value, choices) if isinstance(value, str) else ""
            raise _Invalid(f"expected one of {', '.join(choices)}, got {_shown(value)}{hint}")
        return value
    return parse


def parse_str_list(value: Any) -> tuple[str, ...]:
    """A list of strings; a single string is read as a one-element list."""
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v.strip() for v in value)):
        raise _Invalid(f"expected a non-empty list of strings, got {_shown(value)}")
    return tuple(v.strip() for v in value)


def parse_type_list(value: Any) -> tuple[str, ...]:
    tokens = parse_str_list(value)
    for token in tokens:
        t = token.lower()
        if t.startswith(".") and len(t) > 1:
            continue
        if "/" in t:
            major, _, minor = t.partition("/")
            if major and minor:
                continue
        elif t in CATEGORIES:
            continue
        hint = _did_you_mean(t, CATEGORIES)
        if not hint and "/" not in t and "." not in t:
            hint = f'; did you mean ".{t}"?'
        raise _Invalid(
            f"expected a category ({', '.join(CATEGORIES)}), a MIME type (video/mp4, video/*) "
            f"or an extension (.mp4), got {json.dumps(token)}{hint}")
    return tuple(t.lower() for t in tokens)


_ENV_RE = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand_env(value: str) -> str:
    """$VAR and ${VAR} from the environment; an unset variable is an error, not an empty string."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) if m.group(1) is not None else m.group(2)
        if name not in os.environ:
            raise _Invalid(f"environment variable {name} is not set")
        return os.environ[name]
    return _ENV_RE.sub(sub, value)


def parse_path(base_dir: Path):
    def parse(value: Any) -> Path:
        text = parse_str()(value)
        expanded = os.path.expanduser(expand_env(text))
        path = Path(expanded)
        return Path(os.path.normpath(path if path.is_absolute() else base_dir / path))
    return parse


# ---------------------------------------------------------------------------------------------
# Rules

_RULE_PARSERS: dict[str, Callable[[Any], Any]] = {
    "max_age_days": parse_number(),
    "min_age_days": parse_number(),
    "include_types": parse_type_list,
    "exclude_types": parse_type_list,
    "max_size_bytes": parse_size,
    "min_size_bytes": parse_size,
    "require_tags": parse_str_list,
    "exclude_tags": parse_str_list,
    "min_quality_stars": parse_int(0, 5),
    "max_quality_stars": parse_int(0, 5),
}
assert tuple(_RULE_PARSERS) == RULE_KEYS

_RANGES = (
    ("min_age_days", "max_age_days"),
    ("min_size_bytes", "max_size_bytes"),
    ("min_quality_stars", "max_quality_stars"),
)


def _parse_rule(v: _Validator, path: KeyPath, raw: Any) -> Rule | None:
    mapping = v.mapping(path, raw, RULE_KEYS)
    if mapping is None:
        return None
    before = len(v.problems)
    values: dict[str, Any] = {}
    for key, value in mapping.items():
        if key in _RULE_PARSERS:
            values[key] = v.check((*path, key), value, _RULE_PARSERS[key])
    for lo_key, hi_key in _RANGES:
        lo, hi = values.get(lo_key), values.get(hi_key)
        if lo is not None and hi is not None and lo > hi:
            v.problem((*path, lo_key), f"impossible range: {lo_key} {lo} > {hi_key} {hi} "
                                        "(no file can match this rule)")
    for inc_key, exc_key in (("require_tags", "exclude_tags"), ("include_types", "exclude_types")):
        both = sorted({t.casefold() for t in values.get(inc_key) or ()}
                      & {t.casefold() for t in values.get(exc_key) or ()})
        if both:
            v.problem((*path, exc_key), f"impossible rule: {', '.join(both)} is in both "
                                         f"{inc_key} and {exc_key}")
    if len(v.problems) > before:
        return None
    return Rule(**values)


def _parse_rules(v: _Validator, path: KeyPath, raw: Any) -> tuple[Rule, ...]:
    if raw is None:
        return ()
    if isinstance(raw, dict):
        raw = [raw]  # a single rule written without the list dash
    if not isinstance(raw, list):
        v.problem(path, f"expected a list of rules, got {_shown(raw)}")
        return ()
    rules = [_parse_rule(v, (*path, i), r) for i, r in enumerate(raw)]
    return tuple(r for r in rules if r is not None)


# ---------------------------------------------------------------------------------------------
# Location-specific config

_S3_STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA",
                       "INTELLIGENT_TIERING", "GLACIER", "GLACIER_IR", "DEEP_ARCHIVE",
                       "EXPRESS_ONEZONE")
_GCS_STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")

_COMMON_CONFIG: dict[str, Callable[[Path], Callable[[Any], Any]]] = {
    "max_concurrent": lambda base: parse_int(1, 1024),
    "retry_deadline": lambda base: parse_duration,
}
_OBJECT_STORE_CONFIG: dict[str, Callable[[Path], Callable[[Any], Any]]] = {
    **_COMMON_CONFIG,
    "read_timeout": lambda base: _parse_timeout,
}
_CONFIG_KEYS: dict[LocationType, dict[str, Callable[[Path], Callable[[Any], Any]]]] = {
    LocationType.LOCAL: {
        "skip_hidden": lambda base: parse_bool,
        **_COMMON_CONFIG,
    },
    LocationType.S3: {
        "prefix": lambda base: parse_str(),
        "region": lambda base: parse_str(),
        "endpoint_url": lambda base: _parse_url,
        "aws_access_key_id": lambda base: parse_str(secret=True),
        "aws_secret_access_key": lambda base: parse_str(secret=True),
        "aws_session_token": lambda base: parse_str(secret=True),
        "profile": lambda base: parse_str(),
        "storage_class": lambda base: parse_choice(_S3_STORAGE_CLASSES),
        "server_side_encryption": lambda base: parse_choice(("AES256", "aws:kms", "aws:kms:dsse")),
        "sse_kms_key_id": lambda base: parse_str(),
        "addressing_style": lambda base: parse_choice(("auto", "path", "virtual")),
        "multipart_threshold": lambda base: parse_size,
        "multipart_chunksize": lambda base: parse_size,
        **_OBJECT_STORE_CONFIG,
    },
    LocationType.GCS: {
        "prefix": lambda base: parse_str(),
        "credentials_path": lambda base: parse_path(base),
        "project": lambda base: parse_str(),
        "storage_class": lambda base: parse_choice(_GCS_STORAGE_CLASSES),
        "resumable_threshold": lambda base: parse_size,
        **_OBJECT_STORE_CONFIG,
    },
}


def _parse_timeout(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise _Invalid(f"expected a duration above zero, got {_shown(value)}")
    return seconds


def _parse_url(value: Any) -> str:
    text = parse_str()(value)
    if not re.match(r"^https?://[^/\s]+", text):
        raise _Invalid(f'expected an http(s) URL such as "http://127.0.0.1:8333", '
                       f"got {_shown(text)}")
    return text.rstrip("/")


def _parse_location_config(v: _Validator, path: KeyPath, raw: Any, location_type: LocationType,
                           base_dir: Path) -> dict[str, Any]:
    specs = _CONFIG_KEYS[location_type]
    mapping = v.mapping(path, raw, tuple(specs))
    if mapping is None:
        return {}
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if key not in specs:
            continue
        secret = is_secret_key(key)

        def parse(val: Any, key: str = key, secret: bool = secret) -> Any:
            if isinstance(val, str):
                val = expand_env(val)
            elif secret and not isinstance(val, str):
                raise _Invalid(f"expected a non-empty string, got {_shown(val, secret=True)}")
            return specs[key](base_dir)(val)

        parsed = v.check((*path, key), value, parse)
        if parsed is not None:
            out[key] = str(parsed) if isinstance(parsed, Path) else parsed
    if location_type is LocationType.S3 and ("aws_access_key_id" in mapping) != (
            "aws_secret_access_key" in mapping):
        v.problem(path, "aws_access_key_id and aws_secret_access_key must be given together")
    chunk = out.get("multipart_chunksize")
    if chunk is not None and chunk < 5 << 20:
        v.problem((*path, "multipart_chunksize"),
                  f"expected at least 5MiB (the S3 minimum part size), got {chunk}")
    return out


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def _parse_bucket(location_type: LocationType):
    def parse(value: Any) -> str:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise _Invalid(f"missing bucket: for {location_type.value} locations `path` is the "
                           "bucket name")
        text = parse_str()(value)
        if "/" in text:
            raise _Invalid(f"expected a bucket name without '/', got {_shown(text)} "
                           "(put a key prefix in config.prefix)")
        if not _BUCKET_RE.match(text) or (location_type is LocationType.S3 and len(text) > 63):
            raise _Invalid("expected a bucket name (3-63 lower-case letters, digits, '.', '-'), "
                           f"got {_shown(text)}")
        return text
    return parse


def _parse_name(value: Any) -> str:
    name = parse_str()(value)
    if name != name.strip():
        raise _Invalid(f"expected a name without leading or trailing spaces, got {_shown(name)}")
    if "/" in name or "\0" in name or name in (".", ".."):
        raise _Invalid(f"expected a name usable as a directory name (no '/'), got {_shown(name)}")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise _Invalid(f"expected a name of at most {MAX_NAME_BYTES} bytes")
    return name


LOCATION_KEYS = ("name", "type", "path", "priority", "status", "rules", "config",
                 "min_free_bytes")
LOCATION_TYPES = tuple(t.value for t in LocationType)
LOCATION_STATUSES = tuple(s.value for s in LocationStatus)


def _parse_location(v: _Validator, path: KeyPath, raw: Any, base_dir: Path
                    ) -> StorageLocation | None:
    mapping = v.mapping(path, raw, LOCATION_KEYS, required=("name",))
    if mapping is None:
        return None
    before = len(v.problems)
    name = v.check((*path, "name"), mapping.get("name"), _parse_name) \
        if "name" in mapping else None
    type_text = v.check((*path, "type"), mapping.get("type", "local"),
                        parse_choice(LOCATION_TYPES))
    location_type = LocationType(type_text) if type_text else None
    priority = v.check((*path, "priority"), mapping.get("priority", DEFAULT_PRIORITY),
                       parse_int())
    status = v.check((*path, "status"), mapping.get("status", "active"),
                     parse_choice(LOCATION_STATUSES))
    min_free = None
    if mapping.get("min_free_bytes") is not None:
        min_free = v.check((*path, "min_free_bytes"), mapping["min_free_bytes"], parse_size)
    rules = _parse_rules(v, (*path, "rules"), mapping.get("rules"))
    loc_path: str | None = None
    config: dict[str, Any] = {}
    if location_type is not None:
        if location_type is LocationType.LOCAL:
            if mapping.get("path") is None:
                v.problem((*path, "path"), "missing (required): the location's directory")
            else:
                parsed = v.check((*path, "path"), mapping["path"], parse_path(base_dir))
                loc_path = str(parsed) if parsed is not None else None
        else:
            loc_path = v.check((*path, "path"), mapping.get("path"), _parse_bucket(location_type))
        config = _parse_location_config(v, (*path, "config"), mapping.get("config"),
                                        location_type, base_dir)
    if len(v.problems) > before or location_type is None or loc_path is None or name is None:
        return None
    return StorageLocation(
        location_id=location_id_for(location_type, loc_path, config),
        name=name,
        priority=priority,
        status=LocationStatus(status),
        rules=rules,
        min_free_bytes=min_free,
        type=location_type,
        path=loc_path,
        config=config,
    )


def _check_unique(v: _Validator, path: KeyPath, raw_locations: list[Any],
                  locations: list[tuple[int, StorageLocation]]) -> None:
    # Names are compared on the raw entries so a duplicate shows even in an otherwise bad entry.
    seen_names: dict[str, int] = {}
    for index, raw in enumerate(raw_locations):
        name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(name, str):
            continue
        folded = name.strip().casefold()
        if folded in seen_names:
            v.problem((*path, index, "name"), f"duplicate location name {json.dumps(name)} "
                                              f"(also at locations[{seen_names[folded]}])")
        else:
            seen_names[folded] = index
    seen_ids: dict[str, int] = {}
    for index, loc in locations:
        if loc.location_id in seen_ids:
            v.problem((*path, index, "path"), f"same {loc.type.value} location as "
                                              f"locations[{seen_ids[loc.location_id]}] "
                                              f"({loc.path})")
        else:
            seen_ids[loc.location_id] = index


# ---------------------------------------------------------------------------------------------
# The settings file


@dataclass(frozen=True)
class Settings:
    """A validated settings.yaml. See docs/configuration.md for every key and default."""

    source: Path | None
    catalog_path: Path
    state_dir: Path
    cache_dir: Path
    cache_size: int
    min_free_bytes: int | None  # default reserve for locations that set none
    scan_interval: float
    migration_interval: float | None  # None: the mount does not migrate on its own
    migration_move: bool  # scheduled migrations move (remove sources) rather than copy
    migration_bandwidth: int | None  # bytes per second over all scheduled transfers
    migration_max_concurrent: int
    skip_hidden: bool
    locations: tuple[StorageLocation, ...]
    # project -> conflict strategy sync decides with unasked ("*": every other project);
    # absent: conflicts wait for resolve-conflict
    sync_auto_resolve: Mapping[str, str] = field(default_factory=dict)
    # how often the mount runs the sync queue; None: only when asked (sync-process)
    sync_interval: float | None = DEFAULT_SYNC_INTERVAL

    def location(self, name_or_id: str) -> StorageLocation:
        for loc in self.locations:
            if name_or_id in (loc.location_id, loc.name):
                return loc
        raise UsageError(f"no location named or with id {name_or_id!r} in {self.source}")


STORAGE_KEYS = ("search_db", "location_registry_db", "catalog", "state_dir", "cache_dir",
                "cache_size", "min_free_bytes", "scan_interval", "migration_interval",
                "migration_move", "migration_bandwidth", "migration_max_concurrent",
                "skip_hidden", "sync", "locations")
SYNC_KEYS = ("interval", "auto_resolve", "projects")
#: Strategies sync may apply without asking; `off` leaves conflicts to resolve-conflict.
AUTO_RESOLVE_CHOICES = ("off", "newest", "largest", "primary")


def _yaml_to_python(loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath,
                    lines: dict[KeyPath, int], problems: list[tuple[KeyPath, str]]) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<` merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            key = key if isinstance(key, str) else str(key)
            child = (*path, key)
            if key in result:
                lines[(*child, "#dup")] = key_node.start_mark.line + 1
                problems.append(((*child, "#dup"), f"duplicate key {json.dumps(key)} (first at "
                                                    f"line {lines[child]})"))
                continue
            result[key] = _yaml_to_python(loader, value_node, child, lines, problems)
            lines[child] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        out = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            out.append(_yaml_to_python(loader, item, (*path, i), lines, problems))
        return out
    return loader.construct_object(node, deep=True)


def _read_yaml(text: str, source: str) -> tuple[Any, dict[KeyPath, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        dup_problems: list[tuple[KeyPath, str]] = []
        data = None if node is None else _yaml_to_python(loader, node, (), lines, dup_problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or exc.context or "syntax error"
        col = f" (column {mark.column + 1})" if mark else ""
        raise ConfigError([ConfigProblem(source, line, "", f"invalid YAML: {what}{col}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(source, None, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if dup_problems:
        raise ConfigError([ConfigProblem(source, lines.get(p), format_key(p[:-1]), msg)
                           for p, msg in dup_problems])
    return data, lines


def parse_settings(text: str, source_path: Path, display_name: str | None = None) -> Settings:
    """Validate settings text as if read from `source_path` (relative paths resolve from its
    directory). Raises ConfigError listing every problem."""
    source = display_name or str(source_path)
    base_dir = source_path.parent.absolute()
    data, lines = _read_yaml(text, source)
    v = _Validator(source, lines)
    if data is None:
        raise ConfigError([ConfigProblem(source, None, "",
                                         "the file is empty; expected a 'storage' mapping")])
    top = v.mapping((), data, ("storage",), required=("storage",))
    storage_raw = top.get("storage") if top else None
    storage = v.mapping(("storage",), storage_raw, STORAGE_KEYS) if storage_raw is not None \
        else None
    if storage is None:
        raise ConfigError(v.problems)

    def opt(key: str, parse: Callable[[Any], Any], default: Any) -> Any:
        if storage.get(key) is None:
            return default
        return v.check(("storage", key), storage[key], parse)

    state_dir = opt("state_dir", parse_path(base_dir), base_dir / "state")
    cache_dir = opt("cache_dir", parse_path(base_dir), base_dir / "cache")
    search_db = opt("search_db", parse_path(base_dir), None)
    opt("location_registry_db", parse_path(base_dir), None)
    catalog = opt("catalog", parse_path(base_dir), None) or search_db
    cache_size = opt("cache_size", parse_size, DEFAULT_CACHE_SIZE)
    min_free = opt("min_free_bytes", parse_size, None)
    scan_interval = opt("scan_interval", parse_duration, DEFAULT_SCAN_INTERVAL)
    migration_interval = opt("migration_interval", parse_interval_or_off, None)
    migration_move = opt("migration_move", parse_bool, True)
    migration_bandwidth = opt("migration_bandwidth", parse_rate, None) or None
    migration_max_concurrent = opt("migration_max_concurrent",
                                   parse_int(1, 256, "a number of transfers"),
                                   DEFAULT_MIGRATION_CONCURRENCY)
    skip_hidden = opt("skip_hidden", parse_bool, True)
    sync_interval, sync_auto_resolve = _parse_sync(v, storage.get("sync"))

    locations_raw = storage.get("locations") or []
    parsed: list[tuple[int, StorageLocation]] = []
    if not isinstance(locations_raw, list):
        v.problem(("storage", "locations"), f"expected a list of locations, "
                                            f"got {_shown(locations_raw)}")
        locations_raw = []
    for i, raw in enumerate(locations_raw):
        loc = _parse_location(v, ("storage", "locations", i), raw, base_dir)
        if loc is not None:
            if loc.min_free_bytes is None and min_free is not None:
                loc = _with_reserve(loc, min_free)
            parsed.append((i, loc))
    _check_unique(v, ("storage", "locations"), locations_raw, parsed)
    if v.problems:
        raise ConfigError(v.problems)
    return Settings(
        source=source_path,
        catalog_path=catalog or (state_dir / CATALOG_FILENAME),
        state_dir=state_dir,
        cache_dir=cache_dir,
        cache_size=cache_size,
        min_free_bytes=min_free,
        scan_interval=scan_interval,
        migration_interval=migration_interval,
        migration_move=migration_move,
        migration_bandwidth=migration_bandwidth,
        migration_max_concurrent=migration_max_concurrent,
        skip_hidden=skip_hidden,
        locations=tuple(loc for _, loc in parsed),
        sync_auto_resolve=sync_auto_resolve,
        sync_interval=sync_interval,
    )


def _parse_sync(v: _Validator, raw: Any) -> tuple[float | None, dict[str, str]]:
    """`storage.sync`: {interval: DURATION|off, auto_resolve: STRATEGY,
    projects: {NAME: {auto_resolve: ...}}}."""
    path: KeyPath = ("storage", "sync")
    sync = v.mapping(path, raw, SYNC_KEYS) if raw is not None else None
    if sync is None:
        return DEFAULT_SYNC_INTERVAL, {}
    interval = DEFAULT_SYNC_INTERVAL
    if "interval" in sync:
        interval = v.check((*path, "interval"), sync["interval"], parse_interval_or_off)
    named = parse_choice(AUTO_RESOLVE_CHOICES)

    def choice(value: Any) -> str:
        return "off" if value is False else named(value)  # YAML reads a bare off as false
    chosen: dict[str, str | None] = {}
    if sync.get("auto_resolve") is not None:
        chosen["*"] = v.check((*path, "auto_resolve"), sync["auto_resolve"], choice)
    projects = sync.get("projects")
    if projects is not None and not isinstance(projects, dict):
        v.problem((*path, "projects"), "expected a mapping of project name to its settings, "
                                      f"got {_shown(projects)}")
        projects = None
    for name, settings in (projects or {}).items():
        project = v.mapping((*path, "projects", name), settings, ("auto_resolve",),
                            required=("auto_resolve",))
        if project is not None and project.get("auto_resolve") is not None:
            chosen[name] = v.check((*path, "projects", name, "auto_resolve"),
                                   project["auto_resolve"], choice)
    return interval, {project: strategy for project, strategy in chosen.items()
                      if strategy is not None}


def _with_reserve(loc: StorageLocation, min_free: int) -> StorageLocation:
    return replace(loc, min_free_bytes=min_free)


def load_settings(path: Path) -> Settings:
    """Read and validate a settings file. Raises ConfigError (exit code 2) on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), None, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([ConfigProblem(str(path), None, "", f"cannot read: {reason}")]) from None
    return parse_settings(text, path)


def default_config_path() -> Path:
    """$ALICEFS_CONFIG, else ~/.config/alicefs/settings.yaml ($XDG_CONFIG_HOME honoured)."""
    env = os.environ.get("ALICEFS_CONFIG")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "alicefs" / "settings.yaml"


# ---------------------------------------------------------------------------------------------
# Pieces of configuration given on the command line (alicefs-ctl add/update)


def _json_value(text: str, label: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([ConfigProblem(label, None, "", f"invalid JSON: {exc.msg} "
                                                          f"(column {exc.colno})")]) from None


def rule_from_json(text: str, label: str) -> Rule:
    """A rule given as JSON on the command line, validated exactly like one in settings.yaml."""
    v = _Validator(label)
    rule = _parse_rule(v, (), _json_value(text, label))
    if v.problems or rule is None:
        raise ConfigError(v.problems)
    return rule


def location_from_values(values: dict[str, Any], label: str, base_dir: Path) -> StorageLocation:
    """A location from command-line values (same keys as a settings.yaml entry)."""
    v = _Validator(label)
    loc = _parse_location(v, (), values, base_dir)
    if v.problems or loc is None:
        raise ConfigError(v.problems)
    return loc


def config_from_json(text: str, label: str) -> dict[str, Any]:
    value = _json_value(text, label)
    if not isinstance(value, dict):
        raise ConfigError([ConfigProblem(label, None, "", f"expected a JSON object, "
                                                          f"got {_shown(value)}")])
    return value


def parse_priority(value: Any, label: str) -> int:
    v = _Validator(label)
    result = v.check((), value, parse_int())
    if v.problems:
        raise ConfigError(v.problems)
    return result
