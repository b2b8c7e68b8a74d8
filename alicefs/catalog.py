"""The catalog: one DuckDB file holding locations, replicas, metadata, sync bases and the journal.

The catalog is an index of the locations, never the only copy of anything: a scan can always
rebuild it (DESIGN.md §5). DuckDB is fast in bulk and slow per row (hundreds of single-row
autocommits per second), so every write API takes a batch and runs as one statement inside
one transaction, and readers load whole tables into memory.

Schema rules that keep DuckDB out of trouble: no foreign keys, and no index (primary keys
included) on a column that is ever UPDATEd — DuckDB turns such an UPDATE into delete + insert
and can report a spurious constraint violation. Primary keys sit only on identity columns.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import duckdb

from alicefs.errors import CatalogError, NotFoundError
from alicefs.model import LocationType, StorageLocation
from alicefs.rules import LocationStatus, Rule
from alicefs.signatures import Signatures

Column = tuple[str, str, str]  # name, SQL type and constraints, comment


def _table(name: str, comment: str, columns: Sequence[Column], primary_key: str) -> list[str]:
    body = ",\n  ".join(f"{col} {sql_type}" for col, sql_type, _ in columns)
    statements = [f"CREATE TABLE {name} (\n  {body},\n  PRIMARY KEY ({primary_key})\n)",
                  f"COMMENT ON TABLE {name} IS {_sql_str(comment)}"]
    statements += [f"COMMENT ON COLUMN {name}.{col} IS {_sql_str(text)}"
                   for col, _, text in columns]
    return statements


def _add_column(table: str, column: Column) -> list[str]:
    col, sql_type, text = column
    return [f"ALTER TABLE {table} ADD COLUMN {col} {sql_type}",
            f"COMMENT ON COLUMN {table}.{col} IS {_sql_str(text)}"]


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Each entry migrates the schema from version N-1 to N; a new catalog runs them all in order.
# Never edit a released entry: append a new one.
_MIGRATIONS: dict[int, list[str]] = {
    1: [
        *_table("catalog_meta", "Facts about the catalog itself, such as its schema version.", [
            ("key", "VARCHAR NOT NULL", "Name of the fact, e.g. schema_version."),
            ("value", "VARCHAR NOT NULL", "Its value, as text."),
        ], "key"),
        *_table("locations", "Configured storage roots (local directories, S3/GCS buckets).", [
            ("location_id", "VARCHAR NOT NULL",
             "Stable id derived from type and place (see model.location_id_for); never reused."),
            ("name", "VARCHAR NOT NULL",
             "User-facing name, unique case-insensitively (enforced by alicefs, not an index, "
             "because names can be changed)."),
            ("type", "VARCHAR NOT NULL", "local, s3 or gcs."),
            ("path", "VARCHAR NOT NULL", "Absolute directory for local; bucket name for s3/gcs."),
            ("priority", "INTEGER NOT NULL", "Higher is preferred for reads and placement."),
            ("status", "VARCHAR NOT NULL", "active, archived (no new files) or offline."),
            ("rules_json", "VARCHAR NOT NULL", "Placement rules as a JSON list of rule objects."),
            ("config_json", "VARCHAR NOT NULL",
             "Type-specific settings as JSON, credentials included: the catalog file is 0600."),
            ("min_free_bytes", "BIGINT", "Bytes to keep free; NULL means the default reserve."),
            ("created_at", "DOUBLE NOT NULL", "When the location was registered (epoch seconds)."),
        ], "location_id"),
        *_table("replicas", "One location's copy of a logical path, as last seen by a scan or "
                            "written by alicefs.", [
            ("location_id", "VARCHAR NOT NULL", "The location holding this copy."),
            ("logical_path", "VARCHAR NOT NULL",
             "project/rel/path: the file's identity, the same in every location."),
            ("size", "BIGINT NOT NULL", "Size in bytes."),
            ("mtime_ns", "BIGINT NOT NULL", "Modification time, nanoseconds since the epoch."),
            ("inode", "BIGINT", "Inode number on local locations (change detection); else NULL."),
            ("content_hash", "VARCHAR",
             "BLAKE3-256 of the content, hex; NULL until hashed."),
            ("state", "VARCHAR NOT NULL",
             "present, or missing when the last scan did not find it."),
            ("seen_at", "DOUBLE NOT NULL", "When a scan or write last confirmed it (epoch s)."),
        ], "location_id, logical_path"),
        *_table("file_meta", "Per logical path: media type, tags and quality, with where each "
                             "value came from.", [
            ("logical_path", "VARCHAR NOT NULL", "The file this row describes."),
            ("category", "VARCHAR NOT NULL", "image, video, audio, text or other."),
            ("mime_type", "VARCHAR NOT NULL", "Full MIME type, e.g. image/png."),
            ("tags", "VARCHAR[] NOT NULL", "Tags (keywords), in the order first seen."),
            ("tags_source", "VARCHAR",
             "user, sidecar or embedded; NULL when no tags. A scan never overwrites user."),
            ("quality", "TINYINT", "Stars 0-5; NULL when unrated."),
            ("quality_source", "VARCHAR",
             "user, sidecar or embedded; NULL when unrated. A scan never overwrites user."),
            ("updated_at", "DOUBLE NOT NULL", "Last change of this row (epoch seconds)."),
        ], "logical_path"),
        *_table("sync_base", "The last content every replica of a path agreed on.", [
            ("logical_path", "VARCHAR NOT NULL", "The file."),
            ("base_hash", "VARCHAR NOT NULL", "BLAKE3-256 hex of the agreed content."),
            ("base_size", "BIGINT NOT NULL", "Size of the agreed content."),
            ("agreed_at", "DOUBLE NOT NULL", "When the replicas were last seen agreeing."),
        ], "logical_path"),
        "CREATE SEQUENCE journal_op_id START 1",
        *_table("journal", "Multi-step operations (copy, move, delete, upload, rename), written "
                           "before they start and replayed or rolled back at start-up.", [
            ("op_id", "BIGINT NOT NULL DEFAULT nextval('journal_op_id')",
             "Operation number, increasing."),
            ("kind", "VARCHAR NOT NULL",
             "move, handover, delete, deferred-delete or multipart (transfer/journal.py)."),
            ("step", "VARCHAR NOT NULL",
             "Last step completed: planned, written, verified, renamed, recorded, "
             "source_deleted, done."),
            ("logical_path", "VARCHAR NOT NULL", "The file operated on."),
            ("source_location_id", "VARCHAR", "Where the content comes from, if anywhere."),
            ("target_location_id", "VARCHAR", "Where it goes, if anywhere."),
            ("temp_key", "VARCHAR",
             "Temporary name in the target, to delete or rename when recovering."),
            ("expected_hash", "VARCHAR", "BLAKE3-256 hex the target must verify against."),
            ("payload_json", "VARCHAR NOT NULL", "Operation-specific details as JSON."),
            ("created_at", "DOUBLE NOT NULL", "When the operation was journaled (epoch s)."),
            ("updated_at", "DOUBLE NOT NULL", "When its step last advanced (epoch s)."),
        ], "op_id"),
    ],
    2: [
        *_add_column("replicas", (
            "change_token", "VARCHAR",
            "Object-store change detector: S3 ETag or GCS generation; NULL for local files.")),
        *_add_column("locations", (
            "updated_at", "DOUBLE", "Last change of priority, status, rules or name (epoch s).")),
    ],
    3: [
        "CREATE SEQUENCE scan_id START 1",
        *_table("scans", "One completed scan of one location: when, and what it found. "
                         "Unchanged replicas are not rewritten by a scan, so a replica was last "
                         "seen by the newest scan of its location.", [
            ("scan_id", "BIGINT NOT NULL DEFAULT nextval('scan_id')", "Scan number, increasing."),
            ("location_id", "VARCHAR NOT NULL", "The location scanned."),
            ("started_at", "DOUBLE NOT NULL", "When the listing began (epoch s)."),
            ("finished_at", "DOUBLE NOT NULL", "When the results were committed (epoch s)."),
            ("files", "BIGINT NOT NULL", "Files listed."),
            ("bytes", "BIGINT NOT NULL", "Their total size."),
            ("new_files", "BIGINT NOT NULL", "Files the catalog did not have."),
            ("changed_files", "BIGINT NOT NULL", "Files whose size, mtime or inode changed."),
            ("missing_files", "BIGINT NOT NULL", "Cataloged files not found any more."),
            ("bytes_read", "BIGINT NOT NULL", "Content bytes read (hashing, metadata)."),
            ("forced", "BOOLEAN NOT NULL", "Whether every file was re-read (force_scan)."),
        ], "scan_id"),
    ],
    4: [
        *_add_column("file_meta", (
            "tags_origin", "VARCHAR",
            "Location whose sidecar or file supplied the tags; NULL when set by the user or "
            "absent. A location may replace another's value only with a better source, or the "
            "same source at a higher priority, so concurrent scans agree.")),
        *_add_column("file_meta", (
            "quality_origin", "VARCHAR", "Location that supplied the quality, as tags_origin.")),
    ],
    5: [
        "COMMENT ON COLUMN replicas.state IS 'present; missing when the last scan did not find "
        "it; stale when another replica of the file holds a newer version written through the "
        "mount (pending_update: never read, brought level by sync)'",
    ],
    6: _table("file_attrs", "What the mount was told about a file besides its content, for files "
                            "created or changed through it; files without a row show the "
                            "defaults (0644, owned by the mount's user).", [
        ("logical_path", "VARCHAR NOT NULL", "The file this row describes."),
        ("mode", "INTEGER NOT NULL", "Permission bits (st_mode & 0o7777)."),
        ("uid", "INTEGER NOT NULL", "Owner's user id."),
        ("gid", "INTEGER NOT NULL", "Owner's group id."),
        ("symlink_target", "BLOB",
         "What a symbolic link made through the mount points to (raw bytes); NULL for a "
         "regular file."),
        ("updated_at", "DOUBLE NOT NULL", "Last change of this row (epoch seconds)."),
    ], "logical_path"),
    7: [
        "COMMENT ON COLUMN file_attrs.mode IS 'st_mode: file type and permission bits (rows "
        "written before schema 7 hold the permission bits only: a symbolic link when "
        "symlink_target is set, else a regular file)'",
        *_add_column("file_attrs", (
            "rdev", "BIGINT",
            "Device number of a character or block device made through the mount; 0 for a "
            "FIFO or a socket; NULL for a regular file or a symbolic link. Special files (a "
            "value here) have no content: scans, which list regular files, leave their "
            "replicas alone and migrations do not move them.")),
    ],
    8: _add_column("file_attrs", (
        "atime_ns", "BIGINT",
        "Access time as last set through the mount (utimensat), nanoseconds since the "
        "epoch; NULL: shown as the modification time (the mount is noatime).")),
}

SCHEMA_VERSION = max(_MIGRATIONS)


@dataclass(frozen=True)
class Replica:
    location_id: str
    logical_path: str
    size: int
    mtime_ns: int
    content_hash: str | None = None
    inode: int | None = None
    change_token: str | None = None
    state: str = "present"  # present | missing | stale
    seen_at: float = 0.0


@dataclass(frozen=True)
class FileMeta:
    logical_path: str
    category: str
    mime_type: str
    tags: tuple[str, ...] = ()
    tags_source: str | None = None  # user | sidecar | embedded
    quality: int | None = None
    quality_source: str | None = None
    tags_origin: str | None = None  # location id that supplied scanned tags
    quality_origin: str | None = None


@dataclass(frozen=True)
class PosixAttrs:
    """Type, permission bits, owner, link target and device number of a file made or changed
    through the mount."""

    logical_path: str
    mode: int  # st_mode; the type bits may be 0 in old rows (see the column's comment)
    uid: int
    gid: int
    symlink_target: bytes | None = None
    rdev: int | None = None  # set for special files (FIFO, socket, device) only
    atime_ns: int | None = None  # as last set (utimensat); None: shown as the mtime


@dataclass(frozen=True)
class SyncBase:
    logical_path: str
    base_hash: str
    base_size: int
    agreed_at: float


@dataclass(frozen=True)
class NamespaceCodes:
    """What the coded columns of `Catalog.namespace_rows` stand for, by 1-based position."""

    locations: tuple[str, ...]  # location ids
    states: tuple[str, ...]
    media: tuple[tuple[str, str], ...]  # (category, MIME type)


@dataclass(frozen=True)
class ReplicaIndex:
    """A location's replicas as a scan needs them."""

    # logical path -> (size, mtime_ns, inode) for local locations, (size, change_token) for
    # object stores: the values a listed file must show for its cataloged hash to hold
    trusted: Signatures
    unhashed: set[str]  # to read again: no content hash (a scan was interrupted, or asked)
    missing: set[str]  # marked missing by an earlier scan
    # The paths `trusted` was loaded with, in chunks, read again from the catalog (the
    # table holds hashes of them): asked only for what the listing left out. Consume it
    # whole before any other catalog call: the catalog is locked meanwhile.
    trusted_paths: Callable[[], Iterable[list[str]]]
    # Every path the catalog has for the location when called (new files included, once
    # written), in chunks, as `trusted_paths`.
    location_paths: Callable[[], Iterable[list[str]]]


