"""Sub-command groups of the ``idv-worker`` command, one module per group.

Each module exposes ``register(subparsers)`` which adds its parser(s) and sets ``handler``
(a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
"""
