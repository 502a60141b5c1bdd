"""``ntre-zoo publish``: upload a reproduced variant to the Hub and write its manifest entry; see
docs/reproducing.md."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "publish",
        help="upload OUT/VARIANT to the Hub and write its manifest entry",
        description="Checks the directory, then the token and write access, uploads the directory as one commit, and "
        "writes the entry (repo, commit, sha256, measured metrics) into checkpoints_manifest.json, printing the diff.",
    )
    p.add_argument("directory", metavar="DIR", help="OUT/VARIANT from `ntre-zoo reproduce` (or a save_pretrained dir)")
    p.add_argument("--repo-id", required=True, help="owner/name on the Hub; use the variant's name as name")
    p.add_argument("--manifest", help="the manifest to update (default: the package's checkpoints_manifest.json)")
    p.add_argument("--name", help="the zoo name, if the directory does not record it")
    p.add_argument("--dry-run", action="store_true", help="check everything and print the diff; upload nothing")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or `hf auth login`)")
    p.add_argument("--endpoint", help="Hub endpoint or mirror (default: HF_ENDPOINT)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.set_defaults(handler=_publish)


def _publish(args: argparse.Namespace) -> int:
    from ..zoo.publish import publish

    publish(
        args.directory,
        args.repo_id,
        manifest=args.manifest,
        name=args.name,
        dry_run=args.dry_run,
        token=args.token,
        endpoint=args.endpoint,
        private=args.private or None,
    )
    return 0
