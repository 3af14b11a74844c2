"""A stand-in Hugging Face hub on 127.0.0.1 for download tests (no test here).

It serves local folders as repositories through the endpoints huggingface_hub calls:

    GET  /api/models/{repo}[/revision/{rev}]   the model info, with file sizes (?blobs=True)
    HEAD /{repo}/resolve/{rev}/{path}          ETag / X-Repo-Commit / Content-Length
    GET  /{repo}/resolve/{rev}/{path}          the bytes, with Range (206 + Content-Range)
    GET  /api/whoami-v2                        who a Bearer token belongs to

A gated repository answers 401 (X-Error-Code: GatedRepo) to file requests without an accepted
token. `drop_after[path] = n` makes the next GET of that file close the connection after n
bytes (once), as a flaky network does. Every request is recorded in `requests`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GOOD_TOKEN = "hf_goodtoken_0123456789"


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    token: str | None


@dataclass
class Repo:
    root: Path
    gated: bool = False
    commit: str = COMMIT

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())


@dataclass
class HubServer:
    repos: dict[str, Repo] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    online: bool = True  # False: every request gets its connection closed (a network gone away)
    hold_after: dict[str, int] = field(default_factory=dict)  # GETs of that file stall after n bytes
    release: threading.Event = field(default_factory=threading.Event)  # ... until this is set

    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def file_gets(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/" + path)]


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a client that hung up: expected here
        pass


def _etag(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server_hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:] if auth.startswith("Bearer ") else None

    def _record(self) -> None:
        self.server_hub.requests.append(Request(self.command, unquote(urlsplit(self.path).path),
                                                self.headers.get("Range"), self._token()))

    def _json(self, status: int, data: object, headers: dict | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve()

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        self._record()
        hub = self.server_hub
        if not hub.online:
            self.close_connection = True
            self.connection.close()
            return
        path = unquote(urlsplit(self.path).path)
        if path == "/api/whoami-v2":
            if self._token() == GOOD_TOKEN:
                return self._json(200, {"name": "tester", "type": "user",
                                        "auth": {"accessToken": {"displayName": "app", "role": "read"}}})
            return self._json(401, {"error": "Invalid credentials in Authorization header"})
        if path.startswith("/api/models/"):
            return self._model_info(path[len("/api/models/"):])
        parts = path.lstrip("/").split("/", 4)
        if len(parts) == 5 and parts[2] == "resolve":
            return self._file("/".join(parts[:2]), parts[4])
        self._json(404, {"error": "not found"})

    def _model_info(self, rest: str) -> None:
        repo_id = "/".join(rest.split("/")[:2])
        repo = self.server_hub.repos.get(repo_id)
        if repo is None:
            return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        siblings = []
        for name in repo.files():
            file = repo.root / name
            entry = {"rfilename": name, "size": file.stat().st_size, "blobId": _etag(file)[:40]}
            if name.endswith(".safetensors"):
                entry["lfs"] = {"sha256": _etag(file), "size": file.stat().st_size, "pointerSize": 134}
            siblings.append(entry)
        self._json(200, {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                         "gated": "manual" if repo.gated else False, "siblings": siblings})

    def _file(self, repo_id: str, name: str) -> None:
        hub = self.server_hub
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        if repo.gated and self._token() != GOOD_TOKEN:
            return self._json(401, {"error": "Access to this model is restricted"},
                              {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to model is restricted"})
        file = repo.root / name
        if not file.is_file():
            return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        data = file.read_bytes()
        start = 0
        if (wanted := self.headers.get("Range")) and wanted.startswith("bytes="):
            start = int(wanted[6:].split("-")[0] or 0)
        if start >= len(data) and data:
            return self._json(416, {"error": "range not satisfiable"})
        body = data[start:]
        self.send_response(206 if start else 200)
        etag = _etag(file)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        drop = hub.drop_after.pop(name, None)
        if drop is not None:
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        hold = hub.hold_after.get(name)
        try:
            if hold is not None and hold < len(body):
                self.wfile.write(body[:hold])
                self.wfile.flush()
                hub.release.wait(timeout=60)
                body = body[hold:]
            self.wfile.write(body)
        except OSError:  # the client went away (a pause or a cancel)
            return


def start_hub(monkeypatch, tmp_path: Path, repos: dict[str, Repo]) -> HubServer:
    """Serve `repos` and point huggingface_hub at it: its endpoint, an empty cache and token file
    in `tmp_path`, online. Stop the server with `stop()` (tests use a fixture)."""
    from huggingface_hub import constants

    hub = HubServer(repos=dict(repos))
    url = hub.start()
    cache, home = tmp_path / "hf-cache", tmp_path / "hf-home"
    cache.mkdir()
    home.mkdir()
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    return hub
