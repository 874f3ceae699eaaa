"""Small nets written here for the model families the packages of the family zoo do not cover.

Each one is the smallest net that still holds the pattern its family deploys with, so that `make families` and
the tests exercise the ops a real model of that kind exports:

- ``CRNN`` (text recognition): a VGG-style conv stack that reduces the height to 1, a bidirectional LSTM over
  the width (the sequence), a per-step classifier and a log-softmax over the classes (what CTC decoding reads).
- ``CRNN(rnn="gru")``: the same with a bidirectional GRU.
- ``ESPCN`` (super-resolution): tanh convolutions and a sub-pixel PixelShuffle (DepthToSpace) upscaling.
- ``ReflectSR`` (super-resolution / image-to-image): reflection-padded convolutions, residual blocks, nearest x2
  upsampling, as fast style-transfer and EDSR-like nets are written.
- ``BiSeNetLite`` (real-time segmentation): BiSeNet's spatial path, a context path with attention refinement
  modules (global pooling gate), the feature fusion module and bilinear upsampling with align_corners=True.
- ``CBAMNet`` (attention): CBAM's channel gate (average- and max-pooled shared MLP) and spatial gate (mean and max
  over channels, 7x7 conv, an (N, 1, H, W) sigmoid map broadcast over the channels).
- ``SKNet`` (selective kernels): branches of different receptive fields stacked on a 5-D branch axis, a softmax
  over the branches and a sum over that axis.
- ``FocusYOLOv5`` (detection, the ultralytics/yolov5 repository's v5/v6 style that the pip package no longer has):
  the Focus stem (space-to-depth by strided slicing), anchor-based heads and the exported decode: a 5-D permute,
  sigmoid, ``(2 s - 0.5 + grid) * stride`` and ``(2 s) ** 2 * anchor`` with constant grids, one concatenation.

Only torch is needed; nothing is downloaded. Random weights: build them under ``torch.manual_seed``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _conv_bn_relu(cin: int, cout: int, k: int = 3, s: int = 1, p: int | None = None) -> nn.Sequential:
    p = k // 2 if p is None else p
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


# ------------------------------------------------------------------------------------------------ text recognition


class CRNN(nn.Module):
    """CRNN (Shi et al. 2015), narrowed: input (N, 1, 32, W) -> log-probabilities (T, N, classes), T = W/4 - 1.

    Pools (2, 2), (2, 2), (2, 1), (2, 1) and a final 2x2 valid convolution take the height 32 to 1; the width is
    the sequence. ``rnn`` is "lstm" or "gru"; two bidirectional layers as in the paper."""

    def __init__(self, num_classes: int = 37, in_channels: int = 1, hidden: int = 64, rnn: str = "lstm"):
        super().__init__()
        c = (32, 64, 128, 128, 192, 192, 192)
        self.cnn = nn.Sequential(
            _conv_bn_relu(in_channels, c[0]),
            nn.MaxPool2d(2, 2),
            _conv_bn_relu(c[0], c[1]),
            nn.MaxPool2d(2, 2),
            _conv_bn_relu(c[1], c[2]),
            _conv_bn_relu(c[2], c[3]),
            nn.MaxPool2d((2, 1), (2, 1)),
            _conv_bn_relu(c[3], c[4]),
            _conv_bn_relu(c[4], c[5]),
            nn.MaxPool2d((2, 1), (2, 1)),
            _conv_bn_relu(c[5], c[6], k=2, p=0),
        )
        cls = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn]
        self.rnn = cls(c[6], hidden, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, num_classes)

    def forward(self, x):
        f = self.cnn(x)  # (N, C, 1, T)
        seq = f.squeeze(2).permute(2, 0, 1)  # (T, N, C)
        out, _ = self.rnn(seq)
        return F.log_softmax(self.fc(out), dim=2)  # (T, N, classes): CTC-ready


# ------------------------------------------------------------------------------------------------ super-resolution


class ESPCN(nn.Module):
    """ESPCN (Shi et al. 2016): input (N, C, H, W) -> (N, C, rH, rW) through a sub-pixel convolution layer."""

    def __init__(self, upscale: int = 3, channels: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 64, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(64, 32, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(32, channels * upscale**2, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(upscale)

    def forward(self, x):
        return self.shuffle(self.body(x))


class _ReflectResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3),
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"),
            nn.BatchNorm2d(ch),
        )

    def forward(self, x):
        return x + self.body(x)


class ReflectSR(nn.Module):
    """A x2 super-resolution / image-to-image net written the fast-style-transfer way: reflection padding (both as
    ReflectionPad2d and as Conv2d(padding_mode="reflect")), residual blocks, nearest x2 upsampling."""

    def __init__(self, channels: int = 3, width: int = 32, blocks: int = 2):
        super().__init__()
        self.head = nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(channels, width, 9), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[_ReflectResBlock(width) for _ in range(blocks)])
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.ReflectionPad2d(1),
            nn.Conv2d(width, width, 3),
            nn.ReLU(inplace=True),
        )
        self.tail = nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(width, channels, 9))

    def forward(self, x):
        return self.tail(self.up(self.blocks(self.head(x))))


# ------------------------------------------------------------------------------------------------ segmentation


class AttentionRefinement(nn.Module):
    """BiSeNet's ARM: a 3x3 conv, then a per-channel gate from global average pooling, 1x1 conv, BN, sigmoid."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _conv_bn_relu(cin, cout)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.Sigmoid()
        )

    def forward(self, x):
        y = self.conv(x)
        return y * self.gate(y)


