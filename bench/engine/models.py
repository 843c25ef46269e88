"""The submodels the engine trains, selected by the `model=` config: logreg, mlp, cnn, resnet9.

Every model maps a batch (N, *input_shape) to class logits (N, K). Normalisation layers are
per-sample (GroupNorm), never BatchNorm: the engine trains many models at once on per-model
minibatches, and batch statistics would both leak points outside a coalition into its model and
make running-statistics buffers that vmap cannot update.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

IMAGE_MODELS = ("cnn", "resnet9")


class MLP(nn.Module):
    """Flatten, then Linear layers with ReLU between them: in -> widths[0] -> ... -> n_classes.

    With no hidden widths it is multinomial logistic regression (one Linear layer).
    """

    def __init__(self, in_features: int, n_classes: int, widths: Sequence[int] = ()) -> None:
        super().__init__()
        sizes = [in_features, *widths, n_classes]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (conv, ReLU, 2x2 max-pool after the first) and a linear head.

    An adaptive 2x2 average pool before the head makes one network fit 8x8 digits and 28x28 MNIST.
    """

    def __init__(self, in_channels: int, n_classes: int, channels: Sequence[int] = (16, 32)):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * c2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _conv_block(c_in: int, c_out: int, groups: int, pool: bool = False) -> nn.Sequential:
    layers = [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.GroupNorm(min(groups, c_out), c_out),
        nn.ReLU(),
    ]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(channels, channels, groups), _conv_block(channels, channels, groups)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """ResNet-9 of Page's CIFAR-10 DAWNBench entry (prep, 3 stages, 2 residual blocks, max-pool head
    scaled by 1/8), with GroupNorm for BatchNorm. `width` is the prep width (64 in the original)."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 64, groups: int = 8):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            _conv_block(in_channels, w, groups),
            _conv_block(w, 2 * w, groups, pool=True),
            Residual(2 * w, groups),
            _conv_block(2 * w, 4 * w, groups, pool=True),
            _conv_block(4 * w, 8 * w, groups, pool=True),
            Residual(8 * w, groups),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(8 * w, n_classes, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * 0.125


ARCH_KEYS = {"logreg": (), "mlp": ("widths",), "cnn": ("channels",), "resnet9": ("width", "groups")}


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int, **arch) -> nn.Module:
    """A fresh model `name` for inputs shaped `input_shape` (one sample) and `n_classes` outputs."""
    if name not in ARCH_KEYS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(ARCH_KEYS)}")
    unknown = sorted(set(arch) - set(ARCH_KEYS[name]))
    if unknown:
        raise ValueError(
            f"model {name!r} has no architecture key(s) {unknown}; its keys: {list(ARCH_KEYS[name])}"
        )
    if name in IMAGE_MODELS and len(input_shape) != 3:
        raise ValueError(
            f"model {name!r} takes images (c, h, w); the data has samples shaped {input_shape}"
        )
    if name == "logreg":
        return MLP(int(np.prod(input_shape)), n_classes)
    if name == "mlp":
        return MLP(int(np.prod(input_shape)), n_classes, tuple(arch.get("widths", ())))
    if name == "cnn":
        return SmallCNN(input_shape[0], n_classes, tuple(arch.get("channels", (16, 32))))
    return ResNet9(input_shape[0], n_classes, **arch)


def check_fits(model: nn.Module, input_shape: tuple[int, ...], n_classes: int) -> int:
    """Run `model` on one zero sample; a ValueError naming the shapes unless it gives (1, n_classes).

    Returns the number of activation elements per sample (outputs of every leaf module), which the
    engine uses to size its chunks.
    """
    sizes: list[int] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        param = next(model.parameters())
        with torch.no_grad():
            out = model(torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device))
    except RuntimeError as err:
        raise ValueError(
            f"model {type(model).__name__} does not fit inputs shaped {tuple(input_shape)}: {err}"
        ) from None
    finally:
        for hook in hooks:
            hook.remove()
    if tuple(out.shape) != (1, n_classes):
        raise ValueError(
            f"model {type(model).__name__} maps inputs shaped {tuple(input_shape)} to outputs "
            f"{tuple(out.shape[1:])}; expected ({n_classes},) class logits"
        )
    return sum(sizes)
