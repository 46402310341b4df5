"""The Hub stand-in works with the real tools: git over smart HTTP, and huggingface_hub's HfApi."""

from __future__ import annotations

import os
import subprocess

import pytest

from hubstand import HubStandIn, git_env

os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from huggingface_hub import HfApi  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError  # noqa: E402

TOKEN = "hf_standin_token_for_tests"


def git(*args: str, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
    # No credential helper, no prompt, no proxy: only what the command line gives.
    env = git_env(GIT_ASKPASS="", SSH_ASKPASS="", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env.pop(proxy, None)
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=30)
    if check and out.returncode:
        raise AssertionError(f"git {' '.join(args)} failed: {out.stderr}")
    return out


def refs(bare) -> dict[str, str]:
    lines = git("--git-dir", str(bare), "for-each-ref", "--format=%(refname) %(objectname)").stdout.splitlines()
    return dict(line.split() for line in lines)


@pytest.fixture
def hub(tmp_path):
    with HubStandIn(root=tmp_path / "hub", tokens={TOKEN}) as h:
        yield h


def api(hub: HubStandIn, token: str | bool = False) -> HfApi:
    return HfApi(endpoint=hub.url, token=token, library_name="leakscan-tests")


def test_git_clone_and_fetch_pr_refs(hub, tmp_path):
    # A plain git push into the bare repo, as a test would build one ...
    bare = hub.add_repo("model", "user/model")
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))
    (work / "config.json").write_text('{"a": 1}\n')
    git("-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "empty", cwd=work)
    git("add", ".", cwd=work)
    git("-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "-m", "config", cwd=work)
    git("push", "-q", str(bare), "refs/*:refs/*", cwd=work)
    # ... and commits made directly, including a PR ref branching off main.
    main = hub.commit("model", "user/model", {"README.md": "hello\n"}, message="readme")
    pr = hub.commit("model", "user/model", {"leak.txt": "secret\n", "README.md": None}, ref="refs/pr/1")

    clone = tmp_path / "clone.git"
    git("clone", "-q", "--bare", f"{hub.url}/user/model", str(clone))
    assert refs(clone) == {"refs/heads/main": main}  # a plain clone: branches and tags only
    git("--git-dir", str(clone), "fetch", "-q", "origin", "+refs/*:refs/*")
    assert refs(clone) == {"refs/heads/main": main, "refs/pr/1": pr}
    tree = git("--git-dir", str(clone), "ls-tree", "-r", "--name-only", "refs/pr/1").stdout.split()
    assert tree == ["config.json", "leak.txt"]
    assert git("--git-dir", str(clone), "rev-list", "--count", "refs/pr/1").stdout.strip() == "4"

    # .git suffix, datasets/ and spaces/ prefixes; an unknown repo fails.
    hub.add_repo("dataset", "org/data")
    dsha = hub.commit("dataset", "org/data", {"train.csv": "a,b\n"})
    hub.add_repo("space", "org/app")
    ssha = hub.commit("space", "org/app", {"app.py": "print(1)\n"})
    git("clone", "-q", "--bare", f"{hub.url}/user/model.git", str(tmp_path / "c2"))
    git("clone", "-q", "--bare", f"{hub.url}/datasets/org/data", str(tmp_path / "d"))
    git("clone", "-q", "--bare", f"{hub.url}/spaces/org/app.git", str(tmp_path / "s"))
    assert refs(tmp_path / "d") == {"refs/heads/main": dsha}
    assert refs(tmp_path / "s") == {"refs/heads/main": ssha}
    assert git("clone", "-q", "--bare", f"{hub.url}/user/nope", str(tmp_path / "x"), check=False).returncode
    assert git("clone", "-q", "--bare", f"{hub.url}/org/data", str(tmp_path / "y"), check=False).returncode

    # An incremental fetch with many haves: git gzips that request body; http-backend inflates it.
    for i in range(40):
        hub.commit("model", "user/model", {f"f{i}.txt": f"{i}\n"}, ref=f"refs/heads/b{i % 20}")
    git("--git-dir", str(clone), "fetch", "-q", "origin", "+refs/*:refs/*")
    for i in range(3):
        hub.commit("model", "user/model", {f"g{i}.txt": f"{i}\n"}, ref=f"refs/heads/b{i}")
    git("--git-dir", str(clone), "fetch", "-q", "origin", "+refs/*:refs/*")
    assert refs(clone) == refs(bare)
    assert any(s.headers.get("Content-Encoding") == "gzip" for s in hub.requests)


def test_git_private_and_push(hub, tmp_path):
    hub.add_repo("model", "user/secret", private=True)
    sha = hub.commit("model", "user/secret", {"k.txt": "key\n"})
    out = git("clone", "-q", "--bare", f"{hub.url}/user/secret", str(tmp_path / "a"), check=False)
    assert out.returncode and hub.requests[-1].path == "/user/secret/info/refs"
    assert git("clone", "--bare", hub.git_url("model", "user/secret", "hf_wrong"), str(tmp_path / "b"),
               check=False).returncode
    git("clone", "-q", "--bare", hub.git_url("model", "user/secret", TOKEN), str(tmp_path / "c"))
    assert refs(tmp_path / "c") == {"refs/heads/main": sha}
    git("-c", f"http.extraHeader=Authorization: Bearer {TOKEN}", "clone", "-q", "--bare",
        f"{hub.url}/user/secret", str(tmp_path / "d"))
    assert refs(tmp_path / "d") == {"refs/heads/main": sha}

    # Pushing over HTTP needs a token, even to a public repo.
    hub.add_repo("model", "user/open")
    src = tmp_path / "c"
    assert git("--git-dir", str(src), "push", "-q", f"{hub.url}/user/open", "main", check=False).returncode
    git("--git-dir", str(src), "push", "-q", hub.git_url("model", "user/open", TOKEN), "main:main", "main:refs/pr/7")
    assert api(hub).list_repo_refs("user/open", include_pull_requests=True).pull_requests[0].ref == "refs/pr/7"


def test_repo_info_listing_and_refs(hub):
    for i in range(5):
        hub.add_repo("model", f"user/m{i}")
    hub.add_repo("model", "other/m")
    hub.add_repo("model", "user/hidden", private=True)
    main = hub.commit("model", "user/m0", {"a.txt": "a", "dir/b.bin": b"\0\1"})
    pr = hub.commit("model", "user/m0", {"c.txt": "c"}, ref="refs/pr/1")
    hub.commit("model", "user/m0", {"t.txt": "t"}, ref="refs/tags/v1")
    hub.add_repo("dataset", "user/d")
    hub.add_repo("space", "user/s")
    client = api(hub)

    info = client.repo_info("user/m0")
    assert (info.id, info.author, info.sha, info.private) == ("user/m0", "user", main, False)
    assert sorted(s.rfilename for s in info.siblings) == ["a.txt", "dir/b.bin"]
    assert info.last_modified and info.created_at and info.gated is False
    at_pr = client.repo_info("user/m0", revision="refs/pr/1")
    assert at_pr.sha == pr and "c.txt" in [s.rfilename for s in at_pr.siblings]
    assert hub.requests[-1].path == "/api/models/user/m0/revision/refs/pr/1"
    assert client.repo_info("user/m1").sha is None  # empty repo
    assert client.repo_info("user/d", repo_type="dataset").id == "user/d"
    assert client.repo_info("user/s", repo_type="space").id == "user/s"

    before = len(hub.requests)
    models = list(client.list_models(author="user", full=True))
    assert [m.id for m in models] == [f"user/m{i}" for i in range(5)]  # not other/, not the private one
    assert models[0].sha == main
    pages = [s for s in hub.requests[before:] if s.path == "/api/models"]
    assert len(pages) == 3 and "cursor=" in pages[-1].query
    assert [m.id for m in client.list_models(author="user", limit=3)] == ["user/m0", "user/m1", "user/m2"]
    assert [d.id for d in client.list_datasets(author="user")] == ["user/d"]
    assert [s.id for s in client.list_spaces(author="user")] == ["user/s"]
    assert list(client.list_models(author="nobody")) == []

    got = client.list_repo_refs("user/m0", include_pull_requests=True)
    assert [(r.name, r.ref, r.target_commit) for r in got.branches] == [("main", "refs/heads/main", main)]
    assert [r.ref for r in got.tags] == ["refs/tags/v1"]
    assert [(r.name, r.target_commit) for r in got.pull_requests] == [("1", pr)]
    assert client.list_repo_refs("user/m0").pull_requests is None


def test_discussions(hub):
    hub.add_repo("model", "user/m")
    first = hub.add_discussion("model", "user/m", "Oops", ["key is hf_xyz", "thanks"], edited_history=["old hf_abc"])
    for i in range(3):
        hub.add_discussion("model", "user/m", f"more {i}", [f"comment {i}"])
    pr = hub.add_discussion("model", "user/m", "A PR", ["please merge"], is_pr=True)
    client = api(hub)

    before = len(hub.requests)
    found = list(client.get_repo_discussions("user/m"))
    assert sorted(d.num for d in found) == [1, 2, 3, 4, 5] and (first, pr) == (1, 5)
    assert len([s for s in hub.requests[before:] if s.path.endswith("/discussions")]) == 3
    assert [d.num for d in client.get_repo_discussions("user/m", discussion_type="pull_request")] == [pr]

    details = client.get_discussion_details("user/m", first)
    assert [e.content for e in details.events] == ["key is hf_xyz", "thanks"]
    assert details.events[0].edited and [h["raw"] for h in details.events[0].edit_history] == ["old hf_abc"]
    details = client.get_discussion_details("user/m", pr)
    assert details.is_pull_request and details.target_branch == "refs/heads/main"
    assert details.git_reference == "refs/pr/5" and details.events[0].content == "please merge"


def test_private_unknown_errors_and_whoami(hub):
    hub.add_repo("model", "user/secret", private=True)
    sha = hub.commit("model", "user/secret", {"k.txt": "key"})
    hub.add_repo("model", "user/open")

    with pytest.raises(RepositoryNotFoundError):
        api(hub).repo_info("user/secret")
    assert hub.requests[-1].path == "/api/models/user/secret"
    assert api(hub, TOKEN).repo_info("user/secret").sha == sha
    assert hub.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    assert [m.id for m in api(hub, TOKEN).list_models(author="user")] == ["user/secret", "user/open"]
    with pytest.raises(HfHubHTTPError) as bad:
        api(hub, "hf_wrong").repo_info("user/open")
    assert bad.value.response.status_code == 401

    with pytest.raises(RepositoryNotFoundError):
        api(hub).repo_info("user/nope")
    with pytest.raises(RevisionNotFoundError):
        api(hub).repo_info("user/open", revision="refs/pr/9")

    with pytest.raises(HfHubHTTPError) as who:
        api(hub, "hf_wrong").whoami()
    assert who.value.response.status_code == 401
    assert api(hub, TOKEN).whoami()["name"] == hub.user

    hub.fail_next("/api/models/user/open", 500)
    with pytest.raises(HfHubHTTPError) as failed:
        api(hub).repo_info("user/open")
    assert failed.value.response.status_code == 500
    assert api(hub).repo_info("user/open").id == "user/open"  # once only

    hub.delete_repo("model", "user/open")
    with pytest.raises(RepositoryNotFoundError):
        api(hub).repo_info("user/open")
    assert [m.id for m in api(hub).list_models(author="user")] == []


def test_lfs_files_through_tree_resolve_range_and_the_batch_api(hub, tmp_path):
    import json
    import struct
    import urllib.request

    from huggingface_hub import hf_hub_download
    from huggingface_hub.file_download import get_hf_file_metadata, hf_hub_url

    header = json.dumps({"__metadata__": {"format": "pt", "note": "hello"},
                         "w": {"dtype": "F32", "shape": [1 << 18], "data_offsets": [0, 1 << 20]}}).encode()  # fmt: skip
    weights = struct.pack("<Q", len(header)) + header + b"\0" * (1 << 20)
    pointer = hub.lfs(weights)
    hub.add_repo("model", "user/lfs")
    sha = hub.commit("model", "user/lfs", {"model.safetensors": pointer, "config.json": "{}\n"})
    oid = pointer.split("sha256:")[1].split()[0]
    hf = api(hub)
    # the tree lists the LFS entry with its oid and size, the pointer's size apart
    tree = {e.path: e for e in hf.list_repo_tree("user/lfs", recursive=True)}
    assert tree["model.safetensors"].lfs.sha256 == oid and tree["model.safetensors"].lfs.size == len(weights)
    assert tree["model.safetensors"].lfs.pointer_size == len(pointer) and tree["config.json"].lfs is None
    # HEAD through /resolve/: a redirect naming the content, as the Hub's
    meta = get_hf_file_metadata(hf_hub_url("user/lfs", "model.safetensors", endpoint=hub.url), token=False)
    assert (meta.commit_hash, meta.etag, meta.size) == (sha, oid, len(weights))
    # GET follows the redirect to the storage; Range reads serve get_safetensors_metadata
    path = hf_hub_download("user/lfs", "model.safetensors", endpoint=hub.url, token=False, cache_dir=tmp_path / "c")
    assert open(path, "rb").read() == weights
    served = hub.lfs_bytes_served
    assert served == len(weights)
    got = hf.get_safetensors_metadata("user/lfs")
    assert got.files_metadata["model.safetensors"].metadata == {"format": "pt", "note": "hello"}
    assert hub.lfs_bytes_served - served == 100_001  # one range of the file's start, not its megabyte
    # the git-lfs batch API: a download href (with its header) per known object, an error otherwise
    body = json.dumps({"operation": "download", "transfers": ["basic"], "hash_algo": "sha256",
                       "objects": [{"oid": oid, "size": len(weights)}, {"oid": "0" * 64, "size": 1}]}).encode()  # fmt: skip
    req = urllib.request.Request(f"{hub.url}/user/lfs.git/info/lfs/objects/batch", data=body, method="POST",
                                 headers={"Accept": "application/vnd.git-lfs+json",
                                          "Content-Type": "application/vnd.git-lfs+json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    ok, missing = answer["objects"]
    assert ok["actions"]["download"]["href"] == f"{hub.storage_url}/lfs-storage/{oid}" and missing["error"]["code"] == 404
    ranged = urllib.request.Request(ok["actions"]["download"]["href"], headers={"Range": "bytes=0-7"})
    with urllib.request.urlopen(ranged, timeout=10) as resp:
        assert resp.status == 206 and resp.read() == weights[:8]


def test_space_variables(hub):
    hub.add_repo("space", "user/app")
    hub.set_variables("user/app", {"MODEL": "gpt2", "EMPTY": ""})
    got = api(hub).get_space_variables("user/app")
    assert {k: v.value for k, v in got.items()} == {"MODEL": "gpt2", "EMPTY": ""}
    assert api(hub).get_space_variables("user/app") is not None
    with pytest.raises(RepositoryNotFoundError):
        api(hub).get_space_variables("user/none")


def test_buckets_through_huggingface_hubs_own_calls(hub):
    """The bucket routes answer huggingface_hub's list_buckets, bucket_info, list_bucket_tree
    (recursive or not, every page) and get_bucket_file_metadata as the Hub does."""
    hf = HfApi(endpoint=hub.url, token=False)
    hub.add_bucket("user/runs", {"a.txt": b"alpha", "logs/b.log": b"beta", "logs/deep/c.log": b"gamma!"})
    hub.add_bucket("user/more", {"x": b"x"})
    hub.add_bucket("user/hidden", {"y": b"y"}, private=True)
    assert sorted(b.id for b in hf.list_buckets("user")) == ["user/more", "user/runs"]
    info = hf.bucket_info("user/runs")
    assert (info.id, info.private, info.size, info.total_files) == ("user/runs", False, 15, 3)
    files = list(hf.list_bucket_tree("user/runs", recursive=True))
    assert [(f.type, f.path, f.size) for f in files] == [("file", "a.txt", 5), ("file", "logs/b.log", 4),
                                                         ("file", "logs/deep/c.log", 6)]  # fmt: skip
    assert [(f.type, f.path) for f in hf.list_bucket_tree("user/runs")] == [("file", "a.txt"), ("directory", "logs")]
    meta = hf.get_bucket_file_metadata("user/runs", "logs/b.log")
    assert (meta.size, meta.xet_file_data.file_hash) == (4, files[1].xet_hash)
    with pytest.raises(HfHubHTTPError):
        hf.bucket_info("user/hidden")
