"""A local stand-in for the Hugging Face Hub's file protocol, so download code runs in tests without a network.

It answers ``HEAD`` and ``GET`` on ``/{owner}/{name}/resolve/{revision}/{filename}`` the way
``huggingface_hub.hf_hub_download`` expects (huggingface_hub 2.x, ``get_hf_file_metadata``): ``X-Repo-Commit``,
``ETag`` and ``Content-Length`` headers; 404 with ``X-Error-Code`` ``RepoNotFound`` / ``RevisionNotFound`` /
``EntryNotFound`` otherwise. Every request is recorded, so tests can assert that cached loads make none.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


@dataclass
class _Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


class HubServer:
    """Serve in-memory model repositories on ``127.0.0.1`` (an ephemeral port) until :meth:`stop`."""

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Store ``files`` as a new commit of ``repo_id`` (moving ``branch`` to it); returns the commit id."""
        repo = self.repos.setdefault(repo_id, _Repo())
        commit = hashlib.sha1(repr((repo_id, len(repo.commits), sorted(files))).encode()).hexdigest()
        repo.commits[commit] = dict(files)
        repo.refs[branch] = commit
        return commit

    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _resolve(self, path: str) -> tuple[int, dict[str, str], bytes | None]:
        parts = [unquote(p) for p in path.split("?")[0].strip("/").split("/")]
        if len(parts) < 5 or parts[2] != "resolve":
            return 404, {"X-Error-Code": "RepoNotFound"}, None
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        repo = self.repos.get(repo_id)
        if repo is None:
            return 404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, None
        commit = repo.refs.get(revision, revision if revision in repo.commits else None)
        if commit is None:
            return 404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"}, None
        data = repo.commits[commit].get(filename)
        if data is None:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, None
        etag = hashlib.sha256(data).hexdigest()
        return 200, {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Content-Length": str(len(data))}, data

    def _handler_class(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, with_body: bool) -> None:
                with server._lock:
                    server.requests.append((self.command, self.path))
                status, headers, data = server._resolve(self.path)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if data is None:
                    self.send_header("Content-Length", "0")
                self.end_headers()
                if with_body and data is not None:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:
                self._answer(with_body=False)

            def do_GET(self) -> None:
                self._answer(with_body=True)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
