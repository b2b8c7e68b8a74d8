"""discover, scan, find-project, tag, rate, stats and duplicates through the real entry point."""

from __future__ import annotations

import json
import os
import pty
import subprocess

import pytest

from tests.conftest import BIN_DIR
from tests.media_samples import jpeg, mp4, png, xmp


@pytest.fixture
def scanned(ctl, write_config, tmp_path):
    ssd, hdd = tmp_path / "ssd", tmp_path / "hdd"
    files = {
        ssd / "proj" / "a.png": png(seed=1),
        ssd / "proj" / "clip.MP4": mp4(xmp(["motion"], 3)),
        ssd / "images" / "b.jpg": jpeg(),
        hdd / "proj" / "a.png": png(seed=1),
        hdd / "proj" / "copy-of-a.png": png(seed=1),
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    config = write_config(f"""\
        storage:
          locations:
            - {{name: ssd, path: {ssd}, priority: 100}}
            - {{name: hdd, path: {hdd}, priority: 50}}
    """)
    assert ctl("from-config", config=config).returncode == 0
    return config, ssd, hdd


def test_discover_then_rescan(ctl, scanned):
    config, *_ = scanned
    result = ctl("discover", "--no-progress", "--json", config=config)
    assert result.returncode == 0, result.stderr
    first = {s["name"]: s for s in json.loads(result.stdout)}
    assert (first["ssd"]["files"], first["ssd"]["new_files"]) == (3, 3)
    assert first["hdd"]["bytes_read"] > 0
    again = {s["name"]: s for s in json.loads(
        ctl("discover", "--json", config=config).stdout)}
    assert again["ssd"]["bytes_read"] == again["hdd"]["bytes_read"] == 0
    forced = json.loads(ctl("scan", "hdd", "--force", "--json", config=config).stdout)
    assert forced[0]["changed_files"] == 2 and forced[0]["bytes_read"] > 0
    table = ctl("discover", config=config)
    assert table.stdout.splitlines()[0].split()[:3] == ["LOCATION", "FILES", "SIZE"]


def test_scan_of_an_unreachable_location_exits_1(ctl, scanned):
    config, ssd, _ = scanned
    ssd.rename(ssd.with_name("unplugged"))
    result = ctl("scan", "ssd", "--json", config=config)
    assert result.returncode == 1
    assert "ssd: location 'ssd': root" in result.stderr and "not reachable" in result.stderr
    assert ctl("scan", "nope", config=config).returncode == 2


def test_discover_skips_an_unreachable_location_and_scans_the_others(ctl, scanned):
    config, ssd, _ = scanned
    ssd.rename(ssd.with_name("unplugged"))
    result = ctl("discover", "--no-progress", "--json", config=config)
    assert result.returncode == 0, result.stderr
    assert "skipped, not reachable now: ssd:" in result.stderr
    by_name = {s["name"]: s for s in json.loads(result.stdout)}
    assert by_name["ssd"]["error"] and by_name["hdd"]["error"] is None


def test_find_project(ctl, scanned):
    config, *_ = scanned
    ctl("discover", config=config)
    assets = json.loads(ctl("find-project", "proj", "--json", config=config).stdout)
    assert [a["logical_path"] for a in assets] == ["proj/a.png", "proj/clip.MP4",
                                                   "proj/copy-of-a.png"]
    assert sorted(r["location_name"] for r in assets[0]["replicas"]) == ["hdd", "ssd"]
    assert assets[1]["tags"] == ["motion"] and assets[1]["quality"] == 3
    videos = json.loads(ctl("find-project", "proj", "--type", "video", "--json",
                            config=config).stdout)
    assert [a["logical_path"] for a in videos] == ["proj/clip.MP4"]
    text = ctl("find-project", "proj", config=config).stdout
    assert "proj/clip.MP4  video ★★★ [motion]" in text and "3 assets in project 'proj'" in text


def test_tag_and_rate_by_logical_and_location_path(ctl, scanned):
    config, ssd, _ = scanned
    ctl("discover", config=config)
    result = ctl("tag", "proj/a.png", "--add", "portfolio", "--add", "client", config=config)
    assert result.returncode == 0, result.stderr
    result = ctl("tag", str(ssd / "proj" / "a.png"), "--remove", "CLIENT", "--json",
                 config=config)
    assert json.loads(result.stdout)["tags"] == ["portfolio"]
    result = ctl("rate", str(ssd / "proj" / "clip.MP4"), "5", "--json", config=config)
    meta = json.loads(result.stdout)
    assert (meta["quality"], meta["quality_source"], meta["tags"]) == (5, "user", ["motion"])
    # A rescan keeps what the user set.
    ctl("discover", "--force", config=config)
    assets = {a["logical_path"]: a for a in json.loads(
        ctl("find-project", "proj", "--json", config=config).stdout)}
    assert assets["proj/a.png"]["tags"] == ["portfolio"]
    assert assets["proj/clip.MP4"]["quality"] == 5


def test_tag_and_rate_through_a_mount_path(ctl, scanned, tmp_path):
    # A directory shaped like the mount (the mount itself arrives with issue 5).
    config, *_ = scanned
    ctl("discover", config=config)
    mount = tmp_path / "mnt"
    (mount / ".alicefs").mkdir(parents=True)
    (mount / "projects" / "proj").mkdir(parents=True)
    (mount / "projects" / "proj" / "a.png").write_bytes(b"")
    (mount / "types" / "image" / "proj").mkdir(parents=True)
    (mount / "types" / "image" / "proj" / "a.png").write_bytes(b"")
    assert json.loads(ctl("rate", str(mount / "projects" / "proj" / "a.png"), "4", "--json",
                          config=config).stdout)["logical_path"] == "proj/a.png"
    assert json.loads(ctl("tag", str(mount / "types" / "image" / "proj" / "a.png"), "--add",
                          "x", "--json", config=config).stdout)["tags"] == ["x"]


@pytest.mark.parametrize("args, message", [
    (["rate", "proj/a.png", "6"], "expected a star rating 0-5, got 6"),
    (["rate", "proj/none.png", "3"], "no file 'proj/none.png' in the catalog"),
    (["tag", "proj/a.png"], "nothing to do: give --add TAG and/or --remove TAG"),
    (["tag", "/elsewhere/x.png", "--add", "t"], "is neither inside a location nor"),
])
def test_tag_and_rate_errors(ctl, scanned, args, message):
    config, *_ = scanned
    ctl("discover", config=config)
    result = ctl(*args, config=config)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_stats_and_duplicates(ctl, scanned):
    config, *_ = scanned
    ctl("discover", config=config)
    stats = json.loads(ctl("stats", "--json", config=config).stdout)
    locations = {row["name"]: row for row in stats["locations"]}
    assert (locations["ssd"]["files"], locations["ssd"]["duplicates"]) == (3, 1)
    assert (locations["hdd"]["files"], locations["hdd"]["duplicates"]) == (2, 2)
    projects = {row["project"]: row for row in stats["projects"]}
    assert projects["proj"]["files"] == 3 and projects["images"]["files"] == 1
    assert projects["proj"]["duplicates"] == 3
    groups = json.loads(ctl("duplicates", "--json", config=config).stdout)
    assert len(groups) == 1 and len(groups[0]["replicas"]) == 3
    text = ctl("duplicates", config=config).stdout
    assert "1 contents stored more than once" in text
    table = ctl("stats", config=config).stdout
    assert "LOCATION" in table and "PROJECT" in table


def test_progress_bar_on_a_terminal(scanned):
    config, *_ = scanned
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([str(BIN_DIR / "alicefs-ctl"), "--config", str(config), "discover"],
                            stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True,
                            env=dict(os.environ, COLUMNS="120", TERM="xterm"))
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert proc.wait(timeout=60) == 0
    text = output.decode(errors="replace")
    # rich draws a bar per location with files, bytes and rate columns.
    assert "ssd (done)" in text and "hdd (done)" in text
    assert "3/3 files" in text and "━" in text
