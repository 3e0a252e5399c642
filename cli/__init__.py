"""The ``tidings`` command line: the entry point (:mod:`cli.main`) and the
client-side subcommands, which talk to a gateway over HTTP and WebSocket. It
stands on top of every plane; nothing imports it."""
