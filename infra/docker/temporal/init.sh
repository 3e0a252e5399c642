#!/bin/sh
# One-shot (temporalio/admin-tools): the namespace Tidings runs in, and the
# Keyword search attributes every run carries (tidings.runs.TENANT_ATTRIBUTE,
# PIPELINE_ATTRIBUTE) so runs can be listed per tenant and pipeline.
# Idempotent: existing namespace and attributes are left as they are.
set -eu

ADDRESS="${TIDINGS_TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TIDINGS_TEMPORAL_NAMESPACE:-default}"
RETENTION="${NAMESPACE_RETENTION:-7d}"
ATTRIBUTES="TidingsTenant TidingsPipeline"

# Bounded retries: the frontend port opens before every service inside is ready.
retry() {
  attempt=0
  until "$@"; do
    attempt=$((attempt + 1))
    if [ "$attempt" -ge 30 ]; then
      echo "gave up after $attempt attempts: $*" >&2
      return 1
    fi
    sleep 2
  done
}

retry temporal operator cluster health --address "$ADDRESS"

if ! temporal operator namespace describe --namespace "$NAMESPACE" --address "$ADDRESS" >/dev/null 2>&1; then
  echo "namespace: creating $NAMESPACE (retention $RETENTION)"
  retry temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION" --address "$ADDRESS"
fi

has_attribute() {
  temporal operator search-attribute list --namespace "$NAMESPACE" --address "$ADDRESS" \
    | grep -qw "$1"
}

create_attribute() {
  has_attribute "$1" || temporal operator search-attribute create \
    --namespace "$NAMESPACE" --address "$ADDRESS" --name "$1" --type Keyword
}

for name in $ATTRIBUTES; do
  echo "search attribute: $name (Keyword)"
  # A namespace created a moment ago may not be in every cache yet: retry.
  retry create_attribute "$name"
done

# Done only when a visibility query that uses the attributes is accepted, so a
# worker starting right after this job can set them on its first run.
query="TidingsTenant = 'init' AND TidingsPipeline = 'init'"
retry temporal workflow list --namespace "$NAMESPACE" --address "$ADDRESS" --query "$query" --limit 1 >/dev/null
echo "temporal init: done"
