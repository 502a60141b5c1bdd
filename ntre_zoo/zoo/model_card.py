"""The ``README.md`` model card written next to saved weights (the Hub shows it as the repository page)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["render_model_card"]

_CITATION = """@inproceedings{liu2022ntrenet,
  title     = {Learning Non-target Knowledge for Few-shot Semantic Segmentation},
  author    = {Liu, Yuanwei and Liu, Nian and Cao, Qinglong and Yao, Xiwen and Han, Junwei and Shao, Ling},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}"""

_DATASETS = {"pascal5i": "PASCAL-5i", "coco20i": "COCO-20i", "fss1000": "FSS-1000"}


def _metrics_table(metrics: Mapping[str, Any]) -> list[str]:
    groups = {k: metrics[k] for k in ("reference", "measured") if isinstance(metrics.get(k), Mapping)}
    flat = {k: v for k, v in metrics.items() if k not in groups}
    rows = [
        f"| {group} | {key} | {value} |"
        for group, values in [*groups.items(), ("recorded", flat)]
        for key, value in values.items()
    ]
    if not rows:
        return ["No metrics were recorded for these weights."]
    return ["| kind | metric | value |", "|---|---|---|", *rows]


def render_model_card(config: Mapping[str, Any], repo_id: str = "") -> str:
    """Markdown model card for a saved model.

    Args:
        config: the ``config.json`` dict (``model_config``, ``preprocessing``, ``metadata``).
        repo_id: the Hub repository, for the loading snippet (a local directory is shown without it).
    """
    model_config: dict[str, Any] = dict(config["model_config"])
    meta: dict[str, Any] = dict(config.get("metadata") or {})
    pre: dict[str, Any] = dict(config["preprocessing"])
    backbone = model_config["backbone"]["name"]
    dataset = meta.get("dataset")
    fold = meta.get("fold")
    name = meta.get("name") or "ntrenet_" + backbone + (f".{dataset}_fold{fold}" if dataset is not None else "")
    front = [
        "---",
        "library_name: ntre-zoo",
        "license: apache-2.0",
        "pipeline_tag: image-segmentation",
        "tags:",
        "- few-shot-segmentation",
        "- ntrenet",
        f"- {backbone}",
    ]
    if dataset:
        front.append(f"- {dataset}")
    front.append("---")
    lines = [
        *front,
        "",
        f"# {name}",
        "",
        'NTRENet few-shot semantic segmentation (Liu et al., CVPR 2022, "Learning Non-target Knowledge for '
        'Few-shot Semantic Segmentation"), reimplemented in ntre-zoo on a frozen '
        f"timm `{backbone}` backbone.",
        "",
        "## Training",
        "",
    ]
    lines.append(f"- Benchmark: {_DATASETS.get(str(dataset), dataset) or 'not recorded'}")
    lines.append(f"- Fold: {fold if fold is not None else 'not recorded'}")
    lines.append(
        f"- Protocol: {meta.get('protocol') or 'not recorded'} (lists, episodes and preprocessing; docs/evaluation.md)"
    )
    lines.append(f"- Shots at training: {model_config.get('shot')}")
    for key, label in (("train_classes", "Train classes"), ("test_classes", "Test classes (unseen during training)")):
        if meta.get(key):
            lines.append(f"- {label}: {', '.join(map(str, meta[key]))}")
    shown = {"name", "dataset", "fold", "protocol", "train_classes", "test_classes", "metrics"}
    extra = {k: v for k, v in meta.items() if k not in shown}
    if extra:
        lines += ["", "Other metadata:", "", "```json", json.dumps(extra, indent=2, default=str), "```"]
    lines += ["", "## Metrics", "", *_metrics_table(meta.get("metrics") or {}), ""]
    lines += [
        "## Preprocessing",
        "",
        f"RGB images scaled to [0, 1], normalised with mean {list(pre['mean'])} and std {list(pre['std'])}; "
        f"evaluation resizes onto a {pre['test_size']}x{pre['test_size']} canvas (spec section 8).",
        "",
    ]
    source = repr(f"hf-hub:{repo_id}") if repo_id else "'path/to/this/directory'"
    lines += [
        "## How to load",
        "",
        "```python",
        "import ntre_zoo",
        "",
        f"model = ntre_zoo.from_pretrained({source})",
        "masks = model.predict(support_imgs, support_masks, query)",
        "```",
        "",
        "## Citation",
        "",
        "```bibtex",
        _CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)
