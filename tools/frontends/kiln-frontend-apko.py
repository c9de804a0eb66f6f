#!/usr/bin/env python3
"""kiln-frontend-apko: an example external kiln frontend (python3 stdlib only).

kiln runs it as `--frontend exec:PATH`. It reads kiln's frontend request, one
JSON object on stdin:

    {"context": DIR, "file": NAME, "dockerfile": CONTENTS, "build_args": {...},
     "target": STAGE|null, "platform": "os/arch[/variant]"|null,
     "labels": {...}, "contexts": {...}}

where CONTENTS is not a Dockerfile but a small declarative image spec in the
spirit of apko, as JSON:

    {"base": "alpine:3.19",            # an image ref, or "scratch"
     "env": {"KEY": "VALUE"},
     "workdir": "/app",
     "user": "app",
     "files": [{"src": "app.py", "dest": "/app/app.py", "mode": "0755"}],
     "run": ["apk add python3"],       # shell commands, run with /bin/sh -c
     "entrypoint": ["python3", "/app/app.py"],
     "cmd": ["--help"],
     "labels": {"k": "v"}}

and writes the IR JSON (version 1) of the image on stdout. Vertex digests
follow the IR's canonical encoding (docs/ir.md): sha256 over
{"format":"kiln.vertex/1","inputs":[...],"op":...,"params":{...}} with
sorted keys and no whitespace, with default-valued fields left out. Errors
go to stderr with exit status 1.
"""
import hashlib
import json
import sys

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SPEC_KEYS = {"base", "env", "workdir", "user", "files", "run", "entrypoint", "cmd", "labels"}


def fail(msg):
    sys.stderr.write("kiln-frontend-apko: error: %s\n" % msg)
    sys.exit(1)


class Graph:
    def __init__(self):
        self.vertices = []
        self.by_digest = {}

    def add(self, op, params, inputs=(), name=None, line=None):
        canon = json.dumps(
            {"format": "kiln.vertex/1", "op": op, "params": params,
             "inputs": [self.vertices[i]["digest"] for i in inputs]},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = "sha256:" + hashlib.sha256(canon.encode()).hexdigest()
        if digest in self.by_digest:
            return self.by_digest[digest]
        v = {"digest": digest, "op": op,
             "inputs": [self.vertices[i]["digest"] for i in inputs], "params": params}
        if line is not None:
            v["loc"] = {"file": "spec", "line": line}
        if name:
            v["name"] = name
        self.vertices.append(v)
        self.by_digest[digest] = len(self.vertices) - 1
        return len(self.vertices) - 1


def parse_platform(p):
    parts = (p or "linux/amd64").split("/")
    if len(parts) not in (2, 3) or not all(parts):
        fail("invalid platform '%s'" % p)
    plat = {"os": parts[0], "arch": parts[1]}
    if len(parts) == 3:
        plat["variant"] = parts[2]
    return plat


def main():
    try:
        req = json.load(sys.stdin)
    except ValueError as e:
        fail("invalid request: %s" % e)
    try:
        spec = json.loads(req.get("dockerfile") or "")
    except ValueError as e:
        fail("invalid spec '%s': %s" % (req.get("file"), e))
    if not isinstance(spec, dict):
        fail("the spec must be a JSON object")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        fail("unknown spec field '%s'" % unknown[0])
    if "base" not in spec:
        fail("the spec needs a 'base' image")

    plat = parse_platform(req.get("platform"))
    g = Graph()
    history = []
    env = dict(spec.get("env") or {})
    env.setdefault("PATH", DEFAULT_PATH)
    envlist = ["%s=%s" % (k, env[k]) for k in env]
    workdir = spec.get("workdir") or "/"
    user = spec.get("user")

    base = spec["base"]
    if base == "scratch":
        root = g.add("source.scratch", {})
        base_ref = None
    else:
        root = g.add("source.image", {"ref": base, "platform": plat}, name="FROM " + base)
        base_ref = base
    if workdir != "/":
        root = g.add("file", {"actions": [{"kind": "mkdir", "dest": workdir, "mode": 0o755,
                                           "flags": ["create_parents"]}]},
                     [root], name="WORKDIR " + workdir)
        history.append({"created_by": "WORKDIR " + workdir, "comment": "kiln-frontend-apko"})

    files = spec.get("files") or []
    if files:
        ctx = g.add("source.local", {"name": "context"}, name="[internal] load build context")
        actions = []
        for f in files:
            if "src" not in f or "dest" not in f:
                fail("a file needs 'src' and 'dest'")
            a = {"kind": "copy", "src_input": 1, "src": "/" + f["src"].lstrip("/"),
                 "dest": f["dest"],
                 "flags": ["follow_symlinks", "dir_contents", "create_parents"]}
            if "mode" in f:
                a["mode"] = int(str(f["mode"]), 8)
            actions.append(a)
        root = g.add("file", {"actions": actions}, [root, ctx],
                     name="COPY %d files" % len(files))
        history.append({"created_by": "COPY files", "comment": "kiln-frontend-apko"})

    for i, cmd in enumerate(spec.get("run") or []):
        params = {"argv": ["/bin/sh", "-c", cmd], "env": envlist, "cwd": workdir}
        if user:
            params["user"] = user
        root = g.add("exec", params, [root], name="RUN " + cmd, line=i + 1)
        history.append({"created_by": "RUN /bin/sh -c " + cmd, "comment": "kiln-frontend-apko"})

    config = {"Env": envlist, "WorkingDir": workdir}
    if user:
        config["User"] = user
    if "entrypoint" in spec:
        config["Entrypoint"] = spec["entrypoint"]
    if "cmd" in spec:
        config["Cmd"] = spec["cmd"]
    labels = dict(spec.get("labels") or {})
    labels.update(req.get("labels") or {})
    if labels:
        config["Labels"] = labels
    image = {"architecture": plat["arch"], "os": plat["os"], "config": config}
    if "variant" in plat:
        image["variant"] = plat["variant"]
    out = {"name": req.get("target") or "default", "vertex": g.vertices[root]["digest"],
           "config": image, "history": history}
    if base_ref:
        out["base_ref"] = base_ref
    json.dump({"version": 1, "vertices": g.vertices, "outputs": [out]}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
