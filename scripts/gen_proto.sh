#!/usr/bin/env bash
# Regenerates onnx2caffe/proto/caffe_pb2.py from onnx2caffe/proto/caffe.proto (`make proto`).
#
# The compiler is the protoc bundled in grpcio-tools, pinned to 1.62.3 (protoc 25.x, the
# protobuf 4.25 generation): its output carries no runtime-version check, so the committed
# caffe_pb2.py loads on every protobuf runtime from 4.25 up to the 7.x in .venv (checked with
# 4.25, 5.29, 6.31 and 7.36). Newer grpcio-tools emit a check that rejects runtimes older than
# the bundled protoc, i.e. they would break `protobuf>=4.25` in pyproject.toml.
#
# The pinned grpcio-tools goes into its own folder inside the venv (.venv/protoc/...), with
# --no-deps, so the venv's own grpcio-tools/protobuf stay as they are and `pip check` stays clean.
# Output is deterministic: running this twice gives a byte-identical caffe_pb2.py.
#
# Env: PYTHON (default .venv/bin/python).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
GRPC_TOOLS_VERSION=1.62.3
TOOLS_DIR=$ROOT/.venv/protoc/grpcio-tools-$GRPC_TOOLS_VERSION
PROTO_DIR=$ROOT/onnx2caffe/proto

if [ ! -x "$PY" ]; then
  echo "gen_proto.sh: no python at $PY (create .venv first, or set PYTHON)" >&2
  exit 1
fi

if [ ! -d "$TOOLS_DIR/grpcio_tools-$GRPC_TOOLS_VERSION.dist-info" ]; then
  echo "gen_proto.sh: installing grpcio-tools==$GRPC_TOOLS_VERSION into $TOOLS_DIR"
  rm -rf "$TOOLS_DIR.partial"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps \
    --target "$TOOLS_DIR.partial" "grpcio-tools==$GRPC_TOOLS_VERSION"
  rm -rf "$TOOLS_DIR"
  mv "$TOOLS_DIR.partial" "$TOOLS_DIR"
fi

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# PYTHONPATH puts the pinned grpc_tools ahead of any grpcio-tools installed in the venv itself.
PYTHONPATH=$TOOLS_DIR "$PY" -m grpc_tools.protoc \
  --proto_path="$PROTO_DIR" --python_out="$OUT" "$PROTO_DIR/caffe.proto"

if ! grep -q '^# Protobuf Python Version: 4\.25\.' "$OUT/caffe_pb2.py"; then
  echo "gen_proto.sh: unexpected protoc generation in output (wanted 4.25.x):" >&2
  grep '^# Protobuf Python Version' "$OUT/caffe_pb2.py" >&2 || true
  exit 1
fi

cp "$OUT/caffe_pb2.py" "$PROTO_DIR/caffe_pb2.py.new"
mv "$PROTO_DIR/caffe_pb2.py.new" "$PROTO_DIR/caffe_pb2.py"
echo "gen_proto.sh: wrote onnx2caffe/proto/caffe_pb2.py (grpcio-tools $GRPC_TOOLS_VERSION)"
