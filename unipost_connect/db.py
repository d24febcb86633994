"""Database helpers the flow's exactly-once guarantees rest on."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from django.db import IntegrityError, connections, models, router, transaction

M = TypeVar("M", bound=models.Model)


def _column(field: models.Field[Any, Any]) -> str:
    # The stubs allow a column of None (a field not yet attached to a model); every
    # concrete field of an installed model has one.
    return cast(str, field.column)


def insert_unless_constrained(instance: models.Model) -> bool:
    """Save ``instance`` as a new row unless a unique constraint refuses it; True if saved.

    The ordinary ``save()`` (model signals are sent). Outside a transaction that is one
    INSERT; inside one, a savepoint keeps the transaction usable after a refusal.
    """
    connection = connections[router.db_for_write(type(instance))]
    try:
        if connection.in_atomic_block:
            with transaction.atomic(using=connection.alias):
                instance.save(force_insert=True, using=connection.alias)
        else:
            instance.save(force_insert=True, using=connection.alias)
    except IntegrityError:
        return False
    return True


def insert_unless_conflict(instance: models.Model) -> bool:
    """Insert ``instance`` unless a unique constraint already holds a row like it.

    True when this call inserted it (``instance`` then has its primary key), False when
    a row in the way exists. Made for inserts inside a transaction, where it saves the
    savepoint pair :func:`insert_unless_constrained` needs; no model signals are sent.
    On PostgreSQL and SQLite 3.35+ it is one statement, ``INSERT … ON CONFLICT DO
    NOTHING RETURNING``, which answers a row only to the call that inserted it: that is
    how exactly one of several racing workers learns that it won. Elsewhere a savepoint
    catches the IntegrityError.
    """
    model = type(instance)
    connection = connections[router.db_for_write(model)]
    if connection.vendor not in ("postgresql", "sqlite") or not (
        connection.features.can_return_columns_from_insert
    ):
        try:
            with transaction.atomic(using=connection.alias):
                instance.save(force_insert=True, using=connection.alias)
        except IntegrityError:
            return False
        return True
    meta = model._meta
    pk = meta.pk
    assert pk is not None  # every concrete model has one
    # A key the database generates (an AutoField not yet set) is left out and read back.
    generated = instance.pk is None
    columns = [f for f in meta.concrete_fields if not (f.primary_key and generated)]
    values = [f.get_db_prep_save(f.pre_save(instance, add=True), connection) for f in columns]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(_column(f)) for f in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT DO NOTHING RETURNING {quote(_column(pk))}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return False
    if generated:
        instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return True


def delete_row(instance: models.Model) -> None:
    """Delete ``instance``'s row with one statement, in autocommit: no collector, no
    transaction of its own, no model signals. For a row nothing else refers to."""
    model = type(instance)
    connection = connections[router.db_for_write(model)]
    meta = model._meta
    assert meta.pk is not None  # every concrete model has one
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {quote(meta.db_table)} WHERE {quote(_column(meta.pk))} = %s",
            [meta.pk.get_db_prep_value(instance.pk, connection)],
        )


def mirror(instance: models.Model, fields: Mapping[str, Any]) -> None:
    """Set on ``instance`` what a conditional UPDATE just wrote to its row, so the caller
    sees the change without reading the row again."""
    for name, value in fields.items():
        setattr(instance, name, value)


def change_once(
    instance: M, due: models.QuerySet[M], fields: Mapping[str, Any], announce: Callable[[M], object]
) -> bool:
    """Write ``fields`` to ``instance``'s row if the row is still one of ``due``: one
    conditional UPDATE, so of several racing workers exactly one matches. True for that
    one; it alone calls ``announce`` with a snapshot of the changed instance, after the
    transaction commits (at once outside one). The others see the row as the winner
    left it."""
    won = due.filter(pk=instance.pk).update(**fields)
    if won:
        mirror(instance, fields)
        # A copy, so receivers see this change even if the caller moves on first.
        snapshot = copy.copy(instance)
        transaction.on_commit(lambda: announce(snapshot), using=router.db_for_write(type(instance)))
    else:
        instance.refresh_from_db()
    return bool(won)
