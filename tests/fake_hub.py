"""A loopback HTTP server for the download tests: plain files (with Range
support and fault injection) and the few Hugging Face Hub endpoints that
huggingface_hub 0.3x calls for ``model_info`` / ``hf_hub_download``:

* ``GET  /api/models/{owner}/{name}[/revision/{rev}]`` -> ``{"id", "sha", "siblings": [{"rfilename"}]}``
* ``HEAD /{owner}/{name}/resolve/{rev}/{file}`` -> ``X-Repo-Commit``, ``ETag``, ``Content-Length``
* ``GET  /{owner}/{name}/resolve/{rev}/{file}`` -> the bytes (Range honoured)

Unknown repos / revisions / files answer 404 with huggingface_hub's
``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound).  Bound to
127.0.0.1 on a free port; every connection has a socket timeout.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional


class _Handler(BaseHTTPRequestHandler):
    timeout = 5  # seconds per socket operation, so a stuck client cannot hold a thread
    server_version = "fake-hub/1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    # ------------------------------------------------------------------
    def _serve(self, head: bool):
        srv: FakeHub = self.server.hub
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        with srv.lock:
            srv.requests.append({"method": self.command, "path": path, "headers": dict(self.headers)})
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path)
        if m:
            if path in srv.status:
                return self._error(srv.status[path])
            return self._api(srv, m.group(1), m.group(2) or "main")
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and m.group(1) in srv.repos:
            return self._resolve(srv, m.group(1), m.group(2), m.group(3), head)
        if path in srv.redirects:
            self.send_response(302)
            self.send_header("Location", srv.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path in srv.files:
            data = srv.files[path]
            return self._file(srv, path, data, head, {"ETag": f'"{hashlib.sha256(data).hexdigest()}"'})
        return self._error(404, "RepoNotFound" if m else None)

    def _error(self, code: int, error_code: Optional[str] = None):
        body = json.dumps({"error": f"{code}"}).encode()
        self.send_response(code)
        if error_code:
            self.send_header("X-Error-Code", error_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _commit(self, srv, repo: str, rev: str) -> Optional[str]:
        refs, commits = srv.repos[repo]["refs"], srv.repos[repo]["commits"]
        return refs.get(rev) or (rev if rev in commits else None)

    def _api(self, srv, repo: str, rev: str):
        if repo not in srv.repos:
            return self._error(404, "RepoNotFound")
        sha = self._commit(srv, repo, rev)
        if sha is None:
            return self._error(404, "RevisionNotFound")
        files = srv.repos[repo]["commits"][sha]
        body = json.dumps({"id": repo, "modelId": repo, "sha": sha, "private": False,
                           "siblings": [{"rfilename": f} for f in sorted(files)]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if srv.after_api is not None:
            srv.after_api()

    def _resolve(self, srv, repo: str, rev: str, fname: str, head: bool):
        sha = self._commit(srv, repo, rev)
        if sha is None:
            return self._error(404, "RevisionNotFound")
        files = srv.repos[repo]["commits"][sha]
        if fname not in files:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Repo-Commit", sha)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = files[fname]
        etag = hashlib.sha256(data).hexdigest()
        return self._file(srv, f"/{repo}/resolve/{rev}/{fname}", data, head,
                          {"X-Repo-Commit": sha, "ETag": f'"{etag}"'})

    def _file(self, srv, key: str, data: bytes, head: bool, extra: Dict[str, str]):
        if key in srv.status:
            return self._error(srv.status[key])
        if key in srv.wrong_body:
            data = srv.wrong_body[key]
        total = len(data)
        start, code = 0, 200
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != extra.get("ETag"):
            rng = None  # RFC 9110 13.1.5: the representation changed, send all of it
        if rng and key not in srv.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else total - 1
                if start >= total:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{total}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, code = data[start:end + 1], 206
                if key in srv.bad_range:  # a broken server: says 206 but sends the file from byte 0
                    data, start = srv.files[key], 0
        self.send_response(code)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{total}")
        announced = srv.announce_length.get(key)
        if key not in srv.no_length:
            self.send_header("Content-Length", str(announced if announced is not None else len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if head:
            return
        cut = srv.cut_after.get(key)
        if cut is not None and (srv.cut_times.get(key, 1) > 0):
            srv.cut_times[key] = srv.cut_times.get(key, 1) - 1
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)


class FakeHub:
    """``with FakeHub() as hub``: ``hub.url`` is ``http://127.0.0.1:<port>``.

    Fault injection, keyed by request path: ``status[path] = 404``;
    ``cut_after[path] = n`` (send ``n`` bytes of the body then close, the next
    ``cut_times[path]`` requests; default once); ``wrong_body[path] = b"..."``;
    ``ignore_range`` (a set: answer 200 with the whole file);
    ``announce_length[path] = n`` (a false Content-Length); ``no_length`` (a set);
    ``redirects[path] = location`` (a 302); ``bad_range`` (a set: a 206 whose
    Content-Range starts at 0 whatever was asked); ``after_api`` (a callable).  Plain files carry a strong ETag
    (their sha256) and honour ``If-Range``.
    """

    def __init__(self):
        self.files: Dict[str, bytes] = {}
        self.repos: Dict[str, dict] = {}
        self.requests: List[dict] = []
        self.status: Dict[str, int] = {}
        self.cut_after: Dict[str, int] = {}
        self.cut_times: Dict[str, int] = {}
        self.wrong_body: Dict[str, bytes] = {}
        self.ignore_range: set = set()
        self.no_length: set = set()
        self.announce_length: Dict[str, int] = {}
        self.redirects: Dict[str, str] = {}
        self.bad_range: set = set()
        self.after_api = None  # called after each /api/models answer (to publish a commit mid-download)
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_file(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url + path

    def add_repo(self, repo_id: str, files: Dict[str, bytes], revision: str = "main",
                 commit: Optional[str] = None) -> str:
        """Publish ``files`` as one commit of ``repo_id`` reachable as ``revision``."""
        commit = commit or hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
        repo = self.repos.setdefault(repo_id, {"refs": {}, "commits": {}})
        repo["refs"][revision] = commit
        repo["commits"][commit] = dict(files)
        return commit

    def count(self, method: Optional[str] = None, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for r in self.requests
                       if (method is None or r["method"] == method) and r["path"].startswith(prefix))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
