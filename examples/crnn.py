"""A CRNN text recogniser (conv stack, two bidirectional LSTM layers, per-step classifier, CTC-ready log-softmax;
onnx2caffe/family_nets.py) -> Caffe. Input: a 32-pixel-high grey text line; --fast: 32x64 (31 time steps -> 15).
The same net with GRUs: model argument name=crnn-gru."""

from _family_common import export_and_convert, parse_args

if __name__ == "__main__":
    args = parse_args("crnn", (1, 1, 32, 128), (1, 1, 32, 64))
    export_and_convert("onnx2caffe.families_models:local_net", "crnn", args, {"name": "crnn"})
