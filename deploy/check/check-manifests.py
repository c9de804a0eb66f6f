#!/usr/bin/env python3
"""Checks deploy/'s Kubernetes and Tekton manifests: every file parses as
YAML (python3-yaml), and each says what docs/kubernetes.md promises: the
Jobs run `kiln executor` with the Secret at /kaniko/.docker, job.yaml as
non-root with what userns isolation needs, job-chroot.yaml in chroot
isolation; the context ConfigMap holds deploy/example byte for byte; the
Tekton Task has the catalog kaniko Task's params, workspaces and results.
Usage: check-manifests.py DEPLOY_DIR. Prints one line per problem, exits 1
if there is any."""
import json
import os
import sys

import yaml

deploy = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(__file__))
problems = []


def check(cond, what):
    if not cond:
        problems.append(what)


def load(rel):
    path = os.path.join(deploy, rel)
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    check(len(docs) == 1, f"{rel}: expected one document, got {len(docs)}")
    return docs[0] if docs else {}


def job_checks(rel, isolation):
    job = load(rel)
    check(job.get("apiVersion") == "batch/v1" and job.get("kind") == "Job", f"{rel}: not a Job")
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c.get("args", [])
    check(args[:1] == ["executor"], f"{rel}: args do not start with executor: {args}")
    check(f"--isolation={isolation}" in args, f"{rel}: no --isolation={isolation}")
    check(any(a.startswith("--destination=") for a in args), f"{rel}: no --destination")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    dc = vols.get(mounts.get("/kaniko/.docker"), {})
    check(dc.get("secret", {}).get("items") == [{"key": ".dockerconfigjson", "path": "config.json"}],
          f"{rel}: the docker config Secret is not mounted as /kaniko/.docker/config.json")
    check("emptyDir" in vols.get(mounts.get("/var/lib/kiln"), {}), f"{rel}: no store volume")
    check(pod.get("restartPolicy") == "Never", f"{rel}: restartPolicy is not Never")
    return pod, c


pod, c = job_checks("kubernetes/job.yaml", "userns")
sc = pod.get("securityContext", {})
check(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 1000,
      "kubernetes/job.yaml: not running as non-root uid 1000")
check(pod.get("hostUsers") is False, "kubernetes/job.yaml: hostUsers is not false")
check(sc.get("seccompProfile", {}).get("type") == "Unconfined",
      "kubernetes/job.yaml: seccomp is not Unconfined")
csc = c.get("securityContext", {})
check(csc.get("procMount") == "Unmasked", "kubernetes/job.yaml: procMount is not Unmasked")
check(csc.get("allowPrivilegeEscalation") is False,
      "kubernetes/job.yaml: allowPrivilegeEscalation is not false")

job_checks("kubernetes/job-chroot.yaml", "chroot")

secret = load("kubernetes/secret.example.yaml")
check(secret.get("kind") == "Secret" and secret.get("type") == "kubernetes.io/dockerconfigjson",
      "kubernetes/secret.example.yaml: not a dockerconfigjson Secret")
try:
    check("auths" in json.loads(secret["stringData"][".dockerconfigjson"]),
          "kubernetes/secret.example.yaml: no auths")
except (KeyError, ValueError) as e:
    problems.append(f"kubernetes/secret.example.yaml: .dockerconfigjson: {e}")

cm = load("kubernetes/context.example.yaml")
for name in ("Dockerfile", "hello.sh"):
    with open(os.path.join(deploy, "example", name)) as f:
        check(cm.get("data", {}).get(name) == f.read(),
              f"kubernetes/context.example.yaml: {name} differs from deploy/example/{name}")

task = load("tekton/task.yaml")
check(task.get("kind") == "Task" and task.get("apiVersion", "").startswith("tekton.dev/"),
      "tekton/task.yaml: not a Tekton Task")
spec = task.get("spec", {})
params = {p["name"]: p for p in spec.get("params", [])}
check(list(params) == ["IMAGE", "DOCKERFILE", "CONTEXT", "EXTRA_ARGS", "BUILDER_IMAGE"],
      f"tekton/task.yaml: params {list(params)}")
check(params.get("EXTRA_ARGS", {}).get("type") == "array", "tekton/task.yaml: EXTRA_ARGS not an array")
check(params.get("DOCKERFILE", {}).get("default") == "./Dockerfile" and
      params.get("CONTEXT", {}).get("default") == "./",
      "tekton/task.yaml: DOCKERFILE / CONTEXT defaults differ from the kaniko task's")
check([r["name"] for r in spec.get("results", [])] == ["IMAGE_DIGEST", "IMAGE_URL"],
      "tekton/task.yaml: results")
ws = {w["name"]: w for w in spec.get("workspaces", [])}
check(list(ws) == ["source", "dockerconfig"] and ws["dockerconfig"].get("optional") is True and
      ws["dockerconfig"].get("mountPath") == "/kaniko/.docker", "tekton/task.yaml: workspaces")
step = spec.get("steps", [{}])[0]
text = json.dumps(step)
for ref in ("$(params.IMAGE)", "$(params.DOCKERFILE)", "$(params.CONTEXT)", "$(params.EXTRA_ARGS)",
            "$(params.BUILDER_IMAGE)", "$(results.IMAGE_DIGEST.path)"):
    check(ref in text, f"tekton/task.yaml: the build step does not use {ref}")
check(step.get("command") == ["/usr/local/bin/kiln", "executor"],
      "tekton/task.yaml: the build step does not run kiln executor")
check("$(results.IMAGE_URL.path)" in json.dumps(spec.get("steps", [])),
      "tekton/task.yaml: nothing writes IMAGE_URL")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
