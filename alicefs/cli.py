"""alicefs-ctl: administer locations, rules and the catalog.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration, 3 internal error
(a bug: run with --debug and report the traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, TextIO

import trio

from alicefs import __version__, control
from alicefs.backends import LocationUnavailableError, open_backend
from alicefs.catalog import Catalog, FileMeta
from alicefs.config import (
    DEFAULT_PRIORITY,
    LOCATION_STATUSES,
    LOCATION_TYPES,
    Settings,
    config_from_json,
    default_config_path,
    load_settings,
    location_from_values,
    parse_rate,
    parse_size,
    rule_from_json,
)
from alicefs.errors import EXIT_USAGE, AliceError, ConfigError, NotFoundError, UsageError
from alicefs.humanize import human_bytes
from alicefs.layout import STATUS_DIR, logical_candidates
from alicefs.media import classify_name
from alicefs.migrate import (
    AutoMigrationService,
    MigrationPlan,
    MigrationResult,
    PlannedTransfer,
)
from alicefs.model import LocationType, StorageLocation
from alicefs.output import Output
from alicefs.progress import transfer_progress_display
from alicefs.registry import StorageRegistry
from alicefs.rules import (
    FileAttrs,
    LocationStatus,
    Rule,
    SpaceInfo,
    explain,
    format_explanation,
    reason_text,
)
from alicefs.scanner import MultiPathScanner, ScanStats
from alicefs.sync import (
    ResolutionResult,
    Strategy,
    SyncOutcome,
    SyncResult,
    SyncState,
    SyncTracker,
)

EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

STARTER_CONFIG = """\
# alicefs settings: see docs/configuration.md for every key.
storage:
  # The catalog (one DuckDB file). Relative paths resolve from this file's directory.
  search_db: state/catalog.duckdb
  locations: []
  # - name: "Fast SSD"
  #   type: local
  #   path: ~/Pictures/AI-Active
  #   priority: 100
  #   rules:
  #     - max_age_days: 30
"""


class CliArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def _int_arg(what: str, lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"{lo}-{hi}" if hi is not None else f"≥ {lo}"
            raise argparse.ArgumentTypeError(f"expected {what} {bounds}, got {value}")
        return value
    return parse


def _size_arg(text: str) -> int:
    try:
        return parse_size(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate_arg(text: str) -> int:
    try:
        rate = parse_rate(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if rate <= 0:
        raise argparse.ArgumentTypeError(f"expected a rate above 0, got {text!r}")
    return rate


def _float_arg(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < 0 or value != value:
            raise argparse.ArgumentTypeError(f"expected {what} ≥ 0, got {text}")
        return value
    return parse


@dataclass(frozen=True)
class Host:
    """A running mount that runs a command sent to it (DuckDB allows one writing process):
    its catalog, its scanner and migration service (its backends, its per-file locks). The
    command runs in one of the mount's worker threads; its asynchronous parts (scans,
    migrations) run on the mount's own event loop, beside the filesystem."""

    catalog: Catalog
    scanner: MultiPathScanner
    migration: AutoMigrationService
    sync: SyncTracker


