"""ResNet-50 (torchvision, random weights) -> Caffe; --fast: ResNet-18 at 64x64."""

import os

import torchvision
from _common import parse_args, run

if __name__ == "__main__":
    args = parse_args("resnet", 224, fast_size=64)
    fast = args.fast or os.environ.get("ONNX2CAFFE_EXAMPLES_FAST") == "1"
    name = "resnet18" if fast else "resnet50"
    run(torchvision.models.get_model(name, weights=None), name, args)
