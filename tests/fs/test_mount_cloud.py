"""The mount over local, S3 (SeaweedFS) and GCS (emulator) locations together."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import BIN_DIR
from tests.fs.conftest import SHORT_DEADLINE, wait_for
from tests.servers import S3_REGION


@pytest.fixture
def cloud_fs(mount_factory, s3_server, s3_bucket, gcs_server, gcs_bucket):
    prefix = f"mount-{uuid.uuid4().hex[:8]}/"
    s3 = (f"type: s3, path: {s3_bucket}, priority: 50, rules: [{{include_types: [video]}}], "
          f"config: {{endpoint_url: '{s3_server.endpoint_url}', region: {S3_REGION}, "
          f"prefix: {prefix}, aws_access_key_id: {s3_server.access_key}, "
          f"aws_secret_access_key: {s3_server.secret_key}, {SHORT_DEADLINE}}}")
    gcs = (f"type: gcs, path: {gcs_bucket}, priority: 40, rules: [{{include_types: [audio]}}], "
           f"config: {{prefix: {prefix}}}")
    os.environ["STORAGE_EMULATOR_HOST"] = gcs_server.host_url
    fs = mount_factory({"ssd": "priority: 100, rules: [{include_types: [image]}]",
                        "hdd": "priority: 10"}, cloud={"s3": s3, "gcs": gcs})
    fs.s3_client = s3_server.client()
    fs.s3_bucket, fs.gcs_bucket, fs.prefix = s3_bucket, gcs_bucket, prefix
    return fs


def s3_object(fs, key: str) -> bytes | None:
    try:
        return fs.s3_client.get_object(Bucket=fs.s3_bucket, Key=fs.prefix + key)["Body"].read()
    except fs.s3_client.exceptions.NoSuchKey:
        return None


def test_files_land_in_cloud_locations_and_survive_a_remount(cloud_fs):
    fs = cloud_fs
    (fs.projects / "film").mkdir()
    video = os.urandom(3 << 20)
    (fs.projects / "film" / "clip.mp4").write_bytes(video)
    (fs.projects / "film" / "song.wav").write_bytes(b"RIFF" + os.urandom(1000))
    (fs.projects / "film" / "still.png").write_bytes(b"png")
    wait_for(lambda: s3_object(fs, "film/clip.mp4") == video)
    assert (fs.roots["ssd"] / "film" / "still.png").read_bytes() == b"png"
    assert (fs.projects / "film" / "clip.mp4").read_bytes() == video
    fs.restart()
    assert (fs.projects / "film" / "clip.mp4").read_bytes() == video
    assert (fs.projects / "film" / "song.wav").read_bytes()[:4] == b"RIFF"
    locations = os.getxattr(fs.projects / "film" / "song.wav", "user.alicefs.locations")
    assert locations == b"gcs"
    # Overwrite in place, append, rename and delete on the object store.
    with open(fs.projects / "film" / "clip.mp4", "r+b") as f:
        f.seek(10)
        f.write(b"EDITED")
    edited = video[:10] + b"EDITED" + video[16:]
    wait_for(lambda: s3_object(fs, "film/clip.mp4") == edited)
    os.rename(fs.projects / "film" / "clip.mp4", fs.projects / "film" / "final.mp4")
    assert s3_object(fs, "film/final.mp4") == edited and s3_object(fs, "film/clip.mp4") is None
    os.unlink(fs.projects / "film" / "final.mp4")
    assert s3_object(fs, "film/final.mp4") is None
    assert sorted(os.listdir(fs.mountpoint / "locations" / "gcs" / "film")) == ["song.wav"]


def test_sigkill_during_uploads_loses_nothing(cloud_fs):
    fs = cloud_fs
    (fs.projects / "batch").mkdir()
    contents = {f"v{i}.mp4": hashlib.sha256(str(i).encode()).digest() * 20_000
                for i in range(6)}
    for name, data in contents.items():
        (fs.projects / "batch" / name).write_bytes(data)
    fs.kill()  # uploads were queued, some perhaps under way
    fs.start()
    for name, data in contents.items():
        assert (fs.projects / "batch" / name).read_bytes() == data
    wait_for(lambda: all(s3_object(fs, f"batch/{n}") == d for n, d in contents.items()))
    queue = json.loads((fs.mountpoint / ".alicefs" / "queue.json").read_text())
    assert queue["uploads_pending"] == 0


def test_uploads_that_could_not_finish_resume_at_the_next_mount(cloud_fs, s3_server):
    fs = cloud_fs
    (fs.projects / "offline").mkdir()
    data = os.urandom(1 << 20)
    s3_server.kill()
    try:
        (fs.projects / "offline" / "take.mp4").write_bytes(data)
        # The store is down: the upload fails after its retry deadline, the staging file
        # stays, and the content is still served from it.
        assert (fs.projects / "offline" / "take.mp4").read_bytes() == data
        wait_for(lambda: "upload of offline/take.mp4 failed" in fs.log.read_text())
        fs.kill()
    finally:
        s3_server.start()
    fs.start()
    wait_for(lambda: s3_object(fs, "offline/take.mp4") == data)
    assert "resuming upload of offline/take.mp4" in fs.log.read_text()
    assert (fs.projects / "offline" / "take.mp4").read_bytes() == data


def test_umount_waits_for_uploads(cloud_fs):
    fs = cloud_fs
    (fs.projects / "u").mkdir()
    data = os.urandom(8 << 20)
    (fs.projects / "u" / "big.mp4").write_bytes(data)
    fs.stop()  # fusermount3 -u: the process finishes the upload before it exits
    assert s3_object(fs, "u/big.mp4") == data
    staging = fs.config.parent / "cache" / "staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_object_store_reads_are_cached_on_disk(cloud_fs, s3_server):
    fs = cloud_fs
    (fs.projects / "cached").mkdir()
    data = os.urandom(5 << 20)
    (fs.projects / "cached" / "clip.mp4").write_bytes(data)
    wait_for(lambda: s3_object(fs, "cached/clip.mp4") == data)
    fs.restart()  # the staging copy is gone: reads go to S3, through the chunk cache
    assert (fs.projects / "cached" / "clip.mp4").read_bytes() == data
    chunks = fs.config.parent / "cache" / "chunks"
    assert sum(p.stat().st_size for p in chunks.iterdir()) >= len(data)
    s3_server.kill()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")  # the kernel's page cache too: the next read must come from ours
        assert (fs.projects / "cached" / "clip.mp4").read_bytes() == data
    finally:
        s3_server.start()


def test_rename_and_truncate_right_after_close(cloud_fs):
    fs = cloud_fs
    (fs.projects / "rt").mkdir()
    data = os.urandom(2 << 20)
    (fs.projects / "rt" / "take.mp4").write_bytes(data)
    os.rename(fs.projects / "rt" / "take.mp4", fs.projects / "rt" / "final.mp4")
    wait_for(lambda: s3_object(fs, "rt/final.mp4") == data)
    assert s3_object(fs, "rt/take.mp4") is None
    assert (fs.projects / "rt" / "final.mp4").read_bytes() == data
    os.truncate(fs.projects / "rt" / "final.mp4", 5)
    wait_for(lambda: s3_object(fs, "rt/final.mp4") == data[:5])
    assert (fs.projects / "rt" / "final.mp4").read_bytes() == data[:5]


def s3_keys(fs, directory: str) -> list[str]:
    listing = fs.s3_client.list_objects_v2(Bucket=fs.s3_bucket, Prefix=f"{fs.prefix}{directory}/")
    return sorted(o["Key"][len(fs.prefix) + len(directory) + 1:]
                  for o in listing.get("Contents", []))


def put_s3_object(fs, key: str, data: bytes) -> None:
    fs.s3_client.put_object(Bucket=fs.s3_bucket, Key=fs.prefix + key, Body=data)


def test_a_new_file_never_overwrites_an_object_another_writer_made_meanwhile(cloud_fs):
    fs = cloud_fs
    (fs.projects / "shared").mkdir()
    with open(fs.projects / "shared" / "take.mp4", "wb") as f:
        f.write(b"ours " * 1000)
        # Another client publishes the same name before this one is closed (uploaded).
        put_s3_object(fs, "shared/take.mp4", b"theirs")
    wait_for(lambda: len(s3_keys(fs, "shared")) == 2)
    assert s3_object(fs, "shared/take.mp4") == b"theirs"
    [conflict] = [k for k in s3_keys(fs, "shared") if k != "take.mp4"]
    assert conflict.startswith("take.conflict-") and conflict.endswith("-s3.mp4")
    assert s3_object(fs, f"shared/{conflict}") == b"ours " * 1000
    wait_for(lambda: sorted(os.listdir(fs.projects / "shared")) == sorted(["take.mp4",
                                                                          conflict]))
    assert (fs.projects / "shared" / "take.mp4").read_bytes() == b"theirs"
    assert (fs.projects / "shared" / conflict).read_bytes() == b"ours " * 1000
    fs.restart()
    assert (fs.projects / "shared" / conflict).read_bytes() == b"ours " * 1000


def test_an_edit_never_overwrites_a_version_another_writer_published_meanwhile(cloud_fs):
    fs = cloud_fs
    (fs.projects / "shared").mkdir()
    (fs.projects / "shared" / "cut.mp4").write_bytes(b"base " * 1000)
    wait_for(lambda: s3_object(fs, "shared/cut.mp4") == b"base " * 1000)
    with open(fs.projects / "shared" / "cut.mp4", "r+b") as f:
        put_s3_object(fs, "shared/cut.mp4", b"their edit")
        f.write(b"OURS")
    wait_for(lambda: len(s3_keys(fs, "shared")) == 2)
    assert s3_object(fs, "shared/cut.mp4") == b"their edit"
    [conflict] = [k for k in s3_keys(fs, "shared") if k != "cut.mp4"]
    assert s3_object(fs, f"shared/{conflict}") == b"OURS" + (b"base " * 1000)[4:]
    # Without interference an edit replaces the version it was made from, as before.
    with open(fs.projects / "shared" / conflict, "r+b") as f:
        f.write(b"MORE")
    wait_for(lambda: s3_object(fs, f"shared/{conflict}") == b"MORE" + (b"base " * 1000)[4:])
    assert len(s3_keys(fs, "shared")) == 2


def test_renaming_a_directory_with_files_still_waiting_for_upload(cloud_fs):
    fs = cloud_fs
    (fs.projects / "draft").mkdir()
    (fs.projects / "draft" / "done.mp4").write_bytes(b"uploaded")
    wait_for(lambda: s3_object(fs, "draft/done.mp4") == b"uploaded")
    with open(fs.projects / "draft" / "open.mp4", "wb") as f:
        f.write(b"still being written")
        os.rename(fs.projects / "draft", fs.projects / "final")
        f.write(b", and more")
    wait_for(lambda: s3_object(fs, "final/open.mp4") == b"still being written, and more")
    assert s3_object(fs, "final/done.mp4") == b"uploaded"
    assert s3_keys(fs, "draft") == []
    assert sorted(os.listdir(fs.projects / "final")) == ["done.mp4", "open.mp4"]
    fs.restart()
    assert (fs.projects / "final" / "open.mp4").read_bytes() == b"still being written, and more"


def test_an_edit_resumed_after_a_crash_never_overwrites_another_writer(cloud_fs):
    fs = cloud_fs
    (fs.projects / "c").mkdir()
    (fs.projects / "c" / "v.mp4").write_bytes(b"base")
    wait_for(lambda: s3_object(fs, "c/v.mp4") == b"base")
    f = open(fs.projects / "c" / "v.mp4", "r+b")  # noqa: SIM115 (closed after the kill)
    f.write(b"OURS")
    f.flush()
    fs.kill()  # before the upload: the staging file waits for the next mount
    f.close()  # on the dead connection: nothing more reaches the mount
    put_s3_object(fs, "c/v.mp4", b"theirs")
    # A scan between the mounts records their version as the one in the store.
    assert fs.ctl("discover", "--no-progress").returncode == 0
    fs.start()
    wait_for(lambda: len(s3_keys(fs, "c")) == 2)
    assert s3_object(fs, "c/v.mp4") == b"theirs"
    [conflict] = [k for k in s3_keys(fs, "c") if k != "v.mp4"]
    assert s3_object(fs, f"c/{conflict}") == b"OURS"


def test_an_object_unlinked_while_its_store_is_offline_goes_when_it_is_back(cloud_fs):
    fs = cloud_fs
    (fs.projects / "o").mkdir()
    (fs.projects / "o" / "c.mp4").write_bytes(b"stored")
    wait_for(lambda: s3_object(fs, "o/c.mp4") == b"stored")
    with open(fs.projects / "o" / "c.mp4", "r+b") as f:
        f.write(b"EDIT")  # staged, not uploaded: the store keeps the version it replaces
        assert fs.ctl("update", "--location-id", "s3", "--status", "offline").returncode == 0
        os.unlink(fs.projects / "o" / "c.mp4")
    assert s3_object(fs, "o/c.mp4") == b"stored"
    assert fs.ctl("update", "--location-id", "s3", "--status", "active").returncode == 0
    wait_for(lambda: s3_object(fs, "o/c.mp4") is None)
    assert os.listdir(fs.projects / "o") == []


def test_umount_does_not_wait_for_the_start_up_scan(mount_factory, s3_server, s3_bucket):
    """The first scan of a bucket of 2,000 objects other tools wrote is still going when the
    user unmounts: it is cancelled, not waited for, and the next scan catalogs every object."""
    prefix = f"scan-{uuid.uuid4().hex[:8]}/"
    client = s3_server.client()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=s3_bucket, Key=f"{prefix}p/{i}.mp4",
                                                  Body=b"v" * (i + 1)), range(2000)))
    s3 = (f"type: s3, path: {s3_bucket}, priority: 50, config: {{endpoint_url: "
          f"'{s3_server.endpoint_url}', region: {S3_REGION}, prefix: {prefix}, "
          f"aws_access_key_id: {s3_server.access_key}, "
          f"aws_secret_access_key: {s3_server.secret_key}}}")
    fs = mount_factory({"ssd": "priority: 100"}, cloud={"s3": s3}, start=False)
    alicefs = str(BIN_DIR / "alicefs")
    mounted = subprocess.run([alicefs, "mount", "--config", str(fs.config),
                              str(fs.mountpoint)], capture_output=True, text=True, timeout=60)
    assert mounted.returncode == 0, mounted.stderr
    unmounted = subprocess.run([alicefs, "umount", str(fs.mountpoint)], capture_output=True,
                               text=True, timeout=120)
    assert unmounted.returncode == 0, unmounted.stderr
    assert not os.path.ismount(fs.mountpoint)
    log = (fs.config.parent / "state" / "alicefs.log").read_text()
    assert "scan interrupted by the unmount" in log
    assert "scan: " not in log  # the scan never finished
    found = json.loads(fs.ctl("discover", "--no-progress", "--json").stdout)
    assert {s["name"]: s["files"] for s in found} == {"ssd": 0, "s3": 2000}
