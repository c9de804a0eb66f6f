#!/usr/bin/env bats
# `kiln graph`: the Dockerfile frontend end to end through the real binary
# (stage pruning, shared vertices, DOT output, stdin, the exec: frontend, the
# OCI-layout base resolver, usage errors). Needs no registry.

load helpers

setup() {
    kiln_setup --no-fixture
    mkdir -p "$TESTDIR/ctx"
    cd "$TESTDIR/ctx" || return 1
}

teardown() {
    kiln_teardown
}

APKO=${KILN_SOURCE_DIR:-$BATS_TEST_DIRNAME/../..}/tools/frontends/kiln-frontend-apko.py

four_stages() {
    cat >Dockerfile <<'EOF'
FROM alpine:3.19 AS base
RUN apk add make
FROM base AS test
RUN make test
FROM golang:1.22 AS tools
RUN go install example.com/tool@latest
FROM base AS build
COPY --from=tools /go/bin/tool /usr/bin/tool
RUN make
EOF
}

@test "--target lowers only the stages the target needs" {
    four_stages
    run_kiln graph --no-resolve --format json --target build .
    stages=$(jq -r '[.vertices[].stage | select(. != null)] | unique | join(",")' <<<"$output")
    assert_equal "$stages" "base,build,tools"
    n=$(jq '.vertices | length' <<<"$output")
    # alpine, apk add, golang, go install, context-free COPY, make
    assert_equal "$n" 6
    assert_equal "$(jq -r '.outputs[0].name' <<<"$output")" build
    [[ $output != *"make test"* ]]

    run_kiln graph --no-resolve --format json --target test .
    stages=$(jq -r '[.vertices[].stage | select(. != null)] | unique | join(",")' <<<"$output")
    assert_equal "$stages" "base,test"
}

@test "two stages with the same instructions on the same base share vertices" {
    cat >Dockerfile <<'EOF'
FROM alpine:3.19 AS a
RUN apk add curl
RUN echo a
FROM alpine:3.19 AS b
RUN apk add curl
RUN echo b
FROM scratch
COPY --from=a /a /a
COPY --from=b /b /b
EOF
    run_kiln graph --no-resolve --format json .
    assert_equal "$(jq '[.vertices[] | select(.params.argv[2] == "apk add curl")] | length' <<<"$output")" 1
    assert_equal "$(jq '[.vertices[] | select(.op == "source.image")] | length' <<<"$output")" 1
    assert_equal "$(jq '[.vertices[] | select(.op == "exec")] | length' <<<"$output")" 3
}

@test "--format dot renders with graphviz" {
    require_tool dot
    four_stages
    run_kiln graph --no-resolve --format dot .
    printf '%s\n' "$output" >graph.dot
    dot -Tsvg graph.dot >graph.svg
    grep -q '<svg' graph.svg
    grep -q 'make' graph.svg
}

@test "the text format is the default and shows notes" {
    four_stages
    run_kiln graph --no-resolve --build-arg UNUSED=1 .
    assert_output_contains "source.image"
    assert_output_contains "note: base image configs not resolved: alpine:3.19, golang:1.22"
    assert_output_contains "note: build args were not consumed: UNUSED"
}

@test "-f - reads the Dockerfile from stdin and errors name the line" {
    run --separate-stderr "$KILN_BIN" graph --no-resolve -f - . <<<$'FROM alpine\nRUNN x\n'
    assert_equal "$status" 1
    assert_equal "${stderr_lines[0]}" "kiln: Dockerfile:2:1: error: unknown instruction: RUNN (did you mean RUN?)"
    assert_equal "${stderr_lines[1]}" "  | RUNN x"
    printf 'FROM alpine\nRUN echo hi\n' | "$KILN_BIN" graph --no-resolve --format json -f - . >out.json
    assert_equal "$(jq -r '.vertices[1].params.argv[2]' out.json)" "echo hi"
}

