"""Process state of a gateway replica, for the module-level FastAPI hooks (middleware, error
handlers) that cannot reach the deployment instance.

It lives in its own module because Serve ships the ingress class to replicas by value: globals
of the class's own module are copied into it, while a module object is always imported by
reference, so ``state.GATEWAY`` is the one dict that both the hooks and the instance see.
"""
from __future__ import annotations

from typing import Any

from serve.hosts import HostPolicy

# "hosts" starts as the loopback-only policy, so a replica that never set it answers no foreign Host.
GATEWAY: dict[str, Any] = {"api_key": "", "metrics": None, "upload_limit": 0, "hosts": HostPolicy()}
