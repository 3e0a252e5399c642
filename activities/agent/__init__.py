"""The built-in ``agent`` step: a Pydantic AI agent whose stream becomes Tidings events.

Needs the ``agents`` extra (``pip install 'tidings[agents]'``); nothing here is
imported unless a worker registers the step.
"""
