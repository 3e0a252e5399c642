"""Client-side subcommands of the tidings CLI (they talk to a gateway over HTTP/WebSocket)."""
