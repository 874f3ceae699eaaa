"""An ultralytics YOLO (built from its yaml, random weights, offline) -> Caffe; --fast: 128x128.

onnx2caffe.families_models:ultralytics_yolo prepares the model as ultralytics' own ONNX exporter does (Conv + BN
fused, the head in export mode: decoded boxes and class scores, no NMS). Any yaml of the package works, e.g.
--cfg yolo11n-seg.yaml or yolov8n-pose.yaml; a trained checkpoint goes in with --weights on the CLI."""

import sys

from _family_common import export_and_convert, parse_args

if __name__ == "__main__":
    cfg = "yolov8n.yaml"
    if "--cfg" in sys.argv:
        i = sys.argv.index("--cfg")
        cfg = sys.argv[i + 1]
        del sys.argv[i : i + 2]
    args = parse_args("yolo", (1, 3, 640, 640), (1, 3, 128, 128))
    export_and_convert(
        "onnx2caffe.families_models:ultralytics_yolo",
        cfg.removesuffix(".yaml"),
        args,
        {"cfg": cfg, "imgsz": args.shape[-1]},
    )
