"""Built-in networks for `qsim hw`, built in code so they run on a fresh machine without weights.

Exports `resnet18(num_classes=1000)` (the torchvision ResNet-18 layout, module names included, so
rules written for torchvision's model apply) and `BUILTIN_MODELS`: name -> (constructor, input shape).
"""
from __future__ import annotations

from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual; a 1x1 stride-2 `downsample` when the shape changes."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(channels))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)  # after conv2, as torchvision
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """He et al. 2016, ImageNet ResNet-18: 7x7/2 stem, max-pool, four stages of two BasicBlocks."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, in_channels = [], 64
        for channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(in_channels, channels, stride), BasicBlock(channels, channels)))
            in_channels = channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(num_classes: int = 1000) -> ResNet18:
    return ResNet18(num_classes)


class MLP(nn.Module):
    """A 784-1024-1024-10 perceptron: a pure-GEMM workload."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))

    def forward(self, x):
        return self.net(x.flatten(1))


BUILTIN_MODELS = {
    "resnet18": (resnet18, (1, 3, 224, 224)),
    "mlp": (MLP, (1, 1, 28, 28)),
}
