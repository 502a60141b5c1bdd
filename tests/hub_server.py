"""A local stand-in for the Hugging Face Hub's file protocol, so download and upload code runs in tests without
a network.

Downloads: ``HEAD`` and ``GET`` on ``/{owner}/{name}/resolve/{revision}/{filename}`` the way
``huggingface_hub.hf_hub_download`` expects (huggingface_hub 2.x, ``get_hf_file_metadata``): ``X-Repo-Commit``,
``ETag`` and ``Content-Length`` headers; 404 with ``X-Error-Code`` ``RepoNotFound`` / ``RevisionNotFound`` /
``EntryNotFound`` otherwise. A private repository (``add_commit(..., private=True)``) answers only a token of its
namespace (401 ``RepoNotFound`` otherwise, as the Hub does).

Uploads, as ``HfApi.whoami``, ``create_repo`` and ``upload_folder`` / ``create_commit`` call them:
``GET /api/whoami-v2`` (the tokens in :attr:`HubServer.tokens`; 401 otherwise), ``POST /api/repos/create``
(409 when the repository exists), ``POST /api/validate-yaml``, ``POST /api/models/{repo}/preupload/{revision}``
(every file ``regular``: content travels inside the commit, no LFS or Xet) and ``POST
/api/models/{repo}/commit/{revision}`` (the NDJSON commit; a write needs a token with write access to the
namespace). Every request is recorded, so tests can assert that cached loads, or refused uploads, make none.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


@dataclass
class _Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    private: bool = False


class HubServer:
    """Serve in-memory model repositories on ``127.0.0.1`` (an ephemeral port) until :meth:`stop`."""

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        #: token -> whoami-v2 answer; :meth:`add_user` fills it.
        self.tokens: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main", private: bool = False) -> str:
        """Store ``files`` as a new commit of ``repo_id`` (moving ``branch`` to it); returns the commit id.
        ``private`` makes a new repository private."""
        repo = self.repos.setdefault(repo_id, _Repo(private=private))
        commit = hashlib.sha1(repr((repo_id, len(repo.commits), sorted(files))).encode()).hexdigest()
        repo.commits[commit] = dict(files)
        repo.refs[branch] = commit
        return commit

    def add_user(self, token: str, name: str, *, role: str = "write", orgs: dict[str, str] | None = None) -> None:
        """Accept ``token`` as user ``name`` with a token ``role`` (``write``/``read``) and ``orgs``
        ``{org: roleInOrg}``."""
        self.tokens[token] = {
            "type": "user",
            "name": name,
            "orgs": [{"type": "org", "name": org, "roleInOrg": r} for org, r in (orgs or {}).items()],
            "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": role}},
        }

    def can_write(self, token: str | None, repo_id: str) -> bool:
        user = self.tokens.get(token or "")
        if user is None or user["auth"]["accessToken"]["role"] != "write":
            return False
        namespace = repo_id.split("/")[0]
        roles = {o["name"]: o["roleInOrg"] for o in user["orgs"]}
        return namespace == user["name"] or roles.get(namespace) in ("admin", "write")

    def can_read(self, token: str | None, repo_id: str) -> bool:
        repo = self.repos.get(repo_id)
        if repo is None or not repo.private:
            return True
        user = self.tokens.get(token or "")
        namespace = repo_id.split("/")[0]
        return user is not None and (namespace == user["name"] or namespace in {o["name"] for o in user["orgs"]})

    def uploads(self) -> list[tuple[str, str]]:
        """The write requests received (repository creation and commits)."""
        with self._lock:
            return [(m, p) for m, p in self.requests if m == "POST" and ("/commit/" in p or p.endswith("/create"))]

    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _resolve(self, path: str, token: str | None) -> tuple[int, dict[str, str], bytes | None]:
        parts = [unquote(p) for p in path.split("?")[0].strip("/").split("/")]
        if len(parts) < 5 or parts[2] != "resolve":
            return 404, {"X-Error-Code": "RepoNotFound"}, None
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        repo = self.repos.get(repo_id)
        if repo is None:
            return 404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, None
        if not self.can_read(token, repo_id):
            return 401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, None
        commit = repo.refs.get(revision, revision if revision in repo.commits else None)
        if commit is None:
            return 404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"}, None
        data = repo.commits[commit].get(filename)
        if data is None:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, None
        etag = hashlib.sha256(data).hexdigest()
        return 200, {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Content-Length": str(len(data))}, data

    def _api(self, method: str, path: str, token: str | None, body: bytes) -> tuple[int, dict]:
        """Answer an ``/api/...`` request: ``(status, JSON body)``."""
        parts = [unquote(p) for p in path.split("?")[0].strip("/").split("/")]
        if method == "GET" and parts == ["api", "whoami-v2"]:
            user = self.tokens.get(token or "")
            return (200, user) if user else (401, {"error": "Invalid credentials in Authorization header"})
        if method == "HEAD":
            return 404, {}
        if parts == ["api", "validate-yaml"]:
            return 200, {}
        if parts == ["api", "repos", "create"]:
            payload = json.loads(body or b"{}")
            repo_id = f"{payload.get('organization') or self.tokens.get(token or '', {}).get('name')}/{payload['name']}"
            if not self.can_write(token, repo_id):
                return 403, {"error": f"You don't have the rights to create a model under {repo_id.split('/')[0]}"}
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
            self.repos[repo_id] = _Repo()
            return 200, {"url": f"{self.url}/{repo_id}"}
        if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
            repo_id, revision = "/".join(parts[2:4]), parts[5]
            if repo_id not in self.repos:
                return 404, {"error": "Repository not found"}
            if not self.can_write(token, repo_id):
                return 403, {"error": "You don't have the rights to write to this repository"}
            if parts[4] == "preupload":
                files = json.loads(body)["files"]
                return 200, {
                    "files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                }
            return self._commit(repo_id, revision, body)
        return 404, {"error": f"no such endpoint: {method} {path}"}

    def _commit(self, repo_id: str, revision: str, body: bytes) -> tuple[int, dict]:
        repo = self.repos[repo_id]
        files = dict(repo.commits.get(repo.refs.get(revision, ""), {}))
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                files.pop(item["value"]["path"], None)
            elif item["key"] != "header":
                return 400, {"error": f"this test server stores regular files only, got {item['key']!r}"}
        commit = self.add_commit(repo_id, files, branch=revision)
        return 200, {"commitOid": commit, "commitUrl": f"{self.url}/{repo_id}/commit/{commit}"}

    def _handler_class(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _token(self) -> str | None:
                auth = self.headers.get("Authorization") or ""
                return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

            def _answer(self, with_body: bool) -> None:
                with server._lock:
                    server.requests.append((self.command, self.path))
                status, headers, data = server._resolve(self.path, self._token())
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if data is None:
                    self.send_header("Content-Length", "0")
                self.end_headers()
                if with_body and data is not None:
                    self.wfile.write(data)

            def _answer_api(self) -> None:
                with server._lock:
                    server.requests.append((self.command, self.path))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload = server._api(self.command, self.path, self._token(), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status >= 400 and "error" in payload:
                    self.send_header("X-Error-Message", payload["error"])
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def do_HEAD(self) -> None:
                self._answer_api() if self.path.startswith("/api/") else self._answer(with_body=False)

            def do_GET(self) -> None:
                self._answer_api() if self.path.startswith("/api/") else self._answer(with_body=True)

            def do_POST(self) -> None:
                self._answer_api()

            def log_message(self, *args: object) -> None:
                pass

        return Handler