@test ".dockerignore, or DOCKERFILE.dockerignore, becomes the context's exclude list" {
    printf 'FROM alpine\nCOPY . /app/\n' >Dockerfile
    printf '# logs\n*.log\n!keep.log\n' >.dockerignore
    run_kiln graph --no-resolve --format json .
    assert_equal "$(jq -c '.vertices[] | select(.op == "source.local") | .params.exclude' <<<"$output")" '["*.log","!keep.log"]'
    cp Dockerfile app.Dockerfile
    printf 'secrets/\n' >app.Dockerfile.dockerignore
    run_kiln graph --no-resolve --format json -f app.Dockerfile .
    assert_equal "$(jq -c '.vertices[] | select(.op == "source.local") | .params.exclude' <<<"$output")" '["secrets"]'
}

@test "usage errors exit 2" {
    run_kiln 2 graph
    assert_stderr_contains "missing CONTEXT"
    run_kiln 2 graph --format yaml .
    assert_stderr_contains "invalid --format 'yaml': want text, json or dot"
    run_kiln 2 graph --bogus .
    assert_stderr_contains "unknown option '--bogus'"
    run_kiln 2 graph --build-context novalue .
    assert_stderr_contains "invalid --build-context 'novalue': want NAME=SRC"
}

@test "unknown target lists the stages" {
    four_stages
    run_kiln 1 graph --no-resolve --target nope .
    assert_stderr_contains "target stage 'nope' could not be found (stages: base, test, tools, build)"
}

@test "the JSON graph round-trips through --frontend ir" {
    four_stages
    run_kiln graph --no-resolve --format json .
    printf '%s\n' "$output" >graph.json
    run_kiln graph --frontend ir --format json -f graph.json .
    assert_equal "$output" "$(cat graph.json)"
}

@test "exec: frontend runs an external program" {
    require_tool python3
    echo 'print(1)' >app.py
    cat >spec.json <<'EOF'
{"base": "alpine:3.19", "env": {"A": "1"}, "workdir": "/app", "user": "app",
 "files": [{"src": "app.py", "dest": "/app/app.py", "mode": "0755"}],
 "run": ["apk add python3"], "entrypoint": ["python3", "/app/app.py"]}
EOF
    run_kiln graph --frontend "exec:$APKO" --format json --label team=x -f spec.json .
    assert_equal "$(jq -r '.vertices[0].params.ref' <<<"$output")" "alpine:3.19"
    assert_equal "$(jq -r '.vertices[-1].params.argv | join(" ")' <<<"$output")" "/bin/sh -c apk add python3"
    assert_equal "$(jq -r '.vertices[-1].params.user' <<<"$output")" "app"
    assert_equal "$(jq -r '.outputs[0].config.config.Labels.team' <<<"$output")" "x"
    assert_equal "$(jq -r '.outputs[0].config.config.Entrypoint | join(" ")' <<<"$output")" "python3 /app/app.py"
    # the same base as a Dockerfile's FROM: the same vertex digest
    printf 'FROM alpine:3.19\n' >Dockerfile
    run_kiln graph --no-resolve --format json .
    want=$(jq -r '.vertices[0].digest' <<<"$output")
    run_kiln graph --frontend "exec:$APKO" --format json -f spec.json .
    assert_equal "$(jq -r '.vertices[0].digest' <<<"$output")" "$want"
}

@test "exec: frontend failures are clear errors" {
    require_tool python3
    echo '{"base": 1,' >bad.json
    run_kiln 1 graph --frontend "exec:$APKO" -f bad.json .
    assert_stderr_contains "error: frontend 'exec:$APKO' failed with exit status 1"
    assert_stderr_contains "  | kiln-frontend-apko: error: invalid spec 'bad.json'"

    run_kiln 1 graph --frontend "exec:$TESTDIR/missing" -f bad.json .
    assert_stderr_contains "cannot start frontend 'exec:$TESTDIR/missing': No such file or directory"

    printf '#!/bin/sh\ncat >/dev/null\necho "{\\"version\\": 1}"\n' >"$TESTDIR/empty.sh"
    chmod +x "$TESTDIR/empty.sh"
    run_kiln 1 graph --frontend "exec:$TESTDIR/empty.sh" -f bad.json .
    assert_stderr_contains "frontend 'exec:$TESTDIR/empty.sh' produced invalid IR"

    printf '#!/bin/sh\necho "{}"\n' >"$TESTDIR/noread.sh"
    chmod +x "$TESTDIR/noread.sh"
    run_kiln 1 graph --frontend "exec:$TESTDIR/noread.sh" -f bad.json .
    assert_stderr_contains "frontend 'exec:$TESTDIR/noread.sh' produced invalid IR"
}

