"""torch.hub entry points of ntre-zoo (NTRENet few-shot segmentation, Liu et al., CVPR 2022).

    torch.hub.list("ORG/ntre-zoo")                                               # ['create_model', 'ntrenet']
    model = torch.hub.load("ORG/ntre-zoo", "ntrenet", "ntrenet_tiny.synthetic_fold0")  # + from_pretrained keywords
    model = torch.hub.load("ORG/ntre-zoo", "create_model", "resnet50")          # untrained, to train

torch.hub puts the checkout on ``sys.path`` while it loads, so the ``ntre_zoo`` package beside this file is used
without installing it. It is imported inside the entry points: ``torch.hub.list`` needs none of ``dependencies``,
and torch.hub's check names a missing one before an import fails.
"""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    from typing import Any

    from ntre_zoo import NTRENet

#: The import names of setup.cfg's ``install_requires`` (``tests/test_hubconf.py`` keeps them equal).
dependencies = ["torch", "torchvision", "timm", "huggingface_hub", "safetensors", "PIL", "numpy", "tqdm"]


def ntrenet(name_or_path: str | None = None, **kwargs: Any) -> NTRENet:
    """A pretrained NTRENet in eval mode: ``ntre_zoo.from_pretrained(name_or_path, **kwargs)``.

    Args:
        name_or_path: a zoo name (``ntrenet_resnet50.pascal5i_fold0``; ``ntre_zoo.list_models()`` lists them),
            ``hf-hub:<repo_id>[@<revision>]``, or a directory written by ``save_pretrained``.
        **kwargs: ``from_pretrained``'s keywords: ``revision``, ``cache_dir``, ``force_download``, ``token``,
            ``local_files_only`` (as huggingface_hub spells them), ``device``, ``backbone``/``dataset``/``fold``/
            ``shot`` instead of a name, and load-time overrides such as ``test_size``.

    Raises:
        UnknownModelError: an unknown name, with the closest names.
        WeightsUnavailableError: an unpublished entry (saying which command makes it) or unobtainable weights.
    """
    from ntre_zoo import from_pretrained

    return from_pretrained(name_or_path, **kwargs)


def create_model(backbone: str = "resnet50", **kwargs: Any) -> NTRENet:
    """An untrained NTRENet (frozen backbone, random head), to train: ``ntre_zoo.create_model(backbone, **kwargs)``.

    Args:
        backbone: ``resnet50``, ``resnet101`` or ``vgg16_bn``.
        **kwargs: ``shot``, ``pretrained_backbone`` (timm's ImageNet weights, from the Hub), ``device``, and
            ``ModelConfig`` fields (``reduce_dim``, ``test_size`` ...).
    """
    from ntre_zoo import create_model as build

    return build(backbone, **kwargs)