@dataclass
class Context:
    """What a command runs with: the parsed arguments, settings and output."""

    args: argparse.Namespace
    out: Output
    cwd: Path = field(default_factory=Path.cwd)  # the caller's, also when run by a mount
    _settings: Settings | None = None
    _catalog: Catalog | None = None
    host: Host | None = None

    def run_async(self, func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run `func(*args)` under trio: on the host mount's event loop, or a loop of its
        own when no mount runs the command."""
        if self.host is not None:
            return trio.from_thread.run(func, *args)
        return trio.run(func, *args)

    @property
    def config_path(self) -> Path:
        return Path(self.args.config) if self.args.config else default_config_path()

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    @property
    def catalog(self) -> Catalog:
        if self.host is not None:
            return self.host.catalog
        if self._catalog is None:
            self._catalog = Catalog(self.settings.catalog_path)
        return self._catalog

    @property
    def registry(self) -> StorageRegistry:
        return StorageRegistry(self.catalog)

    def path(self, text: str) -> str:
        """A path argument, absolute, relative to the caller's working directory."""
        return os.path.normpath(os.path.join(self.cwd, text))

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()


# ---------------------------------------------------------------------------------------------
# Commands


def cmd_init(ctx: Context) -> int:
    path = ctx.config_path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(STARTER_CONFIG, encoding="utf-8")
        ctx.out.info(f"wrote starter configuration {path}")
    catalog = ctx.catalog
    ctx.out.result({"config": str(path), "catalog": str(catalog.path),
                    "schema_version": catalog.schema_version,
                    "locations": len(catalog.locations())},
                   f"catalog {catalog.path} ready (schema version {catalog.schema_version}, "
                   f"{len(catalog.locations())} locations)")
    return 0


def cmd_from_config(ctx: Context) -> int:
    report = ctx.registry.import_locations(ctx.settings.locations)
    data = {
        "added": [loc.location_id for loc in report.added],
        "updated": [loc.location_id for loc in report.updated],
        "unchanged": [loc.location_id for loc in report.unchanged],
        "not_in_config": [loc.location_id for loc in report.not_in_config],
    }
    lines = [f"{verb} {loc.name} ({loc.location_id})"
             for verb, group in (("added", report.added), ("updated", report.updated),
                                 ("unchanged", report.unchanged))
             for loc in group]
    lines += [f"kept {loc.name} ({loc.location_id}): registered but not in "
              f"{ctx.settings.source}" for loc in report.not_in_config]
    ctx.out.result(data, "\n".join(lines) or f"no locations in {ctx.settings.source}")
    return 0


def _space_of(location: StorageLocation, skip_hidden: bool, check: bool = False
              ) -> tuple[SpaceInfo | None, str]:
    """Free space and a reachability word for display. Object stores have no free space to
    show and are only contacted with `check` (a network round trip each)."""
    if location.status is LocationStatus.OFFLINE:
        return None, "offline (configured)"
    backend = open_backend(location, skip_hidden=skip_hidden)
    try:
        if location.type is LocationType.LOCAL or check:
            backend.probe()
        else:
            return None, "unchecked"
        return backend.free_space(), "reachable"
    except LocationUnavailableError as exc:
        return None, f"offline: {exc.strerror or exc}"


def _display_path(loc: StorageLocation) -> str:
    scheme = {LocationType.S3: "s3", LocationType.GCS: "gs"}.get(loc.type)
    return f"{scheme}://{loc.path}/{loc.prefix}" if scheme else loc.path


def cmd_list(ctx: Context) -> int:
    rows, data = [], []
    failed = False
    for loc in ctx.registry.list_locations():
        space, reach = _space_of(loc, ctx.settings.skip_hidden, ctx.args.check)
        data.append({
            "location_id": loc.location_id, "name": loc.name, "type": loc.type.value,
            "path": loc.path, "priority": loc.priority, "status": loc.status.value,
            "rules": [r.to_dict() for r in loc.rules], "config": loc.redacted_config(),
            "min_free_bytes": loc.min_free_bytes, "reachable": reach,
            "free_bytes": space.free_bytes if space else None,
            "total_bytes": space.total_bytes if space else None,
        })
        free = human_bytes(space.free_bytes) if space else ("—" if reach == "reachable"
                                                             else reach)
        failed = failed or reach.startswith("offline:")
        rules = "; ".join(f"({r.describe()})" for r in loc.rules) if loc.rules else "any file"
        rows.append([loc.location_id, loc.name, loc.type.value, _display_path(loc),
                     str(loc.priority), loc.status.value, free, rules])
    if not data:
        ctx.out.result([], "no locations registered: `alicefs-ctl from-config` imports "
                           f"those in {ctx.config_path}, `alicefs-ctl add` adds one")
        return 0
    ctx.out.table(["ID", "NAME", "TYPE", "PATH", "PRIORITY", "STATUS", "FREE", "RULES"],
                  rows, data)
    return 1 if failed and ctx.args.check else 0


def _parse_rules(texts: Sequence[str] | None) -> list[Rule] | None:
    if texts is None:
        return None
    return [rule_from_json(text, f"--rule #{i + 1}") for i, text in enumerate(texts)]


def cmd_add(ctx: Context) -> int:
    args = ctx.args
    rules = _parse_rules(args.rule) or []
    values: dict[str, Any] = {
        "name": args.name, "type": args.type, "path": args.path, "priority": args.priority,
        "status": args.status, "rules": [r.to_dict() for r in rules],
    }
    if args.location_config is not None:
        values["config"] = config_from_json(args.location_config, "--config-json")
    if args.min_free_bytes is not None:
        values["min_free_bytes"] = args.min_free_bytes
    location = location_from_values(values, "alicefs-ctl add", ctx.cwd)
    ctx.registry.register_location(location)
    ctx.out.result({"location_id": location.location_id, "name": location.name},
                   f"added {location.name} ({location.location_id})")
    return 0


def cmd_update(ctx: Context) -> int:
    args = ctx.args
    rules = [] if args.clear_rules else _parse_rules(args.rule)
    if args.clear_rules and args.rule:
        raise UsageError("--clear-rules and --rule contradict each other: give one")
    if args.priority is None and args.status is None and rules is None and args.name is None:
        raise UsageError("nothing to update: give --priority, --status, --name, --rule or "
                         "--clear-rules")
    if args.name is not None:
        location_from_values({"name": args.name, "path": "/"}, "--name", ctx.cwd)
    status = LocationStatus(args.status) if args.status else None
    updated = ctx.registry.update_location(args.location_id, name=args.name,
                                           priority=args.priority, status=status, rules=rules)
    ctx.out.result({"location_id": updated.location_id, "name": updated.name,
                    "priority": updated.priority, "status": updated.status.value,
                    "rules": [r.to_dict() for r in updated.rules]},
                   f"updated {updated.name} ({updated.location_id}): priority "
                   f"{updated.priority}, {updated.status.value}, {len(updated.rules)} rules")
    return 0


def cmd_remove(ctx: Context) -> int:
    target = ctx.args.location or ctx.args.location_id
    if not target:
        raise UsageError("which location? give its id or name")
    location, dropped = ctx.registry.remove_location(target)
    ctx.out.result({"location_id": location.location_id, "replicas_forgotten": dropped},
                   f"removed {location.name} ({location.location_id}) from the registry; "
                   f"{dropped} replica records forgotten, no file was touched")
    return 0


def _scanner(ctx: Context) -> MultiPathScanner:
    if ctx.host is not None:
        return ctx.host.scanner
    return MultiPathScanner(ctx.catalog, ctx.registry, skip_hidden=ctx.settings.skip_hidden)


def _show_progress(ctx: Context) -> bool:
    """Progress bars only for a terminal of our own (a mount's output is sent back whole)."""
    return not ctx.args.no_progress and ctx.host is None and sys.stderr.isatty()


def _scan_report(ctx: Context, results: Sequence[ScanStats], *, skip_unreachable: bool = False
                 ) -> int:
    """The scan table; exit 1 when a location could not be scanned, unless
    `skip_unreachable` (discover: an unplugged disk or an unreachable store is reported and
    skipped, as mergerfs skips a missing branch; the reachable ones are scanned)."""
    data = [asdict(s) for s in results]
    rows = [[s.name, f"{s.files:,}", human_bytes(s.bytes), f"{s.new_files:,}",
             f"{s.changed_files:,}", f"{s.missing_files:,}", human_bytes(s.bytes_read),
             f"{s.seconds:.1f}s", s.error or ""] for s in results]
    ctx.out.table(["LOCATION", "FILES", "SIZE", "NEW", "CHANGED", "MISSING", "READ", "TIME",
                   "ERROR"], rows, data)
    failed = [s for s in results if s.error]
    for s in failed:
        if skip_unreachable:
            ctx.out.info(f"skipped, not reachable now: {s.name}: {s.error}")
        else:
            ctx.out.error(f"{s.name}: {s.error}")
    return 1 if failed and not skip_unreachable else 0


def cmd_discover(ctx: Context) -> int:
    scanner = _scanner(ctx)
    stats = ctx.run_async(partial(scanner.discover_all_assets, force_scan=ctx.args.force,
                                  hash_content=ctx.args.hash,
                                  show_progress=_show_progress(ctx)))
    if not stats.locations:
        ctx.out.result([], "no locations to scan: `alicefs-ctl from-config` registers them")
        return 0
    return _scan_report(ctx, stats.locations, skip_unreachable=True)


def cmd_scan(ctx: Context) -> int:
    scanner = _scanner(ctx)
    location = ctx.registry.get_location(ctx.args.location)
    stats = ctx.run_async(partial(scanner.scan_location, location,
                                  force_scan=ctx.args.force, hash_content=ctx.args.hash,
                                  show_progress=_show_progress(ctx)))
    return _scan_report(ctx, [stats])


def _migration_service(ctx: Context, dry_run: bool) -> AutoMigrationService:
    if ctx.host is not None:
        # The mount's: its backends, its locks; it recovered the journal when it started.
        return ctx.host.migration
    service = AutoMigrationService(ctx.catalog, ctx.registry,
                                   skip_hidden=ctx.settings.skip_hidden)
    if not dry_run:
        # Transfers a killed run left half done are finished or undone first.
        for line in trio.run(service.recover):
            ctx.out.info(f"recovered: {line}")
    return service


def _carry_out(ctx: Context, service: AutoMigrationService,
               planning: Callable[[], Awaitable[MigrationPlan]]) -> int:
    """Plan, show, and unless --dry-run carry out a migration or consolidation."""
    args = ctx.args

    async def run() -> MigrationResult:
        plan = await planning()
        if args.dry_run:
            return MigrationResult(plan, (), True)
        carry_out = partial(service.carry_out, plan, max_concurrent=args.max_concurrent,
                            bandwidth=args.bwlimit)
        if not _show_progress(ctx):
            return await carry_out()
        copies = [t for t in plan.transfers if t.copy]
        with transfer_progress_display(len(copies), sum(t.size for t in copies)) as sink:
            return await carry_out(progress=sink)

    result = ctx.run_async(run)
    names = {loc.location_id: loc.name for loc in ctx.registry.list_locations()}
    return _migration_report(ctx, result, names)


def _migration_report(ctx: Context, result: MigrationResult, names: dict[str, str]) -> int:
    plan = result.plan
    totals = [{"from": names.get(src, src), "to": names.get(dst, dst), "files": files,
               "bytes": size} for (src, dst), (files, size) in sorted(plan.totals().items())]
    skipped = [{"path": s.logical_path, "reason": s.reason} for s in plan.skipped]
    if result.dry_run:
        rows = [[t.logical_path, names.get(t.source_location_id, "?"),
                 names.get(t.target_location_id, "?"), human_bytes(t.size) if t.copy else "-",
                 _action(t, names), t.rule] for t in plan.transfers]
        data = {"dry_run": True, "transfers": [{
            "path": t.logical_path, "from": names.get(t.source_location_id),
            "to": names.get(t.target_location_id), "bytes": t.size, "copy": t.copy,
            "remove_from": [names.get(r.location_id) for r in t.remove_from],
            "rule": t.rule} for t in plan.transfers], "totals": totals, "skipped": skipped}
        ctx.out.table(["FILE", "FROM", "TO", "SIZE", "ACTION", "RULE"], rows, data)
        if not ctx.out.json_mode:
            for total in totals:
                ctx.out.info(f"{total['from']} -> {total['to']}: {total['files']:,} files, "
                             f"{human_bytes(total['bytes'])}")
            for s in plan.skipped:
                ctx.out.info(f"not planned: {s.logical_path}: {s.reason}")
            if not plan.transfers:
                ctx.out.info("nothing to migrate: every file is where its rules put it")
        return 0
    counts = result.counts()
    data = {"dry_run": False, "counts": counts, "totals": totals, "skipped": skipped,
            "outcomes": [{"path": o.logical_path, "from": names.get(o.source_location_id),
                          "to": names.get(o.target_location_id), "result": o.result,
                          "bytes": o.bytes, "detail": o.detail} for o in result.outcomes]}
    order = ("copied", "moved", "already there", "conflict", "busy", "failed")
    summary = ", ".join(f"{counts.get(k, 0):,} {k}" for k in order)
    lines = [summary + f"; {human_bytes(sum(o.bytes for o in result.outcomes))} copied"]
    lines += [f"{o.result}: {o.logical_path}: {o.detail}" for o in result.outcomes
              if o.detail]
    lines += [f"not planned: {s.logical_path}: {s.reason}" for s in plan.skipped]
    ctx.out.result(data, "\n".join(lines))
    return 1 if result.failed else 0


def _action(transfer: PlannedTransfer, names: dict[str, str]) -> str:
    action = "copy" if transfer.copy else "already there"
    if transfer.remove_from:
        gone = ", ".join(names.get(r.location_id, "?") for r in transfer.remove_from)
        action += f", then remove from {gone}"
    return action


def cmd_migrate(ctx: Context) -> int:
    args = ctx.args
    service = _migration_service(ctx, args.dry_run)
    return _carry_out(ctx, service, partial(
        service.plan, move=args.move, project=args.project, limit_files=args.limit_files,
        limit_bytes=args.limit_bytes, record_hashes=not args.dry_run))


def cmd_consolidate(ctx: Context) -> int:
    args = ctx.args
    service = _migration_service(ctx, args.dry_run)
    return _carry_out(ctx, service, partial(service.consolidation_plan, args.project,
                                            args.target, move=args.move,
                                            record_hashes=not args.dry_run))


def cmd_find_project(ctx: Context) -> int:
    assets = ctx.run_async(_scanner(ctx).find_project_assets, ctx.args.project,
                           ctx.args.type)
    data = [asdict(a) for a in assets]
    lines = []
    for a in assets:
        rating = f" {'★' * a.quality}" if a.quality else ""
        tags = f" [{', '.join(a.tags)}]" if a.tags else ""
        lines.append(f"{a.logical_path}  {a.category}{rating}{tags}")
        for r in a.replicas:
            state = "" if r.state == "present" else f" ({r.state})"
            lines.append(f"    {r.location_name}: {human_bytes(r.size)}{state}")
    summary = f"{len(assets)} assets in project {ctx.args.project!r}"
    ctx.out.result(data, "\n".join([*lines, summary]) if assets else
                   f"no assets in project {ctx.args.project!r} (names are exact; "
                   "`alicefs-ctl stats` lists the projects)")
    return 0


def resolve_logical_path(ctx: Context, path_arg: str) -> str:
    """The logical path PATH names: a path inside a location's root, a path inside an
    alicefs mount, or a logical path the catalog knows."""
    locations = ctx.registry.list_locations()
    absolute = ctx.path(path_arg)
    if os.path.isabs(path_arg) or os.path.exists(absolute):
        for loc in locations:
            root = loc.path.rstrip("/") + "/"
            if loc.type is LocationType.LOCAL and absolute.startswith(root):
                return absolute[len(root):]
        for candidate in _mount_candidates(absolute):
            if ctx.catalog.replicas_of(candidate):
                return candidate
        raise NotFoundError(f"{path_arg} is neither inside a location nor a cataloged file "
                            "of an alicefs mount")
    logical = path_arg.strip("/")
    if not ctx.catalog.replicas_of(logical):
        raise NotFoundError(f"no file {logical!r} in the catalog (logical paths are "
                            "project/rel/path; run `alicefs-ctl discover` to catalog new files)")
    return logical


def _mount_candidates(absolute: str) -> list[str]:
    parts = absolute.strip("/").split("/")
    for i in range(len(parts) - 1, -1, -1):
        mount_point = "/" + "/".join(parts[:i])
        if os.path.isdir(os.path.join(mount_point, STATUS_DIR)):
            return logical_candidates(parts[i:])
    return []


def _meta_result(ctx: Context, meta: FileMeta, verb: str) -> int:
    stars = "unrated" if meta.quality is None else f"{meta.quality} stars"
    tags = f"[{', '.join(meta.tags)}]" if meta.tags else "(none)"
    ctx.out.result(asdict(meta), f"{verb} {meta.logical_path}: tags {tags}, {stars}")
    return 0


def cmd_tag(ctx: Context) -> int:
    if not ctx.args.add and not ctx.args.remove:
        raise UsageError("nothing to do: give --add TAG and/or --remove TAG")
    logical = resolve_logical_path(ctx, ctx.args.path)
    media = classify_name(logical)
    meta = ctx.catalog.set_user_tags(logical, ctx.args.add or [], ctx.args.remove or [],
                                     (media.category, media.mime_type))
    return _meta_result(ctx, meta, "tagged")


def cmd_rate(ctx: Context) -> int:
    logical = resolve_logical_path(ctx, ctx.args.path)
    media = classify_name(logical)
    meta = ctx.catalog.set_user_quality(logical, ctx.args.stars,
                                        (media.category, media.mime_type))
    return _meta_result(ctx, meta, "rated")


def cmd_stats(ctx: Context) -> int:
    locations = ctx.catalog.location_stats()
    projects = ctx.catalog.project_stats()
    last = ctx.catalog.last_scans()
    for row in locations:
        scan = last.get(row["location_id"])
        row["last_scan"] = (time.strftime("%Y-%m-%d %H:%M", time.localtime(scan.finished_at))
                            if scan else None)
    headers = ["FILES", "SIZE", "DUPLICATES", "MISSING"]

    def cells(row: dict[str, Any]) -> list[str]:
        return [f"{row['files']:,}", human_bytes(row["bytes"]), f"{row['duplicates']:,}",
                f"{row['missing']:,}"]

    if ctx.out.json_mode:
        ctx.out.result({"locations": locations, "projects": projects}, "")
        return 0
    ctx.out.table(["LOCATION", *headers, "LAST SCAN"],
                  [[r["name"], *cells(r), r["last_scan"] or "never"] for r in locations], None)
    ctx.out.stdout.write("\n")
    ctx.out.table(["PROJECT", *headers], [[r["project"], *cells(r)] for r in projects], None)
    return 0


def cmd_duplicates(ctx: Context) -> int:
    # Objects cataloged from their listing alone are hashed first where their size says
    # they could be one of a group.
    ctx.run_async(_migration_service(ctx, True).hash_possible_duplicates)
    groups = ctx.catalog.duplicate_groups()
    names = {loc.location_id: loc.name for loc in ctx.registry.list_locations()}
    lines = []
    for g in groups:
        lines.append(f"{g['content_hash'][:16]}  {human_bytes(g['size'])} × "
                     f"{len(g['replicas'])}")
        lines += [f"    {names.get(r['location_id'], r['location_id'])}: {r['logical_path']}"
                  for r in g["replicas"]]
    redundant = sum(g["size"] * (len(g["replicas"]) - 1) for g in groups)
    lines.append(f"{len(groups)} contents stored more than once; {human_bytes(redundant)} "
                 "in extra copies")
    ctx.out.result(groups, "\n".join(lines))
    return 0


def _sync_tracker(ctx: Context, dry_run: bool) -> SyncTracker:
    if ctx.host is not None:
        # What the mount wrote and has not committed yet belongs in the answer.
        ctx.run_async(ctx.host.migration.coordinator.flush)
        return ctx.host.sync
    return SyncTracker(ctx.registry, migration=_migration_service(ctx, dry_run))


def _time_text(mtime_ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime_ns / 1e9))


