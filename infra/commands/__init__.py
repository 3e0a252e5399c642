"""The ``tidings up | down | status | deps`` commands (see ``tidings.cli``)."""
