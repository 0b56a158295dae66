"""Resolve a checkpoint *source* — a local path, a Hugging Face Hub id or an
HTTP(S) URL — to local files.  Nothing here parses or runs a checkpoint: it
only fetches bytes; :mod:`mobilevit.checkpoint` reads them later.

:func:`resolve` tells the three apart with one rule, checked in this order:

1. ``hf-hub:owner/name[@revision]`` is always a hub id (timm's spelling).
2. ``http://`` or ``https://`` is a URL (case-insensitive scheme).
3. A string naming an existing file or folder is that local path, even when it
   also looks like ``owner/name`` — a local path is never sent to the Hub.
4. ``owner/name`` — exactly one ``/``, each part starting with a letter or
   digit and made of letters, digits, ``_``, ``-``, ``.`` (no ``..`` or ``--``),
   96 characters at most, not ending in a checkpoint extension (``.pt``,
   ``.pth``, ``.bin``, ``.safetensors``, ``.ckpt``, ``.tar``, ``.json``) — is a
   hub id.  This is transformers' rule too: a *missing* relative folder spelled
   like ``owner/name`` is looked up on the Hub, and the error then says that
   no such local folder exists either.
5. Anything else is a missing local path: :class:`FileNotFoundError`.

Hub ids go through ``huggingface_hub`` (``pip install "mobilevit[hub]"``) and
its cache, exactly as transformers and timm use it: ``HF_HOME`` /
``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` (or
``TRANSFORMERS_OFFLINE``), ``HF_TOKEN`` / ``huggingface-cli login`` or
``token=``.  These variables are read when :func:`resolve` is called, not when
``huggingface_hub`` was imported.  The result is the cache's snapshot folder
for the resolved commit, holding ``config.json`` (transformers' or timm's),
``preprocessor_config.json`` when the repo has one, and ONE weights file, the
first of :data:`HUB_WEIGHTS` the repo has (else its only top-level
``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` file).

URLs are downloaded with the standard library into our own cache
(:func:`cache_root`): ``<root>/url/<first 16 hex of sha256(url)>/<file name>``,
so two URLs with the same basename never collide.  A download goes to
``<file name>.part`` in that folder (resumed with an HTTP ``Range`` request
when a previous attempt was interrupted; a server that ignores the range
restarts the file), is fsynced, checked against ``sha256=`` and the size cap,
and only then renamed over the final name with :func:`os.replace`: the final
name never holds a partial file.  ``HF_HUB_OFFLINE=1`` or
``MOBILEVIT_OFFLINE=1`` makes both paths cache-only.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .checkpoint import CheckpointError

__all__ = ["RemoteError", "RemoteHTTPError", "ChecksumError", "HubFiles", "resolve", "resolve_hub",
           "download_url", "parse_hub_id", "is_hub_id", "cache_root", "url_cache_path", "default_hub_id",
           "HUB_WEIGHTS", "DEFAULT_MAX_BYTES"]

#: Weights file names looked for in a hub repo, most preferred first.  The
#: order matches the folder loader's (:mod:`mobilevit.hub`): safetensors first.
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors",
               "open_clip_pytorch_model.bin")
_HUB_CONFIGS = ("config.json", "preprocessor_config.json")
_CKPT_EXT = (".safetensors", ".pt", ".pth", ".bin")
_NOT_A_REPO_EXT = _CKPT_EXT + (".ckpt", ".tar", ".json")

#: Largest file a URL download accepts unless ``max_bytes=`` says otherwise.
DEFAULT_MAX_BYTES = 2 << 30
_CHUNK = 1 << 20
_INSTALL_HINT = 'pip install "mobilevit[hub]"  (or pip install huggingface_hub)'


class RemoteError(CheckpointError):
    """A checkpoint could not be fetched: no ``huggingface_hub``, offline with
    nothing cached, the network or server failed, or the download was refused
    (size cap).  A :class:`~mobilevit.checkpoint.CheckpointError`, hence a
    ``ValueError``."""


class RemoteHTTPError(RemoteError):
    """The server answered with an error status; ``.url`` and ``.status``."""

    def __init__(self, message: str, url: str, status: int):
        super().__init__(message)
        self.url = url
        self.status = status


class ChecksumError(RemoteError):
    """The downloaded bytes do not have the expected sha256; nothing was cached."""


# ----------------------------------------------------------------- the rule

_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_REPO_RE = re.compile(rf"^({_REPO_PART})/({_REPO_PART})$")
_HF_PREFIX = "hf-hub:"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _offline() -> bool:
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or _env_true("MOBILEVIT_OFFLINE")


def _valid_repo_id(repo_id: str) -> bool:
    return (len(repo_id) <= 96 and _REPO_RE.match(repo_id) is not None
            and ".." not in repo_id and "--" not in repo_id)


def is_hub_id(source) -> bool:
    """True if :func:`resolve` would look ``source`` up on the Hub (rules 1, 3, 4
    of the module docstring); an existing local path is never a hub id."""
    if not isinstance(source, str):
        return False
    if source.startswith(_HF_PREFIX):
        return True
    if _is_url(source) or os.path.exists(os.path.expanduser(source)):
        return False
    return _valid_repo_id(source) and not source.lower().endswith(_NOT_A_REPO_EXT)


def parse_hub_id(source: str, revision: Optional[str] = None):
    """``"hf-hub:owner/name@rev"`` / ``"owner/name"`` -> ``(repo_id, revision)``;
    ``revision=`` and an ``@rev`` suffix may not disagree."""
    s = source[len(_HF_PREFIX):] if source.startswith(_HF_PREFIX) else source
    at = None
    if "@" in s:
        s, at = s.split("@", 1)
        if not at:
            raise ValueError(f"{source!r}: empty revision after '@'")
    if not _valid_repo_id(s):
        raise ValueError(f"{source!r} is not a hub id: expected owner/name (letters, digits, '_', '-', '.'; "
                         f"at most 96 characters)")
    if at is not None and revision is not None and at != revision:
        raise ValueError(f"{source!r} names revision {at!r} but revision={revision!r} was passed")
    return s, (revision if revision is not None else at)


def _is_url(s: str) -> bool:
    return s[:8].lower().startswith(("http://", "https://"))


def resolve(source, *, revision: Optional[str] = None, sha256: Optional[str] = None,
            cache_dir: Optional[str] = None, token=None, progress: Optional[bool] = None,
            timeout: float = 30.0, max_bytes: int = DEFAULT_MAX_BYTES,
            local_files_only: Optional[bool] = None) -> str:
    """A local path for ``source`` (see the module docstring for the rule):

    * an existing path is returned unchanged (``~`` expanded);
    * a hub id -> the snapshot folder (:func:`resolve_hub`);
    * a URL -> the cached file (:func:`download_url`).

    ``cache_dir`` is the Hugging Face cache for hub ids (as in transformers and
    timm) and mobilevit's URL cache for URLs.  ``revision`` (branch, tag or
    commit) applies to hub ids only, ``sha256`` to URLs only (pin a hub
    checkpoint with ``revision=<commit>``).  ``local_files_only=True`` (or the
    offline variables) never touches the network.
    """
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise TypeError(f"a checkpoint source is a path, a hub id or a URL, got {type(source).__name__}")
    if _is_url(source):
        if revision is not None:
            raise ValueError("revision= applies to hub ids, not to URLs")
        return download_url(source, sha256=sha256, cache_dir=cache_dir, progress=progress, timeout=timeout,
                            max_bytes=max_bytes, local_files_only=local_files_only)
    if not source.startswith(_HF_PREFIX):
        path = os.path.expanduser(source)
        if os.path.exists(path):
            return path
        if not is_hub_id(source):
            raise FileNotFoundError(f"no such file or folder: {source} (nor a hub id owner/name, "
                                    f"'hf-hub:owner/name' or an http(s) URL)")
    if sha256 is not None:
        raise ValueError("sha256= applies to URLs; pin a hub checkpoint with revision=<commit sha>")
    repo_id, rev = parse_hub_id(source, revision)
    return resolve_hub(repo_id, revision=rev, cache_dir=cache_dir, token=token, timeout=timeout,
                       local_files_only=local_files_only).folder


# ---------------------------------------------------------------------- hub

@dataclass(frozen=True)
class HubFiles:
    """What :func:`resolve_hub` fetched: all files live in ``folder``."""
    repo_id: str
    revision: str
    commit: Optional[str]
    folder: str
    weights: str
    config: Optional[str]
    preprocessor_config: Optional[str]


def _hf():
    try:
        import huggingface_hub
    except ImportError as e:
        raise RemoteError(f"loading a checkpoint from the Hugging Face Hub needs huggingface_hub: {_INSTALL_HINT}; "
                          f"or download the repo yourself and pass its local folder") from e
    return huggingface_hub


def _hub_cache_dir(cache_dir: Optional[str]) -> Optional[str]:
    # Read at call time, as huggingface_hub reads them at import time.
    if cache_dir is not None:
        return os.fspath(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None  # huggingface_hub's own default


def _pick_weights(files: Sequence[str], repo: str) -> str:
    top = [f for f in files if "/" not in f]
    for name in HUB_WEIGHTS:
        if name in top:
            return name
    cands = sorted(f for f in top if f.lower().endswith(_CKPT_EXT))
    if len(cands) == 1:
        return cands[0]
    if any(f.endswith(".index.json") for f in top):
        raise RemoteError(f"{repo}: sharded checkpoints (*.index.json) are not supported; MobileViT fits one file")
    raise RemoteError(f"{repo}: no weights file ({', '.join(HUB_WEIGHTS)})"
                      + (f" and several candidates {cands}" if cands else f"; the repo holds {sorted(top)}"))


def resolve_hub(repo_id: str, revision: Optional[str] = None, *, cache_dir: Optional[str] = None, token=None,
                timeout: float = 30.0, local_files_only: Optional[bool] = None) -> HubFiles:
    """Fetch ``config.json``, ``preprocessor_config.json`` (when present) and one
    weights file of ``repo_id`` at ``revision`` (default ``main``) into the
    Hugging Face cache, all from one commit.  Offline, or when the Hub cannot be
    reached, the cached snapshot for ``revision`` is used if it holds a weights
    file; otherwise :class:`RemoteError` says what to do."""
    hf = _hf()
    from huggingface_hub import utils as hf_errors  # the error classes, exported here since 0.1x
    revision = revision or "main"
    where = f"{repo_id}@{revision}"
    cache = _hub_cache_dir(cache_dir)
    endpoint = (os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
    offline = _offline() if local_files_only is None else bool(local_files_only)
    try:
        import huggingface_hub.constants as hf_const
        offline = offline or bool(hf_const.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - very old huggingface_hub
        pass
    if offline:
        return _from_hub_cache(hf, repo_id, revision, cache, reason="offline mode (HF_HUB_OFFLINE / "
                               "MOBILEVIT_OFFLINE / local_files_only) is on")

    api = hf.HfApi(endpoint=endpoint, token=token, library_name="mobilevit", library_version=_version())
    try:
        info = api.model_info(repo_id, revision=revision, timeout=timeout)
    except hf_errors.RevisionNotFoundError as e:
        raise RemoteError(f"{where}: revision {revision!r} not found on {endpoint or 'the Hub'}") from e
    except hf_errors.GatedRepoError as e:
        raise RemoteError(f"{where}: the repo is gated; accept its terms on the Hub and pass token= "
                          f"(or set HF_TOKEN / run `huggingface-cli login`)") from e
    except hf_errors.RepositoryNotFoundError as e:
        raise RemoteError(f"{repo_id}: no such local folder, and no such repo on {endpoint or 'the Hub'} "
                          f"(or it is private: pass token= or set HF_TOKEN)") from e
    except Exception as e:
        if _is_network_error(e):  # connection refused, timeout, 5xx: fall back on the cache, as transformers does
            return _from_hub_cache(hf, repo_id, revision, cache,
                                   reason=f"the Hub ({endpoint or 'huggingface.co'}) could not be reached: {e}")
        if isinstance(e, hf_errors.HfHubHTTPError):
            raise RemoteError(f"{where}: the Hub refused the request: {e}") from e
        raise

    names = [s.rfilename for s in (info.siblings or [])]
    weights = _pick_weights(names, where)
    wanted = [f for f in _HUB_CONFIGS if f in names] + [weights]
    paths: Dict[str, str] = {}
    for fname in wanted:
        try:
            # revision (not info.sha) so that refs/<revision> is recorded in the cache and a later
            # offline call finds the snapshot; the commit check below keeps the files consistent.
            paths[fname] = hf.hf_hub_download(repo_id, fname, revision=revision, cache_dir=cache, token=token,
                                              endpoint=endpoint, etag_timeout=timeout,
                                              library_name="mobilevit", library_version=_version())
        except hf_errors.EntryNotFoundError as e:
            raise RemoteError(f"{where}: {fname} is listed but could not be downloaded (404)") from e
        except Exception as e:
            if _is_network_error(e) or isinstance(e, (hf_errors.LocalEntryNotFoundError, hf_errors.HfHubHTTPError)):
                raise RemoteError(f"{where}: downloading {fname} failed: {e}") from e
            raise
    folders = {os.path.dirname(p) for p in paths.values()}
    if len(folders) != 1 or (info.sha and os.path.basename(next(iter(folders))) != info.sha):
        raise RemoteError(f"{where} changed while it was being downloaded (commit {info.sha}); run again")
    folder = folders.pop()
    return HubFiles(repo_id, revision, info.sha, folder, paths[weights], paths.get("config.json"),
                    paths.get("preprocessor_config.json"))


def _is_network_error(e: BaseException) -> bool:
    try:
        import requests
        net = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # pragma: no cover - huggingface_hub >= 1.0 uses httpx
        net = ()
    from huggingface_hub import utils as hf_errors  # the error classes, exported here since 0.1x
    if isinstance(e, net) or type(e).__name__ in ("OfflineModeIsEnabled", "ConnectError", "TimeoutException",
                                                  "ReadTimeout", "ConnectTimeout"):
        return True
    resp = getattr(e, "response", None)
    return isinstance(e, hf_errors.HfHubHTTPError) and resp is not None and resp.status_code >= 500


def _from_hub_cache(hf, repo_id: str, revision: str, cache: Optional[str], reason: str) -> HubFiles:
    found: Dict[str, str] = {}
    for fname in _HUB_CONFIGS + HUB_WEIGHTS:
        p = hf.try_to_load_from_cache(repo_id, fname, cache_dir=cache, revision=revision)
        if isinstance(p, str) and os.path.isfile(p):
            found[fname] = p
    weights = next((f for f in HUB_WEIGHTS if f in found), None)
    if weights is None and "config.json" in found:  # a repo whose weights have another name
        folder = os.path.dirname(found["config.json"])
        cands = sorted(f for f in os.listdir(folder) if f.lower().endswith(_CKPT_EXT))
        if len(cands) == 1:
            weights, found[cands[0]] = cands[0], os.path.join(folder, cands[0])
    if weights is None:
        raise RemoteError(f"{repo_id}@{revision}: {reason}, and no weights for it are in the Hugging Face cache "
                          f"({cache or 'the default HF_HOME/hub'}). Connect once (unset HF_HUB_OFFLINE / "
                          f"MOBILEVIT_OFFLINE) to fill the cache, or pass a local folder holding config.json "
                          f"and model.safetensors")
    folder = os.path.dirname(found[weights])
    found = {k: v for k, v in found.items() if os.path.dirname(v) == folder}
    return HubFiles(repo_id, revision, os.path.basename(folder), folder, found[weights], found.get("config.json"),
                    found.get("preprocessor_config.json"))


def _version() -> str:
    try:
        from ._version import __version__
        return __version__
    except ImportError:  # pragma: no cover - during package import
        return "0"


# ---------------------------------------------------------------------- URLs

def cache_root(cache_dir: Optional[str] = None) -> str:
    """mobilevit's download cache: ``cache_dir``, else ``$MOBILEVIT_CACHE``,
    else ``$XDG_CACHE_HOME/mobilevit``, else ``~/.cache/mobilevit``."""
    if cache_dir is not None:
        return os.path.expanduser(os.fspath(cache_dir))
    if os.environ.get("MOBILEVIT_CACHE"):
        return os.path.expanduser(os.environ["MOBILEVIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return os.path.join(os.path.expanduser(base), "mobilevit")


def _file_name(url: str) -> str:
    name = urllib.parse.unquote(os.path.basename(urllib.parse.urlsplit(url).path))
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name[:128] or "download"


def url_cache_path(url: str, cache_dir: Optional[str] = None) -> str:
    """Where :func:`download_url` keeps ``url``: ``<root>/url/<h16>/<name>``."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return os.path.join(cache_root(cache_dir), "url", key, _file_name(url))


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only, and never from https to http."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old = urllib.parse.urlsplit(req.full_url).scheme.lower()
        new = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl)).scheme.lower()
        if new not in ("http", "https") or (old == "https" and new == "http"):
            raise RemoteHTTPError(f"{req.full_url}: refusing a redirect to {newurl}", req.full_url, code)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoDowngradeRedirect)


