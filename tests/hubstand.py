"""A stand-in for the Hugging Face Hub on 127.0.0.1, in a thread of its own, while the real
`leakscan` runs in a subprocess. It keeps a directory of bare git repositories, serves them over
smart HTTP through the real `git http-backend` with the Hub's URL layout, and answers the REST
routes `huggingface_hub` calls for them (repo info, listings with Link-header pagination, refs,
discussions, whoami). It records every request.

    with HubStandIn(tokens={"hf_secret"}) as hub:
        hub.add_repo("model", "user/model")
        hub.commit("model", "user/model", {"config.json": "{}"})
        # git clone {hub.url}/user/model   |   HfApi(endpoint=hub.url).model_info("user/model")
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlencode

from aiohttp import web

from standin import Seen, ServerThread

KINDS = {"model": "models", "dataset": "datasets", "space": "spaces"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
ZERO = "0" * 40
FIRST_DATE = 1_700_000_000  # add_repo's createdAt and commit's dates tick from here, one second apart

# /{ns}/{name}, /datasets/{ns}/{name}, /spaces/{ns}/{name}, each with an optional .git, then a git route
GIT_ROUTE = re.compile(
    r"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+?)(?:\.git)?"
    r"(/(?:info/refs|git-upload-pack|git-receive-pack|HEAD|objects/.+))$"
)
NOT_FOUND_MESSAGE = "Repository not found"
BAD_TOKEN_MESSAGE = "Invalid credentials in Authorization header"


def git_env(**extra: str) -> dict[str, str]:
    """The environment for the git commands this module runs: no user or system config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    env.update(extra)
    return env


def iso(ts: float) -> str:
    """The Hub's timestamp format: 2024-01-01T00:00:00.000Z."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _oid(*parts: object) -> str:
    """A stable 24-hex id, like the Hub's Mongo ids."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:24]


def _error(status: int, message: str, code: str | None = None, **headers: str) -> web.Response:
    hdrs = {"X-Error-Message": message, **headers}
    if code:
        hdrs["X-Error-Code"] = code
    return web.json_response({"error": message}, status=status, headers=hdrs)


@dataclass
class _Repo:
    type: str
    id: str
    path: Path
    private: bool
    created: float
    discussions: dict[int, dict] = field(default_factory=dict)


