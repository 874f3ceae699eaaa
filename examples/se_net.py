"""A small SE-ResNet (squeeze-and-excitation blocks, as in the SENet paper) written here -> Caffe.

The SE gate (global average pooling, two 1x1 convolutions, ReLU, Sigmoid) multiplies the residual branch per
channel; in Caffe that is Pooling + Convolution + ReLU + Convolution + Sigmoid + a two-bottom Scale."""

import torch
from _common import parse_args, run
from torch import nn


class SEBlock(nn.Module):
    def __init__(self, channels: int, stride: int = 1, reduction: int = 4):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels if stride == 1 else channels // 2, channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )
        self.shortcut = nn.Identity()
        if stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels // 2, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x):
        y = self.body(x)
        return torch.relu(y * self.se(y) + self.shortcut(x))


class SENet(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True)
        )
        self.blocks = nn.Sequential(SEBlock(32), SEBlock(64, 2), SEBlock(64), SEBlock(128, 2), SEBlock(128))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


if __name__ == "__main__":
    args = parse_args("se_net", 224, fast_size=64)
    torch.manual_seed(0)
    run(SENet(), "se_net", args)
