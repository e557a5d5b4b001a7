"""COPY into a per-connection temporary staging table (PostgreSQL): the fast way in for large batches
(LPR reads, hotlist imports), followed by one INSERT … SELECT from the table."""


def copy_into_staging(raw_cursor, *, table: str, ddl: str, columns: str, rows=None, text: str = "") -> None:
    """Create `table` (`ddl` = its column definitions) if this connection lacks it, empty it (rows of an
    earlier batch in the same outer transaction) and COPY into it either `rows` (tuples in `columns`
    order, adapted by psycopg) or `text`, a ready COPY text-format payload (one write: far cheaper per row
    for large batches)."""
    raw_cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({ddl}) ON COMMIT DELETE ROWS")
    raw_cursor.execute(f"TRUNCATE {table}")
    with raw_cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        if rows is None:
            copy.write(text)
        else:
            for row in rows:
                copy.write_row(row)
