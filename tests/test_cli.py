"""alicefs-ctl end to end, through the installed entry point in a subprocess."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import catalog_held_by_another_process


@pytest.fixture
def library(tmp_path, write_config):
    for name in ("ssd", "archive"):
        (tmp_path / name).mkdir()
    return write_config("""\
        storage:
          search_db: data/search.duckdb
          location_registry_db: data/locations.duckdb
          locations:
            - name: "Fast SSD"
              type: "local"
              path: "ssd"
              priority: 100
              rules:
                - max_age_days: 30
                  min_quality_stars: 4
            - name: "Archive HDD"
              type: "local"
              path: "archive"
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
                aws_access_key_id: "AKIAEXAMPLEKEYID"
                aws_secret_access_key: "wJalrXUtnFEMI-very-secret"
              rules:
                - min_age_days: 180
    """)


def assert_no_traceback(result):
    assert "Traceback" not in result.stderr, result.stderr


def list_json(ctl, config):
    result = ctl("list", "--json", config=config)
    assert result.returncode == 0, result.stderr
    return {loc["name"]: loc for loc in json.loads(result.stdout)}


def test_from_config_then_list(ctl, library, tmp_path):
    result = ctl("from-config", config=library)
    assert result.returncode == 0, result.stderr
    assert "added Fast SSD (local-" in result.stdout
    assert (tmp_path / "data" / "search.duckdb").exists()
    again = ctl("from-config", config=library)
    assert "unchanged Fast SSD" in again.stdout

    table = ctl("list", config=library)
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "TYPE", "PATH"]
    assert "Fast SSD" in rows[0] and "Archive HDD" in rows[1] and "S3 Cold Storage" in rows[2]
    assert "s3://my-ai-archive-bucket/alice-archive/" in rows[2]

    locations = list_json(ctl, library)
    ssd = locations["Fast SSD"]
    assert ssd["path"] == str(tmp_path / "ssd") and ssd["priority"] == 100
    assert ssd["rules"] == [{"max_age_days": 30, "min_quality_stars": 4}]
    assert ssd["free_bytes"] > 0 and ssd["reachable"] == "reachable"
    assert locations["S3 Cold Storage"]["config"]["aws_secret_access_key"] == "***"


def test_credentials_never_printed(ctl, library):
    ctl("from-config", config=library)
    outputs = [ctl("list", config=library), ctl("list", "--json", config=library),
               ctl("from-config", "--json", config=library),
               ctl("explain", "p/a.png", config=library)]
    for result in outputs:
        assert result.returncode == 0
        for secret in ("wJalrXUtnFEMI-very-secret", "AKIAEXAMPLEKEYID"):
            assert secret not in result.stdout + result.stderr


def test_init_writes_a_starter_config_and_catalog(ctl, tmp_path):
    config = tmp_path / "conf" / "settings.yaml"
    result = ctl("init", config=config)
    assert result.returncode == 0, result.stderr
    assert config.exists() and (tmp_path / "conf" / "state" / "catalog.duckdb").exists()
    assert "0 locations" in result.stdout
    assert ctl("list", config=config).stdout.startswith("no locations registered")


def test_default_config_comes_from_the_environment(ctl, library, tmp_path):
    env = dict(os.environ, ALICEFS_CONFIG=str(library))
    assert ctl("from-config", env=env).returncode == 0
    env = dict(os.environ, HOME=str(tmp_path / "home"))
    env.pop("ALICEFS_CONFIG", None)
    env.pop("XDG_CONFIG_HOME", None)
    result = ctl("list", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"{tmp_path}/home/.config/alicefs/settings.yaml: "
                                     "no such file")


def test_add_update_remove(ctl, library, tmp_path):
    ctl("from-config", config=library)
    (tmp_path / "backup").mkdir()
    result = ctl("add", "--name", "Backup Drive", "--path", str(tmp_path / "backup"),
                 "--priority", "75", "--rule", '{"max_age_days": 30, "min_quality_stars": 4}',
                 "--rule", '{"require_tags": ["portfolio"]}', config=library)
    assert result.returncode == 0, result.stderr
    backup = list_json(ctl, library)["Backup Drive"]
    assert backup["priority"] == 75 and len(backup["rules"]) == 2

    result = ctl("update", "--location-id", backup["location_id"], "--priority", "90",
                 "--status", "archived", config=library)
    assert result.returncode == 0, result.stderr
    backup = list_json(ctl, library)["Backup Drive"]
    assert (backup["priority"], backup["status"], len(backup["rules"])) == (90, "archived", 2)

    assert ctl("update", "--location-id", "Backup Drive", "--clear-rules",
               config=library).returncode == 0
    assert list_json(ctl, library)["Backup Drive"]["rules"] == []

    result = ctl("remove", backup["location_id"], config=library)
    assert result.returncode == 0 and "no file was touched" in result.stdout
    assert "Backup Drive" not in list_json(ctl, library)
    assert (tmp_path / "backup").is_dir()


def test_add_cloud_location_with_config_json(ctl, library):
    result = ctl("add", "--name", "R2", "--type", "s3", "--path", "media-bucket",
                 "--config-json", '{"endpoint_url": "http://127.0.0.1:9000", '
                 '"prefix": "lib/", "aws_access_key_id": "k", "aws_secret_access_key": "zzsecret"}',
                 config=library)
    assert result.returncode == 0, result.stderr
    r2 = list_json(ctl, library)["R2"]
    assert r2["config"] == {"endpoint_url": "http://127.0.0.1:9000", "prefix": "lib/",
                            "aws_access_key_id": "***", "aws_secret_access_key": "***"}


@pytest.mark.parametrize("args, message", [
    (["add", "--name", "x", "--path", "/x", "--rule", '{"min_quality_stars": "four"}'],
     '--rule #1 min_quality_stars: expected an integer 0-5, got "four"'),
    (["add", "--name", "x", "--path", "/x", "--rule", "{oops"],
     "--rule #1: invalid JSON: Expecting property name enclosed in double quotes (column 2)"),
    (["add", "--name", "x", "--path", "/x", "--priority", "high"],
     "alicefs-ctl add: error: argument --priority: expected an integer, got 'high'"),
    (["add", "--name", "x", "--type", "s3", "--path", "Bad/Bucket"],
     "alicefs-ctl add path: expected a bucket name without '/', got \"Bad/Bucket\" "
     "(put a key prefix in config.prefix)"),
    (["add", "--name", "Fast SSD", "--path", "/elsewhere"],
     "alicefs-ctl: error: location name 'Fast SSD' is already used by"),
    (["update", "--location-id", "nope", "--priority", "1"],
     "alicefs-ctl: error: no location with id or name 'nope'"),
    (["update", "--location-id", "Fast SSD"],
     "alicefs-ctl: error: nothing to update"),
    (["explain", "p/a.png", "--quality", "7"],
     "argument --quality: expected a star rating 0-5, got 7"),
    (["bogus"], "alicefs-ctl: error: argument COMMAND: invalid choice: 'bogus'"),
    (["remove"], "alicefs-ctl: error: which location?"),
])
def test_usage_errors_exit_2_with_one_clear_line(ctl, library, args, message):
    ctl("from-config", config=library)
    result = ctl(*args, config=library)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert_no_traceback(result)


def test_broken_config_exits_2_naming_file_line_and_key(ctl, write_config):
    config = write_config("""\
        storage:
          locations:
            - name: a
              path: /a
              rules:
                - min_quality_stars: "four"
    """, "broken.yaml")
    result = ctl("list", config=config)
    assert result.returncode == 2
    assert result.stderr.strip() == (f'{config}:6 storage.locations[0].rules[0].'
                                     'min_quality_stars: expected an integer 0-5, got "four"')
    assert_no_traceback(result)


def test_debug_shows_the_traceback(ctl, tmp_path):
    result = ctl("--debug", "list", config=tmp_path / "none.yaml")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "no such file" in result.stderr


def test_runtime_failure_exits_1(ctl, library, tmp_path):
    ctl("from-config", config=library)
    with catalog_held_by_another_process(tmp_path / "data" / "search.duckdb"):
        result = ctl("list", config=library)
    assert result.returncode == 1
    assert "in use by another process" in result.stderr
    assert_no_traceback(result)


def test_explain_new_and_existing_files(ctl, library, tmp_path):
    ctl("from-config", config=library)
    result = ctl("explain", "proj/render.PNG", "--quality", "5", config=library)
    assert result.returncode == 0, result.stderr
    assert "target: Fast SSD" in result.stdout
    assert "✓ min_quality_stars: quality 5 stars ≥ 4" in result.stdout

    data = json.loads(ctl("explain", "proj/old.mp4", "--age-days", "400", "--json",
                          config=library).stdout)
    assert data["target_name"] == "S3 Cold Storage" and data["reason"] == "matched"
    assert data["category"] == "video"
    ssd = next(loc for loc in data["locations"] if loc["name"] == "Fast SSD")
    assert ssd["matches"] is False
    assert [c["condition"] for c in ssd["rules"][0] if not c["holds"]] == [
        "max_age_days", "min_quality_stars"]

    # A real file inside a location: its size and age are read from disk, and since no rule
    # matches a 3-day-old unrated file, it stays where it is.
    photo = tmp_path / "archive" / "proj" / "photo.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"x" * 1234)
    three_days_ago = photo.stat().st_mtime - 3 * 86400
    os.utime(photo, (three_days_ago, three_days_ago))
    data = json.loads(ctl("explain", str(photo), "--json", config=library).stdout)
    assert data["logical_path"] == "proj/photo.jpg" and data["size"] == 1234
    assert data["reason"] == "stays" and data["target_name"] == "Archive HDD"
    data = json.loads(ctl("explain", str(photo), "--json", "--new", config=library).stdout)
    assert data["reason"] == "fallback_priority" and data["target_name"] == "Fast SSD"


def test_version_and_help(ctl):
    result = ctl("--version")
    assert result.returncode == 0 and result.stdout.startswith("alicefs ")
    result = ctl("--help")
    for verb in ("init", "from-config", "list", "add", "update", "remove", "explain"):
        assert verb in result.stdout


def test_explain_refuses_a_path_outside_locations_and_mounts(ctl, library, tmp_path):
    ctl("from-config", config=library)
    result = ctl("explain", str(tmp_path / "elsewhere" / "x.png"), config=library)
    assert result.returncode == 2
    assert "is neither inside a location nor a cataloged file" in result.stderr