def cmd_sync_status(ctx: Context) -> int:
    args = ctx.args
    report = ctx.run_async(partial(_sync_tracker(ctx, True).report, args.project))
    names = {loc.location_id: loc.name for loc in ctx.registry.list_locations()}
    shown = [f for f in report.files if f.state is not SyncState.SYNCED
             and (args.state is None or f.state.value == args.state)]
    if args.state == SyncState.SYNCED.value:
        shown = report.in_state(SyncState.SYNCED)
    counts = report.counts()
    data = {"counts": counts, "files": [{
        "path": f.logical_path, "state": f.state.value, "base_hash": f.base_hash,
        "uploading_to": [names.get(lid, lid) for lid in f.uploading],
        "replicas": [{"location": names.get(r.replica.location_id, r.replica.location_id),
                      "location_id": r.replica.location_id, "state": r.state.value,
                      "size": r.replica.size, "mtime_ns": r.replica.mtime_ns,
                      "hash": r.replica.content_hash} for r in f.replicas]}
        for f in shown]}
    if ctx.out.json_mode:
        ctx.out.result(data, "")
        return 0
    ctx.out.result(data, "  ".join(f"{state}: {n:,}" for state, n in counts.items()))
    rows = []
    for f in shown:
        for r in f.replicas:
            replica = r.replica
            rows.append([f.logical_path, f.state.value, names.get(replica.location_id, "?"),
                         r.state.value, human_bytes(replica.size),
                         _time_text(replica.mtime_ns), (replica.content_hash or "?")[:12]])
        rows += [[f.logical_path, f.state.value, names.get(lid, lid), "pending_upload", "",
                  "", ""] for lid in f.uploading]
    if rows:
        ctx.out.table(["FILE", "STATE", "LOCATION", "REPLICA", "SIZE", "MODIFIED", "HASH"],
                      rows, data)
    return 0


