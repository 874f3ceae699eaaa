"""A torchvision detector up to its raw head outputs (SSDlite320 with a MobileNetV3-Large backbone; random weights,
weights_backbone=None) -> Caffe; --fast: 192x192 (at 128x128 the last extra blocks see 1x1 maps, where OpenCV 4.14's
depthwise 3x3 convolution returns wrong values, on its own ONNX importer too). Anchor decoding and NMS stay outside the Caffe model, as
deployments on Caffe targets do them. Other detectors: model argument name=retinanet_resnet50_fpn, fcos_resnet50_fpn
or ssd300_vgg16."""

from _family_common import export_and_convert, parse_args

if __name__ == "__main__":
    args = parse_args("detection_heads", (1, 3, 320, 320), (1, 3, 192, 192))
    export_and_convert(
        "onnx2caffe.families_models:torchvision_detection",
        "ssdlite320_mobilenet_v3_large",
        args,
        {"name": "ssdlite320_mobilenet_v3_large"},
    )
