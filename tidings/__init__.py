"""Tidings shared contracts: settings, the event envelope, topic names, error
kinds and the run contract. This package imports no other part of Tidings;
every plane imports it. ``tidings.cli`` is the one exception: it only hands
``python -m tidings.cli`` to the console entry point, :mod:`cli.main`."""

__version__ = "0.1.0"
