"""Inception v3 (torchvision, random weights, no auxiliary classifier) -> Caffe at 299x299; --fast: 139x139
(any size from 75 up works: the net ends in global average pooling)."""

import warnings

import torchvision
from _common import parse_args, run

if __name__ == "__main__":
    args = parse_args("inception_v3", 299, fast_size=139)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torchvision's note on its weight initialisation
        model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    run(model, "inception_v3", args)
