"""A migration killed with SIGKILL at random moments, again and again (inside copies of large
files, between the journal steps of batches of small ones), across local disks and S3: after
every kill each original content still exists somewhere with its hash, nothing under a final
name is partial, and the run after the last kill converges to the plan.

The migrating process is a fork of this one (alicefs already imported), so a kill costs
milliseconds of start-up, not the interpreter's second.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import time
import uuid

from alicefs import cli
from alicefs.backends.s3 import S3Backend
from alicefs.catalog import Catalog
from alicefs.config import load_settings
from alicefs.hashing import hash_bytes
from tests.servers import S3_REGION

#: SIGKILLs in all (the issue asks for at least 200).
KILLS = int(os.environ.get("ALICEFS_CRASH_KILLS", "200"))
MiB = 1 << 20


def _run(config, *args: str) -> int:
    """`alicefs-ctl ARGS` in a forked child; returns its pid."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            with open(os.devnull, "w") as devnull:
                code = cli.run(["--config", str(config), *args], stdout=devnull,
                               stderr=devnull)
        finally:
            os._exit(code)
    return pid


def _finish(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_sigkill_during_migration_loses_nothing(tmp_path, write_config, s3_server, s3_bucket):
    for name in ("ssd", "hdd"):
        (tmp_path / name).mkdir()
    prefix = f"crash-{uuid.uuid4().hex[:8]}/"
    config = write_config(f"""\
        storage:
          locations:
            - {{name: ssd, path: ssd, priority: 100, rules: [{{max_age_days: 30}}]}}
            - {{name: hdd, path: hdd, priority: 50,
                rules: [{{min_age_days: 30, max_age_days: 180}}]}}
            - name: s3
              type: s3
              path: {s3_bucket}
              priority: 25
              rules: [{{min_age_days: 180}}]
              config:
                endpoint_url: {s3_server.endpoint_url}
                region: {S3_REGION}
                prefix: {prefix}
                aws_access_key_id: {s3_server.access_key}
                aws_secret_access_key: {s3_server.secret_key}
                multipart_threshold: {6 * MiB}
                multipart_chunksize: {5 * MiB}
    """)
    settings = load_settings(config)
    [s3_location] = [loc for loc in settings.locations if loc.name == "s3"]
    s3 = S3Backend(s3_location)
    assert _finish(_run(config, "from-config")) == 0
    rng = random.Random(7)
    kills = rounds = 0
    while kills < KILLS:
        rounds += 1
        originals = _new_library(tmp_path / "ssd", f"r{rounds}", rng)
        assert _finish(_run(config, "discover", "--no-progress")) == 0
        for attempt in range(1000):
            pid = _run(config, "migrate", "--move", "--no-progress", "--max-concurrent", "4")
            # Kills land anywhere in a run: start-up recovery, planning, copies, the journal
            # steps. The window grows, so each round finishes after some tens of kills.
            time.sleep(rng.uniform(0.0, 0.2 + 0.03 * attempt))
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                break  # finished before the kill came: the next round
            os.kill(pid, signal.SIGKILL)
            code = _finish(pid)
            if code != -signal.SIGKILL:
                assert code == 0
                break  # it finished just before the kill
            kills += 1
            _check_nothing_lost(tmp_path, s3, originals)
        final = _run(config, "migrate", "--move", "--no-progress")
        assert _finish(final) == 0, "the run after the kills failed"
        _check_nothing_lost(tmp_path, s3, originals)
        _check_converged(tmp_path, s3, originals, settings.catalog_path)
    assert kills >= KILLS


def _new_library(root, project: str, rng: random.Random) -> dict[str, tuple[bytes, str]]:
    """Files aged for the hdd (40 days) and for S3 (200 days): many small ones (batches
    of journal steps) and a few large ones (long copies, S3 multipart)."""
    originals = {}
    sizes = [10_000] * 20 + [7 * MiB]
    for age, tier in ((40, "hdd"), (200, "s3")):
        for i, size in enumerate(sizes):
            key = f"{project}/{tier}/f{i}.bin"
            data = rng.randbytes(size)
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            then = time.time() - age * 86400
            os.utime(path, (then, then))
            originals[key] = (data, tier)
    return originals


def _holders(tmp_path, s3: S3Backend, key: str) -> dict[str, str | None]:
    """Where `key` is, with the hash of what is there."""
    found = {}
    for name in ("ssd", "hdd"):
        path = tmp_path / name / key
        if path.exists():
            found[name] = hash_bytes(path.read_bytes())
    with contextlib.suppress(FileNotFoundError):
        # S3 publishes only whole objects; the hash alicefs stored with it was verified
        # against what was sent before the object could appear.
        found["s3"] = s3.stat(key).content_hash
    return found


def _check_nothing_lost(tmp_path, s3: S3Backend, originals) -> None:
    """Every original is somewhere, whole. Local copies are hashed; S3 objects are looked
    up in one listing and their stored hash read where they are the only copy (S3 shows
    only whole objects, so a listed object is never a partial one)."""
    in_s3 = {info.key for info in s3.list() if not isinstance(info, str)}
    for key, (data, _tier) in originals.items():
        found = False
        for name in ("ssd", "hdd"):
            path = tmp_path / name / key
            if path.exists():
                assert hash_bytes(path.read_bytes()) == hash_bytes(data), \
                    f"{key} in {name} is not whole"
                found = True
        if not found:
            assert key in in_s3, f"{key}: no copy left anywhere"
            assert s3.stat(key).content_hash == hash_bytes(data), f"{key} in s3 is not whole"


def _check_converged(tmp_path, s3: S3Backend, originals, catalog_path) -> None:
    for key, (_data, tier) in originals.items():
        assert list(_holders(tmp_path, s3, key)) == [tier], key
    # What copies cut short left behind went at the next run's recovery: temporary files,
    # and the parts of S3 multipart uploads.
    assert [p for p in tmp_path.rglob(".alicefs-tmp-*")] == []
    uploads = s3.client.list_multipart_uploads(Bucket=s3.bucket, Prefix=s3.location.prefix)
    assert uploads.get("Uploads", []) == []
    with Catalog(catalog_path) as catalog:
        assert catalog.journal_open() == []
        assert catalog.check() == []
        for key, (_data, tier) in originals.items():
            assert [r.location_id for r in catalog.replicas_of(key)] == [
                loc.location_id for loc in catalog.locations() if loc.name == tier], key
    dry = io.StringIO()
    assert cli.run(["--config", str(tmp_path / "settings.yaml"), "migrate", "--dry-run",
                    "--json"], stdout=dry, stderr=io.StringIO()) == 0
    assert '"transfers": []' in dry.getvalue()
