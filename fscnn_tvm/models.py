"""Model zoo: VGG16, ResNet-18/50, AlexNet, MobileNetV2 in torchvision's layouts (plain torch).

Parameter names and module structure follow torchvision, so a torchvision ``state_dict`` loads
with ``load_state_dict``. Weights are initialised deterministically from a seed (no download);
batch-norm statistics are randomised too, so batch-norm folding is exercised for real.

A *model spec* string names a zoo model and an optional magnitude-pruning sparsity:
``"resnet50"``, ``"resnet50@0.9"``, or with block pruning ``"vgg16@0.9:8x1"``; ``+trained`` at the
end (``"vgg16+trained"``, ``"resnet50@0.9+trained"``) gives its ReLUs the zero fractions published
for the trained network (:func:`trained_like`, synthetic). See :func:`from_spec`.
:func:`resolve` is the one place where a string given by a user becomes a torch model: a zoo spec
or a ``.pt2`` file (``.onnx`` files go to the ONNX importer instead).
"""
from __future__ import annotations

import os
import re
import warnings

import torch
from torch import nn

from . import prune
from .errors import ModelLoadError

DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)


# ---------------------------------------------------------------- VGG16 / AlexNet
class VGG(nn.Module):
    def __init__(self, cfg: list, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------- ResNet
def _conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, planes, stride), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = _conv1x1(cin, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers: list[int], num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- MobileNetV2
class ConvBNActivation(nn.Sequential):
    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1):
        padding = (kernel_size - 1) // 2
        super().__init__(nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand_ratio):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNActivation(cin, hidden, kernel_size=1))
        layers += [ConvBNActivation(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        settings = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                    [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
        cin = 32
        features: list[nn.Module] = [ConvBNActivation(3, cin, stride=2)]
        for t, c, n, s in settings:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(ConvBNActivation(cin, 1280, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------- construction
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"]

ARCHITECTURES = {
    "vgg16": lambda: VGG(_VGG16_CFG),
    "resnet18": lambda: ResNet(BasicBlock, [2, 2, 2, 2]),
    "resnet50": lambda: ResNet(Bottleneck, [3, 4, 6, 3]),
    "alexnet": AlexNet,
    "mobilenet_v2": MobileNetV2,
}


def init_deterministic(model: nn.Module, seed: int = 0) -> nn.Module:
    """torchvision-style init from ``seed``, with non-trivial batch-norm statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
                m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1, generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.2, 0.2, generator=gen)
                m.running_mean.uniform_(-0.2, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, (1.0 / m.in_features) ** 0.5, generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1, generator=gen)
    return model.eval()


def create(name: str, seed: int = 0) -> nn.Module:
    """A zoo model in eval mode with deterministic weights."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return init_deterministic(ARCHITECTURES[name](), seed)


_SPEC = re.compile(r"^(?P<name>[a-z0-9_]+)(@(?P<sparsity>[0-9.]+)(:(?P<rows>\d+)x(?P<cols>\d+))?)?"
                   r"(?P<trained>\+trained)?$")


def is_spec(text: str) -> bool:
    """True when ``text`` names a zoo model (``resnet50``, ``resnet50@0.9``, ``vgg16@0.9:8x1``,
    ``vgg16+trained``)."""
    m = _SPEC.match(text)
    return bool(m) and m.group("name") in ARCHITECTURES


def from_spec(text: str, seed: int = 0) -> nn.Module:
    """Build ``name[@sparsity[:RxC]][+trained]``: the zoo model, magnitude-pruned when a sparsity
    is given, then with the trained network's ReLU zeros (:func:`trained_like`) with ``+trained``."""
    m = _SPEC.match(text)
    if not m or m.group("name") not in ARCHITECTURES:
        raise ValueError(f"{text!r} is not a zoo model spec; expected NAME[@SPARSITY[:RxC]] with "
                         f"NAME one of {', '.join(sorted(ARCHITECTURES))}")
    model = create(m.group("name"), seed)
    if m.group("sparsity") is not None:
        try:
            sparsity = float(m.group("sparsity"))
        except ValueError:
            raise ValueError(f"{text!r}: sparsity {m.group('sparsity')!r} is not a number (e.g. resnet50@0.9)") from None
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"{text!r}: sparsity must be in [0, 1), got {sparsity}")
        block = (int(m.group("rows")), int(m.group("cols"))) if m.group("rows") else None
        prune.magnitude(model, sparsity, block=block)
    if m.group("trained"):
        trained_like(model, m.group("name"))
    return model


# ---------------------------------------------------------------- trained-like activation zeros
# The zoo's weights are random, so ~half of every ReLU's outputs are zero. Trained networks are
# sparser, and differently per layer. Published zero fractions of each layer's *input* (measured at
# the end of training; issue 16's sources), by the layer that reads it:
VGG16_INPUT_ZEROS = {
    "features.2": .49, "features.5": .53, "features.7": .70, "features.10": .61, "features.12": .75,
    "features.14": .76, "features.17": .75, "features.19": .82, "features.21": .86, "features.24": .85,
    "features.26": .81, "features.28": .81, "classifier.0": .84, "classifier.3": .78,
}
# ResNet-50: .21 after the stem; inside the bottlenecks .35 in the first block rising evenly to
# .89 in the last; right after a residual add .14 (stage 1) and .19 (stage 2), held at .19 in
# stages 3 and 4 (the sources give early stages only: interpolated, synthetic).
RESNET50_STEM_ZEROS, RESNET50_INNER_ZEROS, RESNET50_ADD_ZEROS = .21, (.35, .89), (.14, .19, .19, .19)
TRAINED_LIKE = ("vgg16", "resnet50")
CALIBRATION_SEED = 1234  # the seed of sample_inputs: the inputs trained_like matches its zeros on


def sample_inputs(count: int = 4, shape=DEFAULT_INPUT_SHAPE, seed: int = CALIBRATION_SEED):
    """``count`` seeded standard-normal images ``(count, C, H, W)`` float32: the calibration data
    :func:`trained_like` fits its zero fractions on (on other seeds' images VGG16's come out
    within 0.03 up to conv5, fc7's input 0.71 for 0.78)."""
    import numpy as np  # noqa: PLC0415

    return np.random.default_rng(seed).standard_normal((count, *shape[1:])).astype("float32")


def _match(shifted: nn.Module, pre: torch.Tensor, zeros: float, pool: nn.Module | None = None) -> torch.Tensor:
    """Lower ``shifted``'s bias per channel so that ``zeros`` of ``relu(pre)`` (or of
    ``pool(relu(pre))``: a max pool is zero where its window's maximum is) are zero on these
    inputs; returns ``pre`` shifted the same way."""
    probe = pool(pre) if pool is not None else pre
    if probe.dim() == 2:  # a linear's features: one value per sample each, so one shift for all
        shift = torch.quantile(probe.reshape(-1), zeros).expand(probe.shape[1])
    else:
        shift = torch.quantile(probe.transpose(0, 1).reshape(probe.shape[1], -1), zeros, dim=1)
    shifted.bias -= shift
    return pre - shift.view(1, -1, *([1] * (pre.dim() - 2)))


def trained_like(model: nn.Module, name: str, inputs=None) -> nn.Module:
    """Shift ``model``'s pre-ReLU biases (conv, linear or batch-norm) so that each layer's input
    has the zero fraction published for the trained network (:data:`VGG16_INPUT_ZEROS`, the
    ResNet-50 constants) on ``inputs`` (default :func:`sample_inputs`). **Synthetic**: the
    weights stay random; only how many inputs each ReLU zeroes is matched. Layers are matched in
    order in one forward pass (each hook sees the inputs its predecessors already shifted)."""
    if name not in TRAINED_LIKE:
        raise ValueError(f"{name}: no trained-like activation profile (known: {', '.join(TRAINED_LIKE)})")
    x = torch.from_numpy(sample_inputs() if inputs is None else inputs)
    hooks = []

    def hook(shifted, zeros, pool=None, residual=None):
        def run(module, args, out):
            extra = residual() if residual is not None else 0
            return _match(shifted, out + extra, zeros, pool) - extra
        return run

    with torch.no_grad():
        if name == "vgg16":
            mods = dict(model.named_modules())
            producers = [n for n, m in mods.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
            for consumer, zeros in VGG16_INPUT_ZEROS.items():
                producer = producers[producers.index(consumer) - 1]
                between = mods["features"][int(producer.split(".")[1]) + 2] if producer.startswith("features") else None
                pool = between if isinstance(between, nn.MaxPool2d) else None
                if consumer == "classifier.0":  # pool5 and the 7x7 average pool of a 7x7 map
                    pool = nn.Sequential(mods["features"][-1], model.avgpool)
                hooks.append(mods[producer].register_forward_hook(hook(mods[producer], zeros, pool)))
        else:
            hooks.append(model.bn1.register_forward_hook(hook(model.bn1, RESNET50_STEM_ZEROS, model.maxpool)))
            blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
            low, high = RESNET50_INNER_ZEROS
            stage_of = [s for s, stage in enumerate((model.layer1, model.layer2, model.layer3, model.layer4))
                        for _ in stage]
            for i, block in enumerate(blocks):
                inner = low + (high - low) * i / (len(blocks) - 1)
                seen = {}
                hooks.append(block.register_forward_pre_hook(lambda m, a, seen=seen: seen.update(x=a[0])))
                for bn in (block.bn1, block.bn2):
                    hooks.append(bn.register_forward_hook(hook(bn, inner)))

                def identity(block=block, seen=seen):
                    x_in = seen["x"]
                    return x_in if block.downsample is None else block.downsample(x_in)

                hooks.append(block.bn3.register_forward_hook(
                    hook(block.bn3, RESNET50_ADD_ZEROS[stage_of[i]], residual=identity)))
        try:
            model(x)
        finally:
            for h in hooks:
                h.remove()
    return model


def load_pt2(path: str):
    """The ``ExportedProgram`` in a ``.pt2`` file (``torch.export.load``: never unpickled as code);
    :class:`ModelLoadError` naming the file when it cannot be read."""
    try:
        with warnings.catch_warnings():  # torch warns with tracebacks before it raises
            warnings.simplefilter("ignore")
            return torch.export.load(path)
    except Exception as err:  # corrupt zip, wrong format, version mismatch
        first = str(err).splitlines()[0] if str(err) else ""
        raise ModelLoadError(f"{path}: not a readable torch.export .pt2 file ({type(err).__name__}: {first})") from None


def resolve(text: str, seed: int = 0):
    """What a user's model string names: a zoo spec -> a fresh ``nn.Module`` (pruned as the spec
    says); an existing ``.pt2`` file -> its ``ExportedProgram``. :class:`ModelLoadError` for
    anything else, naming it."""
    text = os.fspath(text)
    if is_spec(text) and not os.path.exists(text):
        return from_spec(text, seed)
    if not os.path.exists(text):
        raise ModelLoadError(f"{text}: no such file, and not a zoo model spec "
                             "(NAME[@SPARSITY], e.g. resnet50@0.9)")
    if text.endswith(".pt2"):
        return load_pt2(text)
    raise ModelLoadError(f"{text}: unknown model format; expected a .pt2 (torch.export.save) "
                         "or .onnx file")