@dataclass(frozen=True)
class ScanRecord:
    location_id: str
    started_at: float
    finished_at: float
    files: int
    bytes: int
    new_files: int
    changed_files: int
    missing_files: int
    bytes_read: int
    forced: bool


@dataclass(frozen=True)
class JournalEntry:
    op_id: int
    kind: str
    step: str
    logical_path: str
    source_location_id: str | None
    target_location_id: str | None
    temp_key: str | None
    expected_hash: str | None
    payload: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class JournalStart:
    """One operation to journal with `journal_begin_many`."""

    logical_path: str
    source_location_id: str | None = None
    target_location_id: str | None = None
    expected_hash: str | None = None
    payload: dict[str, Any] | None = None


_INDEX_CHUNK = 10_000  # rows a scan's index is loaded in (never all at once)
_REPLICA_COLUMNS = ("location_id", "logical_path", "size", "mtime_ns", "content_hash", "inode",
                    "change_token", "state", "seen_at")
_ATTR_COLUMNS = ("logical_path", "mode", "uid", "gid", "symlink_target", "rdev", "atime_ns",
                 "updated_at")
_META_COLUMNS = ("logical_path", "category", "mime_type", "tags", "tags_source", "quality",
                 "quality_source", "tags_origin", "quality_origin", "updated_at")
