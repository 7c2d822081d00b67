"""`astradup serve`: the HTTP API and web page (Ray Serve) over this index, run in the foreground."""
from __future__ import annotations

import time

from astradup.config import Config


def cmd_serve(args, cfg: Config) -> int:
    """HTTP API + web page on Ray Serve over this index, until Ctrl-C. The search deployment opens
    the Milvus Lite file, so no other astradup process may hold it meanwhile."""
    import signal

    from astradup.errors import ConfigError
    from serve import local
    from serve.settings import args_from_env

    def _stop(signum, frame):
        raise KeyboardInterrupt  # SIGTERM too shuts Serve down, rather than orphaning its actors

    # The builder's arguments (serve.app:build), as `serve run serve.app:build key=value` gives them;
    # the ASTRADUP_* service variables lie under them.
    given = {"embedder_max_replicas": max(1, args.embedder_replicas), "insecure": args.insecure,
             "config": args.config, "data_dir": args.data_dir, "milvus_uri": args.milvus_uri}
    if args.max_upload_mb:
        given["max_upload_mb"] = args.max_upload_mb
    try:
        app_args = args_from_env(**{k: v for k, v in given.items() if v is not None})
    except ValueError as e:
        raise ConfigError(str(e)) from None
    url = local.start_args(app_args, host=args.host, port=args.port)
    signal.signal(signal.SIGTERM, _stop)  # after start: ray.init installs a handler of its own
    print(f"AstraDup is serving {url}/ (API docs {url}/docs; API key {'required' if app_args.api_key else 'off'})."
          " Ctrl-C stops it.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
    return 0