def _outcome_data(o: SyncOutcome, names: dict[str, str]) -> dict[str, Any]:
    return {"path": o.logical_path, "from": names.get(o.source_location_id),
            "to": names.get(o.target_location_id), "result": o.result, "bytes": o.bytes,
            "kept_as": o.kept_as, "detail": o.detail}


def _outcome_lines(outcomes: Sequence[SyncOutcome], names: dict[str, str]) -> list[str]:
    lines = []
    for o in outcomes:
        where = names.get(o.target_location_id, o.target_location_id)
        if o.kept_as:
            lines.append(f"kept: {o.logical_path}: the losing version in {where} is now "
                         f"{o.kept_as}")
        if o.detail:
            lines.append(f"{o.result}: {o.logical_path} in {where}: {o.detail}")
    return lines


def cmd_sync_process(ctx: Context) -> int:
    args = ctx.args
    tracker = _sync_tracker(ctx, args.dry_run)
    process = partial(tracker.process_sync_queue, dry_run=args.dry_run, project=args.project,
                      max_concurrent=args.max_concurrent, bandwidth=args.bwlimit,
                      auto_resolve=ctx.settings.sync_auto_resolve)

    async def run() -> SyncResult:
        if args.dry_run or not _show_progress(ctx):
            return await process()
        plan = await tracker.plan(args.project)
        with transfer_progress_display(len(plan.updates),
                                       sum(u.source.size for u in plan.updates)) as sink:
            return await process(progress=sink)

    result = ctx.run_async(run)
    names = {loc.location_id: loc.name for loc in ctx.registry.list_locations()}
    plan = result.plan
    skipped = [{"path": s.logical_path, "reason": s.reason} for s in plan.skipped]
    forget = [{"path": r.logical_path, "location": names.get(r.location_id)}
              for r in plan.forget]
    decided = [{"path": d.file.logical_path, "strategy": d.strategy.value,
                "winner": names.get(d.winner.location_id) if d.winner else None}
               for d in result.resolved]
    if result.dry_run:
        rows = [[u.logical_path, names.get(u.source.location_id, "?"),
                 names.get(u.target_location_id, "?"), human_bytes(u.source.size), u.reason]
                for u in plan.updates]
        data = {"dry_run": True, "updates": [{
            "path": u.logical_path, "from": names.get(u.source.location_id),
            "to": names.get(u.target_location_id), "bytes": u.source.size,
            "action": u.reason} for u in plan.updates], "forget": forget,
            "auto_resolved": decided, "skipped": skipped}
        ctx.out.table(["FILE", "FROM", "TO", "SIZE", "ACTION"], rows, data)
        if not ctx.out.json_mode:
            for f in forget:
                ctx.out.info(f"forget: {f['path']} in {f['location']} (missing; its rules "
                             "do not want it there)")
            for s in plan.skipped:
                ctx.out.info(f"not planned: {s.logical_path}: {s.reason}")
            if not plan.updates and not plan.forget:
                ctx.out.info("nothing to do: every replica is level")
        return 0
    counts = result.counts()
    data = {"dry_run": False, "counts": counts, "forgotten": forget,
            "auto_resolved": decided, "skipped": skipped,
            "outcomes": [_outcome_data(o, names) for o in result.outcomes]}
    order = ("updated", "re-created", "resolved", "forgotten", "changed", "busy", "failed")
    lines = [", ".join(f"{counts.get(k, 0):,} {k}" for k in order)
             + f"; {human_bytes(sum(o.bytes for o in result.outcomes))} copied"]
    lines += [f"auto-resolved ({d['strategy']}): {d['path']}: kept {d['winner']}'s version"
              for d in decided]
    lines += _outcome_lines(result.outcomes, names)
    lines += [f"not planned: {s.logical_path}: {s.reason}" for s in plan.skipped]
    ctx.out.result(data, "\n".join(lines))
    return 1 if result.failed else 0


