from __future__ import annotations

import re
from pathlib import Path

import pytest

from alicefs.config import load_settings, location_from_values, rule_from_json
from alicefs.errors import ConfigError
from alicefs.model import LocationType
from alicefs.rules import LocationStatus, Rule

GUIDE_CONFIG = """\
storage:
  # Database locations
  search_db: data/search.duckdb
  location_registry_db: data/locations.duckdb

  # Storage locations with rules
  locations:
    - name: "Fast SSD"
      type: "local"
      path: "~/Pictures/AI-Active"
      priority: 100  # Higher = preferred
      rules:
        - max_age_days: 30
          min_quality_stars: 4

    - name: "Archive HDD"
      type: "local"
      path: "/Volumes/Archive/AI"
      priority: 50
      rules:
        - min_age_days: 30
          max_age_days: 180

    - name: "S3 Cold Storage"
      type: "s3"
      path: "my-ai-archive-bucket"
      priority: 25
      config:
        region: "us-west-2"
        prefix: "alice-archive/"
      rules:
        - min_age_days: 180
"""


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return [str(p) for p in info.value.problems]


def assert_one_problem(path: Path, pattern: str) -> None:
    problems = problems_of(path)
    assert len(problems) == 1, problems
    assert re.fullmatch(pattern, problems[0]), problems[0]


# -- the guide's examples -------------------------------------------------------------------------

