"""AlexNet (torchvision, random weights) -> Caffe. AlexNet's adaptive pooling needs 6x6 features: 224 input."""

import torchvision
from _common import parse_args, run

if __name__ == "__main__":
    args = parse_args("alexnet", 224)
    run(torchvision.models.alexnet(weights=None), "alexnet", args)