@dataclass
class HubStandIn:
    root: Path | None = None  # where the bare repos live; None: a temporary dir, removed on exit
    tokens: set[str] = field(default_factory=set)  # valid tokens (Bearer, or the Basic password)
    user: str = "tester"  # whoami name; REMOTE_USER of authenticated git pushes
    page_size: int = 2  # items per page of /api/{models,datasets,spaces}
    discussion_page_size: int = 2  # items per page of /discussions
    port: int = 0  # 0: any free port
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._own_root = self.root is None
        self.root = Path(tempfile.mkdtemp(prefix="hubstand-")) if self.root is None else Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._failures: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._clock = FIRST_DATE

    # ---- server -------------------------------------------------------------------------------

    def __enter__(self) -> HubStandIn:
        # auto_decompress=False: gzip request bodies go to git http-backend as sent
        self._server = ServerThread(self._handle, self.port, client_max_size=1 << 30, auto_decompress=False)
        self.port = self._server.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self._server.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- test-side setup ----------------------------------------------------------------------

    def repo_path(self, repo_type: str, repo_id: str) -> Path:
        if repo_type not in KINDS:
            raise ValueError(f"repo_type must be one of {list(KINDS)}, not {repo_type!r}")
        ns, sep, name = repo_id.partition("/")
        if not (ns and sep and name) or "/" in name or name.endswith(".git") or ns.startswith("."):
            raise ValueError(f"repo_id must be namespace/name, not {repo_id!r}")
        return self.root / KINDS[repo_type] / ns / name

    def git_url(self, repo_type: str, repo_id: str, token: str | None = None) -> str:
        """The clone URL, as the Hub's; with a token it carries it as the Basic password."""
        auth = f"hf_user:{token}@" if token else ""
        return f"http://{auth}127.0.0.1:{self.port}/{URL_PREFIX[repo_type]}{repo_id}"

    def add_repo(self, repo_type: str, repo_id: str, private: bool = False) -> Path:
        """An empty bare repo (HEAD -> refs/heads/main); push into the returned path with git."""
        path = self.repo_path(repo_type, repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "--bare", "--quiet", "-b", "main", str(path)], check=True, env=git_env())
        with self._lock:
            self._clock += 1  # createdAt on the same synthetic clock as the commits
            self._repos[(repo_type, repo_id)] = _Repo(repo_type, repo_id, path, private, self._clock)
        return path

    def set_private(self, repo_type: str, repo_id: str, private: bool) -> None:
        self._repo(repo_type, repo_id).private = private

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        """The repo disappears: API and git answer as for an unknown repo."""
        with self._lock:
            repo = self._repos.pop((repo_type, repo_id))
        shutil.rmtree(repo.path, ignore_errors=True)

    def fail_next(self, path_prefix: str, status: int = 500) -> None:
        """The next request whose path starts with path_prefix gets `status` (once)."""
        with self._lock:
            self._failures.append((path_prefix, status))

    def commit(
        self,
        repo_type: str,
        repo_id: str,
        files: dict[str, str | bytes | None],
        message: str = "update",
        ref: str = "refs/heads/main",
        parents: list[str] | None = None,
        author: tuple[str, str] = ("Tester", "tester@example.com"),
        when: int | None = None,
    ) -> str:
        """A commit straight into the bare repo, and `ref` moved to it. `files` change the parent's
        tree (None deletes a path). parents None: the tip of `ref`, else of main, else none — so
        `ref='refs/pr/1'` branches off main like a Hub PR. Dates are fixed and increasing, so
        shas are reproducible."""
        repo = self._repo(repo_type, repo_id)

        def git(*args: str, input: bytes | None = None, **env: str) -> str:
            out = subprocess.run(
                ["git", "--git-dir", str(repo.path), *args], input=input, capture_output=True, env=git_env(**env)
            )
            if out.returncode:
                raise RuntimeError(f"git {' '.join(args)}: {out.stderr.decode(errors='replace')}")
            return out.stdout.decode().strip()

        def tip(name: str) -> str | None:
            try:
                return git("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
            except RuntimeError:
                return None

        if parents is None:
            found = tip(ref) or tip("refs/heads/main")
            parents = [found] if found else []
        with tempfile.TemporaryDirectory() as tmp:
            index = os.path.join(tmp, "index")
            if parents:
                git("read-tree", parents[0], GIT_INDEX_FILE=index)
            else:
                git("read-tree", "--empty", GIT_INDEX_FILE=index)
            lines = []
            for name, content in files.items():
                if content is None:
                    lines.append(f"0 {ZERO}\t{name}\n")
                else:
                    data = content.encode() if isinstance(content, str) else content
                    blob = git("hash-object", "-w", "--stdin", input=data)
                    lines.append(f"100644 {blob}\t{name}\n")
            git("update-index", "--index-info", input="".join(lines).encode(), GIT_INDEX_FILE=index)
            tree = git("write-tree", GIT_INDEX_FILE=index)
        with self._lock:
            self._clock += 1
            date = f"{when if when is not None else self._clock} +0000"
        who = {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1], "GIT_AUTHOR_DATE": date}
        who |= {"GIT_COMMITTER_NAME": author[0], "GIT_COMMITTER_EMAIL": author[1], "GIT_COMMITTER_DATE": date}
        sha = git("commit-tree", tree, *(a for p in parents for a in ("-p", p)), "-m", message, **who)
        git("update-ref", ref, sha)
        return sha

    def add_discussion(
        self,
        repo_type: str,
        repo_id: str,
        title: str,
        comments: list[str],
        is_pr: bool = False,
        edited_history: list[str] | tuple[str, ...] = (),
        author: str = "tester",
        status: str = "open",
    ) -> int:
        """A discussion (or PR, whose commits the test puts at refs/pr/{num}) with one comment
        event per text. edited_history: earlier versions of the first comment, oldest first.
        Returns its number (discussions and PRs share the numbering, from 1)."""
        repo = self._repo(repo_type, repo_id)
        now = iso(time.time())
        person = {"_id": _oid("user", author), "name": author, "fullname": author, "type": "user",
                  "avatarUrl": "/avatars/none.svg", "isPro": False, "isHf": False}
        with self._lock:
            num = max(repo.discussions, default=0) + 1

            def version(text: str) -> dict:
                return {"raw": text, "html": f"<p>{html.escape(text)}</p>\n", "updatedAt": now, "author": person}

            events = []
            for i, text in enumerate(comments):
                history = [version(t) for t in edited_history] if i == 0 else []
                events.append({
                    "id": _oid(repo_type, repo_id, num, i), "type": "comment", "createdAt": now, "author": person,
                    "data": {"edited": bool(history), "hidden": False, "numEdits": len(history),
                             "editors": [author], "reactions": [], "isReport": False,
                             "latest": version(text), "history": history},
                })
            item = {
                "num": num, "title": title, "status": status, "isPullRequest": is_pr, "createdAt": now,
                "author": person, "repo": {"name": repo_id, "type": repo_type}, "pinned": False,
                "numComments": len(comments), "topReactions": [],
            }
            details = {**item, "events": events}
            if is_pr:
                details |= {"changes": {"base": "refs/heads/main"}, "filesWithConflicts": [], "diff": ""}
            repo.discussions[num] = details
        return num

    def _repo(self, repo_type: str, repo_id: str) -> _Repo:
        with self._lock:
            try:
                return self._repos[(repo_type, repo_id)]
            except KeyError:
                raise KeyError(f"no {repo_type} {repo_id} (add_repo first)") from None

    # ---- requests -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Seen(request.method, request.path, request.query_string, dict(request.headers), body))
        with self._lock:
            failure = next((f for f in self._failures if request.path.startswith(f[0])), None)
            if failure:
                self._failures.remove(failure)
        if failure:
            return _error(failure[1], f"injected failure {failure[1]}")
        raw = request.raw_path.split("?", 1)[0]
        segs = [unquote(s) for s in raw.split("/")[1:]]
        if segs[0] == "api":
            return await self._api(request, segs[1:])
        if m := GIT_ROUTE.match(request.path):
            kind = {"datasets": "dataset", "spaces": "space"}.get(m[1] or "", "model")
            return await self._git(request, body, kind, f"{m[2]}/{m[3]}", m[4])
        return _error(404, "Not found")

    def _token(self, request: web.Request) -> tuple[str | None, bool]:
        """(the valid token, whether any credentials came)."""
        scheme, _, cred = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = cred.strip()
        elif scheme.lower() == "basic":
            try:
                token = base64.b64decode(cred.strip(), validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                token = ""
        else:
            return None, False
        return (token if token in self.tokens else None), True

    def _lookup(self, kind: str, repo_id: str) -> _Repo | None:
        with self._lock:
            return self._repos.get((kind, repo_id))

    # git smart HTTP through `git http-backend` (CGI)

    async def _git(self, request: web.Request, body: bytes, kind: str, repo_id: str, rest: str) -> web.Response:
        repo = self._lookup(kind, repo_id)
        if repo is None:
            return web.Response(status=404, text="Repository not found\n")
        token, _ = self._token(request)
        push = rest.endswith("/git-receive-pack") or request.query.get("service") == "git-receive-pack"
        if (repo.private or push) and token is None:
            return web.Response(status=401, text="Authentication required\n",
                                headers={"WWW-Authenticate": 'Basic realm="Authentication required", charset="UTF-8"'})
        env = git_env(
            GIT_PROJECT_ROOT=str(self.root), GIT_HTTP_EXPORT_ALL="1",
            PATH_INFO=f"/{KINDS[kind]}/{repo_id}{rest}", QUERY_STRING=request.query_string,
            REQUEST_METHOD=request.method, CONTENT_TYPE=request.headers.get("Content-Type", ""),
            REMOTE_ADDR=request.remote or "127.0.0.1", GATEWAY_INTERFACE="CGI/1.1", SERVER_PROTOCOL="HTTP/1.1",
        )
        if request.method == "POST":
            env["CONTENT_LENGTH"] = str(len(body))
        if enc := request.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = enc
        if proto := request.headers.get("Git-Protocol"):
            env["HTTP_GIT_PROTOCOL"] = proto
        if token is not None:
            env["REMOTE_USER"] = self.user
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        out, err = await proc.communicate(body)
        parts = re.split(rb"\r?\n\r?\n", out, maxsplit=1)
        if len(parts) != 2:
            return web.Response(status=500, text=f"git http-backend failed: {err.decode(errors='replace')}")
        status, headers = 200, {}
        for line in parts[0].decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name.lower() != "content-length":
                headers[name.strip()] = value.strip()
        return web.Response(status=status, body=parts[1], headers=headers)

    # REST

    async def _api(self, request: web.Request, segs: list[str]) -> web.Response:
        token, presented = self._token(request)
        if presented and token is None:
            return _error(401, BAD_TOKEN_MESSAGE)
        if segs == ["whoami-v2"]:
            if token is None:
                return _error(401, BAD_TOKEN_MESSAGE)
            return web.json_response({
                "type": "user", "id": _oid("user", self.user), "name": self.user, "fullname": self.user,
                "email": f"{self.user}@example.com", "emailVerified": True, "isPro": False, "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "hubstand", "role": "read"}},
            })
        kinds = {v: k for k, v in KINDS.items()}
        if not segs or segs[0] not in kinds or request.method != "GET":
            return _error(404, "Not found")
        kind = kinds[segs[0]]
        if len(segs) == 1:
            return await self._list(request, kind, token)
        if len(segs) < 3:
            return _error(404, "Not found")
        repo = self._lookup(kind, f"{segs[1]}/{segs[2]}")
        if repo is None:
            return _error(404, NOT_FOUND_MESSAGE, "RepoNotFound")
        if repo.private and token is None:
            # The Hub answers 401 for private (and, to anonymous callers, unknown) repos. The code
            # header lets huggingface_hub map it to RepositoryNotFoundError on an http:// endpoint
            # too (its own 401 rule only matches https:// URLs).
            return _error(401, NOT_FOUND_MESSAGE, "RepoNotFound")
        rest = segs[3:]
        if not rest:
            return await self._info(repo, "main")
        if rest[0] == "revision" and len(rest) > 1:
            return await self._info(repo, "/".join(rest[1:]))
        if rest == ["refs"]:
            return await self._refs(repo, request.query.get("include_prs", "").lower() in ("1", "true"))
        if rest == ["discussions"]:
            return self._discussions(request, repo)
        if len(rest) == 2 and rest[0] == "discussions":
            details = repo.discussions.get(int(rest[1])) if rest[1].isdigit() else None
            if details is None:
                return _error(404, "Discussion not found")
            return web.json_response(details)
        return _error(404, "Not found")

    async def _run(self, repo: _Repo, *args: str) -> str | None:
        proc = await asyncio.create_subprocess_exec(
            "git", "--git-dir", str(repo.path), *args,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=git_env(),
        )
        out, _ = await proc.communicate()
        return out.decode() if proc.returncode == 0 else None

    async def _resolve(self, repo: _Repo, rev: str) -> str | None:
        if not rev or rev.startswith("-"):
            return None
        out = await self._run(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        return out.strip() if out else None

    async def _info_dict(self, repo: _Repo, rev: str, full: bool = True) -> dict | None:
        """The repo-info JSON at rev; None if rev does not resolve (an empty repo's main does:
        sha null, no files)."""
        item = {"_id": _oid(repo.type, repo.id), "id": repo.id, "author": repo.id.split("/")[0],
                "private": repo.private, "gated": False, "disabled": False, "likes": 0, "tags": [],
                "createdAt": iso(repo.created)}
        if repo.type == "model":
            item |= {"modelId": repo.id, "downloads": 0}
        elif repo.type == "dataset":
            item |= {"downloads": 0}
        else:
            item |= {"sdk": "static", "subdomain": repo.id.replace("/", "-").lower()}
        if not full:
            return item
        sha = await self._resolve(repo, rev)
        if sha is None and rev != "main":
            return None
        files, modified = [], repo.created
        if sha is not None:
            names = await self._run(repo, "ls-tree", "-r", "-z", "--name-only", sha) or ""
            files = [n for n in names.split("\0") if n]
            modified = int((await self._run(repo, "show", "-s", "--format=%ct", sha) or "0").strip() or 0)
        return item | {"sha": sha, "lastModified": iso(modified), "siblings": [{"rfilename": f} for f in files]}

    async def _info(self, repo: _Repo, rev: str) -> web.Response:
        item = await self._info_dict(repo, rev)
        if item is None:
            return _error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return web.json_response(item)

    async def _list(self, request: web.Request, kind: str, token: str | None) -> web.Response:
        q = request.query
        author, searches = q.get("author"), q.getall("search", [])
        with self._lock:
            repos = [r for r in self._repos.values()
                     if r.type == kind and (not author or r.id.split("/")[0] == author)
                     and all(s.lower() in r.id.lower() for s in searches) and (not r.private or token)]
        expand = q.getall("expand", [])
        full = q.get("full", "").lower() in ("1", "true") or bool(expand)
        items = [await self._info_dict(r, "main", full) for r in repos]
        sort = q.get("sort")
        if sort in ("lastModified", "createdAt") and all(sort in i for i in items):
            items.sort(key=lambda i: i[sort], reverse=True)
        if expand:
            items = [{k: v for k, v in i.items() if k in ("_id", "id", *expand)} for i in items]
        try:
            offset = json.loads(base64.b64decode(q.get("cursor", ""))).get("offset", 0) if "cursor" in q else 0
        except ValueError:
            return _error(400, "Invalid cursor")
        size = self.page_size
        if q.get("limit", "").isdigit() and int(q["limit"]) > 0:
            size = min(size, int(q["limit"]))
        page, headers = items[offset:offset + size], {}
        if offset + size < len(items):
            cursor = base64.b64encode(json.dumps({"offset": offset + size}).encode()).decode()
            pairs = [(k, v) for k, v in q.items() if k != "cursor"] + [("cursor", cursor)]
            headers["Link"] = f'<{self.url}{request.path}?{urlencode(pairs)}>; rel="next"'
        return web.json_response(page, headers=headers)

    async def _refs(self, repo: _Repo, include_prs: bool) -> web.Response:
        out = await self._run(repo, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)") or ""
        groups = {"refs/heads/": "branches", "refs/tags/": "tags", "refs/convert/": "converts"}
        if include_prs:
            groups["refs/pr/"] = "pullRequests"
        data: dict[str, list] = {g: [] for g in groups.values()}
        for line in out.splitlines():
            ref, oid, peeled = line.split("\0")
            for prefix, group in groups.items():
                if ref.startswith(prefix):
                    data[group].append({"name": ref[len(prefix):], "ref": ref, "targetCommit": peeled or oid})
        return web.json_response(data)

    def _discussions(self, request: web.Request, repo: _Repo) -> web.Response:
        q = request.query
        kind, status, author = q.get("type", "all"), q.get("status", "all"), q.get("author")
        with self._lock:
            found = sorted(repo.discussions.values(), key=lambda d: d["num"], reverse=True)  # newest first
        found = [
            {k: v for k, v in d.items() if k not in ("events", "changes", "filesWithConflicts", "diff")}
            for d in found
            if (kind == "all" or d["isPullRequest"] == (kind == "pull_request"))
            and (status == "all" or (d["status"] == "open") == (status == "open"))
            and (not author or d["author"]["name"] == author)
        ]
        page = int(q["p"]) if q.get("p", "").isdigit() else 0
        start = page * self.discussion_page_size
        return web.json_response({
            "discussions": found[start:start + self.discussion_page_size], "count": len(found), "start": start,
            "numClosedDiscussions": sum(d["status"] != "open" for d in found),
        })