class FeatureFusion(nn.Module):
    """BiSeNet's FFM: concatenate both paths, conv, then x + x * gate(x) with a squeeze-excite style gate."""

    def __init__(self, cin: int, cout: int, reduction: int = 4):
        super().__init__()
        self.conv = _conv_bn_relu(cin, cout, k=1)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(cout, cout // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout // reduction, cout, 1),
            nn.Sigmoid(),
        )

    def forward(self, sp, cp):
        x = self.conv(torch.cat([sp, cp], dim=1))
        return x + x * self.gate(x)


class BiSeNetLite(nn.Module):
    """A narrow BiSeNet (Yu et al. 2018): spatial path at 1/8, context path to 1/32 with two ARMs and the global
    context (global pooling, added back), bilinear upsampling (align_corners=True, as BiSeNet writes it) to 1/8,
    the FFM and a x8 bilinear output upsampling. Input (N, 3, H, W) with H and W multiples of 32."""

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.spatial = nn.Sequential(
            _conv_bn_relu(3, 32, 7, 2, 3), _conv_bn_relu(32, 32, 3, 2), _conv_bn_relu(32, 64, 3, 2)
        )
        self.ctx8 = nn.Sequential(
            _conv_bn_relu(3, 16, 3, 2), _conv_bn_relu(16, 32, 3, 2), _conv_bn_relu(32, 48, 3, 2)
        )
        self.ctx16 = _conv_bn_relu(48, 64, 3, 2)
        self.ctx32 = _conv_bn_relu(64, 96, 3, 2)
        self.arm16 = AttentionRefinement(64, 64)
        self.arm32 = AttentionRefinement(96, 64)
        self.global_ctx = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv_bn_relu(96, 64, 1))
        self.ffm = FeatureFusion(128, 64)
        self.head = nn.Conv2d(64, num_classes, 1)

    def forward(self, x):
        size = x.shape[2:]
        sp = self.spatial(x)
        c16 = self.ctx16(self.ctx8(x))
        c32 = self.ctx32(c16)
        g = self.global_ctx(c32)
        a32 = self.arm32(c32) + g  # (N, 64, 1, 1) broadcast over the 1/32 map
        up32 = F.interpolate(a32, size=c16.shape[2:], mode="bilinear", align_corners=True)
        a16 = self.arm16(c16) + up32
        up16 = F.interpolate(a16, size=sp.shape[2:], mode="bilinear", align_corners=True)
        out = self.head(self.ffm(sp, up16))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=True)


# ------------------------------------------------------------------------------------------------ attention blocks


class CBAM(nn.Module):
    """CBAM (Woo et al. 2018): channel gate from avg- and max-pooled features through one shared MLP, then a
    spatial gate from the channel mean and max through a 7x7 conv; both sigmoid gates multiply the input."""

    def __init__(self, ch: int, reduction: int = 8):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(ch, ch // reduction, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch // reduction, ch, 1, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x):
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        x = x * torch.sigmoid(avg + mx)
        s = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(s))  # (N, 1, H, W) gate broadcast over C


class _CBAMBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_relu(cin, cout, 3, stride),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.cbam = CBAM(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.cbam(self.body(x)) + self.short(x))