def cmd_resolve_conflict(ctx: Context) -> int:
    args = ctx.args
    if (args.conflict is None) == (not args.all):
        raise UsageError("name one conflict (a content hash or a logical path) or give --all")
    if args.keep is not None and args.strategy != Strategy.MANUAL.value:
        raise UsageError("--keep goes with --strategy manual")
    tracker = _sync_tracker(ctx, args.dry_run)
    listing = args.strategy == Strategy.MANUAL.value and args.keep is None
    result: ResolutionResult = ctx.run_async(partial(
        tracker.resolve_conflict, args.conflict, args.strategy, keep=args.keep,
        discard_losers=args.discard_losers, dry_run=args.dry_run or listing))
    names = {loc.location_id: loc.name for loc in ctx.registry.list_locations()}
    lines = []
    for d in result.decisions:
        if d.winner is None:
            lines.append(f"{d.file.logical_path}: not decided: {d.why}")
            if listing:
                lines += [f"    candidate in {names.get(c.location_id, c.location_id)}: "
                          f"{human_bytes(c.size)}, modified {_time_text(c.mtime_ns)}, "
                          f"hash {(c.content_hash or '?')[:12]}" for c in d.file.candidates]
        else:
            lines.append(f"{d.file.logical_path}: {names.get(d.winner.location_id)}'s version "
                         f"wins ({d.why})")
    if result.dry_run and not listing:
        lines += [f"would {'keep the losing version, then ' if u.keep_losing else ''}"
                  f"update {u.logical_path} in {names.get(u.target_location_id)}"
                  for u in result.updates]
    lines += _outcome_lines(result.outcomes, names)
    data = {"dry_run": result.dry_run, "decisions": [{
        "path": d.file.logical_path, "strategy": d.strategy.value,
        "winner": names.get(d.winner.location_id) if d.winner else None, "why": d.why,
        "candidates": [{"location": names.get(c.location_id), "size": c.size,
                        "mtime_ns": c.mtime_ns, "hash": c.content_hash}
                       for c in d.file.candidates]} for d in result.decisions],
        "outcomes": [_outcome_data(o, names) for o in result.outcomes]}
    if not result.decisions:
        lines.append("no conflicts")
    ctx.out.result(data, "\n".join(lines))
    undecided = any(d.winner is None for d in result.decisions) and not listing
    return 1 if result.failed or undecided else 0


