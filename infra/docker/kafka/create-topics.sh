#!/bin/bash
# One-shot (apache/kafka): the topics that exist for every deployment, from the
# same template the application uses for tenant topics (TIDINGS_KAFKA_*).
# Tenant topics, <prefix>.events.<tenant>, are created by the application on a
# tenant's first run. --if-not-exists makes the job safe to run on every `up`;
# it never changes an existing topic (use kafka-configs.sh / kafka-topics.sh
# --alter for that).
set -euo pipefail

BOOTSTRAP="${TIDINGS_KAFKA_BOOTSTRAP_SERVERS:-kafka:9092}"
PREFIX="${TIDINGS_KAFKA_TOPIC_PREFIX:-tidings}"
PARTITIONS="${TIDINGS_KAFKA_PARTITIONS:-6}"
REPLICATION="${TIDINGS_KAFKA_REPLICATION_FACTOR:-1}"
RETENTION_MS="${TIDINGS_KAFKA_RETENTION_MS:-604800000}"
DLQ_RETENTION_MS="${DLQ_RETENTION_MS:-2592000000}"
TOPICS="${KAFKA_TOPICS_BIN:-/opt/kafka/bin/kafka-topics.sh}"

attempt=0
until "$TOPICS" --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 30 ]; then
    echo "Kafka at $BOOTSTRAP is not reachable" >&2
    exit 1
  fi
  sleep 2
done

create() { # name retention_ms
  echo "topic: $1 (partitions $PARTITIONS, replication $REPLICATION, retention.ms $2)"
  "$TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$1" \
    --partitions "$PARTITIONS" --replication-factor "$REPLICATION" \
    --config "retention.ms=$2"
}

# Records that could not be processed, with the reason: kept longer than events
# so an operator has time to look.
create "$PREFIX.dlq" "$DLQ_RETENTION_MS"
# External steps: work handed to agent services, and their results.
create "$PREFIX.requests" "$RETENTION_MS"
create "$PREFIX.completions" "$RETENTION_MS"
echo "kafka init: done"
