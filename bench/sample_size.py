"""The size of the health samples on PostgreSQL: ``python -m bench.sample_size``.

Inserts N samples of each kind into a throw-away database at daqflow's schema, measures
the tables with their indexes (``pg_total_relation_size``), and scales to 64 routers
sampled every 10 s, and 64 ECC servers changing state 1,600 times a day, for 7 days. The
server is DAQFLOW_TEST_POSTGRES (default: trust on 127.0.0.1:5432).
"""
from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

from sqlalchemy import create_engine, text

SERVER = os.environ.get("DAQFLOW_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")
SAMPLES = 200_000


def _filled(connection, table: str, columns: str, values: str) -> int:
    """Insert SAMPLES rows of ``values`` (``{at}``: a time) into ``table``; its size."""
    at = ":now - (g || ' seconds')::interval"
    connection.execute(text(f"INSERT INTO {table} ({columns}) SELECT "
                            f"{values.format(at=at)} FROM generate_series(1, :n) g"),
                       {"now": datetime.now(timezone.utc), "n": SAMPLES})
    return connection.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar()


def main() -> None:
    name = f"daqflow_size_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    os.environ["DAQFLOW_DATABASE_URL"] = f"{SERVER}/{name}"
    try:
        from models import get_engine, migrate

        migrate.upgrade()
        engine = get_engine()
        with engine.begin() as connection:
            size = _filled(connection, "routersample", "router, at, files, bytes, rate, "
                           "free_bytes", "'router-' || (g % 64), {at}, g % 50, "
                           "g::bigint * 8192, 1234.5, 500000000000")
            ecc_size = _filled(connection, "eccsample", "server, at, online, state, "
                               "transition", "'ecc-cobo' || (g % 64), {at}, true, g % 6 + 1, 0")
        engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    week = 64 * 7 * 86400 / 10
    print(f"{size / SAMPLES:.1f} bytes per sample (table and indexes, {SAMPLES} samples); "
          f"64 routers every 10 s for 7 days: {week:.0f} samples, "
          f"{week * size / SAMPLES / 1e6:.0f} MB")
    # An ECC server's sample is written when its reachability or state changes: a run's
    # start and stop change it a few times (say 8 rows a run), 200 runs a day.
    changes = 64 * 7 * 200 * 8
    print(f"{ecc_size / SAMPLES:.1f} bytes per ECC server sample; 64 servers changing "
          f"state 1,600 times a day each for 7 days: {changes} samples, "
          f"{changes * ecc_size / SAMPLES / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
