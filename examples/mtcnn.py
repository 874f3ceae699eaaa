"""facenet-pytorch's MTCNN, its three stages with the weights its wheel ships -> Caffe: P-Net (fully
convolutional, any input size; 12x12 gives one window), R-Net (24x24 crops) and O-Net (48x48 crops)."""

from _family_common import export_and_convert, parse_args

STAGES = {"pnet": (1, 3, 48, 48), "rnet": (1, 3, 24, 24), "onet": (1, 3, 48, 48)}

if __name__ == "__main__":
    args = parse_args("mtcnn", (1, 3, 48, 48), (1, 3, 24, 24))
    fast = args.shape != (1, 3, 48, 48)
    for stage, shape in STAGES.items():
        args.shape = (1, 3, 24, 24) if fast and stage == "pnet" else shape
        export_and_convert("onnx2caffe.families_models:mtcnn", f"mtcnn_{stage}", args, {"net": stage})
