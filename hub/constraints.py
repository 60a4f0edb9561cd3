from __future__ import annotations

import re

from sqlalchemy.exc import IntegrityError

DUPLICATE_KEY = 1062
FOREIGN_KEY = {1216, 1452}  # no parent row: on insert or update of the child
REFERENCED = {1217, 1451}  # a parent row children still name: on its delete
# MariaDB names an unnamed UNIQUE key after its column, MySQL 8 after table.column, SQLite
# lists table.column; a named one is uq_<table>_<column> (the convention of models.py).
MYSQL_KEY = re.compile(r"for key '([^']+)'")
SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)")
SQLITE_FOREIGN_KEY = "FOREIGN KEY constraint failed"
MYSQL_FOREIGN_KEY = re.compile(r"FOREIGN KEY \(`([^`]+)`\)")


def duplicates(exc: IntegrityError, table: str, column: str) -> bool:
    """Whether the database refused a second row with the same `column` of `table`."""
    errno, message = _reason(exc)
    if errno is None:
        found = SQLITE_UNIQUE.search(message)
        return found is not None and found[1] == f"{table}.{column}"
    key = MYSQL_KEY.search(message)
    return (
        errno == DUPLICATE_KEY
        and key is not None
        and key[1] in {column, f"{table}.{column}", f"uq_{table}_{column}"}
    )


def lacks_parent(exc: IntegrityError, column: str) -> bool:
    """Whether the database refused a row whose foreign key `column` names no parent row
    (SQLite does not say which key: any foreign key failure counts)."""
    errno, message = _reason(exc)
    if errno is None:
        return message == SQLITE_FOREIGN_KEY
    named = MYSQL_FOREIGN_KEY.search(message)
    return errno in FOREIGN_KEY and named is not None and named[1] == column


def referenced(exc: IntegrityError) -> bool:
    """Whether the database refused to delete a row that other rows still name."""
    errno, message = _reason(exc)
    if errno is None:
        return message == SQLITE_FOREIGN_KEY
    return errno in REFERENCED


def _reason(exc: IntegrityError) -> tuple[int | None, str]:
    # MySQL drivers carry (errno, message); sqlite3 only a message.
    args: tuple[object, ...] = getattr(exc.orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return args[0], str(args[1])
    return None, str(exc.orig)
