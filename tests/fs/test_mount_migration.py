"""Migration run by a mount: sent by alicefs-ctl, or on the mount's schedule, while the
files stay in use through the mount."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
import uuid
from pathlib import Path

from tests.fs.conftest import SHORT_DEADLINE, wait_for
from tests.servers import S3_REGION

DAY = 86_400
KILL_HOOKS = Path(__file__).parent / "kill_hooks"
TIERS = {
    "ssd": "priority: 100, rules: [{max_age_days: 30}]",
    "hdd": "priority: 50",
}


def _old_file(root, key: str, data: bytes, days: float = 40) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def test_migrate_sent_to_a_mount_moves_files_in_use(mount_factory):
    fs_pre = {f"p/old{i}.png": f"old {i}".encode() * 1000 for i in range(6)}
    fs = mount_factory(TIERS, start=False)
    for key, data in fs_pre.items():
        _old_file(fs.roots["ssd"], key, data)
    _old_file(fs.roots["ssd"], "p/fresh.png", b"fresh", days=1)
    fs.start()

    with open(fs.projects / "p" / "old0.png", "rb") as reading, \
            open(fs.projects / "p" / "old1.png", "r+b") as writing:
        result = fs.ctl("migrate", "--move", "--json")
        assert result.returncode == 0, result.stderr
        outcomes = {o["path"]: o for o in json.loads(result.stdout)["outcomes"]}
        assert outcomes["p/old1.png"]["result"] == "busy"
        assert "open for writing" in outcomes["p/old1.png"]["detail"]
        moved = sorted(p for p, o in outcomes.items() if o["result"] == "moved")
        assert moved == sorted(set(fs_pre) - {"p/old1.png"})
        # The descriptor opened before the move reads the whole file still.
        assert reading.read() == fs_pre["p/old0.png"]
        writing.seek(0, os.SEEK_END)
        writing.write(b" and more")
    fs_pre["p/old1.png"] += b" and more"

    # Shown at their new location at once.
    hdd_view = fs.mountpoint / "locations" / "hdd" / "p"
    ssd_view = fs.mountpoint / "locations" / "ssd" / "p"
    assert sorted(os.listdir(hdd_view)) == sorted(k.split("/")[1] for k in moved)
    assert sorted(os.listdir(ssd_view)) == ["fresh.png", "old1.png"]
    for key in moved:
        assert not (fs.roots["ssd"] / key).exists()
        assert (fs.roots["hdd"] / key).read_bytes() == fs_pre[key]
    for key, data in fs_pre.items():
        assert (fs.projects / key).read_bytes() == data

    # Written just now, the file open for writing is young again and stays.
    result = fs.ctl("migrate", "--move", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outcomes"] == []
    assert (fs.roots["ssd"] / "p" / "old1.png").read_bytes() == fs_pre["p/old1.png"]

    # What the mount recorded is what a mount started afresh shows.
    fs.restart()
    for key, data in fs_pre.items():
        assert (fs.projects / key).read_bytes() == data
    assert sorted(os.listdir(hdd_view)) == sorted(k.split("/")[1] for k in moved)


def test_the_mount_migrates_on_its_schedule(mount_factory):
    fs = mount_factory(TIERS, start=False, settings_extra=(
        "  migration_interval: 1s\n  migration_bandwidth: 100MB/s\n"))
    files = {f"q/{i}.jpg": os.urandom(3000 + i) for i in range(5)}
    for key, data in files.items():
        _old_file(fs.roots["ssd"], key, data)
    fs.start()
    wait_for(lambda: all((fs.roots["hdd"] / key).exists() and not (fs.roots["ssd"] / key).exists()
                         for key in files))
    for key, data in files.items():
        assert (fs.projects / key).read_bytes() == data
    wait_for(lambda: "scheduled migration: 5 moved" in fs.log.read_text())


def test_killing_a_migrating_mount_loses_nothing(mount_factory, s3_server, s3_bucket):
    """SIGKILL a mount at random moments of its scheduled migration (local disk to local
    disk, and to S3), many times; after every kill each original content still exists
    somewhere, no partial or foreign content sits under a final name, and once left alone
    the mount finishes the job: the plan is then empty."""
    kills = int(os.environ.get("ALICEFS_MOUNT_CRASH_KILLS", "10"))
    rng = random.Random(int(os.environ.get("ALICEFS_MOUNT_CRASH_SEED", "1")))
    prefix = f"mc-{uuid.uuid4().hex[:8]}/"
    s3 = (f"type: s3, path: {s3_bucket}, priority: 10, config: {{endpoint_url: "
          f"'{s3_server.endpoint_url}', region: {S3_REGION}, prefix: {prefix}, "
          f"aws_access_key_id: {s3_server.access_key}, "
          f"aws_secret_access_key: {s3_server.secret_key}, {SHORT_DEADLINE}}}")
    fs = mount_factory({"ssd": "priority: 100, rules: [{max_age_days: 30}]",
                        "hdd": "priority: 50, rules: [{max_age_days: 100}]"},
                       cloud={"s3": s3}, start=False, settings_extra=(
                           "  migration_interval: 0.3s\n  migration_bandwidth: 8MB/s\n"
                           "  migration_max_concurrent: 3\n"))
    originals: dict[str, bytes] = {}
    home: dict[str, list[str]] = {}  # where the rules put each file
    expected: dict[str, str] = {}

    def add_files(cycle: int) -> None:
        """New work for every cycle: small files, and a large one to be killed inside."""
        names = [(f"c{cycle}/{i}.png", rng.randint(1, 150_000)) for i in range(8)]
        names.append((f"c{cycle}/big.mp4", rng.choice([0, 6 << 20])))
        for i, (key, size) in enumerate(names):
            originals[key] = rng.randbytes(size)
            expected[key] = hashlib.sha256(originals[key]).hexdigest()
            _old_file(fs.roots["ssd"], key, originals[key], days=40 if i % 2 else 200)
            home[key] = ["hdd"] if i % 2 else ["s3"]

    s3_client = s3_server.client()

    def stored() -> dict[str, list[str]]:
        """Key -> where a file sits under its final name, checked to be an original."""
        where: dict[str, list[str]] = {}
        for name in ("ssd", "hdd"):
            for path in fs.roots[name].rglob("*"):
                if path.is_file() and not path.name.startswith("."):
                    key = path.relative_to(fs.roots[name]).as_posix()
                    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected[key], key
                    where.setdefault(key, []).append(name)
        listing = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix=prefix)
        for obj in listing.get("Contents", []):
            key = obj["Key"][len(prefix):]
            body = s3_client.get_object(Bucket=s3_bucket, Key=obj["Key"])["Body"].read()
            assert hashlib.sha256(body).hexdigest() == expected[key], key
            where.setdefault(key, []).append("s3")
        return where

    # First at every journal step of a batch (the mount kills itself there: see
    # kill_hooks/sitecustomize.py), then at random moments, inside large copies too.
    points = ["after-begin:1", "after-copy:1", "after-copy:6", "after-recorded:1",
              "after-delete:1", "after-delete:5", "before-end:1"]
    self_killed = 0
    for cycle in range(len(points) + kills):
        add_files(cycle)
        env = dict(os.environ)
        if cycle < len(points):
            env["PYTHONPATH"] = str(KILL_HOOKS)
            env["ALICEFS_TEST_KILL_AT"] = points[cycle]
        fs.env = env
        fs.start()
        deadline = time.monotonic() + (8.0 if cycle < len(points) else rng.uniform(0.0, 2.5))
        while fs.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        self_killed += fs.process.poll() == -signal.SIGKILL
        fs.kill()
        assert set(stored()) == set(originals)  # every content, at least once
    assert self_killed >= len(points)  # the steps were reached, not skipped

    fs.env = None
    fs.start()
    wait_for(lambda: stored() == home, timeout=120)
    plan = json.loads(fs.ctl("migrate", "--move", "--dry-run", "--json").stdout)
    assert plan["transfers"] == []
    for key, data in originals.items():
        assert (fs.projects / key).read_bytes() == data
