"""The checks of ``idv-worker doctor``, grouped by what they check.

``result``: ``CheckResult`` and what the checks share; ``redis_server``: every Redis of the
deployment (reachable, how it is connected to, durable); ``services``: the other parts that
must be running (the provider accepts our signature, every queue has a consumer, beat runs);
``bucket``: the S3 bucket (exists, encrypts, keeps no copies erasure cannot reach). Each check
takes the ``Cli`` and imports what it needs inside itself (see ``worker.commands``).
"""
