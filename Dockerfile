# AstraDup on Ray's own image, for KubeRay (deploy/kuberay/): the same scripts/install.sh that
# CI and cluster.yaml's nodes run, on rayproject/ray of the Ray version constraints.txt pins.
#
#   docker build -t astradup:2.60.0-cpu .
#   docker build -t astradup:2.60.0-gpu --build-arg RAY_TAG=2.60.0-py312-gpu --build-arg GPU=1 .
#
# Not built on the development machines (no Docker daemon there): what the image runs is
# scripts/install.sh, which CI runs, so an image differs from a CI machine only in its base.
ARG RAY_VERSION=2.60.0
# CPU image by default; the GPU image is the -gpu tag of the same Ray and Python (CUDA inside).
ARG RAY_TAG=${RAY_VERSION}-py312
FROM rayproject/ray:${RAY_TAG}
ARG RAY_VERSION

# 1 = the CUDA build of ONNX Runtime instead of the CPU one (the SSCD embedder uses its CUDA
# provider when present): the step cluster.yaml's gpu_worker adds after install.sh.
ARG GPU=0
ENV ASTRADUP_HOME=/home/ray/astradup
WORKDIR ${ASTRADUP_HOME}
COPY --chown=ray:users . .
# install.sh: apt packages (ffmpeg, chromaprint; through sudo, which the ray user has), a .venv
# with the pinned torch, then the project with its pins (Ray among them, the image's version).
RUN PYTHON=python3 bash scripts/install.sh \
 && if [ "$GPU" = "1" ]; then .venv/bin/pip uninstall -y -q onnxruntime && .venv/bin/pip install -q onnxruntime-gpu; fi \
 && .venv/bin/python -c "import ray, sys; v = ray.__version__; sys.exit(0 if v == '${RAY_VERSION}' else f'Ray {v} in the venv, image is ${RAY_VERSION}')" \
 && sudo rm -rf /var/lib/apt/lists/* && rm -rf ~/.cache/pip

# KubeRay starts `ray start` from PATH: the venv's Ray, with the project importable from any working
# directory (`python -m jobs.backfill` in a RayJob, `serve.app:build` in a RayService's serveConfigV2).
ENV VIRTUAL_ENV=${ASTRADUP_HOME}/.venv \
    PATH=${ASTRADUP_HOME}/.venv/bin:${PATH} \
    PYTHONPATH=${ASTRADUP_HOME} \
    RAY_AUTH_MODE=token