def _explain_attrs(ctx: Context, path_arg: str) -> tuple[FileAttrs, str | None]:
    """The file `explain` asks about: a file inside a location, a cataloged logical path, or a
    new logical path. Returns its attributes and the location it is in now (None: new)."""
    args = ctx.args
    locations = ctx.registry.list_locations()
    logical, size, mtime, current = None, 0, time.time(), None
    as_path = ctx.path(path_arg)
    for loc in locations:
        if loc.type is LocationType.LOCAL and as_path.startswith(loc.path.rstrip("/") + "/"):
            logical = os.path.relpath(as_path, loc.path).replace(os.sep, "/")
            if os.path.isfile(as_path):
                st = os.stat(as_path)
                size, mtime, current = st.st_size, st.st_mtime, loc.location_id
            break
    if logical is None and (os.path.isabs(path_arg) or os.path.exists(as_path)):
        candidates = [c for c in _mount_candidates(as_path) if ctx.catalog.replicas_of(c)]
        if not candidates:
            raise NotFoundError(f"{path_arg} is neither inside a location nor a cataloged "
                                "file of an alicefs mount (give a logical path, "
                                "project/rel/path, to ask about a new file)")
        logical = candidates[0]
    if logical is None or current is None:
        logical = logical or path_arg.strip("/")
        if not logical or ".." in logical.split("/"):
            raise UsageError(f"expected a logical path (project/rel/path) or a file inside a "
                             f"location, got {path_arg!r}")
        replicas = [r for r in ctx.catalog.replicas_of(logical) if r.state == "present"]
        if replicas:
            priority = {loc.location_id: loc.priority for loc in locations}
            best = max(replicas, key=lambda r: priority.get(r.location_id, -1))
            size, mtime, current = best.size, best.mtime_ns / 1e9, best.location_id
    meta = ctx.catalog.metadata(logical)
    tags = meta.tags if meta else ()
    quality = meta.quality if meta else None
    if args.size is not None:
        size = args.size
    if args.age_days is not None:
        mtime = time.time() - args.age_days * 86400
    if args.tag:
        tags = tuple(args.tag)
    if args.quality is not None:
        quality = args.quality
    if args.new:
        current = None
    return FileAttrs.from_name(logical, size, mtime, tags, quality), current