def test_guide_configuration_loads(write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = load_settings(write_config(GUIDE_CONFIG))
    assert settings.catalog_path == tmp_path / "data" / "search.duckdb"
    fast, archive, cold = settings.locations
    assert fast.name == "Fast SSD" and fast.priority == 100
    assert fast.path == str(tmp_path / "home" / "Pictures" / "AI-Active")
    assert fast.rules == (Rule(max_age_days=30, min_quality_stars=4),)
    assert archive.rules == (Rule(min_age_days=30, max_age_days=180),)
    assert cold.type is LocationType.S3 and cold.path == "my-ai-archive-bucket"
    assert cold.prefix == "alice-archive/" and cold.config["region"] == "us-west-2"
    assert all(loc.status is LocationStatus.ACTIVE for loc in settings.locations)


def test_guide_rule_examples_load(write_config):
    settings = load_settings(write_config("""\
        storage:
          locations:
            - name: examples
              path: /data
              rules:
                # High-quality recent work on fast storage
                - max_age_days: 30
                  min_quality_stars: 4

                # Archive old files except videos
                - min_age_days: 180
                  exclude_types: ["video/mp4", "video/mov"]

                # Large files to specific location
                - min_size_bytes: 104857600  # 100MB

                # Tagged content
                - require_tags: ["portfolio", "client-work"]
    """))
    rules = settings.locations[0].rules
    assert rules[1].exclude_types == ("video/mp4", "video/mov")
    assert rules[2].min_size_bytes == 104857600
    assert rules[3].require_tags == ("portfolio", "client-work")


def test_guide_cloud_examples_load(write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings(write_config("""\
        storage:
          locations:
            - name: "S3 Archive"
              type: "s3"
              path: "my-bucket-name"
              priority: 50
              config:
                # Optional: specify credentials
                aws_access_key_id: "YOUR_KEY"
                aws_secret_access_key: "YOUR_SECRET"
                region: "us-west-2"
                prefix: "alice/"  # Optional prefix
            - name: "GCS Backup"
              type: "gcs"
              path: "my-bucket-name"
              priority: 50
              config:
                # Optional: service account key
                credentials_path: "~/path/to/key.json"
                prefix: "alice/"
    """))
    s3, gcs = sorted(settings.locations, key=lambda loc: loc.type.value, reverse=True)
    assert s3.config["aws_secret_access_key"] == "YOUR_SECRET"
    assert gcs.config["credentials_path"] == str(tmp_path / "path" / "to" / "key.json")
    assert s3.location_id != gcs.location_id
    # Secrets never show in a repr or a listing.
    assert "YOUR_SECRET" not in repr(s3) and "YOUR_KEY" not in repr(s3)
    assert s3.redacted_config()["aws_secret_access_key"] == "***"


# -- defaults, paths and the environment ----------------------------------------------------------

def test_defaults_and_relative_paths_resolve_from_the_config_file(write_config, tmp_path):
    settings = load_settings(write_config("""\
        storage:
          locations:
            - {name: a, path: media/a}
    """))
    assert settings.catalog_path == tmp_path / "state" / "catalog.duckdb"
    assert settings.state_dir == tmp_path / "state"
    assert settings.cache_dir == tmp_path / "cache"
    assert settings.scan_interval == 300 and settings.migration_interval is None
    assert settings.migration_move is True and settings.migration_bandwidth is None
    assert settings.cache_size == 10 << 30 and settings.skip_hidden is True
    loc = settings.locations[0]
    assert loc.path == str(tmp_path / "media" / "a")
    assert loc.priority == 50 and loc.type is LocationType.LOCAL and loc.min_free_bytes is None


def test_environment_variables_and_units_expand(write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIA_ROOT", str(tmp_path / "m"))
    monkeypatch.setenv("S3_SECRET", "from-env")
    settings = load_settings(write_config("""\
        storage:
          cache_size: 2GiB
          min_free_bytes: 500MB
          scan_interval: 5m
          migration_interval: 1d
          migration_bandwidth: 50MB/s
          migration_max_concurrent: 8
          locations:
            - name: a
              path: ${MEDIA_ROOT}/a
            - name: b
              type: s3
              path: bucket-b
              min_free_bytes: 0
              config: {aws_access_key_id: k, aws_secret_access_key: $S3_SECRET}
    """))
    assert settings.cache_size == 2 << 30
    assert settings.scan_interval == 300 and settings.migration_interval == 86400
    assert settings.migration_bandwidth == 50_000_000
    assert settings.migration_max_concurrent == 8
    a, b = settings.locations
    assert a.path == str(tmp_path / "m" / "a")
    assert a.min_free_bytes == 500_000_000  # storage-wide default applies
    assert b.min_free_bytes == 0  # the location's own setting wins
    assert b.config["aws_secret_access_key"] == "from-env"


def test_location_ids_are_stable_and_independent_of_name_and_priority(write_config, tmp_path):
    first = load_settings(write_config("""\
        storage:
          locations:
            - {name: a, path: /data/a, priority: 1}
            - {name: s3, type: s3, path: bucket, config: {prefix: x/}}
            - {name: s3b, type: s3, path: bucket, config: {prefix: y}}
    """, "one.yaml"))
    second = load_settings(write_config("""\
        storage:
          locations:
            - {name: renamed, path: /data/a/, priority: 99}
            - {name: s3, type: s3, path: bucket, config: {prefix: /x}}
    """, "two.yaml"))
    assert first.locations[0].location_id == second.locations[0].location_id
    assert first.locations[1].location_id == second.locations[1].location_id
    assert first.locations[1].location_id != first.locations[2].location_id
    assert re.fullmatch(r"local-[0-9a-f]{12}", first.locations[0].location_id)


# -- every class of error, located by file, line and key ------------------------------------------

def test_wrong_type_names_file_line_and_key(write_config):
    path = write_config("""\
        storage:
          locations:
            - name: a
              path: /a
              rules:
                - max_age_days: 30
                  min_quality_stars: "four"
    """)
    assert_one_problem(path, re.escape(
        f'{path}:7 storage.locations[0].rules[0].min_quality_stars: expected an integer 0-5, '
        'got "four"'))


def test_out_of_range_value(write_config):
    path = write_config("""\
        storage:
          locations:
            - name: a
              path: /a
              rules: [{max_quality_stars: 9}]
    """)
    assert_one_problem(path, r".*:5 storage\.locations\[0\]\.rules\[0\]\.max_quality_stars: "
                             r"expected an integer 0-5, got 9")


def test_unknown_keys_get_a_did_you_mean(write_config):
    path = write_config("""\
        storage:
          locations:
            - name: a
              path: /a
              priorty: 3
              rules:
                - max_age: 30
    """)
    problems = problems_of(path)
    assert len(problems) == 2
    assert re.match(r'.*:5 storage\.locations\[0\]\.priorty: unknown key "priorty"; '
                    r'did you mean "priority"\?', problems[0])
    assert re.match(r'.*:7 storage\.locations\[0\]\.rules\[0\]\.max_age: unknown key "max_age"; '
                    r'did you mean "max_age_days"\?', problems[1])


def test_unknown_top_level_key(write_config):
    path = write_config("""\
        storage: {locations: []}
        storag: {}
    """)
    assert_one_problem(path, r'.*:2 storag: unknown key "storag"; did you mean "storage"\?.*')


def test_duplicate_location_names(write_config):
    path = write_config("""\
        storage:
          locations:
            - {name: Disk, path: /a}
            - {name: disk, path: /b}
    """)
    assert_one_problem(path, r'.*:4 storage\.locations\[1\]\.name: duplicate location name '
                             r'"disk" \(also at locations\[0\]\)')


def test_same_place_twice(write_config):
    path = write_config("""\
        storage:
          locations:
            - {name: one, path: /a}
            - {name: two, path: /a/}
    """)
    assert_one_problem(path, r".*:4 storage\.locations\[1\]\.path: same local location as "
                             r"locations\[0\].*")


def test_unknown_location_type(write_config):
    path = write_config("""\
        storage:
          locations:
            - {name: a, path: /a, type: s4}
    """)
    assert_one_problem(path, r'.*:3 storage\.locations\[0\]\.type: expected one of local, s3, '
                             r'gcs, got "s4"')


@pytest.mark.parametrize("lo, hi, key", [
    ("min_age_days: 100", "max_age_days: 10", "min_age_days"),
    ("min_size_bytes: 10", "max_size_bytes: 9", "min_size_bytes"),
    ("min_quality_stars: 5", "max_quality_stars: 1", "min_quality_stars"),
])
def test_impossible_ranges(write_config, lo, hi, key):
    path = write_config(f"""\
        storage:
          locations:
            - name: a
              path: /a
              rules:
                - {lo}
                  {hi}
    """)
    assert_one_problem(path, rf".*:6 storage\.locations\[0\]\.rules\[0\]\.{key}: impossible "
                             r"range: .*")


def test_contradicting_tags(write_config):
    path = write_config("""\
        storage:
          locations:
            - name: a
              path: /a
              rules:
                - require_tags: [keep]
                  exclude_tags: [Keep]
    """)
    assert_one_problem(path, r".*:7 storage\.locations\[0\]\.rules\[0\]\.exclude_tags: "
                             r"impossible rule: keep is in both .*")


@pytest.mark.parametrize("location_type", ["s3", "gcs"])
def test_missing_bucket(write_config, location_type):
    path = write_config(f"""\
        storage:
          locations:
            - name: cloud
              type: {location_type}
              priority: 1
    """)
    assert_one_problem(path, rf".*:3 storage\.locations\[0\]\.path: missing bucket: for "
                             rf"{location_type} locations `path` is the bucket name")


def test_bad_type_token_suggests_the_right_form(write_config):
    path = write_config("""\
        storage:
          locations:
            - {name: a, path: /a, rules: [{include_types: [mp4]}]}
    """)
    assert_one_problem(path, r'.*include_types: expected a category .*got "mp4"; did you mean '
                             r'"\.mp4"\?')


def test_secret_values_never_appear_in_errors(write_config):
    path = write_config("""\
        storage:
          locations:
            - name: s3
              type: s3
              path: bucket
              config:
                aws_access_key_id: AKIASECRETKEYID
                aws_secret_access_key: [hunter2-secret]
    """)
    problems = problems_of(path)
    assert problems == [f"{path}:8 storage.locations[0].config.aws_secret_access_key: "
                        "expected a non-empty string, got a list"]
    assert all("AKIASECRETKEYID" not in p and "hunter2" not in p for p in problems)


def test_lone_credential_half(write_config):
    path = write_config("""\
        storage:
          locations:
            - {name: s3, type: s3, path: bucket, config: {aws_access_key_id: k}}
    """)
    assert_one_problem(path, r".*storage\.locations\[0\]\.config: aws_access_key_id and "
                             r"aws_secret_access_key must be given together")


def test_unset_environment_variable(write_config, monkeypatch):
    monkeypatch.delenv("ALICEFS_NOT_SET", raising=False)
    path = write_config("""\
        storage:
          locations:
            - {name: a, path: $ALICEFS_NOT_SET/media}
    """)
    assert_one_problem(path, r".*:3 storage\.locations\[0\]\.path: environment variable "
                             r"ALICEFS_NOT_SET is not set")


def test_every_problem_is_reported_at_once(write_config):
    path = write_config("""\
        storage:
          scan_interval: often
          locations:
            - {name: a, path: /a, priority: high}
            - {name: b, type: gcs, path: Bad_Bucket}
            - {path: /c}
    """)
    problems = problems_of(path)
    assert [p.split(" ")[0].rsplit(":", 1)[1] for p in problems] == ["2", "4", "5", "6"]


def test_duplicate_yaml_keys_are_an_error(write_config):
    path = write_config("""\
        storage:
          locations: []
          locations: []
    """)
    assert_one_problem(path, r'.*:3 storage\.locations: duplicate key "locations" '
                             r'\(first at line 2\)')


def test_invalid_yaml_names_the_line(write_config):
    path = write_config("""\
        storage:
          locations:
            - name: a
             path: /a
    """)
    assert_one_problem(path, r".*:4: invalid YAML: .*")


def test_empty_and_missing_files(write_config, tmp_path):
    assert_one_problem(write_config(""), r".*: the file is empty; expected a 'storage' mapping")
    assert_one_problem(tmp_path / "nope.yaml", r".*nope\.yaml: no such file")


def test_cli_rule_json_is_validated_like_the_file():
    assert rule_from_json('{"max_age_days": 30, "min_quality_stars": 4}', "--rule #1") == \
        Rule(max_age_days=30, min_quality_stars=4)
    with pytest.raises(ConfigError) as info:
        rule_from_json('{"min_quality_stars": "four"}', "--rule #2")
    assert str(info.value) == ('--rule #2 min_quality_stars: expected an integer 0-5, '
                               'got "four"')
    with pytest.raises(ConfigError, match=r"--rule #1: invalid JSON"):
        rule_from_json("{max_age_days: 3}", "--rule #1")


def test_cli_location_values_resolve_relative_paths(tmp_path):
    loc = location_from_values({"name": "x", "path": "rel"}, "add", tmp_path)
    assert loc.path == str(tmp_path / "rel")


@pytest.mark.parametrize("value", ["off", "false", "0"])
def test_migration_schedule_can_be_off(write_config, value):
    settings = load_settings(write_config(f"""\
        storage:
          migration_interval: {value}
    """))
    assert settings.migration_interval is None


def test_bad_migration_settings_name_the_key(write_config):
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config("""\
            storage:
              migration_interval: soon
              migration_bandwidth: fast
              migration_max_concurrent: 0
        """))
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "storage.migration_interval" in text and "or off" in text
    assert "storage.migration_bandwidth" in text and "bytes per second" in text
    assert "storage.migration_max_concurrent" in text and "1-256" in text


def test_object_stores_take_a_read_timeout(write_config):
    settings = load_settings(write_config("""\
        storage:
          locations:
            - {name: s3, type: s3, path: bucket-b, config: {read_timeout: 30s}}
            - {name: gcs, type: gcs, path: bucket-g, config: {read_timeout: 5}}
    """))
    assert [loc.config["read_timeout"] for loc in settings.locations] == [30.0, 5.0]
    path = write_config("""\
        storage:
          locations:
            - {name: s3, type: s3, path: bucket-b, config: {read_timeout: 0}}
    """, "zero.yaml")
    assert_one_problem(path, r".*:3 storage\.locations\[0\]\.config\.read_timeout: "
                             r"expected a duration above zero, got 0")
