"""Sub-command groups of the ``idv-worker`` command, one module per group.

Each module exposes ``register(subparsers)`` which adds its parser(s) and sets ``handler``
(a callable taking the parsed ``argparse.Namespace`` and returning an exit code).

Every module is imported to build the parser (``idv-worker --help`` included), so a handler
imports the heavy parts it needs (the builders of ``worker.wiring``, Celery, boto3, uvicorn,
the provider client) inside itself: a command pays only for what it runs. That is the one
reason for the function-level imports in this package.
"""
