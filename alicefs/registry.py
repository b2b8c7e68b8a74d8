"""The location registry (the user guide's `StorageRegistry`), kept in the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from alicefs.catalog import Catalog
from alicefs.errors import ApiMisuseError, UsageError
from alicefs.model import StorageLocation
from alicefs.rules import LocationStatus, Rule


@dataclass(frozen=True)
class ImportReport:
    added: tuple[StorageLocation, ...]
    updated: tuple[StorageLocation, ...]
    unchanged: tuple[StorageLocation, ...]
    not_in_config: tuple[StorageLocation, ...]  # registered earlier (e.g. `add`), kept


class StorageRegistry:
    """Register, change and remove locations. Takes a Catalog, or a path.

    The registry lives in the one catalog file. Given a path (the guide's
    `StorageRegistry(Path("data/locations.db"))`), it joins the catalog it is first used
    with — `MultiPathScanner(cache, registry)`, `AutoMigrationService(cache, registry)` —
    and opens the file at the path only when it is used on its own first.
    """

    def __init__(self, catalog: Catalog | Path | str):
        self._catalog = catalog if isinstance(catalog, Catalog) else None
        self.path = catalog.path if isinstance(catalog, Catalog) else Path(catalog)

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.path)
        return self._catalog

    def attach(self, catalog: Catalog) -> None:
        """Keep the locations in `catalog` (the search cache it is used with). ApiMisuseError
        when this registry already uses another catalog file."""
        if self._catalog is None:
            self._catalog = catalog
        elif self._catalog is not catalog and \
                self._catalog.path.resolve() != catalog.path.resolve():
            raise ApiMisuseError(f"the registry uses catalog {self._catalog.path} and the "
                                 f"cache {catalog.path}: one catalog file holds both; create "
                                 "the registry from the cache, or use the cache first")

    def list_locations(self) -> list[StorageLocation]:
        """Every location, highest priority first."""
        return self.catalog.locations()

    def get_location(self, name_or_id: str) -> StorageLocation:
        return self.catalog.find_location(name_or_id)

    def register_location(self, location: StorageLocation) -> StorageLocation:
        """Add a new location; refuses a duplicate name or the same place twice."""
        existing = self.catalog.location(location.location_id)
        if existing is not None:
            raise UsageError(f"{location.type.value} location {location.path!r} is already "
                             f"registered as {existing.name!r} ({existing.location_id})")
        self._check_name_free(location.name, location.location_id)
        self.catalog.put_locations([location])
        return location

    def update_location(self, name_or_id: str, *, name: str | None = None,
                        priority: int | None = None, status: LocationStatus | None = None,
                        rules: Sequence[Rule] | None = None) -> StorageLocation:
        """Change what may change; a location's id, type and place never do."""
        current = self.catalog.find_location(name_or_id)
        changes: dict[str, object] = {}
        if name is not None:
            self._check_name_free(name, current.location_id)
            changes["name"] = name
        if priority is not None:
            changes["priority"] = priority
        if status is not None:
            changes["status"] = status
        if rules is not None:
            changes["rules"] = tuple(rules)
        updated = replace(current, **changes)
        self.catalog.put_locations([updated])
        return updated

    def remove_location(self, name_or_id: str) -> tuple[StorageLocation, int]:
        """Forget a location; its files are not touched. Returns it and the replica records
        dropped."""
        location = self.catalog.find_location(name_or_id)
        return location, self.catalog.remove_location(location.location_id)

    def import_locations(self, configured: Sequence[StorageLocation]) -> ImportReport:
        """Make the registry hold every configured location as configured (`from-config`).

        Locations are matched by id, so a renamed or re-prioritised location is updated, not
        duplicated. Registered locations absent from the config are kept and reported.
        """
        current = {loc.location_id: loc for loc in self.catalog.locations()}
        configured_ids = {loc.location_id for loc in configured}
        added, updated, unchanged = [], [], []
        for loc in configured:
            old = current.get(loc.location_id)
            if old is None:
                added.append(loc)
            elif old == loc:
                unchanged.append(loc)
            else:
                updated.append(loc)
        names = {loc.name.casefold(): loc for loc in configured}
        for loc in current.values():
            other = names.get(loc.name.casefold())
            if loc.location_id not in configured_ids and other is not None:
                raise UsageError(f"location name {loc.name!r} is already registered for "
                                 f"{loc.path} ({loc.location_id}); rename one of them or "
                                 f"`alicefs-ctl remove {loc.location_id}` first")
        self.catalog.put_locations(added + updated)
        return ImportReport(tuple(added), tuple(updated), tuple(unchanged),
                            tuple(loc for loc in current.values()
                                  if loc.location_id not in configured_ids))

    def _check_name_free(self, name: str, own_id: str) -> None:
        for loc in self.catalog.locations():
            if loc.name.casefold() == name.casefold() and loc.location_id != own_id:
                raise UsageError(f"location name {name!r} is already used by "
                                 f"{loc.location_id}")