def cmd_explain(ctx: Context) -> int:
    attrs, current = _explain_attrs(ctx, ctx.args.path)
    locations = ctx.registry.list_locations()
    if not locations:
        raise UsageError("no locations registered: run `alicefs-ctl from-config` first")
    space = {loc.location_id: _space_of(loc, ctx.settings.skip_hidden)[0] for loc in locations}
    result = explain(attrs, locations, space, time.time(), current)
    target = result.placement.location
    data = {
        "logical_path": attrs.logical_path, "size": attrs.size, "mime_type": attrs.mime_type,
        "category": attrs.category, "tags": sorted(attrs.tags), "quality": attrs.quality,
        "current_location_id": current,
        "target_location_id": target.location_id if target else None,
        "target_name": target.name if target else None,
        "reason": result.placement.reason.value,
        "reason_text": reason_text(result.placement.reason),
        "locations": [{
            "location_id": v.policy.location_id, "name": v.policy.name,
            "priority": v.policy.priority, "status": v.policy.status.value,
            "matches": v.matches, "room": v.room,
            "rules": [[{"condition": c.key, "holds": c.holds, "detail": c.detail}
                       for c in results] for results in v.rule_results],
        } for v in result.verdicts],
    }
    ctx.out.result(data, format_explanation(result))
    return 0


# ---------------------------------------------------------------------------------------------
# Parser


def build_parser(prog: str = "alicefs-ctl") -> argparse.ArgumentParser:
    parser = CliArgumentParser(
        prog=prog,
        description="Administer alicefs storage locations, rules and the catalog.",
        epilog="Exit codes: 0 ok, 1 failed, 2 bad usage or configuration, 3 internal error.")
    parser.add_argument("--config", metavar="PATH",
                        help="settings.yaml to use (default: $ALICEFS_CONFIG, else "
                             "~/.config/alicefs/settings.yaml)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"alicefs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CliArgumentParser)
    sub.required = True

    def command(name: str, func: Callable[[Context], int], help_text: str
                ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        p.set_defaults(func=func)
        return p

    command("init", cmd_init, "create the catalog (and a starter settings.yaml if none exists)")
    command("from-config", cmd_from_config,
            "register or update every location of settings.yaml in the catalog")
    p = command("list", cmd_list, "list the registered locations")
    p.add_argument("--check", action="store_true",
                   help="contact every location (S3/GCS included); exit 1 if any is offline")

    def scan_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--force", action="store_true",
                       help="re-read every file, not only new and changed ones")
        p.add_argument("--hash", action="store_true",
                       help="also download and hash the S3/GCS objects whose hash is not "
                            "known yet (by default they are hashed when something compares "
                            "them)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    scan_options(command("discover", cmd_discover,
                         "scan every location (not offline) into the catalog"))
    p = command("scan", cmd_scan, "scan one location into the catalog")
    p.add_argument("location", metavar="LOCATION", help="location id or name")
    scan_options(p)
    def migration_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dry-run", action="store_true",
                       help="print the plan and change nothing (not even the catalog)")
        p.add_argument("--move", action="store_true",
                       help="remove the source copies once the target is verified and "
                            "recorded (default: copy, keeping them)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--max-concurrent", type=_int_arg("a number of transfers", 1, 256),
                       default=4, metavar="N", help="transfers at once (default 4)")
        p.add_argument("--bwlimit", type=_rate_arg, metavar="RATE",
                       help="at most this many bytes per second in all (e.g. 50MB/s)")

    p = command("migrate", cmd_migrate,
                "bring every file to the location its rules choose (tier migration)")
    migration_options(p)
    p.add_argument("--project", metavar="NAME", help="only this project")
    p.add_argument("--limit-files", type=_int_arg("a number of files", 1), metavar="N",
                   help="copy at most N files in this run")
    p.add_argument("--limit-bytes", type=_size_arg, metavar="SIZE",
                   help="copy at most this much in this run (bytes, or e.g. 50GiB)")
    p = command("consolidate", cmd_consolidate,
                "gather a project into one location (paths unchanged)")
    p.add_argument("project", metavar="PROJECT", help="the project (top-level folder)")
    p.add_argument("target", metavar="TARGET", help="location id or name")
    migration_options(p)
    p = command("sync-status", cmd_sync_status,
                "whether the replicas of each file agree: counts per state, and the files "
                "that are not synced")
    p.add_argument("--project", metavar="NAME", help="only this project")
    p.add_argument("--state", choices=[s.value for s in SyncState],
                   help="only files in this state")
    p = command("sync-process", cmd_sync_process,
                "bring replicas level: the newest version to those behind, missing ones "
                "re-created where the rules want them")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be done and change nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-concurrent", type=_int_arg("a number of transfers", 1, 256),
                   default=4, metavar="N", help="transfers at once (default 4)")
    p.add_argument("--bwlimit", type=_rate_arg, metavar="RATE",
                   help="at most this many bytes per second in all (e.g. 50MB/s)")
    p.add_argument("--project", metavar="NAME", help="only this project")
    p = command("resolve-conflict", cmd_resolve_conflict,
                "decide conflicts: one version wins, the losing ones are kept under "
                "conflict names")
    p.add_argument("conflict", nargs="?", metavar="HASH|PATH",
                   help="a content hash (or its first 6+ characters) of a competing version, "
                        "or the file's logical path")
    p.add_argument("--all", action="store_true", help="every conflict")
    p.add_argument("--strategy", required=True, choices=[s.value for s in Strategy],
                   help="newest (latest mtime), largest, primary (highest-priority "
                        "location) or manual (with --keep; without it, list the candidates)")
    p.add_argument("--keep", metavar="LOCATION",
                   help="manual: the location (id or name) whose version wins")
    p.add_argument("--discard-losers", action="store_true",
                   help="do not keep the losing versions under conflict names")
    p.add_argument("--dry-run", action="store_true",
                   help="print the decisions and change nothing")
    p = command("find-project", cmd_find_project,
                "list every asset of a project, with all its replicas")
    p.add_argument("project", metavar="NAME", help="the project (top-level folder), exactly")
    p.add_argument("--type", action="append", metavar="TYPE",
                   help="only these types: image, video/*, video/mp4, .png (repeatable)")
    p = command("tag", cmd_tag, "add or remove tags (kept over what scans find)")
    p.add_argument("path", metavar="PATH",
                   help="logical path, or a path inside a location or the mount")
    p.add_argument("--add", action="append", metavar="TAG")
    p.add_argument("--remove", action="append", metavar="TAG")
    p = command("rate", cmd_rate, "set a file's quality stars (kept over what scans find)")
    p.add_argument("path", metavar="PATH",
                   help="logical path, or a path inside a location or the mount")
    p.add_argument("stars", type=_int_arg("a star rating", 0, 5), metavar="STARS", help="0-5")
    command("stats", cmd_stats, "files, bytes, duplicates and missing per location and project")
    command("duplicates", cmd_duplicates, "contents stored more than once, and where")

    p = command("add", cmd_add, "register a new location")
    p.add_argument("--name", required=True, help="unique name (also the directory under "
                                                 "locations/ in the mount)")
    p.add_argument("--path", required=True, help="directory (local) or bucket name (s3/gcs)")
    p.add_argument("--type", choices=LOCATION_TYPES, default="local", help="default: local")
    p.add_argument("--priority", type=_int_arg("an integer"), default=DEFAULT_PRIORITY,
                   help=f"higher is preferred (default {DEFAULT_PRIORITY})")
    p.add_argument("--status", choices=LOCATION_STATUSES, default="active")
    p.add_argument("--rule", action="append", metavar="JSON",
                   help="a rule as a JSON object, e.g. '{\"max_age_days\": 30}'; repeat for "
                        "several (a file matches when any rule matches)")
    p.add_argument("--config-json", "--location-config", dest="location_config", metavar="JSON",
                   help="type-specific settings as a JSON object, e.g. "
                        "'{\"prefix\": \"alice/\", \"region\": \"us-west-2\"}'")
    p.add_argument("--min-free-bytes", type=_size_arg, metavar="SIZE",
                   help="free space to keep (bytes, or e.g. 10GiB)")

    p = command("update", cmd_update, "change a location's priority, status, name or rules")
    p.add_argument("--location-id", required=True, metavar="ID",
                   help="the location's id (or its name)")
    p.add_argument("--priority", type=_int_arg("an integer"))
    p.add_argument("--status", choices=LOCATION_STATUSES)
    p.add_argument("--name", help="new name")
    p.add_argument("--rule", action="append", metavar="JSON",
                   help="replace the rules with these (repeatable)")
    p.add_argument("--clear-rules", action="store_true", help="remove every rule")

    p = command("remove", cmd_remove,
                "forget a location (its files are not touched)")
    p.add_argument("location", nargs="?", metavar="LOCATION", help="id or name")
    p.add_argument("--location-id", metavar="ID", help="id or name (alternative to LOCATION)")

    p = command("explain", cmd_explain, "show which location a file goes to, and why")
    p.add_argument("path", metavar="PATH",
                   help="a logical path (project/rel/path) or a file inside a location")
    p.add_argument("--size", type=_size_arg, metavar="SIZE",
                   help="assume this size (bytes, or e.g. 2GiB, 500MB)")
    p.add_argument("--age-days", type=_float_arg("a number of days"), metavar="DAYS",
                   help="assume this age")
    p.add_argument("--tag", action="append", metavar="TAG", help="assume these tags")
    p.add_argument("--quality", type=_int_arg("a star rating", 0, 5), metavar="STARS",
                   help="assume this rating")
    p.add_argument("--new", action="store_true",
                   help="place it as a new file, even if it exists somewhere")
    return parser


