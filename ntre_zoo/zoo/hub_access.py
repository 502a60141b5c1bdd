"""Fail-fast Hub checks for runs that will need the Hub: offline mode, a reachable endpoint, a token that can write.

``huggingface_hub`` retries an unreachable endpoint with backoff (about 25 s when the connection is refused,
over a minute when the host never answers). A training run that needs the Hub later (timm backbone weights,
``--push-to-hub``) and ``ntre-zoo publish`` check once, with a short timeout, before any work starts, and the
error says what to do instead.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from huggingface_hub import constants as hf_constants

from ..errors import HubAccessError
from .download import _offline, resolve_endpoint

__all__ = ["HUB_TIMEOUT_S", "check_hub_reachable", "check_write_access"]

#: Seconds one reachability request may take before the Hub counts as unreachable.
HUB_TIMEOUT_S = 5.0
_WRITE_ROLES = ("admin", "write", "contributor")


def check_hub_reachable(purpose: str, fix: str, *, endpoint: str | None = None, timeout: float | None = None) -> str:
    """Return the endpoint URL once one request (any HTTP answer) shows the Hub can be reached.

    Args:
        purpose: what needs the Hub, for the message (e.g. ``"--backbone-weights timm"``).
        fix: what to do instead, appended to the message.
        endpoint: the Hub or a mirror (default ``HF_ENDPOINT``, else huggingface.co).
        timeout: seconds before the endpoint counts as unreachable (default :data:`HUB_TIMEOUT_S`).

    Raises:
        HubAccessError: downloads are off (``HF_HUB_OFFLINE=1``), or no answer within ``timeout``.
    """
    url = resolve_endpoint(endpoint) or hf_constants.ENDPOINT.rstrip("/")
    timeout = HUB_TIMEOUT_S if timeout is None else timeout
    if _offline():
        raise HubAccessError(f"{purpose} needs the Hugging Face Hub, but HF_HUB_OFFLINE=1 turns it off. {fix}")
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/api/whoami-v2", method="HEAD"), timeout=timeout):
            pass
    except urllib.error.HTTPError:
        pass  # an HTTP status, even 401 or 404, means the endpoint answered
    except (OSError, ValueError) as error:  # URLError, refused connections, timeouts, a malformed URL
        reason = getattr(error, "reason", error)
        raise HubAccessError(
            f"{purpose} needs the Hugging Face Hub, but {url} did not answer within {timeout:g} s ({reason}). "
            f"{fix} (A mirror: set HF_ENDPOINT.)"
        ) from error
    return url


def _scoped_write(token: Mapping[str, Any], namespace: str, repo_id: str) -> bool:
    scopes = (token.get("fineGrained") or {}).get("scoped") or []
    return any(
        (scope.get("entity") or {}).get("name") in (namespace, repo_id) and "repo.write" in scope.get("permissions", [])
        for scope in scopes
    )


def check_write_access(repo_id: str, *, token: str | None = None, endpoint: str | None = None) -> str:
    """Check, without writing anything, that the token may create and push to ``repo_id``; return the user name.

    Raises:
        HubAccessError: no token, an invalid token, a read-only token, or a namespace the user cannot write to.
        ValueError: ``repo_id`` is not ``owner/name``.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    namespace, sep, name = repo_id.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"repo_id must be 'owner/name' (a user or organisation, then a name), got {repo_id!r}.")
    login = "Log in with `hf auth login` (a token with write access), set HF_TOKEN, or pass --token."
    try:
        info = HfApi(endpoint=resolve_endpoint(endpoint), token=token).whoami()
    except LocalTokenNotFoundError as error:
        raise HubAccessError(f"Uploading to {repo_id} needs a Hugging Face token; none was found. {login}") from error
    except HfHubHTTPError as error:
        raise HubAccessError(f"The Hub refused the token ({error}). {login}") from error
    user = str(info.get("name"))
    access = (info.get("auth") or {}).get("accessToken") or {}
    role = access.get("role", "write")
    if role == "read" or (role == "fineGrained" and not _scoped_write(access, namespace, repo_id)):
        raise HubAccessError(
            f"The token of {user!r} ({access.get('displayName', 'unnamed')}, role {role!r}) cannot write to {repo_id}. "
            f"{login}"
        )
    orgs = {o.get("name"): o.get("roleInOrg") for o in info.get("orgs") or []}
    if namespace != user and orgs.get(namespace) not in _WRITE_ROLES:
        member = f"your role there is {orgs[namespace]!r}" if namespace in orgs else f"{user!r} is not a member"
        raise HubAccessError(
            f"{user!r} cannot create repositories in {namespace!r} ({member}). Use --repo-id {user}/{name}, or ask an "
            f"admin of {namespace!r} for the write role."
        )
    return user
