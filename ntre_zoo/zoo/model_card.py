"""The ``README.md`` model card written next to saved weights (the Hub shows it as the repository page)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["render_model_card"]

_CITATION = """@inproceedings{liu2022ntrenet,
  title     = {Learning Non-target Knowledge for Few-shot Semantic Segmentation},
  author    = {Liu, Yuanwei and Liu, Nian and Cao, Qinglong and Yao, Xiwen and Han, Junwei and Shao, Ling},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}"""

_DATASETS = {"pascal5i": "PASCAL-5i", "coco20i": "COCO-20i", "fss1000": "FSS-1000", "synthetic": "synthetic"}
#: Metadata the card shows in lines of its own; the rest goes under "Other metadata".
_SHOWN = frozenset(("name", "dataset", "fold", "protocol", "train_classes", "test_classes", "metrics"))
_SHOWN |= {"paper_metrics", "backbone_init"}
#: Commands kept in the metadata and the measured metrics; the card shows them in their own section.
_COMMANDS = ("command", "train_command")


def _metrics_table(metrics: Mapping[str, Any]) -> list[str]:
    groups = {k: metrics[k] for k in ("reference", "measured") if isinstance(metrics.get(k), Mapping)}
    flat = {k: v for k, v in metrics.items() if k not in groups and k not in _COMMANDS}
    rows = [
        f"| {group} | {key} | {value} |"
        for group, values in [*groups.items(), ("recorded", flat)]
        for key, value in values.items()
    ]
    if not rows:
        return ["No metrics were recorded for these weights."]
    return ["| kind | metric | value |", "|---|---|---|", *rows]


def _shots(metrics: Mapping[str, Any]) -> list[int]:
    return sorted({int(k[len("miou_") : -len("shot")]) for k in metrics if re.fullmatch(r"miou_\d+shot", k)})


def _comparison(measured: Mapping[str, Any], paper: Mapping[str, Any]) -> list[str]:
    """Measured mIoU per shot beside the paper's, when both exist."""
    rows = [f"| {k}-shot | {measured[f'miou_{k}shot']} | {paper.get(f'miou_{k}shot', '-')} |" for k in _shots(measured)]
    if not rows or not paper:
        return []
    source = paper.get("source", "the paper")
    return ["", f"Compared with {source}:", "", "| shots | measured mIoU | paper mIoU |", "|---|---|---|", *rows]


def _front_matter(name: str, backbone: str, meta: Mapping[str, Any]) -> str:
    """Hugging Face card metadata: library, task, tags, dataset, license and a ``model-index`` with the measured
    mIoU and FB-IoU per shot (numbers of ``ntre-zoo evaluate``, in percent), which the Hub shows as results."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset, fold = meta.get("dataset"), meta.get("fold")
    metrics = dict(meta.get("metrics") or {})
    results = []
    for k in _shots(metrics):
        for key, metric_type, label in (("miou", "mean_iou", "mIoU"), ("fb_iou", "fb_iou", "FB-IoU")):
            if f"{key}_{k}shot" in metrics:
                result = EvalResult(
                    task_type="image-segmentation",
                    task_name=f"Few-shot semantic segmentation ({k}-shot)",
                    dataset_type=str(dataset),
                    dataset_name=f"{_DATASETS.get(str(dataset), dataset)} fold {fold}",
                    dataset_split=f"fold{fold}",
                    dataset_args={"shot": k, "episodes": metrics.get("episodes"), "seeds": metrics.get("seeds")},
                    metric_type=metric_type,
                    metric_value=metrics[f"{key}_{k}shot"],
                    metric_name=f"{label} ({k}-shot)",
                )
                results.append(result)
    tags = ["few-shot-segmentation", "ntrenet", backbone, *([str(dataset)] if dataset else [])]
    data = ModelCardData(
        library_name="ntre-zoo",
        license="apache-2.0",
        pipeline_tag="image-segmentation",
        tags=tags,
        datasets=[str(dataset)] if dataset else None,
        model_name=name,
        eval_results=results or None,
    )
    return f"---\n{data.to_yaml()}\n---"


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
    lines = [
        _front_matter(name, backbone, meta),
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
    init = meta.get("backbone_init")
    if init:
        origin = f"{init.get('source')} (sha256 {init.get('sha256')})" if init.get("source") else "random weights"
        lines.append(f"- Backbone initialisation: {init.get('kind')}, {origin}")
    machine = (meta.get("training") or {}).get("environment")
    if machine:
        numerics = " ".join(f"{k}={v}" for k, v in (machine.get("numerics") or {}).items())
        lines.append(
            f"- Trained on: {machine.get('gpu') or machine.get('cpu')} ({machine.get('device')}; CPU kernels "
            f"{machine.get('cpu_capability')}, {machine.get('threads')} threads; torch {machine.get('torch')}"
            + (f"; {numerics}" if numerics else "")
            + "). The same recipe on another CPU trains the same parameters under the pinned kernels, and the same"
            " bytes only on a CPU that computes as this one (docs/reproducing.md)."
        )
    extra = {k: v for k, v in meta.items() if k not in _SHOWN and k not in _COMMANDS}
    if extra:
        lines += ["", "Other metadata:", "", "```json", json.dumps(extra, indent=2, default=str), "```"]
    metrics = meta.get("metrics") or {}
    lines += ["", "## Metrics", "", *_metrics_table(metrics), *_comparison(metrics, meta.get("paper_metrics") or {})]
    commands: dict[str, str] = {}  # command -> label; a training export records its command twice
    for label, command in (
        ("Training", meta.get("command")),
        ("Training", metrics.get("train_command")),
        ("Evaluation", metrics.get("command")),
    ):
        if command:
            commands.setdefault(str(command), label)
    if commands:
        lines += ["", "## Commands", ""]
        for command, label in commands.items():
            lines += [f"{label}:", "", "```bash", command, "```", ""]
    else:
        lines.append("")
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