_LOCATION_COLUMNS = ("location_id", "name", "type", "path", "priority", "status", "rules_json",
                     "config_json", "min_free_bytes", "created_at", "updated_at")


def _bulk_upsert_sql(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """One statement that upserts a whole batch, passed as one list parameter per column."""
    select = ", ".join(f"unnest(${i + 1}) AS {c}" for i, c in enumerate(columns))
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")


def _last_per_key(items: Iterable[Any], key: Any) -> list[Any]:
    # One statement may not touch the same key twice: keep the last record for each key.
    return list({key(item): item for item in items}.values())


# DuckDB's allocator gives back what a query frees in bulk at once; by default it did only
# above 512 MB and kept the rest for reuse, which was most of what a 100,000-file discover
# held above an empty one. Checkpointing at 8 MB of write-ahead log instead of 16 keeps
# fewer written rows in memory until then. Peak of that discover: 246-254 MB -> 164-170
# (an empty library's: 86); flushing after every task as well (allocator_flush_threshold)
# gave nothing more.
_CONNECTION_SETTINGS = (
    "SET allocator_bulk_deallocation_flush_threshold = '0MB'",
    "SET checkpoint_threshold = '8MB'",
)


class Catalog:
    """The catalog file. Thread-safe: calls are serialised on one connection.

    The guide's `DuckDBSearchCache(path)` is this class: the search index and the location
    registry live in the same transactional file.
    """

    def __init__(self, path: Path, *, _schema_version: int = SCHEMA_VERSION):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._in_transaction = False
        self._watchers: list[set[str]] = []  # see watch()
        created = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise CatalogError(f"catalog {self.path} is in use by another process "
                                   "(is alicefs mounted with it?)") from None
            raise CatalogError(f"cannot open catalog {self.path}: {exc}") from None
        except (duckdb.Error, OSError) as exc:
            raise CatalogError(f"cannot open catalog {self.path}: {exc}") from None
        if created:
            # Location configs may hold credentials.
            os.chmod(self.path, 0o600)
        for setting in _CONNECTION_SETTINGS:
            self._con.execute(setting)
        self._migrate(_schema_version)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._con.close()
            self._con = _Closed(self.path)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All statements inside commit together or not at all. Nested use joins the
        outer transaction."""
        with self._lock:
            if self._in_transaction:
                yield self._con
                return
            self._con.execute("BEGIN TRANSACTION")
            self._in_transaction = True
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            else:
                self._con.execute("COMMIT")
            finally:
                self._in_transaction = False

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._con.execute(sql, params).fetchall()

    @contextmanager
    def watch(self) -> Iterator[set[str]]:
        """The logical paths whose replicas (rows, states) or metadata are written while the
        block runs, by any thread: what a mount reads back after a scan or a command, where
        it would otherwise have to compare every file. A superset: a write rolled back is in
        it too. Hashes recorded by `add_hashes` are not (nothing a mount shows changes)."""
        touched: set[str] = set()
        with self._lock:
            self._watchers.append(touched)
        try:
            yield touched
        finally:
            with self._lock:
                self._watchers = [w for w in self._watchers if w is not touched]

    def _written(self, logical_paths: Sequence[str]) -> None:
        """Tell the watchers (called with the lock held)."""
        for touched in self._watchers:
            touched.update(logical_paths)

    @property
    def schema_version(self) -> int:
        rows = self._query("SELECT value FROM catalog_meta WHERE key = 'schema_version'")
        return int(rows[0][0])

    def _migrate(self, target: int) -> None:
        with self._lock:
            exists = self._con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'catalog_meta'"
            ).fetchone()[0]
            current = self.schema_version if exists else 0
            if current > SCHEMA_VERSION:
                raise CatalogError(f"catalog {self.path} has schema version {current}, newer "
                                   f"than this alicefs understands ({SCHEMA_VERSION}); "
                                   "upgrade alicefs")
            for version in range(current + 1, target + 1):
                with self.transaction() as con:
                    for statement in _MIGRATIONS[version]:
                        con.execute(statement)
                    con.execute("INSERT INTO catalog_meta VALUES ('schema_version', ?) "
                                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                                [str(version)])

    # -- locations -------------------------------------------------------------------------

    def put_locations(self, locations: Sequence[StorageLocation]) -> None:
        """Insert or update locations by id; created_at of existing ones is kept."""
        if not locations:
            return
        now = time.time()
        existing = {loc_id: created for loc_id, created in
                    self._query("SELECT location_id, created_at FROM locations")}
        columns: list[list[Any]] = [[] for _ in _LOCATION_COLUMNS]
        for loc in _last_per_key(locations, lambda loc: loc.location_id):
            row = (loc.location_id, loc.name, loc.type.value, loc.path, loc.priority,
                   loc.status.value, json.dumps([r.to_dict() for r in loc.rules]),
                   json.dumps(dict(loc.config)), loc.min_free_bytes,
                   existing.get(loc.location_id, now), now)
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        with self.transaction() as con:
            con.execute(_bulk_upsert_sql("locations", _LOCATION_COLUMNS, ["location_id"]),
                        columns)

    def locations(self) -> list[StorageLocation]:
        rows = self._query(f"SELECT {', '.join(_LOCATION_COLUMNS)} FROM locations "
                           "ORDER BY priority DESC, name, location_id")
        return [_location_from_row(row) for row in rows]

    def location(self, location_id: str) -> StorageLocation | None:
        rows = self._query(f"SELECT {', '.join(_LOCATION_COLUMNS)} FROM locations "
                           "WHERE location_id = ?", [location_id])
        return _location_from_row(rows[0]) if rows else None

    def find_location(self, name_or_id: str) -> StorageLocation:
        """The location with this id, else with this name (case-insensitive)."""
        by_id = self.location(name_or_id)
        if by_id is not None:
            return by_id
        matches = [loc for loc in self.locations() if loc.name.casefold() == name_or_id.casefold()]
        if not matches:
            known = ", ".join(f"{loc.name} ({loc.location_id})" for loc in self.locations())
            raise NotFoundError(f"no location with id or name {name_or_id!r}"
                                + (f"; known: {known}" if known else "; the catalog has none"))
        return matches[0]

    def remove_location(self, location_id: str) -> int:
        """Forget a location and its replica records (its files stay where they are).
        Returns the number of replica records dropped."""
        with self.transaction() as con:
            dropped = con.execute("SELECT count(*) FROM replicas WHERE location_id = ?",
                                  [location_id]).fetchone()[0]
            con.execute("DELETE FROM replicas WHERE location_id = ?", [location_id])
            con.execute("DELETE FROM locations WHERE location_id = ?", [location_id])
        return int(dropped)

    # -- replicas --------------------------------------------------------------------------

    def put_replicas(self, replicas: Sequence[Replica], *, found_by_scan: bool = False
                     ) -> None:
        """Insert or update a batch of replicas in one statement. `found_by_scan`: a stale
        replica that still has the content it had when it became stale stays stale (a scan
        re-reading the older version does not make it current)."""
        if not replicas:
            return
        unique = _last_per_key(replicas, lambda r: (r.location_id, r.logical_path))
        columns = [[getattr(r, c) for r in unique] for c in _REPLICA_COLUMNS]
        sql = _bulk_upsert_sql("replicas", _REPLICA_COLUMNS, ["location_id", "logical_path"])
        if found_by_scan:
            # In DO UPDATE, bare names are the row as it was before this statement.
            sql = sql.replace("state = excluded.state",
                              "state = CASE WHEN state = 'stale' AND content_hash IS NOT "
                              "DISTINCT FROM excluded.content_hash THEN 'stale' "
                              "ELSE excluded.state END")
        with self.transaction() as con:
            con.execute(sql, columns)
            self._written(columns[_REPLICA_COLUMNS.index("logical_path")])

    def add_hashes(self, replicas: Sequence[Replica]) -> None:
        """Record the hashes of replicas cataloged without one, where each is still the
        version it was hashed as (same size, mtime, inode and change token): a scan that
        cataloged a newer version meanwhile wins."""
        if not replicas:
            return
        columns = [[getattr(r, c) for r in replicas]
                   for c in ("location_id", "logical_path", "size", "mtime_ns", "inode",
                             "change_token", "content_hash")]
        with self.transaction() as con:
            con.execute("""
                UPDATE replicas SET content_hash = h.content_hash
                FROM (SELECT unnest(?) AS location_id, unnest(?) AS logical_path,
                             unnest(?::BIGINT[]) AS size, unnest(?::BIGINT[]) AS mtime_ns,
                             unnest(?::BIGINT[]) AS inode, unnest(?::VARCHAR[]) AS change_token,
                             unnest(?) AS content_hash) h
                WHERE replicas.location_id = h.location_id
                  AND replicas.logical_path = h.logical_path
                  AND replicas.size = h.size AND replicas.mtime_ns = h.mtime_ns
                  AND replicas.inode IS NOT DISTINCT FROM h.inode
                  AND replicas.change_token IS NOT DISTINCT FROM h.change_token
                  AND replicas.content_hash IS NULL""", columns)

    def replicas(self, location_id: str | None = None) -> list[Replica]:
        """Every replica (of one location, if given), loaded in bulk."""
        sql = f"SELECT {', '.join(_REPLICA_COLUMNS)} FROM replicas"
        params: list[Any] = []
        if location_id is not None:
            sql += " WHERE location_id = ?"
            params.append(location_id)
        return [Replica(*row) for row in self._query(sql + " ORDER BY logical_path", params)]

    def release_memory(self) -> None:
        """Give back the memory DuckDB keeps after reading whole tables (cached blocks,
        free buffers: ~50 MiB once a 100,000-file namespace is loaded, for as long as the
        mount runs): its memory limit lowered for a moment evicts them, as far down as
        what it must keep (indexes, changes not yet checkpointed) allows."""
        with self._lock:
            try:
                for limit in ("1MB", "16MB", "64MB", "256MB"):
                    try:
                        self._con.execute(f"SET memory_limit = '{limit}'")
                    except duckdb.OutOfMemoryException:
                        continue  # holds more than that: the next limit evicts what it can
                    break
            finally:
                self._con.execute("RESET memory_limit")

    def namespace_rows(self, chunk: int = 10_000
                       ) -> Iterator[tuple[NamespaceCodes, list[tuple[Any, ...]]]]:
        """What the mount's namespace is built from, in chunks of plain rows (no object per
        row, never all at once), each with what its coded columns stand for: (location,
        logical_path, size, mtime_ns, content_hash, state, change_token, media, tags,
        quality) of every replica. `location`, `state` and `media` are 1-based positions in
        the codes (small ints: Python has one object for each, where each row's string was a
        new one); `media` is NULL for a file without metadata, and so are `tags` (also when
        empty) and `quality`. Consume it before any other call: the catalog is locked
        meanwhile."""
        with self._lock:
            media = self._con.execute(
                "SELECT DISTINCT category, mime_type FROM file_meta "
                "WHERE category IS NOT NULL AND mime_type IS NOT NULL").fetchall()
            codes = NamespaceCodes(
                tuple(row[0] for row in self._con.execute(
                    "SELECT DISTINCT location_id FROM replicas").fetchall()),
                tuple(row[0] for row in self._con.execute(
                    "SELECT DISTINCT state FROM replicas").fetchall()),
                tuple((category, mime_type) for category, mime_type in media))
            result = self._con.execute(
                "SELECT list_position(?, r.location_id), r.logical_path, r.size, r.mtime_ns, "
                "r.content_hash, list_position(?, r.state), r.change_token, "
                "list_position(?, m.category || chr(31) || m.mime_type), "
                "CASE WHEN len(m.tags) > 0 THEN m.tags END, m.quality "
                "FROM replicas r LEFT JOIN file_meta m ON m.logical_path = r.logical_path",
                [list(codes.locations), list(codes.states),
                 [f"{category}\x1f{mime_type}" for category, mime_type in codes.media]])
            while rows := result.fetchmany(chunk):
                yield codes, rows

    def replica_index(self, location_id: str, object_store: bool,
                      trust_unhashed_objects: bool = False) -> ReplicaIndex:
        """What a rescan compares a listing against, loaded in chunks of plain rows into a
        compact table (it covers every file of the location on every scan). With
        `trust_unhashed_objects`, an object cataloged without a hash is unchanged while its
        size and version are (its hash is computed when needed, alicefs.lazy_hash);
        otherwise, and for local files, a replica without a hash is read again."""
        compared = "size, change_token" if object_store else "size, mtime_ns, inode"
        hashed = ("(content_hash IS NOT NULL OR change_token IS NOT NULL)"
                  if object_store and trust_unhashed_objects else "content_hash IS NOT NULL")
        trusted_sql = f"FROM replicas WHERE location_id = ? AND {hashed}"
        trusted = Signatures()
        with self._lock:
            result = self._con.execute(f"SELECT logical_path, {compared} {trusted_sql}",
                                       [location_id])
            while rows := result.fetchmany(_INDEX_CHUNK):
                trusted.add_rows(rows)
            # Special files are never listed: left out, so a scan does not miss them.
            unhashed = {row[0] for row in self._con.execute(
                "SELECT logical_path FROM replicas WHERE location_id = ? "
                f"AND NOT {hashed} AND logical_path NOT IN "
                "(SELECT logical_path FROM file_attrs WHERE rdev IS NOT NULL)",
                [location_id]).fetchall()}
            missing = {row[0] for row in self._con.execute(
                "SELECT logical_path FROM replicas WHERE location_id = ? "
                "AND state = 'missing'", [location_id]).fetchall()}

        def trusted_paths() -> Iterator[list[str]]:
            return self._paths_in_chunks(f"SELECT logical_path {trusted_sql}", location_id)

        def location_paths() -> Iterator[list[str]]:
            return self._paths_in_chunks(
                "SELECT logical_path FROM replicas WHERE location_id = ? AND logical_path NOT "
                "IN (SELECT logical_path FROM file_attrs WHERE rdev IS NOT NULL)", location_id)

        if trusted.collided:
            trusted.resolve(path for chunk in trusted_paths() for path in chunk)
        return ReplicaIndex(trusted, unhashed, missing, trusted_paths, location_paths)

    def _paths_in_chunks(self, sql: str, location_id: str) -> Iterator[list[str]]:
        with self._lock:
            result = self._con.execute(sql, [location_id])
            while rows := result.fetchmany(_INDEX_CHUNK):
                yield [row[0] for row in rows]

    def mark_present(self, location_id: str, logical_paths: Sequence[str]) -> None:
        """Replicas found again, unchanged, after a scan had marked them missing."""
        if not logical_paths:
            return
        now = time.time()
        with self.transaction() as con:
            con.execute("UPDATE replicas SET state = 'present', seen_at = $3 "
                        "WHERE location_id = $1 AND logical_path IN (SELECT unnest($2))",
                        [location_id, list(logical_paths), now])
            self._written(logical_paths)

    def replicas_for(self, logical_paths: Sequence[str]) -> list[Replica]:
        """Every replica of these paths (in one query: pass a bounded batch)."""
        if not logical_paths:
            return []
        rows = self._query(f"SELECT {', '.join(_REPLICA_COLUMNS)} FROM replicas "
                           "WHERE logical_path IN (SELECT unnest($1))", [list(logical_paths)])
        return [Replica(*row) for row in rows]

    def replicas_under(self, prefix: str) -> list[Replica]:
        """Replicas whose logical path starts with `prefix` (no wildcard interpretation)."""
        rows = self._query(f"SELECT {', '.join(_REPLICA_COLUMNS)} FROM replicas "
                           "WHERE starts_with(logical_path, ?) ORDER BY logical_path, "
                           "location_id", [prefix])
        return [Replica(*row) for row in rows]

    def replicas_of(self, logical_path: str) -> list[Replica]:
        rows = self._query(f"SELECT {', '.join(_REPLICA_COLUMNS)} FROM replicas "
                           "WHERE logical_path = ? ORDER BY location_id", [logical_path])
        return [Replica(*row) for row in rows]

    def mark_stale(self, replicas: Sequence[tuple[str, str]]) -> None:
        """(location id, logical path) replicas that hold an older version than another
        replica of the same file (the mount wrote the other one): `pending_update` for sync,
        and never chosen for reads. Only the state changes: their size, mtime and hash still
        describe what they hold."""
        if not replicas:
            return
        with self.transaction() as con:
            con.execute("UPDATE replicas SET state = 'stale' WHERE (location_id, logical_path) "
                        "IN (SELECT unnest($1), unnest($2))",
                        [[r[0] for r in replicas], [r[1] for r in replicas]])
            self._written([r[1] for r in replicas])

    def mark_missing(self, location_id: str, logical_paths: Sequence[str]) -> None:
        if not logical_paths:
            return
        with self.transaction() as con:
            con.execute("UPDATE replicas SET state = 'missing' WHERE location_id = $1 "
                        "AND logical_path IN (SELECT unnest($2))",
                        [location_id, list(logical_paths)])
            self._written(logical_paths)

    def drop_replicas(self, location_id: str, logical_paths: Sequence[str]) -> None:
        if not logical_paths:
            return
        with self.transaction() as con:
            con.execute("DELETE FROM replicas WHERE location_id = $1 "
                        "AND logical_path IN (SELECT unnest($2))",
                        [location_id, list(logical_paths)])
            self._written(logical_paths)

    # -- metadata --------------------------------------------------------------------------

    def put_metadata(self, records: Sequence[FileMeta]) -> None:
        if not records:
            return
        now = time.time()
        unique = _last_per_key(records, lambda m: m.logical_path)
        columns: list[list[Any]] = [[getattr(m, c) for m in unique] for c in _META_COLUMNS[:-1]]
        columns[_META_COLUMNS.index("tags")] = [list(m.tags) for m in unique]
        columns.append([now] * len(unique))
        with self.transaction() as con:
            con.execute(_bulk_upsert_sql("file_meta", _META_COLUMNS, ["logical_path"]), columns)
            self._written(columns[_META_COLUMNS.index("logical_path")])

    def metadata(self, logical_path: str) -> FileMeta | None:
        rows = self._query(f"SELECT {', '.join(_META_COLUMNS[:-1])} FROM file_meta "
                           "WHERE logical_path = ?", [logical_path])
        return _meta_from_row(rows[0]) if rows else None

    def metadata_for(self, logical_paths: Sequence[str]) -> dict[str, FileMeta]:
        if not logical_paths:
            return {}
        rows = self._query(f"SELECT {', '.join(_META_COLUMNS[:-1])} FROM file_meta "
                           "WHERE logical_path IN (SELECT unnest($1))", [list(logical_paths)])
        return {row[0]: _meta_from_row(row) for row in rows}

    def put_posix_attrs(self, records: Sequence[PosixAttrs]) -> None:
        if not records:
            return
        unique = _last_per_key(records, lambda a: a.logical_path)
        columns: list[list[Any]] = [[getattr(a, c) for a in unique] for c in _ATTR_COLUMNS[:-1]]
        columns.append([time.time()] * len(unique))
        with self.transaction() as con:
            con.execute(_bulk_upsert_sql("file_attrs", _ATTR_COLUMNS, ["logical_path"]),
                        columns)

    def drop_posix_attrs(self, logical_paths: Sequence[str]) -> None:
        if not logical_paths:
            return
        with self.transaction() as con:
            con.execute("DELETE FROM file_attrs WHERE logical_path IN (SELECT unnest($1))",
                        [list(logical_paths)])

    def contentless_paths(self) -> set[str]:
        """Logical paths of symbolic links and special files made through the mount: entries
        without content, which live where they were made."""
        rows = self._query("SELECT logical_path FROM file_attrs "
                           "WHERE symlink_target IS NOT NULL OR rdev IS NOT NULL")
        return {row[0] for row in rows}

    def hard_link_groups(self) -> list[tuple[str, int, list[str]]]:
        """(location id, inode, logical paths) of the files several cataloged paths of a
        local location share: hard links, or rows a scan has not yet corrected after an
        inode number was reused (callers check the disk before they rely on it)."""
        # The shared inodes first: a list per inode of every file took 3 times as long.
        rows = self._query("""
            WITH shared AS (
                SELECT location_id, inode FROM replicas WHERE inode IS NOT NULL
                GROUP BY location_id, inode HAVING count(*) > 1)
            SELECT location_id, inode, list(logical_path ORDER BY logical_path) FROM replicas
            SEMI JOIN shared USING (location_id, inode)
            GROUP BY location_id, inode""")
        return [(row[0], row[1], list(row[2])) for row in rows]

    def hard_linked_paths(self) -> set[str]:
        """Logical paths that share their file with another path on some location: hard
        links, which migration leaves where they are (moving one name would split them)."""
        return {path for _, _, paths in self.hard_link_groups() for path in paths}

    def all_posix_attrs(self) -> dict[str, PosixAttrs]:
        rows = self._query(f"SELECT {', '.join(_ATTR_COLUMNS[:-1])} FROM file_attrs")
        return {row[0]: PosixAttrs(*row) for row in rows}

    def all_metadata(self) -> dict[str, FileMeta]:
        rows = self._query(f"SELECT {', '.join(_META_COLUMNS[:-1])} FROM file_meta")
        return {row[0]: _meta_from_row(row) for row in rows}

    def set_user_tags(self, logical_path: str, add: Sequence[str], remove: Sequence[str],
                      media: tuple[str, str]) -> FileMeta:
        """Add and remove tags as the user asks; the result is marked `user`, so scans keep it.
        `media` (category, MIME type) is used when the file has no metadata row yet."""
        with self.transaction():
            meta = self.metadata(logical_path) or FileMeta(logical_path, *media)
            removed = {t.casefold() for t in remove}
            tags = [t for t in meta.tags if t.casefold() not in removed]
            for tag in add:
                if tag.casefold() not in {t.casefold() for t in tags}:
                    tags.append(tag)
            updated = replace(meta, tags=tuple(tags), tags_source="user", tags_origin=None)
            self.put_metadata([updated])
        return updated

    def set_user_quality(self, logical_path: str, stars: int, media: tuple[str, str]
                         ) -> FileMeta:
        with self.transaction():
            meta = self.metadata(logical_path) or FileMeta(logical_path, *media)
            updated = replace(meta, quality=stars, quality_source="user", quality_origin=None)
            self.put_metadata([updated])
        return updated

    # -- reports ---------------------------------------------------------------------------

    def location_stats(self) -> list[dict[str, Any]]:
        """Per location: files and bytes present, missing replicas, and duplicates (present
        replicas whose content is also held by another replica, anywhere)."""
        return self._dict_query(f"""
            {_DUPLICATES_CTE}
            SELECT l.location_id, l.name,
                   count(r.logical_path) FILTER (WHERE r.state = 'present') AS files,
                   coalesce(sum(r.size) FILTER (WHERE r.state = 'present'), 0) AS bytes,
                   count(r.logical_path) FILTER (WHERE r.state = 'missing') AS missing,
                   count(d.content_hash) FILTER (WHERE r.state = 'present') AS duplicates
            FROM locations l
            LEFT JOIN replicas r ON r.location_id = l.location_id
            LEFT JOIN dup d ON d.content_hash = r.content_hash
            GROUP BY l.location_id, l.name, l.priority
            ORDER BY l.priority DESC, l.name""")

    def project_stats(self) -> list[dict[str, Any]]:
        """Per project: distinct files, bytes (each file once), missing replicas, duplicates."""
        return self._dict_query(f"""
            {_DUPLICATES_CTE}
            SELECT {_PROJECT_SQL} AS project,
                   count(DISTINCT r.logical_path) FILTER (WHERE r.state = 'present') AS files,
                   coalesce(sum(r.size) FILTER (WHERE r.state = 'present'), 0) AS bytes,
                   count(*) FILTER (WHERE r.state = 'missing') AS missing,
                   count(d.content_hash) FILTER (WHERE r.state = 'present') AS duplicates
            FROM replicas r
            LEFT JOIN dup d ON d.content_hash = r.content_hash
            GROUP BY 1 ORDER BY 1""")

    def duplicate_groups(self) -> list[dict[str, Any]]:
        """Every content held by more than one present replica, with where."""
        return self._dict_query(f"""
            {_DUPLICATES_CTE}
            SELECT r.content_hash, any_value(r.size) AS size,
                   list(struct_pack(location_id := r.location_id,
                                    logical_path := r.logical_path)
                        ORDER BY r.logical_path, r.location_id) AS replicas
            FROM replicas r JOIN dup d ON d.content_hash = r.content_hash
            WHERE r.state = 'present'
            GROUP BY r.content_hash ORDER BY size DESC, r.content_hash""")

    def _dict_query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._con.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # -- scans -----------------------------------------------------------------------------

    def record_scan(self, record: ScanRecord) -> None:
        cols = [f.name for f in fields(ScanRecord)]
        with self.transaction() as con:
            con.execute(f"INSERT INTO scans ({', '.join(cols)}) VALUES "
                        f"({', '.join('?' for _ in cols)})",
                        [getattr(record, c) for c in cols])

    def last_scans(self) -> dict[str, ScanRecord]:
        """The newest scan of each location."""
        cols = [f.name for f in fields(ScanRecord)]
        rows = self._query(f"SELECT {', '.join(cols)} FROM scans QUALIFY row_number() OVER "
                           "(PARTITION BY location_id ORDER BY scan_id DESC) = 1")
        return {row[0]: ScanRecord(*row) for row in rows}

    # -- sync base -------------------------------------------------------------------------

    def set_sync_bases(self, bases: Sequence[SyncBase]) -> None:
        if not bases:
            return
        unique = _last_per_key(bases, lambda b: b.logical_path)
        cols = ("logical_path", "base_hash", "base_size", "agreed_at")
        with self.transaction() as con:
            con.execute(_bulk_upsert_sql("sync_base", cols, ["logical_path"]),
                        [[getattr(b, c) for b in unique] for c in cols])

    def settle_sync_bases(self, logical_paths: Sequence[str] | None = None) -> None:
        """Make the base of every file (or of `logical_paths`) whose replicas — two or more —
        all are present and hashed alike that content, and forget the bases of files without
        replicas. One statement each, so it can run after every scan. A file with a missing,
        stale or unhashed replica keeps its base: a copy that comes back with old content is
        then seen as old, not as a newer version. One replica agrees with nothing: a file
        found in a second location with other content before any two agreed (two locations
        filled apart, or scanned one after the other) is a conflict, not an update of the
        first one found."""
        only = "WHERE logical_path IN (SELECT unnest($2))" if logical_paths is not None else ""
        params: list[Any] = [time.time()]
        if logical_paths is not None:
            params.append(list(logical_paths))
        with self.transaction() as con:
            # Each statement groups or joins every cataloged path (~30 MB for 100,000 files,
            # the peak of a discover): skipped when it cannot change anything.
            locations, bases = con.execute(
                "SELECT (SELECT count(DISTINCT location_id) FROM replicas), "
                "(SELECT count(*) FROM sync_base)").fetchone()
            if bases:
                con.execute("DELETE FROM sync_base WHERE logical_path NOT IN "
                            "(SELECT logical_path FROM replicas)")
            if locations < 2:
                return
            con.execute(f"""
                INSERT INTO sync_base (logical_path, base_hash, base_size, agreed_at)
                SELECT a.logical_path, a.content_hash, a.size, $1 FROM (
                    SELECT logical_path, any_value(content_hash) AS content_hash,
                           any_value(size) AS size FROM replicas {only}
                    GROUP BY logical_path
                    HAVING count(*) >= 2 AND count(*) = count(*) FILTER (
                               WHERE state = 'present' AND content_hash IS NOT NULL)
                       AND count(DISTINCT content_hash) = 1) a
                LEFT JOIN sync_base b ON b.logical_path = a.logical_path
                WHERE b.base_hash IS DISTINCT FROM a.content_hash
                ON CONFLICT (logical_path) DO UPDATE SET base_hash = excluded.base_hash,
                    base_size = excluded.base_size, agreed_at = excluded.agreed_at""", params)

    def sync_bases(self) -> dict[str, SyncBase]:
        rows = self._query("SELECT logical_path, base_hash, base_size, agreed_at FROM sync_base")
        return {row[0]: SyncBase(*row) for row in rows}

    def sync_base(self, logical_path: str) -> SyncBase | None:
        rows = self._query("SELECT logical_path, base_hash, base_size, agreed_at FROM sync_base "
                           "WHERE logical_path = ?", [logical_path])
        return SyncBase(*rows[0]) if rows else None

    # -- journal ---------------------------------------------------------------------------

    def journal_begin(self, kind: str, logical_path: str, *, source_location_id: str | None = None,
                      target_location_id: str | None = None, temp_key: str | None = None,
                      expected_hash: str | None = None, payload: dict[str, Any] | None = None
                      ) -> int:
        """Record an operation before its first step; returns its op_id."""
        now = time.time()
        with self.transaction() as con:
            row = con.execute(
                "INSERT INTO journal (kind, step, logical_path, source_location_id, "
                "target_location_id, temp_key, expected_hash, payload_json, created_at, "
                "updated_at) VALUES (?, 'planned', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING op_id",
                [kind, logical_path, source_location_id, target_location_id, temp_key,
                 expected_hash, json.dumps(payload or {}), now, now]).fetchone()
        return int(row[0])

    def journal_begin_many(self, kind: str, entries: Sequence[JournalStart]) -> list[int]:
        """`journal_begin` for many operations of one kind (one per logical path), in one
        statement: a commit, or even a statement, per file would cap moves of small files at
        a few hundred a second. Returns their op_ids, in order."""
        if not entries:
            return []
        paths = [e.logical_path for e in entries]
        if len(set(paths)) != len(paths):
            raise ValueError("journal_begin_many: one entry per logical path")
        now = time.time()
        with self.transaction() as con:
            rows = con.execute(
                "INSERT INTO journal (kind, step, logical_path, source_location_id, "
                "target_location_id, expected_hash, payload_json, created_at, updated_at) "
                "SELECT $1, 'planned', unnest($2), unnest($3), unnest($4), unnest($5), "
                "unnest($6), $7, $7 RETURNING op_id, logical_path",
                [kind, paths, [e.source_location_id for e in entries],
                 [e.target_location_id for e in entries], [e.expected_hash for e in entries],
                 [json.dumps(e.payload or {}) for e in entries], now]).fetchall()
        op_ids = {path: int(op_id) for op_id, path in rows}
        return [op_ids[path] for path in paths]

    def journal_step(self, op_id: int, step: str) -> None:
        self.journal_step_many([op_id], step)

    def journal_step_many(self, op_ids: Sequence[int], step: str) -> None:
        if not op_ids:
            return
        with self.transaction() as con:
            con.execute("UPDATE journal SET step = $1, updated_at = $2 "
                        "WHERE op_id IN (SELECT unnest($3))", [step, time.time(), list(op_ids)])

    def journal_temp_key(self, op_id: int, temp_key: str) -> None:
        """Record the temporary name (or upload id) an operation chose once it began."""
        with self.transaction() as con:
            con.execute("UPDATE journal SET temp_key = ?, updated_at = ? WHERE op_id = ?",
                        [temp_key, time.time(), op_id])

    def journal_end(self, op_id: int) -> None:
        """The operation is complete and recorded: forget it."""
        self.journal_end_many([op_id])

    def journal_end_many(self, op_ids: Sequence[int]) -> None:
        if not op_ids:
            return
        with self.transaction() as con:
            con.execute("DELETE FROM journal WHERE op_id IN (SELECT unnest($1))",
                        [list(op_ids)])

    def journal_open(self) -> list[JournalEntry]:
        """Operations begun and not ended, oldest first: what start-up must recover."""
        rows = self._query("SELECT op_id, kind, step, logical_path, source_location_id, "
                           "target_location_id, temp_key, expected_hash, payload_json, "
                           "created_at, updated_at FROM journal ORDER BY op_id")
        return [JournalEntry(*row[:8], json.loads(row[8]), row[9], row[10]) for row in rows]

    # -- consistency -----------------------------------------------------------------------

    def check(self) -> list[str]:
        """Problems with the catalog's own invariants (empty when consistent)."""
        problems = []
        orphans = self._query("SELECT DISTINCT location_id FROM replicas WHERE location_id "
                              "NOT IN (SELECT location_id FROM locations)")
        problems += [f"replicas of unknown location {loc}" for (loc,) in orphans]
        names = self._query("SELECT lower(name), count(*) FROM locations GROUP BY 1 "
                            "HAVING count(*) > 1")
        problems += [f"location name {name!r} used {n} times" for name, n in names]
        bad_states = self._query("SELECT count(*) FROM replicas WHERE state NOT IN "
                                 "('present', 'missing', 'stale')")[0][0]
        if bad_states:
            problems.append(f"{bad_states} replicas with an unknown state")
        return problems


