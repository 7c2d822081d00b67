"""configs/serve.yaml: the Serve config file of the app, as ``serve build`` writes one.

``serve build`` takes an import path of a built Application; ours is an application builder with
arguments (``serve.app:build``), so this module does what ``serve build`` does (Ray's own
``build_app``, ``deployment_to_schema``, schemas and YAML dumper) with the builder's import path and
the arguments below. The file is what ``serve deploy configs/serve.yaml`` runs and what the
KubeRay RayService carries as ``serveConfigV2`` (deploy/kuberay/rayservice.yaml);
tests/serve/test_serve_deploy.py regenerates it and compares, so it cannot drift from the code.

    python -m serve.config_file            # rewrites configs/serve.yaml and the RayService's copy
    python -m serve.config_file --check    # exit 1 when either is out of date

What the file does not hold on purpose: the API key (a Secret, ``ASTRADUP_API_KEY`` in the pods'
environment) and the cluster's addresses (``ASTRADUP_MILVUS_URI``, ``ASTRADUP_SHARDS_DIR``,
``ASTRADUP_S3_ENDPOINT``: config variables, read by ``load_config`` in the builder).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = ROOT / "configs" / "serve.yaml"
RAYSERVICE_PATH = ROOT / "deploy" / "kuberay" / "rayservice.yaml"
SERVE_CONFIG_KEY = "  serveConfigV2: |\n"  # the block scalar that carries the file, 4 spaces in
IMPORT_PATH = "serve.app:build"
HTTP_PORT = 8000
# Every interface of the pod (the Kubernetes Service reaches it there); the gateway is told the
# same bind, and the builder refuses it without an API key.
HTTP_HOST = "0.0.0.0"
# The builder's arguments in the file: only what differs from AppArgs' defaults.
ARGS: dict[str, Any] = {
    "bind_host": HTTP_HOST,
    "data_dir": "/home/ray/astradup_data",  # thumbnails, verdicts, the Lite file when no server is set
}
HEADER = ("# Made by `python -m serve.config_file` (what `serve build` writes, for the application builder\n"
          "# serve.app:build); tests/serve/test_serve_deploy.py keeps it in sync. Deploy: serve deploy configs/serve.yaml\n"
          "# (a Ray with its dashboard); on Kubernetes it is serveConfigV2 of deploy/kuberay/rayservice.yaml.\n"
          "# The API key comes from $ASTRADUP_API_KEY, the cluster's addresses from ASTRADUP_* config variables.\n\n")


def document(args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config document (a ServeDeploySchema, validated) for the builder called with ``args``.

    The deployments' options are the builder's own for these arguments with no environment (so
    the file is the same on every machine); a placeholder key stands in for the Secret.
    """
    from ray.serve._private.build_app import build_app as ray_build_app
    from ray.serve.schema import LoggingConfig
    from ray.serve.deployment import deployment_to_schema
    from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

    from serve.app import APP_NAME, build_app
    from serve.settings import AppArgs, args_from_env

    args = dict(ARGS if args is None else args)
    resolved: AppArgs = args_from_env({}, **{"api_key": "placeholder", **args})
    built = ray_build_app(build_app(resolved.load_config(environ={}), resolved.settings()), name=APP_NAME)
    app = ServeApplicationSchema(name=APP_NAME, route_prefix="/", import_path=IMPORT_PATH, runtime_env={},
                                 args=AppArgs.model_validate(args).model_dump(mode="json", exclude_unset=True),
                                 deployments=[deployment_to_schema(d) for d in built.deployments])
    doc = {"proxy_location": "EveryNode", "http_options": {"host": HTTP_HOST, "port": HTTP_PORT},
           "logging_config": LoggingConfig().model_dump(),
           "applications": [app.model_dump(exclude_unset=True)]}
    ServeDeploySchema.model_validate(doc)
    return doc


def render(args: dict[str, Any] | None = None) -> str:
    import yaml
    from ray.serve.scripts import ServeDeploySchemaDumper

    return HEADER + yaml.dump(document(args), Dumper=ServeDeploySchemaDumper, default_flow_style=False,
                              sort_keys=False, width=80, indent=2)


def with_serve_config(manifest: str, text: str) -> str:
    """The RayService manifest with ``text`` as its serveConfigV2 (the block scalar's lines replaced)."""
    head, sep, rest = manifest.partition(SERVE_CONFIG_KEY)
    if not sep:
        raise ValueError(f"no {SERVE_CONFIG_KEY.strip()!r} line in the RayService manifest")
    lines = rest.splitlines(keepends=True)
    end = next(i for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("    "))
    block = "".join(f"    {ln}" if ln.strip() else "\n" for ln in text.splitlines(keepends=True))
    return head + sep + block + "".join(lines[end:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve.config_file", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only say whether the file is up to date")
    p.add_argument("-o", "--output", type=Path, default=CONFIG_PATH)
    a = p.parse_args(argv)
    text = render()
    manifest = RAYSERVICE_PATH.read_text()
    wanted = {a.output: text, RAYSERVICE_PATH: with_serve_config(manifest, text)}
    if a.check:
        stale = [str(p) for p, t in wanted.items() if not p.exists() or p.read_text() != t]
        print(f"OUT OF DATE: {', '.join(stale)} (run python -m serve.config_file)" if stale else "up to date")
        return 1 if stale else 0
    for path, t in wanted.items():
        path.write_text(t)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
