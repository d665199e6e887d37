"""The model zoo, by name: ``mlp``, ``cnn1d``, ``preresnet20``, ``vgg``.

:func:`build_model` turns a :class:`~threeregime.spec.specs.ModelSpec` plus the data's input shape
and number of classes into an initialised :class:`torch.nn.Module`.  Initialisation runs under
:func:`torch.random.fork_rng` with the CPU generator seeded by ``seed``: the same seed gives the
same weights, and the caller's global RNG state is left as it was.

:func:`prunable_names` lists the parameters that pruning may touch.  By default these are the
``weight`` of every ``Linear`` / ``Conv1d`` / ``Conv2d`` / ``Conv3d`` module except the last
``Linear`` (the classifier), as in the reference: biases and BatchNorm are never pruned.  A model
may override this by defining ``prunable_names(include_classifier)``.

Every model is vmap-friendly (it runs under ``torch.func.vmap`` over ``functional_call`` in
:mod:`threeregime.training.functional`): no ``.item()``, no data-dependent Python control flow and
no in-place operation on a layer's input (hence ``F.relu``, never ``ReLU(inplace=True)``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FieldError, SpecError
from ..registry import Registry, resolve_options
from ..spec.specs import ModelSpec

__all__ = ["MODELS", "build_model", "prunable_names", "MLP", "CNN1d", "PreResNet20", "VGG"]

#: name -> factory ``(spec, input_shape, num_classes, options) -> nn.Module``; the factory
#: carries ``.defaults`` (its options and their default values).
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

_PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


# --------------------------------------------------------------------------- helpers
def _model(name: str, **defaults: Any) -> Callable:
    """Register a model factory with its options and their defaults."""
    def deco(fn: Callable) -> Callable:
        fn.defaults = dict(defaults)  # type: ignore[attr-defined]
        return MODELS.register(name)(fn)
    return deco


def _scaled(n: int, width: float) -> int:
    """Channel / unit count ``n`` times the width factor (at least 1)."""
    return max(1, int(round(n * width)))


def _conv_out(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


def _shape_error(name: str, input_shape: tuple, need: str) -> SpecError:
    return SpecError(f"model {name!r} needs {need}; got input_shape {input_shape}")


def _check_int_list(name: str, key: str, value: Any, *, allow_m: bool = False) -> list:
    ok = isinstance(value, (list, tuple))
    if ok:
        for v in value:
            if allow_m and v == "M":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                ok = False
    if not ok:
        what = "positive integers or 'M' (max-pool)" if allow_m else "positive integers"
        raise FieldError(f"options.{key}", f"options.{key} of model {name!r} must be a list of "
                                            f"{what}; got {value!r}")
    return list(value)


# --------------------------------------------------------------------------- models
class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs.

    ``Flatten -> [Linear -> (BatchNorm1d) -> ReLU] * len(hidden) -> Linear``.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int,
                 batchnorm: bool = False) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.ModuleList()
        self.norms = nn.ModuleList()
        prev = in_features
        for h in hidden:
            self.hidden.append(nn.Linear(prev, h))
            self.norms.append(nn.BatchNorm1d(h) if batchnorm else nn.Identity())
            prev = h
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.flatten(x)                                   # (B, D)
        for lin, norm in zip(self.hidden, self.norms):
            h = F.relu(norm(lin(h)))
        return self.classifier(h)                             # (B, classes)


class CNN1d(nn.Module):
    """Three-layer 1D CNN for (channels, length) signals such as MNIST-1D.

    ``Conv1d(k5, s2, p1) -> Conv1d(k3, s2, p1) -> Conv1d(k3, s2, p1)``, each followed by an
    optional BatchNorm1d and ReLU, then flatten and one Linear head.  On MNIST-1D (1, 40) with 32
    channels the length goes 40 -> 19 -> 10 -> 5: 6,304 prunable conv weights and 8,010
    parameters (8,202 with BatchNorm, the probe's count).
    """

    def __init__(self, in_channels: int, length: int, channels: int, num_classes: int,
                 batchnorm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, n = in_channels, length
        for k in (5, 3, 3):
            layers.append(nn.Conv1d(cin, channels, kernel_size=k, stride=2, padding=1))
            layers.append(nn.BatchNorm1d(channels) if batchnorm else nn.Identity())
            layers.append(nn.ReLU())
            cin, n = channels, _conv_out(n, k, 2, 1)
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.out_length = n
        self.classifier = nn.Linear(channels * n, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)                                  # (B, ch, L/8)
        return self.classifier(self.flatten(h))               # (B, classes)


class _PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the shortcut.

    The shortcut is the identity, or a 1x1 strided conv of the block's raw input when the
    shape changes.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        res = x if self.shortcut is None else self.shortcut(x)
        return out + res


class PreResNet20(nn.Module):
    """CIFAR pre-activation ResNet-20 (He et al. 2016), the paper's reference model.

    conv3x3(16w) -> 3 stages x 3 pre-activation basic blocks (16w, 32w, 64w channels; stride 2
    at the start of stages 2 and 3, 1x1 conv shortcuts there) -> BN -> ReLU -> global average
    pool -> Linear.  Convolutions are initialised N(0, 2 / (k*k*out_channels)) (He, fan-out),
    BatchNorm to weight 1 / bias 0.  BatchNorm is part of the architecture, so the spec's
    ``batchnorm`` flag is ignored.
    """

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0) -> None:
        super().__init__()
        c = [_scaled(16, width), _scaled(32, width), _scaled(64, width)]
        self.conv1 = nn.Conv2d(in_channels, c[0], 3, stride=1, padding=1, bias=False)
        blocks: list[nn.Module] = []
        cin = c[0]
        for stage, cout in enumerate(c):
            for i in range(3):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(_PreActBlock(cin, cout, stride))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.classifier = nn.Linear(cin, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """He (fan-out) normal convolutions, BatchNorm weight 1 / bias 0 (the reference's);
        also used to re-initialise a channel-pruned copy from scratch."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(self.conv1(x))                        # (B, 64w, H/4, W/4)
        h = F.relu(self.bn(h)).mean(dim=(-2, -1))             # (B, 64w)
        return self.classifier(h)                             # (B, classes)


class VGG(nn.Module):
    """Small VGG: conv3x3 (+BN) + ReLU blocks and 2x2 max-pools from ``cfg``, flatten, Linear."""

    def __init__(self, in_channels: int, hw: tuple[int, int], cfg: Sequence[Any],
                 num_classes: int, batchnorm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        h, w = hw
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
            else:
                layers.append(nn.Conv2d(cin, v, 3, padding=1))
                if batchnorm:
                    layers.append(nn.BatchNorm2d(v))
                layers.append(nn.ReLU())
                cin = v
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(cin * h * w, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.features(x)))


# --------------------------------------------------------------------------- factories
@_model("mlp", hidden=[128, 128])
def _mlp(spec: ModelSpec, input_shape: tuple, num_classes: int, opts: dict) -> nn.Module:
    hidden = _check_int_list("mlp", "hidden", opts["hidden"])
    return MLP(math.prod(input_shape), [_scaled(h, spec.width) for h in hidden], num_classes,
               batchnorm=spec.batchnorm)


@_model("cnn1d", channels=32)
def _cnn1d(spec: ModelSpec, input_shape: tuple, num_classes: int, opts: dict) -> nn.Module:
    if len(input_shape) != 2:
        raise _shape_error("cnn1d", input_shape, "a (channels, length) input such as (1, 40)")
    ch = opts["channels"]
    if isinstance(ch, bool) or not isinstance(ch, int) or ch < 1:
        raise FieldError("options.channels", f"options.channels of model 'cnn1d' must be a "
                                             f"positive integer; got {ch!r}")
    n = input_shape[1]
    for k in (5, 3, 3):
        n = _conv_out(n, k, 2, 1)
    if n < 1:
        raise _shape_error("cnn1d", input_shape, "a signal length of at least 3")
    return CNN1d(input_shape[0], input_shape[1], _scaled(ch, spec.width), num_classes,
                 batchnorm=spec.batchnorm)


@_model("preresnet20")
def _preresnet20(spec: ModelSpec, input_shape: tuple, num_classes: int,
                 opts: dict) -> nn.Module:
    if len(input_shape) != 3:
        raise _shape_error("preresnet20", input_shape,
                           "a (channels, height, width) image input such as (3, 32, 32)")
    return PreResNet20(input_shape[0], num_classes, width=spec.width)


@_model("vgg", cfg=[32, "M", 64, "M", 128, "M"])
def _vgg(spec: ModelSpec, input_shape: tuple, num_classes: int, opts: dict) -> nn.Module:
    if len(input_shape) != 3:
        raise _shape_error("vgg", input_shape,
                           "a (channels, height, width) image input such as (3, 32, 32)")
    cfg = _check_int_list("vgg", "cfg", opts["cfg"], allow_m=True)
    if not any(v != "M" for v in cfg):
        raise FieldError("options.cfg", f"options.cfg of model 'vgg' must contain at least one "
                                        f"conv layer; got {cfg!r}")
    pools = sum(v == "M" for v in cfg)
    h, w = input_shape[1], input_shape[2]
    if h >> pools < 1 or w >> pools < 1:
        raise _shape_error("vgg", input_shape, f"height and width of at least {2 ** pools} "
                           f"for {pools} max-pools")
    cfg = [v if v == "M" else _scaled(v, spec.width) for v in cfg]
    return VGG(input_shape[0], (h, w), cfg, num_classes, batchnorm=spec.batchnorm)


# --------------------------------------------------------------------------- public API
def build_model(spec: ModelSpec, input_shape: Sequence[int], num_classes: int,
                seed: int) -> nn.Module:
    """Build and initialise a registered model.

    Parameters
    ----------
    spec : ModelSpec
        Architecture name, width factor, batchnorm flag and options.
    input_shape : sequence of int
        Shape of one example, without the batch dimension (``Splits.input_shape``).
    num_classes : int
        Number of output logits (>= 2).
    seed : int
        Seed of the initialisation.

    Returns
    -------
    torch.nn.Module
        The model on the CPU in train mode; ``forward`` maps ``(B, *input_shape)`` to
        (B, num_classes).

    Raises
    ------
    SpecError
        Unknown model name or option, or an input shape the architecture cannot take.

    Notes
    -----
    Initialisation runs inside ``torch.random.fork_rng(devices=[])`` with the CPU default
    generator seeded by ``seed`` and construction pinned to the CPU, so the caller's global
    RNG (CPU and CUDA) is unchanged and the same seed gives bit-identical weights.
    """
    if not isinstance(spec, ModelSpec):
        raise SpecError(f"spec must be a ModelSpec; got {type(spec).__name__}")
    factory = MODELS.get(spec.name, field="model.name")
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise SpecError(f"input_shape must be a sequence of positive integers; got "
                        f"{input_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise SpecError(f"input_shape must be a non-empty sequence of positive integers; got "
                        f"{input_shape!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise SpecError(f"num_classes must be an integer >= 2; got {num_classes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(f"seed must be an integer >= 0; got {seed!r}")
    opts = resolve_options("model", spec.name, spec.options, factory.defaults)
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        torch.random.default_generator.manual_seed(seed)
        model = factory(spec, shape, num_classes, opts)
    return model


def prunable_names(model: nn.Module, include_classifier: bool = False) -> list[str]:
    """Names (as in ``model.named_parameters()``) of the parameters that pruning may touch.

    Parameters
    ----------
    model : torch.nn.Module
        Any module.  If it defines ``prunable_names(include_classifier)``, that is used.
    include_classifier : bool
        Also return the classifier's weight (the last ``Linear`` in module order).

    Returns
    -------
    list of str
        In module order; biases and normalisation parameters are never included.

    Raises
    ------
    SpecError
        If the model has no prunable layer.
    """
    own = getattr(model, "prunable_names", None)
    if callable(own):
        names = list(own(include_classifier))
    else:
        names = []
        last_linear = None
        for mname, m in model.named_modules():
            if isinstance(m, _PRUNABLE_TYPES) and isinstance(getattr(m, "weight", None),
                                                              nn.Parameter):
                full = f"{mname}.weight" if mname else "weight"
                names.append(full)
                if isinstance(m, nn.Linear):
                    last_linear = full
        if not include_classifier and last_linear is not None:
            names.remove(last_linear)
    if not names:
        what = "" if include_classifier else " besides the classifier"
        raise SpecError(f"model has no prunable layers (Linear/Conv weights){what}; "
                        f"got {type(model).__name__}: use a model with hidden layers, or "
                        f"prune_classifier: true")
    return names
