"""`sync-process` killed with SIGKILL at every step of its journal (begun, each conflict name
announced, the losing version kept, the new content written but not published, published,
recorded), between two local disks and from a local disk to S3: after every kill each
version anyone wrote still exists somewhere, and the run after the kill converges.

The syncing process is a fork of this one (alicefs already imported), as in the migration
crash test.
"""

from __future__ import annotations

import functools
import io
import itertools
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from alicefs import cli
from alicefs.backends import open_backend
from alicefs.backends.base import Backend
from alicefs.config import load_settings
from alicefs.hashing import hash_bytes
from tests.servers import S3_REGION

#: (backup's kind, where, which pass): every step between two local disks, the per-file ones
#: at the first file and at a later one (one batch of four files, one of them a conflict);
#: with the backup on S3, the steps an object store does its own way.
POINTS = [("local", point, nth) for point, nth in (
    ("begun", 1), ("announced", 1), ("kept", 1), ("written", 1), ("written", 3),
    ("published", 1), ("published", 3), ("recorded", 1))] + [
    ("s3", "kept", 1), ("s3", "written", 1), ("s3", "published", 3)]
FILES = {"neon/f0.png": b"v2 of f0 " * 500, "neon/f1.png": b"v2 of f1 " * 500}
BACKUP_EDIT = ("neon/f2.png", b"v2 of f2, on the backup " * 400)
CONFLICT = ("neon/f3.png", b"the studio's edit " * 300, b"the backup's later edit " * 300)


def _ctl(config: Path, *args: str) -> int:
    with open(os.devnull, "w") as devnull:
        return cli.run(["--config", str(config), *args], stdout=devnull, stderr=devnull)


def _arm(point: str, nth: int) -> None:
    """In the child: SIGKILL at the `nth` pass through `point`."""
    from alicefs.backends import local
    from alicefs.sync import run
    from alicefs.transfer import replace

    passes = itertools.count(1)

    def hit(name: str) -> None:
        if name == point and next(passes) == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    def after(name, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            result = func(*args, **kwargs)
            hit(name)
            return result
        return wrapper

    def before(name, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            hit(name)
            return func(*args, **kwargs)
        return wrapper

    replace.begin = after("begun", replace.begin)
    replace.Replacement.keep = after("kept", replace.Replacement.keep)
    replace.Replacement.replace = after("published", replace.Replacement.replace)
    run._Batch._record = after("recorded", run._Batch._record)
    local._publish = before("written", local._publish)
    from alicefs.catalog import Catalog
    Catalog.journal_temp_key = after("announced", Catalog.journal_temp_key)
    if point == "written":
        # An object store publishes inside its upload: kill when the upload begins.
        from alicefs.backends.objectstore import ObjectStoreBackend
        for cls in ObjectStoreBackend.__subclasses__():
            cls.write_atomic = before("written", cls.write_atomic)


def _sync_killed_at(config: Path, point: str, nth: int) -> int:
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            _arm(point, nth)
            code = _ctl(config, "sync-process", "--no-progress")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _contents(backend: Backend) -> dict[str, bytes]:
    found = {}
    for info in backend.list():
        with backend.open_read(info.key) as stream:
            found[info.key] = stream.read()
    return found


def _put(backend: Backend, key: str, data: bytes, mtime: float) -> None:
    backend.write_atomic(key, io.BytesIO(data), overwrite=True, mtime_ns=int(mtime * 1e9))


@pytest.fixture
def library(request, tmp_path, write_config):
    """A config with `studio` (local) and `backup` (local or S3), both holding v1 of every
    file, scanned; then edited outside alicefs so that sync has updates and a conflict."""
    (tmp_path / "studio").mkdir()
    if request.param == "local":
        (tmp_path / "backup").mkdir()
        backup = "{name: backup, path: backup, priority: 50}"
    else:
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        backup = (f"{{name: backup, type: s3, path: {bucket}, priority: 50, config: "
                  f"{{endpoint_url: '{server.endpoint_url}', region: {S3_REGION}, "
                  f"prefix: sync-{uuid.uuid4().hex[:8]}/, "
                  f"aws_access_key_id: {server.access_key}, "
                  f"aws_secret_access_key: {server.secret_key}}}}}")
    config = write_config(f"""\
        storage:
          sync: {{auto_resolve: newest}}
          locations:
            - {{name: studio, path: studio, priority: 100}}
            - {backup}
    """)
    settings = load_settings(config)
    studio, backup_backend = (open_backend(loc) for loc in settings.locations)
    then = time.time() - 3600
    names = [*FILES, BACKUP_EDIT[0], CONFLICT[0]]
    for backend in (studio, backup_backend):
        for name in names:
            _put(backend, name, f"v1 of {name}".encode(), then)
    assert _ctl(config, "from-config") == 0
    assert _ctl(config, "discover", "--no-progress") == 0
    now = time.time()
    for name, data in FILES.items():
        _put(studio, name, data, now)
    _put(backup_backend, BACKUP_EDIT[0], BACKUP_EDIT[1], now)
    _put(studio, CONFLICT[0], CONFLICT[1], now - 60)
    _put(backup_backend, CONFLICT[0], CONFLICT[2], now)
    assert _ctl(config, "discover", "--no-progress") == 0
    return config, studio, backup_backend


@pytest.mark.parametrize(("library", "point", "nth"), POINTS, indirect=["library"])
def test_sigkill_at_every_step_loses_nothing_and_the_rerun_converges(library, point, nth):
    config, studio, backup = library
    written = [*FILES.values(), BACKUP_EDIT[1], CONFLICT[1], CONFLICT[2]]
    assert _sync_killed_at(config, point, nth) == -signal.SIGKILL
    held = {hash_bytes(data) for backend in (studio, backup)
            for data in _contents(backend).values()}
    assert all(hash_bytes(data) in held for data in written), "a version was lost"

    assert _ctl(config, "sync-process", "--no-progress") == 0
    ours, theirs = _contents(studio), _contents(backup)
    for name, data in [*FILES.items(), BACKUP_EDIT, (CONFLICT[0], CONFLICT[2])]:
        assert ours[name] == theirs[name] == data
    kept = [key for key in ours if ".conflict-" in key]
    assert kept and all(ours[key] == CONFLICT[1] for key in kept)
    assert not [key for key in theirs if ".conflict-" in key]
    assert all(key.startswith("neon/") and key.count("/") == 1 for key in [*ours, *theirs])
    assert _ctl(config, "sync-process", "--no-progress") == 0  # nothing left: exit 0 too
    assert _contents(studio) == ours and _contents(backup) == theirs
