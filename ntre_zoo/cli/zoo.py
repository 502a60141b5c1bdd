"""``ntre-zoo list|download|info|convert``: the checkpoints of the manifest and reference conversion."""

from __future__ import annotations

import argparse
import json

from ..model.config import BACKBONES
from .options import add_output


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--manifest", default=None, help="another checkpoints_manifest.json (default: the shipped one)")

    parser = subparsers.add_parser(
        "list",
        parents=[common],
        help="list the zoo's checkpoints",
        description="Lists the manifest's names with their status and paper mIoU.",
    )
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default: all)")
    parser.add_argument("--published", action="store_true", help="only checkpoints whose weights can be loaded")
    parser.set_defaults(handler=_list)

    hub = argparse.ArgumentParser(add_help=False, parents=[common])
    hub.add_argument("--cache-dir", default=None, help="huggingface_hub cache (default: HF_HUB_CACHE / HF_HOME)")
    hub.add_argument("--endpoint", default=None, help="Hub mirror (default: HF_ENDPOINT)")

    parser = subparsers.add_parser(
        "download",
        parents=[hub],
        help="download a checkpoint into the cache",
        description="Downloads a published checkpoint at its pinned revision and checks its sha256, or the "
        "config.json and model.safetensors of an hf-hub: repository (what from_pretrained then loads offline).",
    )
    parser.add_argument("name", help="a name from `ntre-zoo list`, or hf-hub:OWNER/REPO[@REVISION]")
    parser.set_defaults(handler=_download)

    parser = subparsers.add_parser("info", parents=[hub], help="show a checkpoint's manifest entry and cache state")
    parser.add_argument("name", help="a name from `ntre-zoo list`")
    parser.set_defaults(handler=_info)

    parser = subparsers.add_parser(
        "convert",
        help="convert a checkpoint of the authors' code (or an ImageNet backbone file)",
        description="Reads a checkpoint written by the reference NTRENet train.py (torch.load weights_only) and "
        "writes an ntre-zoo model directory (config.json, model.safetensors, README.md). With --imagenet, converts "
        "resnet{50,101}_v2.pth / vgg16_bn.pth into timm backbone keys instead.",
    )
    parser.add_argument("path", help="the .pth file")
    parser.add_argument("--backbone", required=True, choices=tuple(BACKBONES))
    add_output(parser, "output directory", required=True, old=("--out",))
    parser.add_argument("--shot", type=int, default=1, help="shot the checkpoint was trained with (default: 1)")
    parser.add_argument("--dataset", default=None, help="its benchmark, for the model card (pascal5i, coco20i)")
    parser.add_argument("--fold", type=int, default=None, help="fold it was trained on, for the model card")
    parser.add_argument("--imagenet", action="store_true", help="PATH is an ImageNet backbone file")
    parser.set_defaults(handler=_convert)


def _list(args: argparse.Namespace) -> int:
    from ..zoo.manifest import load_manifest

    manifest = load_manifest(args.manifest)
    names = manifest.names(args.pattern, published_only=args.published)
    if not names:
        print(f"No checkpoint matches {args.pattern!r}{' among published ones' if args.published else ''}.")
        return 0
    width = max(len(n) for n in names)
    print(f"{'name':<{width}}  {'status':<11}  paper mIoU 1/5-shot")
    for name in names:
        entry = manifest.entries[name]
        ref = entry.metrics["reference"]
        paper = f"{ref.get('miou_1shot', '-')} / {ref.get('miou_5shot', '-')}"
        print(f"{name:<{width}}  {entry.status:<11}  {paper}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from ..zoo.download import DownloadOptions
    from ..zoo.hub import download_hf_hub, fetch_entry
    from ..zoo.manifest import load_manifest

    if args.name.startswith("hf-hub:"):
        options = DownloadOptions(cache_dir=args.cache_dir, local_files_only=False, endpoint=args.endpoint, token=None)
        _, weights = download_hf_hub(args.name, options, manifest=args.manifest)
        print(f"{args.name}: config.json and weights cached at {weights.parent}")
        return 0
    entry = load_manifest(args.manifest).get(args.name)
    _, weights = fetch_entry(entry, cache_dir=args.cache_dir, endpoint=args.endpoint, manifest=args.manifest)
    print(f"{entry.name}: sha256 verified, weights at {weights}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..zoo.download import cached_path, default_cache_dir
    from ..zoo.manifest import load_manifest

    entry = load_manifest(args.manifest).get(args.name)
    print(json.dumps({entry.name: entry.to_dict()}, indent=2))
    print(f"status: {entry.status}")
    if entry.source == "package":
        weights, _ = entry.package_paths()
        print(f"location: shipped in the package at {weights} ({'present' if weights.is_file() else 'MISSING'})")
    elif not entry.published:
        print(
            "location: no weights released; train them (`ntre-zoo train`) or convert a reference checkpoint "
            "(`ntre-zoo convert`)."
        )
    else:
        repo_id, filename, revision = entry.hub.pinned()
        cached = cached_path(repo_id, filename, revision, args.cache_dir)
        cache = args.cache_dir or default_cache_dir()
        missing = f"location: not cached in {cache}; `ntre-zoo download {entry.name}`"
        print(f"location: cached at {cached}" if cached else missing)
    return 0


def _convert(args: argparse.Namespace) -> int:
    if args.imagenet:
        from pathlib import Path

        import safetensors.torch

        from ..zoo.convert import convert_imagenet_backbone

        state = convert_imagenet_backbone(args.path, args.backbone)
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{args.backbone}_imagenet.safetensors"
        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(target))
        print(
            f"wrote {len(state)} tensors in timm {args.backbone} layout to {target}; load with "
            "model.backbone.load_state_dict(safetensors.torch.load_file(...))"
        )
        return 0
    from ..zoo.convert import from_official_checkpoint

    model = from_official_checkpoint(args.path, args.backbone, shot=args.shot)
    metadata = {"converted_from": str(args.path), "origin": "reference NTRENet code (LIUYUANWEI98/NERTNet)"}
    if args.dataset is not None:
        metadata["dataset"] = args.dataset
    if args.fold is not None:
        metadata["fold"] = args.fold
    model.save_pretrained(args.output, metadata=metadata)
    print(f"converted {args.path} -> {args.output}; load with ntre_zoo.from_pretrained({str(args.output)!r})")
    return 0