class CBAMNet(nn.Module):
    """A small CBAM-ResNet classifier: stem, three residual blocks with CBAM, global pooling, a linear head."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = _conv_bn_relu(3, 32, 3, 2)
        self.blocks = nn.Sequential(_CBAMBlock(32, 32, 1), _CBAMBlock(32, 64, 2), _CBAMBlock(64, 128, 2))
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


class SKConv(nn.Module):
    """Selective kernel convolution (Li et al. 2019): M branches (3x3 convs with dilation 1..M), fused by sum, a
    squeeze to (N, d), one fc per branch, a softmax over the branch axis and the weighted sum over that axis of
    the (N, M, C, H, W) branch stack, as the reference implementation writes it."""

    def __init__(self, ch: int, branches: int = 2, reduction: int = 4, groups: int = 4):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(ch, ch, 3, 1, d, dilation=d, groups=groups, bias=False),
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
            )
            for d in range(1, branches + 1)
        )
        d = max(ch // reduction, 16)
        self.squeeze = nn.Sequential(nn.Linear(ch, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(inplace=True))
        self.select = nn.Linear(d, ch * branches)
        self.m, self.ch = branches, ch

    def forward(self, x):
        feats = torch.stack([b(x) for b in self.branches], dim=1)  # (N, M, C, H, W)
        u = feats.sum(dim=1)
        z = self.squeeze(u.mean(dim=(2, 3)))
        attn = self.select(z).view(-1, self.m, self.ch).softmax(dim=1)  # over the branches
        return (feats * attn[:, :, :, None, None]).sum(dim=1)


class _SKBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.reduce = _conv_bn_relu(cin, cout, 1, stride, 0)
        self.sk = SKConv(cout)
        self.expand = nn.Sequential(nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.expand(self.sk(self.reduce(x))) + self.short(x))


class SKNet(nn.Module):
    """A small SKNet classifier: stem, three SK bottleneck blocks, global pooling, a linear head."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = _conv_bn_relu(3, 32, 3, 2)
        self.blocks = nn.Sequential(_SKBlock(32, 32, 1), _SKBlock(32, 64, 2), _SKBlock(64, 64, 2))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


# ------------------------------------------------------------------------------------------------ detection


class Focus(nn.Module):
    """YOLOv5's Focus stem: the four pixel phases of every 2x2 block side by side on the channel axis (strided
    slices, steps 2), then a convolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _conv_bn_relu(4 * cin, cout, 3)

    def forward(self, x):
        return self.conv(
            torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], dim=1)
        )


class FocusYOLOv5(nn.Module):
    """A narrow anchor-based YOLOv5 (v5.0 layout): Focus stem, a strided conv backbone, detection convolutions at
    strides 8 and 16 and the decode YOLOv5's ONNX export contains (per level: view to (N, A, 5 + C, H, W), permute
    to (N, A, H, W, 5 + C), sigmoid, xy = (2 s - 0.5 + grid) * stride, wh = (2 s) ** 2 * anchor, then all boxes
    concatenated to (N, boxes, 5 + C)). Grids are built for the input size given to the constructor."""

    def __init__(self, num_classes: int = 3, size: int = 128):
        super().__init__()
        self.no, self.na = 5 + num_classes, 3
        self.stem = Focus(3, 16)  # /2
        self.s4 = _conv_bn_relu(16, 32, 3, 2)
        self.s8 = _conv_bn_relu(32, 48, 3, 2)
        self.s16 = _conv_bn_relu(48, 64, 3, 2)
        self.heads = nn.ModuleList([nn.Conv2d(48, self.na * self.no, 1), nn.Conv2d(64, self.na * self.no, 1)])
        self.strides = (8, 16)
        anchors = torch.tensor(
            [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]]], dtype=torch.float32
        )
        for i, s in enumerate(self.strides):
            n = size // s
            yv, xv = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
            grid = torch.stack((xv, yv), 2).view(1, 1, n, n, 2).float()
            self.register_buffer(f"grid{i}", grid, persistent=False)
            self.register_buffer(f"anchor{i}", anchors[i].view(1, self.na, 1, 1, 2), persistent=False)

    def forward(self, x):
        f8 = self.s8(self.s4(self.stem(x)))
        f16 = self.s16(f8)
        out = []
        for i, f in enumerate((f8, f16)):
            p = self.heads[i](f)
            n, _, h, w = p.shape
            y = p.view(n, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).sigmoid()
            xy = (y[..., 0:2] * 2 - 0.5 + getattr(self, f"grid{i}")) * self.strides[i]
            wh = (y[..., 2:4] * 2) ** 2 * getattr(self, f"anchor{i}")
            out.append(torch.cat((xy, wh, y[..., 4:]), -1).view(n, -1, self.no))
        return torch.cat(out, 1)