def _sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _discard(part: str) -> None:
    """Drop a partial download and the validator saved with it."""
    _remove(part)
    _remove(part + ".validator")


def _read_validator(part: str) -> Optional[str]:
    try:
        with open(part + ".validator", "r", encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


class _Lock:
    """An exclusive advisory lock on ``path`` (fcntl where available) so two
    processes never append to the same ``.part`` file."""

    def __init__(self, path: str):
        self.path, self.fd = path, None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: no cross-process lock
            pass
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the flock


def download_url(url: str, *, sha256: Optional[str] = None, cache_dir: Optional[str] = None,
                 progress: Optional[bool] = None, timeout: float = 30.0, max_bytes: int = DEFAULT_MAX_BYTES,
                 retries: int = 2, local_files_only: Optional[bool] = None,
                 headers: Optional[Dict[str, str]] = None) -> str:
    """Download ``url`` once into :func:`url_cache_path` and return that path.

    * a cached file is returned without any request (and re-checked when
      ``sha256`` is given: a cached file with other bytes is fetched again);
    * ``sha256``: 64 hex digits; a mismatch raises :class:`ChecksumError` and
      leaves nothing behind (neither the file nor its ``.part``);
    * ``max_bytes``: a ``Content-Length`` above it is refused before the body is
      read; without a length, reading stops with an error past the cap;
    * an interrupted transfer keeps ``<name>.part`` (and the server's ETag or
      Last-Modified in ``<name>.part.validator``); up to ``retries`` more
      requests (and any later call) resume it with ``Range: bytes=<size>-`` and
      ``If-Range: <validator>``, keeping the bytes only if the server answers
      206 with a matching ``Content-Range`` (a 200 — range ignored or the file
      changed — restarts from zero, a 416 discards the ``.part``);
    * ``timeout`` bounds connecting and each read (seconds), as urllib does;
    * ``progress``: a tqdm bar on stderr; default on only when stderr is a TTY;
    * offline (``local_files_only``, ``HF_HUB_OFFLINE`` / ``MOBILEVIT_OFFLINE``):
      cache only, :class:`RemoteError` when absent.
    """
    if not _is_url(url):
        raise ValueError(f"only http:// and https:// URLs are downloaded, got {url!r}")
    if sha256 is not None:
        if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
        sha256 = sha256.lower()
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    final = url_cache_path(url, cache_dir)
    if os.path.isfile(final) and (sha256 is None or _sha256_of(final) == sha256):
        return final
    offline = _offline() if local_files_only is None else bool(local_files_only)
    if offline:
        state = "not in the cache" if not os.path.exists(final) else "cached with a different sha256"
        raise RemoteError(f"{url}: offline mode (HF_HUB_OFFLINE / MOBILEVIT_OFFLINE / local_files_only) is on "
                          f"and the file is {state} ({final}); download it once online or pass a local file")
    os.makedirs(os.path.dirname(final), exist_ok=True)
    part = final + ".part"
    with _Lock(final + ".lock"):
        if os.path.isfile(final):  # another process finished it while we waited
            if sha256 is None or _sha256_of(final) == sha256:
                return final
            _remove(final)
        show = sys.stderr.isatty() if progress is None else bool(progress)
        for attempt in range(retries + 1):
            done = _fetch_into(url, part, timeout=timeout, max_bytes=max_bytes, show=show, headers=headers)
            if done:
                break
        else:
            raise RemoteError(f"{url}: the transfer was interrupted {retries + 1} times "
                              f"({os.path.getsize(part)} bytes kept in {part}); run again to resume")
        if sha256 is not None:
            got = _sha256_of(part)
            if got != sha256:
                _discard(part)
                raise ChecksumError(f"{url}: sha256 {got} does not match the expected {sha256}; "
                                    f"the download was deleted")
        os.replace(part, final)
        _remove(part + ".validator")
        _fsync_dir(os.path.dirname(final))
    return final


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _content_range_start(value: Optional[str]):
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    return int(m.group(1)), (None if m.group(3) == "*" else int(m.group(3)))


def _fetch_into(url: str, part: str, *, timeout: float, max_bytes: int, show: bool,
                headers: Optional[Dict[str, str]]) -> bool:
    """One request appending to ``part``.  True when the file is complete,
    False when the connection ended early (``part`` kept for a resume)."""
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    if have > max_bytes:
        _discard(part)
        have = 0
    hdrs = {"User-Agent": f"mobilevit/{_version()}", "Accept-Encoding": "identity"}
    hdrs.update(headers or {})
    if have:
        hdrs["Range"] = f"bytes={have}-"
        validator = _read_validator(part)
        if validator:  # a changed file then comes back whole (200), never spliced onto old bytes
            hdrs["If-Range"] = validator
    req = urllib.request.Request(url, headers=hdrs)
    try:
        resp = _OPENER.open(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and have:  # our .part is not a prefix the server recognises: start over
            _discard(part)
            return False
        if 400 <= e.code < 500:
            _discard(part)
        raise RemoteHTTPError(f"{url}: HTTP {e.code} {e.reason}", url, e.code) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise RemoteError(f"{url}: request failed ({reason})") from None
    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        mode = "ab"
        if have and status == 206:
            start, total = _content_range_start(resp.headers.get("Content-Range"))
            if start != have:  # the server sent some other range: do not splice it in
                _discard(part)
                return False
        else:  # a 200 (range ignored, file changed, or no range asked): the body is the whole file
            have, total, mode = 0, length, "wb"
            etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
            validator = etag if etag and not etag.startswith("W/") else modified  # If-Range needs a strong one
            if validator and validator.isascii():
                with open(part + ".validator", "w", encoding="ascii") as v:
                    v.write(validator)
            else:
                _remove(part + ".validator")
        if total is None and length is not None:
            total = have + length
        if total is not None and total > max_bytes:
            _discard(part)
            raise RemoteError(f"{url}: the file is {total} bytes, above the {max_bytes}-byte cap "
                              f"(pass max_bytes= to allow it); nothing was downloaded")
        from tqdm.auto import tqdm
        got = have
        with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                                         desc=os.path.basename(part)[:-5], disable=not show, leave=False) as bar:
            while True:
                try:
                    block = resp.read(_CHUNK)
                except (OSError, ValueError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                    block, cut = b"", e
                else:
                    cut = None
                if not block:
                    break
                got += len(block)
                if got > max_bytes:
                    f.close()
                    _discard(part)
                    raise RemoteError(f"{url}: more than {max_bytes} bytes received (cap; pass max_bytes= "
                                      f"to allow more); the download was deleted")
                f.write(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    if cut is not None or (total is not None and got < total):
        return False
    if total is not None and got > total:
        _discard(part)
        raise RemoteError(f"{url}: received {got} bytes, more than the announced {total}; deleted")
    return True


# ---------------------------------------------------------- default weights

_TIMM_V1 = ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s")
_TIMM_V2 = tuple(f"mobilevitv2_{w}" for w in ("050", "075", "100", "125", "150", "175", "200"))
_HF_SEG = {"mobilevit_xxs": "apple/deeplabv3-mobilevit-xx-small", "mobilevit_xs": "apple/deeplabv3-mobilevit-x-small",
           "mobilevit_s": "apple/deeplabv3-mobilevit-small"}


def default_hub_id(name: str) -> str:
    """The hub repo ``create_model(name, pretrained=True)`` loads: timm's
    ImageNet-1k weights (``timm/<name>.cvnets_in1k``), or Apple's PASCAL VOC
    DeepLabv3 repos for ``deeplabv3_mobilevit_{xxs,xs,s}``."""
    key = name.lower().replace("-", "_")
    if key.startswith("deeplabv3_"):
        seg = _HF_SEG.get(key[len("deeplabv3_"):])
        if seg:
            return seg
    else:
        base = key.split(".", 1)[0]
        if base in _TIMM_V1 or base in _TIMM_V2:
            return f"timm/{key if '.' in key else key + '.cvnets_in1k'}"
    raise ValueError(f"no published weights known for {name!r}; use from_pretrained(<hub id, URL or path>)")
