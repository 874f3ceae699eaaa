"""A timm model (random weights: timm.create_model(NAME, pretrained=False), nothing downloaded) -> Caffe through
`onnx2caffe export timm:NAME`; --fast: 64x64. Model arguments go to create_model."""

from _family_common import export_and_convert, parse_args

if __name__ == "__main__":
    args = parse_args("timm", (1, 3, 224, 224), (1, 3, 64, 64))
    export_and_convert("timm:mobilenetv3_large_100", "mobilenetv3_large_100", args, {"num_classes": 100})
