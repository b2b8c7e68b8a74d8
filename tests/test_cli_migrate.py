"""`alicefs-ctl migrate` and `consolidate` end to end: the guide's configuration over two
local disks and the test S3 server."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from tests.servers import S3_REGION


@pytest.fixture
def guide_library(tmp_path, write_config, s3_server, s3_bucket, ctl):
    """The guide's three tiers, five-star images of three ages on the SSD, scanned."""
    for name in ("ssd", "archive"):
        (tmp_path / name / "art").mkdir(parents=True)
    config = write_config(f"""\
        storage:
          locations:
            - name: "Fast SSD"
              path: "ssd"
              priority: 100
              rules: [{{max_age_days: 30, min_quality_stars: 4}}]
            - name: "Archive HDD"
              path: "archive"
              priority: 50
              rules: [{{min_age_days: 30, max_age_days: 180}}]
            - name: "S3 Cold Storage"
              type: s3
              path: {s3_bucket}
              priority: 25
              config:
                endpoint_url: {s3_server.endpoint_url}
                region: {S3_REGION}
                prefix: cli-{uuid.uuid4().hex[:8]}/
                aws_access_key_id: {s3_server.access_key}
                aws_secret_access_key: {s3_server.secret_key}
              rules: [{{min_age_days: 180}}]
    """)
    for name, age in (("new", 1), ("aged", 40), ("old", 200)):
        path = tmp_path / "ssd" / "art" / f"{name}.png"
        path.write_bytes(name.encode() * 1000)
        then = time.time() - age * 86400
        os.utime(path, (then, then))
    for args in (("from-config",), ("discover", "--no-progress")):
        assert ctl(*args, config=config).returncode == 0
    for name in ("new", "aged", "old"):
        assert ctl("rate", f"art/{name}.png", "5", config=config).returncode == 0
    return config


def test_dry_run_then_move_then_nothing_left_to_do(ctl, guide_library, tmp_path):
    config = guide_library
    dry = ctl("migrate", "--dry-run", "--move", config=config)
    assert dry.returncode == 0, dry.stderr
    assert "art/aged.png" in dry.stdout and "Archive HDD" in dry.stdout
    assert "Fast SSD -> S3 Cold Storage: 1 files" in dry.stderr
    assert (tmp_path / "ssd" / "art" / "aged.png").exists()
    plan = json.loads(ctl("migrate", "--dry-run", "--json", config=config).stdout)
    assert [(t["path"], t["to"]) for t in plan["transfers"]] == [
        ("art/aged.png", "Archive HDD"), ("art/old.png", "S3 Cold Storage")]

    moved = ctl("migrate", "--move", "--json", config=config)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["counts"] == {"moved": 2}
    assert (tmp_path / "archive" / "art" / "aged.png").read_bytes() == b"aged" * 1000
    assert not (tmp_path / "ssd" / "art" / "aged.png").exists()
    assert not (tmp_path / "ssd" / "art" / "old.png").exists()
    assert (tmp_path / "ssd" / "art" / "new.png").exists()

    again = ctl("migrate", "--dry-run", config=config)
    assert "nothing to migrate" in again.stderr


def test_a_capped_migration_copies_everything(ctl, guide_library, tmp_path):
    result = ctl("migrate", "--move", "--bwlimit", "10MB/s", "--json", config=guide_library)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)["counts"]
    assert counts == {"moved": 2}  # to the archive disk (40 days) and to S3 (200 days)


def test_consolidate_gathers_a_project(ctl, guide_library, tmp_path):
    config = guide_library
    assert ctl("migrate", "--move", "--no-progress", config=config).returncode == 0
    result = ctl("consolidate", "art", "Archive HDD", "--move", "--json", config=config)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {"moved": 2}
    assert sorted(os.listdir(tmp_path / "archive" / "art")) == ["aged.png", "new.png",
                                                                "old.png"]
    assert os.listdir(tmp_path / "ssd" / "art") == []


@pytest.mark.parametrize("args, expected", [
    (("migrate", "--max-concurrent", "0"), "expected a number of transfers 1-256, got 0"),
    (("migrate", "--limit-bytes", "lots"), "lots"),
    (("migrate", "--bwlimit", "fast"), "expected bytes per second"),
    (("migrate", "--bwlimit", "0"), "expected a rate above 0"),
    (("consolidate", "art", "Nowhere"), "Nowhere"),
])
def test_bad_arguments_say_what_was_expected(ctl, guide_library, args, expected):
    result = ctl(*args, config=guide_library)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
