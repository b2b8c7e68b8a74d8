"""Reads of files that live in S3 (SeaweedFS): sequential readers are streamed, random ones
get ranged reads, and every byte read is the file's, whatever the cache keeps."""

from __future__ import annotations

import os
import random
import subprocess
import uuid

import pytest

from tests.fs.conftest import wait_for
from tests.servers import S3_REGION

MiB = 1 << 20


@pytest.fixture
def s3_fs(request, mount_factory, s3_server, s3_bucket):
    """A mount (debug log) over one S3 location holding `p/clip.mp4`, 24 MiB other tools
    wrote; `cache_size` from the test's parameter when it has one."""
    prefix = f"read-{uuid.uuid4().hex[:8]}/"
    data = os.urandom(24 * MiB + 777)
    s3_server.client().put_object(Bucket=s3_bucket, Key=f"{prefix}p/clip.mp4", Body=data)
    cache_size = getattr(request, "param", "10GiB")
    s3 = (f"type: s3, path: {s3_bucket}, priority: 50, config: {{endpoint_url: "
          f"'{s3_server.endpoint_url}', region: {S3_REGION}, prefix: {prefix}, "
          f"aws_access_key_id: {s3_server.access_key}, "
          f"aws_secret_access_key: {s3_server.secret_key}}}")
    fs = mount_factory({}, cloud={"s3": s3}, extra_args=["--debug"],
                       settings_extra=f"  cache_size: {cache_size}\n")
    fs.data = data
    return fs


def _streams_started(fs) -> int:
    return fs.log.read_text().count("streaming p/clip.mp4 from chunk")


def _drop_page_cache() -> None:
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


@pytest.mark.parametrize("s3_fs", ["10GiB", "6MiB"], indirect=True)
def test_a_sequential_reader_is_served_by_one_stream(s3_fs):
    """With a cache of 6 MiB the stream's window is one chunk and chunks are evicted while
    the file is read: what is gone is fetched again, never wrong."""
    path = s3_fs.projects / "p" / "clip.mp4"
    # cat reads sequentially in 128 KiB requests, with the kernel reading ahead.
    copied = subprocess.run(["cat", str(path)], capture_output=True, check=True).stdout
    assert copied == s3_fs.data
    assert _streams_started(s3_fs) == 1


def test_random_readers_get_ranged_reads_and_the_right_bytes(s3_fs):
    path = s3_fs.projects / "p" / "clip.mp4"
    rng = random.Random(3)
    with open(path, "rb", buffering=0) as f:
        for _ in range(200):
            offset = rng.randrange(len(s3_fs.data))
            assert os.pread(f.fileno(), 4096, offset) == s3_fs.data[offset:offset + 4096]
    assert _streams_started(s3_fs) == 0
    # Two sequential readers of one file at once, the second starting midway.
    _drop_page_cache()
    with open(path, "rb") as first, open(path, "rb") as second:
        second.seek(12 * MiB)
        halves = [first.read(12 * MiB), second.read()]
        assert b"".join(halves) + first.read() == s3_fs.data + s3_fs.data[12 * MiB:]


def test_an_object_replaced_by_another_tool_is_read_whole_after_a_scan(s3_fs, s3_server):
    path = s3_fs.projects / "p" / "clip.mp4"
    assert path.read_bytes()[:MiB] == s3_fs.data[:MiB]
    newer = os.urandom(9 * MiB)
    prefix = next(iter(s3_fs.config.read_text().split("prefix: ")[1:])).split(",")[0]
    bucket = s3_fs.config.read_text().split("path: ")[1].split(",")[0]
    s3_server.client().put_object(Bucket=bucket, Key=f"{prefix}p/clip.mp4", Body=newer)
    assert s3_fs.ctl("discover", "--no-progress").returncode == 0
    wait_for(lambda: path.stat().st_size == len(newer))
    assert path.read_bytes() == newer
