"""The REST API: runs, their operations and events, auth, health, metrics."""
