"""Objects other tools wrote to S3/GCS are cataloged from their listing, downloaded only when
something must compare their content (alicefs.lazy_hash), against the real servers, with a
byte-counting proxy in front of each."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from alicefs.hashing import hash_bytes
from tests.proxy import TcpProxy
from tests.servers import S3_REGION
from tests.transfer.conftest import unique_prefix


@dataclass
class Store:
    """A bucket prefix seen through a proxy that counts the bytes alicefs exchanges."""

    entry: str  # the location's settings.yaml entry, reaching the store through the proxy
    env: dict[str, str]
    proxy: TcpProxy
    raw_put: Callable[[str, bytes], None]  # as another tool writes: no alicefs metadata
    raw_get: Callable[[str], bytes | None]


@pytest.fixture(params=["s3", "gcs"])
def store(request) -> Iterator[Store]:
    prefix = unique_prefix()
    env = dict(os.environ)
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        proxy = TcpProxy(server.ports["s3"])
        client = server.client()
        entry = (f"{{name: cloud, type: s3, path: {bucket}, priority: 10, config: "
                 f"{{endpoint_url: '{proxy.url}', region: {S3_REGION}, prefix: {prefix}, "
                 f"aws_access_key_id: {server.access_key}, "
                 f"aws_secret_access_key: {server.secret_key}}}}}")

        def raw_put(key: str, data: bytes) -> None:
            client.put_object(Bucket=bucket, Key=prefix + key, Body=data)

        def raw_get(key: str) -> bytes | None:
            try:
                return client.get_object(Bucket=bucket, Key=prefix + key)["Body"].read()
            except client.exceptions.NoSuchKey:
                return None
    else:
        server = request.getfixturevalue("gcs_server")
        bucket = request.getfixturevalue("gcs_bucket")
        proxy = TcpProxy(server.port)
        env["STORAGE_EMULATOR_HOST"] = proxy.url
        raw_bucket = storage.Client(project="test", credentials=AnonymousCredentials()
                                    ).bucket(bucket)
        entry = (f"{{name: cloud, type: gcs, path: {bucket}, priority: 10, "
                 f"config: {{prefix: {prefix}}}}}")

        def raw_put(key: str, data: bytes) -> None:
            raw_bucket.blob(prefix + key).upload_from_string(data)

        def raw_get(key: str) -> bytes | None:
            blob = raw_bucket.get_blob(prefix + key)
            return None if blob is None else blob.download_as_bytes()
    try:
        yield Store(entry, env, proxy, raw_put, raw_get)
    finally:
        proxy.close()


def _config(write_config, tmp_path: Path, store: Store) -> Path:
    (tmp_path / "disk").mkdir()
    return write_config(f"""\
        storage:
          locations:
            - {{name: disk, path: {tmp_path / "disk"}, priority: 90}}
            - {store.entry}
    """)


def _by_location(result) -> dict[str, dict]:
    assert result.returncode == 0, result.stderr
    return {s["name"]: s for s in json.loads(result.stdout)}


def test_discover_downloads_nothing_and_duplicates_hash_only_what_could_match(
        ctl, write_config, tmp_path, store):
    rng = random.Random(7)
    unique = {f"renders/{i:03}.png": rng.randbytes(100_000 + 97 * i) for i in range(60)}
    shared = rng.randbytes(50_000)
    same_size = (rng.randbytes(30_000), rng.randbytes(30_000))
    for key, data in unique.items():
        store.raw_put(key, data)
    store.raw_put("dup/a.png", shared)
    store.raw_put("dup/b.png", shared)
    store.raw_put("same/x.png", same_size[0])
    store.raw_put("same/y.png", same_size[1])
    config = _config(write_config, tmp_path, store)
    (tmp_path / "disk" / "dup").mkdir()
    (tmp_path / "disk" / "dup" / "c.png").write_bytes(shared)
    env = store.env
    assert ctl("from-config", config=config, env=env).returncode == 0
    content = sum(map(len, unique.values())) + 2 * len(shared) + 2 * 30_000

    before = store.proxy.forwarded()
    found = _by_location(ctl("discover", "--json", "--no-progress", config=config, env=env))
    assert found["cloud"]["files"] == 64 and found["cloud"]["bytes_read"] == 0
    # Listings and per-object metadata only: nothing near the content went over the wire.
    assert store.proxy.forwarded() - before < content // 10

    before = store.proxy.forwarded()
    result = ctl("duplicates", "--json", config=config, env=env)
    assert result.returncode == 0, result.stderr
    groups = json.loads(result.stdout)
    assert [g["content_hash"] for g in groups] == [hash_bytes(shared)]
    assert sorted((r["location_id"], r["logical_path"]) for r in groups[0]["replicas"]) \
        == sorted((lid, path) for lid, path in _ids(ctl, config, env, [
            ("cloud", "dup/a.png"), ("cloud", "dup/b.png"), ("disk", "dup/c.png")]))
    # Only the objects whose size another file shares were read: the two pairs.
    read = store.proxy.forwarded() - before
    assert 2 * len(shared) + 2 * 30_000 <= read < 2 * len(shared) + 2 * 30_000 + content // 10

    before = store.proxy.forwarded()
    hashed = _by_location(ctl("discover", "--hash", "--json", "--no-progress", config=config,
                              env=env))
    assert hashed["cloud"]["bytes_read"] == sum(map(len, unique.values()))
    assert store.proxy.forwarded() - before >= sum(map(len, unique.values()))
    again = _by_location(ctl("discover", "--hash", "--json", "--no-progress", config=config,
                             env=env))
    assert again["cloud"]["bytes_read"] == 0 and again["cloud"]["unchanged_files"] == 64


def _ids(ctl, config: Path, env: dict[str, str], pairs: list[tuple[str, str]]
         ) -> list[tuple[str, str]]:
    listed = json.loads(ctl("list", "--json", config=config, env=env).stdout)
    ids = {loc["name"]: loc["location_id"] for loc in listed}
    return [(ids[name], path) for name, path in pairs]


def test_an_object_changed_to_another_content_of_the_same_size_is_never_taken_for_the_file(
        ctl, write_config, tmp_path, store):
    """The disk and the store hold p/shot.png, the same size, different content (another tool
    rewrote the object). Gathering the project onto the disk with --move must not delete the
    store's version as if it were a copy: it is hashed first, and the file is a conflict."""
    config = _config(write_config, tmp_path, store)
    ours, theirs, only = b"O" * 40_000, b"T" * 40_000, os.urandom(70_000)
    (tmp_path / "disk" / "p").mkdir()
    (tmp_path / "disk" / "p" / "shot.png").write_bytes(ours)
    store.raw_put("p/shot.png", theirs)
    store.raw_put("p/only.png", only)
    env = store.env
    assert ctl("from-config", config=config, env=env).returncode == 0
    assert ctl("discover", "--no-progress", config=config, env=env).returncode == 0

    dry = ctl("consolidate", "p", "disk", "--move", "--dry-run", "--json", config=config,
              env=env)
    assert dry.returncode == 0, dry.stderr
    assert [s["path"] for s in json.loads(dry.stdout)["skipped"]] == ["p/shot.png"]
    result = ctl("consolidate", "p", "disk", "--move", "--json", config=config, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {"moved": 1}
    assert store.raw_get("p/shot.png") == theirs
    assert (tmp_path / "disk" / "p" / "shot.png").read_bytes() == ours
    # The object only the store held was hashed as it was copied, then removed there.
    assert (tmp_path / "disk" / "p" / "only.png").read_bytes() == only
    assert store.raw_get("p/only.png") is None

    status = ctl("sync-status", "--json", config=config, env=env)
    states = {f["path"]: f["state"] for f in json.loads(status.stdout)["files"]}
    assert states == {"p/shot.png": "conflict"}
