#!/usr/bin/env bash
# make demo: PyTorch (torchvision ResNet-18, random weights) -> ONNX -> Caffe, verified on every runtime here.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
export ONNX2CAFFE_CAFFE_ROOT=${ONNX2CAFFE_CAFFE_ROOT:-$PWD/.caffe}
if [ ! -e "$ONNX2CAFFE_CAFFE_ROOT/src/python/caffe/_caffe.so" ]; then
  echo "demo: real Caffe is not built yet (make caffe); verifying on OpenCV only"
fi
set -x
"$BIN/onnx2caffe" export torchvision:resnet18 --input-shape 1,3,224,224 -o "$OUT/resnet18.onnx"
"$BIN/onnx2caffe" convert "$OUT/resnet18.onnx" -o "$OUT/resnet18"
"$BIN/onnx2caffe" verify "$OUT/resnet18.onnx" "$OUT/resnet18.prototxt" "$OUT/resnet18.caffemodel" --per-layer
