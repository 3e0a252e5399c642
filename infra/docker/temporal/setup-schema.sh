#!/bin/sh
# One-shot (temporalio/admin-tools): create the Temporal and visibility
# databases and bring both schemas to the version this server image expects.
# Every step is idempotent, so the job runs on every `up` and so migrates the
# schema after the Temporal images are upgraded.
set -eu

: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
PORT="${DB_PORT:-5432}"
SCHEMA_ROOT="${TEMPORAL_HOME:-/etc/temporal}/schema/postgresql/v12"

attempt=0
until nc -z -w 2 "$POSTGRES_SEEDS" "$PORT"; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 30 ]; then
    echo "PostgreSQL at $POSTGRES_SEEDS:$PORT is not reachable" >&2
    exit 1
  fi
  sleep 2
done

sql_tool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$PORT" -u "$POSTGRES_USER" "$@"
}

for pair in temporal:temporal temporal_visibility:visibility; do
  db="${pair%%:*}"
  dir="${pair##*:}"
  echo "schema: $db"
  sql_tool --db "$db" create
  sql_tool --db "$db" setup-schema -v 0.0
  sql_tool --db "$db" update-schema -d "$SCHEMA_ROOT/$dir/versioned"
done
echo "schema: done"
