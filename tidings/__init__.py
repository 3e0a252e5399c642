"""Tidings shared contracts: settings, the event envelope, topic names, error
kinds and the run contract. This package imports no other part of Tidings;
every plane imports it. ``tidings.cli`` is the one exception: the console
entry point, which stands on top of the planes and which nothing imports."""

__version__ = "0.1.0"
