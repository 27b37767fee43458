"""An example of your own model for clusterdeck's built-in training loop (templates/own-model.toml).

``[train] model = "cnn:build_cnn"`` imports this module from the job's working directory or PYTHONPATH and calls
``build_cnn(num_classes=<the shard set's class count>, **[train.model_args])``; it must return a ``torch.nn.Module``
that maps a normalised (N, 3, H, W) batch to (N, num_classes) logits.
"""

from __future__ import annotations

from torch import nn


def conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def build_cnn(num_classes: int, width: int = 32) -> nn.Module:
    """Eight 3×3 conv-BN-ReLU layers, three of them stride 2 (each doubling the width), global average pooling and a
    linear classifier: an all-convolutional network for any input size."""
    w = width
    layers = [
        conv_bn_relu(3, w, 1),
        conv_bn_relu(w, w, 1),
        conv_bn_relu(w, 2 * w, 2),
        conv_bn_relu(2 * w, 2 * w, 1),
        conv_bn_relu(2 * w, 4 * w, 2),
        conv_bn_relu(4 * w, 4 * w, 1),
        conv_bn_relu(4 * w, 8 * w, 2),
        conv_bn_relu(8 * w, 8 * w, 1),
    ]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, num_classes))