def run(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO, cwd: Path | None = None,
        settings: Settings | None = None, host: Host | None = None,
        prog: str = "alicefs-ctl") -> int:
    """Run one alicefs-ctl command. A running mount calls this, from one of its worker
    threads, with its own settings and itself as `host`; otherwise a command whose mount is
    running is forwarded to it over the control socket."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    out = Output(json_mode=getattr(args, "json", False), stdout=stdout, stderr=stderr)
    ctx = Context(args, out, cwd=cwd or Path.cwd(), _settings=settings, host=host)
    try:
        if host is None and args.command != "init":
            forwarded = control.forward(ctx.settings.state_dir, list(argv), ctx.cwd)
            if forwarded is not None:
                code, output, errors = forwarded
                stdout.write(output)
                stderr.write(errors)
                return code
        return args.func(ctx)
    except ConfigError as exc:
        if args.debug:
            traceback.print_exc()
        for problem in exc.problems:
            out.info(str(problem))  # already `file:line key: message`, like a compiler's
        return exc.exit_code
    except AliceError as exc:
        if args.debug:
            traceback.print_exc()
        out.error(str(exc))
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as shell tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        if args.debug:
            traceback.print_exc()
        out.error(f"{exc.strerror or exc}{': ' + exc.filename if exc.filename else ''}")
        return 1
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        traceback_text = traceback.format_exc()
        if args.debug:
            stderr.write(traceback_text)
        out.error(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the "
                  "traceback, and please report it)")
        return EXIT_INTERNAL
    finally:
        ctx.close()


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, stdout=sys.stdout, stderr=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

