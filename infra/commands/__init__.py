"""The ``tidings up | down | status | deps`` commands (see ``cli.main``)."""
