"""VGG-16 with BatchNorm (torchvision, random weights) -> Caffe. 138M parameters (550 MB of weights); its
adaptive pooling needs 7x7 features, so the input stays 224 (--fast uses VGG-11 instead)."""

import torchvision
from _common import parse_args, run

if __name__ == "__main__":
    args = parse_args("vgg", 224)
    fast = args.fast or __import__("os").environ.get("ONNX2CAFFE_EXAMPLES_FAST") == "1"
    name = "vgg11_bn" if fast else "vgg16_bn"
    run(torchvision.models.get_model(name, weights=None), name, args)
