"""The columns of an import, read off the row the API shows (:data:`core.customers.columns.ROW`)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from core.models import Address, AppUser, CustomerRelationship

from ..columns import ROW, Column

#: The row's fields an import may not set (the server's), though the export has them.
READ_ONLY = {"id", "created", "last_updated", "relationship.created"}

#: The table of record of each nested object of the row.
MODELS = {None: AppUser, "address": Address, "relationship": CustomerRelationship}


@dataclass(frozen=True)
class ImportField:
    """A column of an import: its CSV name (``address_city``), its name in the
    API and in errors (``address.city``), and the field of record it sets."""

    column: Column
    field: models.Field

    @property
    def csv(self) -> str:
        return self.column.flat_name

    @property
    def name(self) -> str:
        return f"{self.column.group}.{self.column.name}" if self.column.group else self.column.name

    @property
    def group(self) -> str | None:
        return self.column.group

    @property
    def staged(self) -> str:
        """Its column in the staging table."""
        return self.csv


def _field(column: Column) -> models.Field:
    return MODELS[column.group]._meta.get_field(column.name)


#: Every column of the export's CSV: the header an import accepts.
COLUMNS: tuple[ImportField, ...] = tuple(ImportField(c, _field(c)) for c in ROW)
#: The columns an import writes.
WRITABLE: tuple[ImportField, ...] = tuple(f for f in COLUMNS if f.name not in READ_ONLY)
BY_CSV = {f.csv: f for f in COLUMNS}