class _Closed:
    """What a closed catalog's connection is: any use says so in one line."""

    def __init__(self, path: Path):
        self.path = path

    def close(self) -> None:
        return

    def __getattr__(self, name: str) -> Any:
        raise CatalogError(f"catalog {self.path} is closed")


_PROJECT_SQL = ("CASE WHEN contains(r.logical_path, '/') THEN split_part(r.logical_path, '/', 1) "
                "ELSE '_unsorted' END")
_DUPLICATES_CTE = """WITH dup AS (
    SELECT content_hash FROM replicas
    WHERE state = 'present' AND content_hash IS NOT NULL
    GROUP BY content_hash HAVING count(*) > 1)"""


def _location_from_row(row: tuple[Any, ...]) -> StorageLocation:
    (location_id, name, type_, path, priority, status, rules_json, config_json,
     min_free, _created, _updated) = row
    rules = tuple(Rule(**{k: tuple(v) if isinstance(v, list) else v for k, v in r.items()})
                  for r in json.loads(rules_json))
    return StorageLocation(location_id=location_id, name=name, priority=priority,
                           status=LocationStatus(status), rules=rules, min_free_bytes=min_free,
                           type=LocationType(type_), path=path, config=json.loads(config_json))


def _meta_from_row(row: tuple[Any, ...]) -> FileMeta:
    return FileMeta(row[0], row[1], row[2], tuple(row[3]), *row[4:])


# The user guide's name for the search index; here it is the same single catalog.
DuckDBSearchCache = Catalog
