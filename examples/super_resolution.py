"""Super-resolution -> Caffe: ESPCN (x3, sub-pixel PixelShuffle upscaling) and a reflection-padded x2 net
(onnx2caffe/family_nets.py, random weights). --fast: 32x32 inputs."""

from _family_common import export_and_convert, parse_args

if __name__ == "__main__":
    args = parse_args("super_resolution", (1, 1, 96, 96), (1, 1, 32, 32))
    export_and_convert("onnx2caffe.families_models:local_net", "espcn", args, {"name": "espcn"})
    args.shape = (1, 3, *args.shape[2:])
    export_and_convert("onnx2caffe.families_models:local_net", "reflect_sr", args, {"name": "reflect-sr"})
