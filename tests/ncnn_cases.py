"""Small hand-written Caffe nets, one or a few layer types each, for the ncnn writer tests.

Each case is (prototxt layers after the input, {layer: blobs}, input shape, reference runtime). The
prototxt text is written by hand so that fork parameters (SSD, brocolli, PSPNet) can be used; the
caffemodel holds only name, type and blobs per layer (what Caffe and our reader read from it).
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.caffe_net import CaffeNet

RNG = np.random.default_rng(1234)


def rnd(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


def conv(name, bottom, top, n, cin, k=3, extra="", bias=True, group=1, kh=None, kw=None, gain=1.0):
    kh, kw = kh or k, kw or k
    ksz = f"kernel_size: {k}" if kh == kw else f"kernel_h: {kh} kernel_w: {kw}"
    blobs = [rnd(n, cin // group, kh, kw) * np.float32(gain)] + ([rnd(n)] if bias else [])
    text = (
        f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}" convolution_param {{ '
        f"num_output: {n} {ksz} bias_term: {str(bias).lower()} group: {group} {extra} }} }}"
    )
    return text, {name: blobs}


def layer(name, type_, bottoms, tops, params=""):
    b = " ".join(f'bottom: "{x}"' for x in ([bottoms] if isinstance(bottoms, str) else bottoms))
    t = " ".join(f'top: "{x}"' for x in ([tops] if isinstance(tops, str) else tops))
    return f'layer {{ name: "{name}" type: "{type_}" {b} {t} {params} }}'


def case(*parts, shape=(1, 4, 6, 6), runtime="pycaffe"):
    texts, blobs = [], {}
    for p in parts:
        if isinstance(p, tuple):
            texts.append(p[0])
            blobs.update(p[1])
        else:
            texts.append(p)
    return "\n".join(texts), blobs, shape, runtime


def write_case(folder, name, text, blobs, shape):
    """Write name.prototxt (input + text) and name.caffemodel (the blobs); returns the two paths."""
    dims = " ".join(f"dim: {d}" for d in shape)
    proto = f'name: "{name}"\nlayer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'
    proto += text + "\n"
    p = folder / f"{name}.prototxt"
    p.write_text(proto)
    net = CaffeNet(name)
    for lname, bl in blobs.items():
        net.add_layer(lname, "Scale", [], [], blobs=bl)  # the caffemodel keeps name + blobs only
    m = folder / f"{name}.caffemodel"
    net.write_caffemodel(m)
    return str(p), str(m)


def _ssd_head():
    """A tiny SSD head: two feature maps, loc/conf convolutions, PriorBox, Permute/Flatten/Concat,
    Softmax, DetectionOutput (3 classes)."""
    c1, b1 = conv("f1", "data", "f1", 8, 3, extra="pad: 1 stride: 2")
    c2, b2 = conv("f2", "f1", "f2", 8, 8, extra="pad: 1 stride: 2")
    parts = [(c1, b1), layer("r1", "ReLU", "f1", "f1"), (c2, b2)]
    locs, confs, priors = [], [], []
    for f, n_prior, mins, maxs, ars in (
        ("f1", 4, 8.0, 16.0, "aspect_ratio: 2"),
        ("f2", 6, 16.0, 28.0, "aspect_ratio: 2 aspect_ratio: 3"),
    ):
        t, b = conv(f"{f}_loc", f, f"{f}_loc", n_prior * 4, 8, extra="pad: 1", gain=0.1)
        parts.append((t, b))
        t, b = conv(f"{f}_conf", f, f"{f}_conf", n_prior * 3, 8, extra="pad: 1", gain=0.05)
        parts.append((t, b))
        for kind in ("loc", "conf"):
            parts.append(
                layer(
                    f"{f}_{kind}_perm",
                    "Permute",
                    f"{f}_{kind}",
                    f"{f}_{kind}_perm",
                    "permute_param { order: 0 order: 2 order: 3 order: 1 }",
                )
            )
            parts.append(layer(f"{f}_{kind}_flat", "Flatten", f"{f}_{kind}_perm", f"{f}_{kind}_flat"))
        locs.append(f"{f}_loc_flat")
        confs.append(f"{f}_conf_flat")
        parts.append(
            layer(
                f"{f}_prior", "PriorBox", [f, "data"], f"{f}_prior",
                f"prior_box_param {{ min_size: {mins} max_size: {maxs} {ars} flip: true clip: true "
                "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 offset: 0.5 }",
            )
        )  # fmt: skip
        priors.append(f"{f}_prior")
    parts.append(layer("loc", "Concat", locs, "loc", "concat_param { axis: 1 }"))
    parts.append(layer("conf", "Concat", confs, "conf", "concat_param { axis: 1 }"))
    parts.append(layer("prior", "Concat", priors, "prior", "concat_param { axis: 2 }"))
    parts.append(
        layer("conf_r", "Reshape", "conf", "conf_r", "reshape_param { shape { dim: 0 dim: -1 dim: 3 } }")
    )
    parts.append(layer("conf_s", "Softmax", "conf_r", "conf_s", "softmax_param { axis: 2 }"))
    parts.append(layer("conf_f", "Flatten", "conf_s", "conf_f"))
    parts.append(
        layer(
            "det", "DetectionOutput", ["loc", "conf_f", "prior"], "det",
            "detection_output_param { num_classes: 3 share_location: true background_label_id: 0 "
            "nms_param { nms_threshold: 0.45 top_k: 100 } code_type: CENTER_SIZE keep_top_k: 50 "
            "confidence_threshold: 0.3 }",
        )
    )  # fmt: skip
    return case(*parts, shape=(1, 3, 32, 32))


CASES = {
    "conv": case(conv("c1", "data", "c1", 5, 4, extra="pad: 1"), layer("r1", "ReLU", "c1", "c1")),
    "conv_rect_stride_dilation": case(
        conv(
            "c1",
            "data",
            "c1",
            3,
            4,
            kh=3,
            kw=2,
            extra="pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 1",
            bias=False,
        ),
        conv("c2", "data", "c2", 2, 4, extra="dilation: 2 pad: 2"),
    ),
    "conv_grouped_depthwise": case(
        conv("g2", "data", "g2", 6, 4, group=2, extra="pad: 1"),
        conv("dw", "g2", "dw", 6, 6, group=6, extra="pad: 1 stride: 2"),
    ),
    "deconv": case(
        (
            'layer { name: "d1" type: "Deconvolution" bottom: "data" top: "d1" convolution_param { num_output: 3 '
            "kernel_size: 4 stride: 2 pad: 1 } }",
            {"d1": [rnd(4, 3, 4, 4), rnd(3)]},
        ),
        (
            'layer { name: "d2" type: "Deconvolution" bottom: "data" top: "d2" convolution_param { num_output: 4 '
            "kernel_size: 3 stride: 2 group: 2 bias_term: false } }",
            {"d2": [rnd(4, 2, 3, 3)]},
        ),
    ),  # fmt: skip
    "inner_product": case(
        (
            layer("fc1", "InnerProduct", "data", "fc1", "inner_product_param { num_output: 7 }"),
            {"fc1": [rnd(7, 144), rnd(7)]},
        ),
        layer("relu", "ReLU", "fc1", "fc1", "relu_param { negative_slope: 0.1 }"),
        (
            layer(
                "fc2", "InnerProduct", "fc1", "fc2", "inner_product_param { num_output: 3 transpose: true }"
            ),
            {"fc2": [rnd(7, 3), rnd(3)]},
        ),
        (
            layer(
                "fc3",
                "InnerProduct",
                "data",
                "fc3",
                "inner_product_param { num_output: 5 axis: 2 bias_term: false }",
            ),
            {"fc3": [rnd(5, 36)]},
        ),
        (
            layer("fc4", "InnerProduct", "data", "fc4", "inner_product_param { num_output: 2 axis: -1 }"),
            {"fc4": [rnd(2, 6), rnd(2)]},
        ),
    ),  # fmt: skip
    "pooling": case(
        layer("max", "Pooling", "data", "max", "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }"),
        layer("ave", "Pooling", "data", "ave", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }"),
        layer(
            "ave_in",
            "Pooling",
            "data",
            "ave_in",
            "pooling_param { pool: AVE kernel_size: 3 stride: 1 pad: 1 }",
        ),
        layer("gmax", "Pooling", "data", "gmax", "pooling_param { pool: MAX global_pooling: true }"),
        layer("gave", "Pooling", "data", "gave", "pooling_param { pool: AVE global_pooling: true }"),
        layer(
            "rect",
            "Pooling",
            "data",
            "rect",
            "pooling_param { pool: AVE kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 }",
        ),
        layer(
            "floor",
            "Pooling",
            "data",
            "floor",
            "pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false }",
        ),
    ),  # fmt: skip
    "pooling_last_window_rule": case(
        layer("max", "Pooling", "data", "max", "pooling_param { pool: MAX kernel_size: 2 stride: 2 pad: 1 }"),
        layer("ave", "Pooling", "data", "ave", "pooling_param { pool: AVE kernel_size: 2 stride: 2 pad: 1 }"),
        shape=(1, 3, 5, 7),
    ),  # fmt: skip
    "batchnorm_scale": case(
        (
            layer("bn", "BatchNorm", "data", "bn", "batch_norm_param { eps: 0.001 }"),
            {"bn": [rnd(4) * 2, rnd(4, lo=0.5, hi=2) * 2, np.array([2.0], np.float32)]},
        ),
        (layer("sc", "Scale", "bn", "bn", "scale_param { bias_term: true }"), {"sc": [rnd(4), rnd(4)]}),
    ),  # fmt: skip
    "scale_axes": case(
        (
            layer("s_hw", "Scale", "data", "s_hw", "scale_param { axis: 2 num_axes: 2 bias_term: true }"),
            {"s_hw": [rnd(6, 6), rnd(6, 6)]},
        ),
        (
            layer("s_sc", "Scale", "data", "s_sc", "scale_param { num_axes: 0 }"),
            {"s_sc": [rnd(1).reshape(())]},
        ),
        (layer("s_w", "Scale", "data", "s_w", "scale_param { axis: -1 }"), {"s_w": [rnd(6)]}),
        layer("gate", "Pooling", "data", "gate", "pooling_param { pool: AVE global_pooling: true }"),
        layer("gate_f", "Flatten", "gate", "gate_f"),
        layer("s_2", "Scale", ["data", "gate_f"], "s_2", "scale_param { axis: 0 }"),
        (
            layer("s_2b", "Scale", ["data", "gate_f"], "s_2b", "scale_param { axis: 0 bias_term: true }"),
            {"s_2b": [rnd(1, 4)]},
        ),
        layer("hw", "Pooling", "data", "hw", "pooling_param { pool: MAX kernel_size: 1 stride: 1 }"),
        layer(
            "hw_r", "Reshape", "hw", "hw_r", "reshape_param { shape { dim: 0 dim: -1 } axis: 0 num_axes: 2 }"
        ),
    ),  # fmt: skip
    "bias": case(
        (layer("b1", "Bias", "data", "b1"), {"b1": [rnd(4)]}),
        (layer("b2", "Bias", "data", "b2", "bias_param { axis: 2 num_axes: 1 }"), {"b2": [rnd(6)]}),
        layer("g", "Pooling", "data", "g", "pooling_param { pool: MAX global_pooling: true }"),
        layer("gf", "Flatten", "g", "gf"),
        layer("b3", "Bias", ["data", "gf"], "b3", "bias_param { axis: 0 }"),
    ),  # fmt: skip
    "activations": case(
        layer("relu", "ReLU", "data", "relu"),
        layer("leaky", "ReLU", "data", "leaky", "relu_param { negative_slope: 0.2 }"),
        (layer("prelu", "PReLU", "data", "prelu"), {"prelu": [rnd(4)]}),
        (
            layer("prelu_s", "PReLU", "data", "prelu_s", "prelu_param { channel_shared: true }"),
            {"prelu_s": [rnd(1).reshape(())]},
        ),
        layer("elu", "ELU", "data", "elu", "elu_param { alpha: 0.5 }"),
        layer("sig", "Sigmoid", "data", "sig"),
        layer("tanh", "TanH", "data", "tanh"),
        layer("abs", "AbsVal", "data", "abs"),
        layer("bnll", "BNLL", "data", "bnll"),
        layer("exp", "Exp", "data", "exp", "exp_param { base: 2 scale: 0.5 shift: 0.1 }"),
        layer("exp_e", "Exp", "data", "exp_e"),
        layer("pos", "Power", "data", "pos", "power_param { power: 2 scale: 0.5 shift: 1 }"),
        layer("log", "Log", "pos", "log", "log_param { base: 10 scale: 2 shift: 0.5 }"),
        layer("ln", "Log", "pos", "ln"),
        layer("thr", "Threshold", "data", "thr", "threshold_param { threshold: 0.2 }"),
        layer("drop", "Dropout", "data", "drop", "dropout_param { dropout_ratio: 0.3 }"),
        layer("relu6", "ReLU6", "data", "relu6"),
    ),  # fmt: skip
    "eltwise": case(
        layer("p", "Eltwise", ["data", "data"], "p", "eltwise_param { operation: PROD }"),
        layer("s", "Eltwise", ["data", "p"], "s", "eltwise_param { operation: SUM coeff: 0.5 coeff: -2 }"),
        layer("m", "Eltwise", ["s", "data", "p"], "m", "eltwise_param { operation: MAX }"),
        layer("g", "Pooling", "data", "g", "pooling_param { pool: MAX global_pooling: true }"),
        layer("g2", "Pooling", "data", "g2", "pooling_param { pool: AVE kernel_size: 6 }"),
        layer("mix", "Eltwise", ["g", "g2"], "mix"),
    ),  # fmt: skip
    "concat_slice_split": case(
        layer("c1", "Concat", ["data", "data"], "c1"),
        layer("c2", "Concat", ["data", "data"], "c2", "concat_param { axis: -1 }"),
        layer("sl", "Slice", "c1", ["a", "b", "c"], "slice_param { slice_point: 1 slice_point: 5 }"),
        layer("sl2", "Slice", "c2", ["d", "e"], "slice_param { axis: 3 }"),
        layer("sp", "Split", "a", ["a1", "a2"]),
        layer("sum", "Eltwise", ["a1", "a2"], "sum"),
        layer("sil", "Silence", ["b", "e"], []),
    ),  # fmt: skip
    "reshape_flatten_softmax": case(
        layer("r", "Reshape", "data", "r", "reshape_param { shape { dim: 0 dim: -1 dim: 4 } }"),
        layer(
            "r2", "Reshape", "data", "r2", "reshape_param { shape { dim: 0 dim: 2 dim: 2 dim: -1 dim: 6 } }"
        ),
        layer("f", "Flatten", "data", "f"),
        layer("f2", "Flatten", "data", "f2", "flatten_param { axis: 2 }"),
        layer("sm1", "Softmax", "data", "sm1"),
        layer("sm2", "Softmax", "r", "sm2", "softmax_param { axis: 2 }"),
        layer("sm3", "Softmax", "f", "sm3"),
        layer("sm4", "Softmax", "data", "sm4", "softmax_param { axis: -1 }"),
    ),  # fmt: skip
    "mvn_lrn": case(
        layer("mvn", "MVN", "data", "mvn"),
        layer("mvn_m", "MVN", "data", "mvn_m", "mvn_param { normalize_variance: false }"),
        layer("mvn_a", "MVN", "data", "mvn_a", "mvn_param { across_channels: true eps: 0.001 }"),
        layer("lrn", "LRN", "data", "lrn", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }"),
        layer(
            "lrn_w",
            "LRN",
            "data",
            "lrn_w",
            "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }",
        ),
    ),  # fmt: skip
    "tile_crop_reduction": case(
        layer("t1", "Tile", "data", "t1", "tile_param { axis: 1 tiles: 2 }"),
        layer("t3", "Tile", "data", "t3", "tile_param { axis: 3 tiles: 3 }"),
        layer("small", "Pooling", "data", "small", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }"),
        layer("crop", "Crop", ["t3", "small"], "crop", "crop_param { axis: 2 offset: 1 offset: 2 }"),
        layer(
            "crop1", "Crop", ["t1", "data"], "crop1", "crop_param { axis: 1 offset: 2 offset: 0 offset: 0 }"
        ),
        layer("rsum", "Reduction", "data", "rsum", "reduction_param { operation: SUM axis: 1 }"),
        layer("rmean", "Reduction", "data", "rmean", "reduction_param { operation: MEAN axis: 2 coeff: 2 }"),
        layer("rasum", "Reduction", "data", "rasum", "reduction_param { operation: ASUM axis: -1 }"),
        layer("rsq", "Reduction", "data", "rsq", "reduction_param { operation: SUMSQ axis: 3 }"),
    ),  # fmt: skip
    "ssd_permute_normalize_upsample": case(
        layer("perm", "Permute", "data", "perm", "permute_param { order: 0 order: 2 order: 3 order: 1 }"),
        layer("perm2", "Permute", "data", "perm2", "permute_param { order: 0 order: 3 order: 1 order: 2 }"),
        layer("perm3", "Permute", "data", "perm3", "permute_param { order: 0 order: 1 order: 3 }"),
        (
            layer(
                "norm",
                "Normalize",
                "data",
                "norm",
                "norm_param { across_spatial: false channel_shared: false eps: 1e-5 }",
            ),
            {"norm": [rnd(4, lo=1, hi=20)]},
        ),
        (
            layer(
                "norm_a",
                "Normalize",
                "data",
                "norm_a",
                "norm_param { across_spatial: true channel_shared: true }",
            ),
            {"norm_a": [rnd(1, lo=1, hi=20).reshape(())]},
        ),
        layer("up", "Upsample", "data", "up", "upsample_param { scale: 2 }"),
        layer("up3", "Upsample", "data", "up3", "upsample_param { scale: 3 }"),
    ),  # fmt: skip
    "ssd_detection": _ssd_head(),
    "opencv_interp_shuffle_swish": case(
        layer("zoom", "Interp", "data", "zoom", "interp_param { zoom_factor: 2 }"),
        layer("sized", "Interp", "data", "sized", "interp_param { height: 9 width: 4 }"),
        layer("shuffle", "ShuffleChannel", "data", "shuffle", "shuffle_channel_param { group: 2 }"),
        layer("swish", "Swish", "data", "swish"),
        runtime="opencv",
    ),  # fmt: skip
}
