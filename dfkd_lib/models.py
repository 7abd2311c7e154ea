"""CIFAR ResNets (He et al. 2016) whose intermediate features can be tapped.

A CIFAR ResNet of depth ``6n + 2`` has a 3x3 stem convolution and three stages of ``n`` basic
blocks with 16, 32 and 64 channels at 32x32, 16x16 and 8x8. The shortcut that changes shape is
He et al.'s option A (stride-2 subsampling and zero-padded channels), which has no parameters,
so the parameter counts match the paper: ResNet-20 0.27 M, ResNet-56 0.85 M, ResNet-110 1.7 M.

*Taps* are the points where flow (FSP) matrices are read: the stem output and the output of
every residual block, ``1 + 3n`` taps in all. ``model(x, return_taps=True)`` returns them next
to the logits, so no caller has to rewrite ``forward``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "cifar_resnet",
    "model_from_name",
    "count_parameters",
    "count_macs",
    "eval_mode",
    "frozen",
    "VALID_DEPTHS",
    "DEFAULT_WIDTHS",
]

VALID_DEPTHS = tuple(6 * n + 2 for n in range(1, 19))  # 8, 14, 20, ..., 110
DEFAULT_WIDTHS = (16, 32, 64)  # channels of the three stages (He et al.)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (option A) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def shortcut(self, x: Tensor) -> Tensor:
        """The identity path (option A of He et al.): subsample by the stride and zero-pad the
        extra channels, so the shortcut has no parameters."""
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels > 0:
            half = self.extra_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))
        return x

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 images: stem, three stages of ``n`` basic blocks, pooling, linear.

    Args:
        depth: ``6n + 2`` with ``n >= 1`` (8, 14, 20, 26, 32, 44, 56, 110, ...).
        num_classes: size of the output layer (10 for CIFAR-10, 100 for CIFAR-100).
        widths: channels of the three stages.
    """

    def __init__(self, depth: int, num_classes: int = 10, widths: tuple[int, int, int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 26, ...), got {depth}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.depth = depth
        self.num_classes = num_classes
        self.blocks_per_stage = n = (depth - 2) // 6
        self.widths = tuple(widths)

        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, in_ch = [], widths[0]
        for i, out_ch in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(in_ch, out_ch, stride)] + [BasicBlock(out_ch, out_ch) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(widths[-1], num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # --- description of the taps -------------------------------------------------------------
    @property
    def num_taps(self) -> int:
        """Number of tap points: the stem plus one per residual block."""
        return 1 + 3 * self.blocks_per_stage

    @property
    def tap_stages(self) -> list[int]:
        """Stage of each tap: 0 for the stem, then 1, 2, 3."""
        return [0] + [s + 1 for s in range(3) for _ in range(self.blocks_per_stage)]

    @property
    def tap_blocks(self) -> list[int]:
        """Block index (1-based) of each tap within its stage; 0 for the stem."""
        return [0] + [j + 1 for _ in range(3) for j in range(self.blocks_per_stage)]

    @property
    def tap_channels(self) -> list[int]:
        """Channels of each tap."""
        return [self.widths[0]] + [self.widths[s - 1] for s in self.tap_stages[1:]]

    def tap_sizes(self, input_size: int = 32) -> list[int]:
        """Spatial side of each tap for square inputs of side ``input_size``."""
        return [input_size] + [input_size // 2 ** (s - 1) for s in self.tap_stages[1:]]

    def tap_names(self) -> list[str]:
        """Readable names such as ``stem``, ``s1b1``, ..., ``s3bn``."""
        return ["stem"] + [f"s{s}b{b}" for s, b in zip(self.tap_stages[1:], self.tap_blocks[1:])]

    # --- forward -----------------------------------------------------------------------------
    def forward(self, x: Tensor, return_taps: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits, or ``(logits, taps)`` when ``return_taps`` is true."""
        out = F.relu(self.bn1(self.conv1(x)))
        taps = [out]
        for stage in self.stages:
            for block in stage:
                out = block(out)
                taps.append(out)
        logits = self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
        return (logits, taps) if return_taps else logits


def cifar_resnet(depth: int, num_classes: int = 10) -> CifarResNet:
    """A CIFAR ResNet of the given depth (``6n + 2``) for ``num_classes`` classes."""
    return CifarResNet(depth, num_classes)


def model_from_name(name: str, num_classes: int = 10, widths: tuple[int, int, int] = DEFAULT_WIDTHS) -> CifarResNet:
    """Build a model from a name such as ``"resnet8"`` or ``"ResNet-26"`` (``widths``: the
    channels of its three stages, see :class:`CifarResNet`)."""
    if not isinstance(name, str):
        raise TypeError(f"model names are strings such as 'resnet8', got {name!r} (for a depth use cifar_resnet)")
    m = re.fullmatch(r"resnet-?(\d+)", name.strip().lower())
    if not m:
        raise ValueError(f"unknown model name {name!r}; expected e.g. 'resnet8', 'resnet26', 'resnet56'")
    return CifarResNet(int(m.group(1)), num_classes, widths)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those that require gradients with ``trainable_only``), so a
    frozen teacher still counts its own."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: int = 32) -> int:
    """Multiply-accumulate operations of one forward pass on one ``3 x input_size x input_size`` image.

    Counts convolutions and linear layers, which dominate; batch norm, ReLU and the additions
    of the shortcuts are left out, as is usual.
    """
    total = 0

    def conv_hook(mod: nn.Conv2d, inp, out) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += out.shape[1] * out.shape[2] * out.shape[3] * k

    def linear_hook(mod: nn.Linear, inp, out) -> None:
        nonlocal total
        total += mod.in_features * mod.out_features

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(linear_hook))
    try:
        with torch.no_grad(), eval_mode(model):
            p = next(model.parameters())
            model(torch.zeros(1, 3, input_size, input_size, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
    return total


def frozen(model: nn.Module) -> nn.Module:
    """``model`` as a teacher is used: in evaluation mode, its weights without gradients (in place;
    returns it)."""
    return model.eval().requires_grad_(False)


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put ``models`` in evaluation mode for the ``with`` block, then back in the mode each was
    in, even if the block raises."""
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)