@test "a syntax directive may not pick an exec: frontend" {
    printf '# syntax=exec:/bin/sh\nFROM alpine\n' >Dockerfile
    run_kiln 2 graph --no-resolve .
    assert_stderr_contains "frontend 'exec:/bin/sh' cannot be selected by a syntax directive: use --frontend"
}

# An OCI layout with one image whose config sets ENV, WORKDIR, USER and an
# ONBUILD trigger, written by a script (no binary fixture in the tree).
make_layout() {
    python3 - "$1" <<'EOF'
import hashlib, json, os, sys
root = sys.argv[1]
os.makedirs(root + "/blobs/sha256", exist_ok=True)
def blob(obj):
    data = json.dumps(obj).encode()
    d = hashlib.sha256(data).hexdigest()
    open(root + "/blobs/sha256/" + d, "wb").write(data)
    return "sha256:" + d, len(data)
cfg, cfgsize = blob({"architecture": "amd64", "os": "linux",
    "config": {"Env": ["PATH=/usr/bin:/bin", "FROM_LAYOUT=yes"], "WorkingDir": "/srv",
               "User": "daemon", "OnBuild": ["RUN echo onbuild-from-layout"]},
    "rootfs": {"type": "layers", "diff_ids": []}})
man, mansize = blob({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfgsize},
    "layers": []})
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": man, "size": mansize, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]},
    open(root + "/index.json", "w"))
open(root + "/oci-layout", "w").write('{"imageLayoutVersion": "1.0.0"}')
EOF
}

@test "base configs resolve from an OCI layout build context" {
    require_tool python3
    make_layout "$TESTDIR/layout"
    printf 'FROM base\nRUN echo $FROM_LAYOUT\n' >Dockerfile
    run_kiln graph --format json --platform linux/amd64 --build-context "base=oci-layout://$TESTDIR/layout:v1" .
    assert_equal "$(jq -r '.vertices[0].params.ref' <<<"$output")" "oci-layout://$TESTDIR/layout:v1"
    # the ONBUILD trigger ran first, then the RUN, both with the layout's config
    assert_equal "$(jq -r '.vertices[1].params.argv[2]' <<<"$output")" "echo onbuild-from-layout"
    assert_equal "$(jq -r '.vertices[2].params.cwd' <<<"$output")" "/srv"
    assert_equal "$(jq -r '.vertices[2].params.user' <<<"$output")" "daemon"
    assert_equal "$(jq -r '.vertices[2].params.env | join(",")' <<<"$output")" "PATH=/usr/bin:/bin,FROM_LAYOUT=yes"
    assert_equal "$(jq -r '.notes | length' <<<"$output")" 0

    run_kiln 1 graph --platform linux/amd64 --build-context "base=oci-layout://$TESTDIR/layout:v2" .
    assert_stderr_contains "cannot resolve base image 'oci-layout://$TESTDIR/layout:v2': tag 'v2' not found in OCI layout '$TESTDIR/layout'"
}

@test "a 10,000-instruction Dockerfile lowers quickly" {
    {
        echo 'FROM alpine:3.19 AS base'
        for i in $(seq 1 2500); do
            echo "ENV V$((i % 50))=$i"
            echo "RUN echo step $i"
            echo "COPY file$((i % 10)) /dst/$i"
            echo "LABEL l$((i % 20))=\$V$((i % 50))"
        done
    } >Dockerfile
    start=$(date +%s%N)
    "$KILN_BIN" graph --no-resolve --format text . >graph.txt
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    echo "# kiln graph --format text of 10,001 instructions: ${ms} ms" >&3
    assert_equal "$(grep -c '^sha256\|^[0-9a-f]\{12\} ' graph.txt)" 5002
    "$KILN_BIN" graph --no-resolve --format json . >graph.json
    assert_equal "$(jq '.vertices | length' graph.json)" 5002
    # generous bound for slow CI machines; the target is 50 ms on a laptop
    [[ $ms -lt 5000 ]]
}
