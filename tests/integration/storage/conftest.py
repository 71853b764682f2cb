"""The storage adapter's tests run against every S3-compatible store available.

``s3_backend`` is parametrized over ``S3_BACKENDS``: moto always, s3rver when Node.js and the
package (``make test-compat``) are present (skipped with the reason otherwise).
"""

from __future__ import annotations

import pytest

from tests.fixtures.s3 import S3_BACKENDS, S3Backend, backend_for


@pytest.fixture(params=S3_BACKENDS)
def s3_backend(request: pytest.FixtureRequest) -> S3Backend:
    return backend_for(str(request.param), request)
