"""A segmentation_models_pytorch U-Net with a ResNet-18 encoder (random weights, encoder_weights=None) -> Caffe;
--fast: 64x64. Other architectures and encoders: model arguments arch= and encoder=, e.g. arch=FPN."""

from _family_common import export_and_convert, parse_args

if __name__ == "__main__":
    args = parse_args("smp_unet", (1, 3, 256, 256), (1, 3, 64, 64))
    export_and_convert(
        "onnx2caffe.families_models:smp_model",
        "smp_unet_resnet18",
        args,
        {"arch": "Unet", "encoder": "resnet18"},
    )
