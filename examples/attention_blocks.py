"""Attention blocks -> Caffe: a CBAM-ResNet (channel and spatial gates), a selective-kernel net (softmax over a
branch axis) and a BiSeNet-style segmenter (attention refinement, feature fusion, bilinear align_corners=True
upsampling), all from onnx2caffe/family_nets.py with random weights. --fast: 64x64."""

from _family_common import export_and_convert, parse_args

if __name__ == "__main__":
    args = parse_args("attention_blocks", (1, 3, 128, 128), (1, 3, 64, 64))
    for name in ("cbam-net", "sk-net", "bisenet-lite"):
        export_and_convert(
            "onnx2caffe.families_models:local_net", name.replace("-", "_"), args, {"name": name}
        )
