#!/usr/bin/env bats
# kiln build: parallel stages (seen in the --trace file), the build cache
# (no-change rebuilds, content-based COPY keys, --no-cache, --cache-dir),
# and the progress modes.

load helpers
load contexts/build_lib

setup() { build_setup; }
teardown() { kiln_teardown; }

four_stages() {
    cat >Dockerfile <<EOF
FROM $BASE AS one
RUN sleep 2 && echo one > /one
FROM $BASE AS two
RUN sleep 2 && echo two > /two
FROM $BASE AS three
RUN sleep 2 && echo three > /three
FROM $BASE AS four
RUN sleep 2 && echo four > /four
FROM $BASE
COPY --from=one /one /r/
COPY --from=two /two /r/
COPY --from=three /three /r/
COPY --from=four /four /r/
RUN cat /r/one /r/two /r/three /r/four > /all
EOF
}

@test "4 independent stages run at the same time (their RUN intervals intersect in the trace)" {
    four_stages
    start=$(date +%s%N)
    build_oci -j 4 --trace "$TESTDIR/trace.json"
    wall=$((($(date +%s%N) - start) / 1000000))
    assert_file all "$(printf 'one\ntwo\nthree\nfour')"
    jq -e 'type == "array"' "$TESTDIR/trace.json" >/dev/null
    # the four stages' RUN events: the latest start is before the earliest end
    run jq -r '[.[] | select(.ph == "X" and .cat == "exec" and (.name | test("sleep 2")))]
        | "\(length) \((map(.ts) | max) < (map(.ts + .dur) | min))"' "$TESTDIR/trace.json"
    assert_equal "$output" "4 true" "4 RUN events, all overlapping"
    # the threads they ran on are distinct
    run jq '[.[] | select(.ph == "X" and .cat == "exec" and (.name | test("sleep 2"))) | .tid] | unique | length' "$TESTDIR/trace.json"
    assert_equal "$output" "4" "worker threads"
    # reported, not asserted: speed is measured in bench/, not in tests
    echo "# 4 x RUN sleep 2: ${wall} ms wall" >&3
}

@test "a no-change rebuild reports every step CACHED" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE AS build
COPY a.txt /src/
RUN cat /src/a.txt > /src/out
FROM $BASE
WORKDIR /app
COPY --from=build /src/out .
COPY dir ./dir
RUN ls -R /app > /listing
EOF
    kbuild --iidfile "$TESTDIR/iid1" -o "type=oci,dest=$TESTDIR/o1" .
    [[ $(step_states | grep -c '^DONE') -eq 6 ]] || { step_states >&2; false; }
    sleep 1.1 # the rebuild is dated from the cache, not from the clock
    kbuild --iidfile "$TESTDIR/iid2" -o "type=oci,dest=$TESTDIR/o2" .
    step_states >"$TESTDIR/states"
    assert_equal "$(wc -l <"$TESTDIR/states")" "6" "steps"
    assert_equal "$(grep -vc '^CACHED' "$TESTDIR/states")" "0" "steps not cached"
    r1=$(skopeo inspect --raw --config "oci:$TESTDIR/o1" | jq -c .rootfs)
    r2=$(skopeo inspect --raw --config "oci:$TESTDIR/o2" | jq -c .rootfs)
    assert_equal "$r2" "$r1" "the same layers"
    assert_equal "$(cat "$TESTDIR/iid2")" "$(cat "$TESTDIR/iid1")" "the same image"
    # the image is as old as its newest layer, and the steps' dates follow
    # their order
    skopeo inspect --raw --config "oci:$TESTDIR/o1" >"$TESTDIR/c.json"
    assert_equal "$(jq -r '.created == .history[-1].created' "$TESTDIR/c.json")" true "image date"
    run jq -r '.history[-4:] | map(.created) | . == sort' "$TESTDIR/c.json"
    assert_equal "$output" "true" "history dates in order"
}

@test "editing one source file reruns only the steps that read it" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE
COPY a.txt /a
RUN cat /a > /a2
COPY b.txt /b
RUN cat /b > /b2
COPY dir/ /dir/
RUN echo last > /last
EOF
    kbuild -o "type=oci,dest=$TESTDIR/o1" .
    printf 'b changed\n' >b.txt
    kbuild -t x:latest -o "type=oci,dest=$TESTDIR/o2" .
    assert_equal "$(state_of 'COPY a.txt')" CACHED
    assert_equal "$(state_of 'RUN cat /a ')" CACHED
    assert_equal "$(state_of 'COPY b.txt')" DONE
    assert_equal "$(state_of 'RUN cat /b ')" DONE
    assert_equal "$(state_of 'COPY dir/')" DONE
    unpack_oci "$TESTDIR/o2"
    assert_file b2 "b changed"
    # a file no COPY reads busts nothing, nor does its mtime alone
    printf 'changed\n' >c.md
    touch a.txt
    kbuild .
    assert_equal "$(step_states | grep -vc '^CACHED')" "0" "steps rerun"
    # a file inside a copied directory busts that COPY
    echo new >dir/sub/new.txt
    kbuild .
    assert_equal "$(state_of 'COPY a.txt')" CACHED
    assert_equal "$(state_of 'COPY dir/')" DONE
    assert_equal "$(state_of 'RUN echo last')" DONE
}

@test "--no-cache runs every step again; the image is the same with --source-date-epoch" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo one > /one
COPY Dockerfile /df
EOF
    kbuild --source-date-epoch 1 --iidfile "$TESTDIR/iid1" .
    kbuild --no-cache --source-date-epoch 1 --iidfile "$TESTDIR/iid2" .
    assert_equal "$(step_states | grep -c '^DONE')" "2" "steps run"
    assert_equal "$(cat "$TESTDIR/iid2")" "$(cat "$TESTDIR/iid1")"
}

@test "--cache-dir holds the store; a second build with it is cached" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo c > /c
EOF
    kbuild --cache-dir "$TESTDIR/cache" .
    [[ -d $TESTDIR/cache && ! -e $KILN_ROOT ]] || { ls -la "$TESTDIR" >&2; false; }
    [[ -n $(find "$TESTDIR/cache" -type f | head -n 1) ]]
    kbuild --cache-dir "$TESTDIR/cache" .
    assert_equal "$(state_of 'RUN echo c')" CACHED
    # another store knows nothing of it
    kbuild --cache-dir "$TESTDIR/cache2" .
    assert_equal "$(state_of 'RUN echo c')" DONE
}

@test "--progress json: one event a line; plain prints RUN's output" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo printed-by-run
EOF
    kbuild .
    assert_stderr_contains "printed-by-run"
    run_kiln build --progress json --iidfile "$TESTDIR/iid" .
    while IFS= read -r line; do
        jq -e '.event and .time != null' <<<"$line" >/dev/null || {
            printf '# not a json event: %s\n' "$line" >&2
            false
        }
    done <<<"$stderr"
    jq -sr '.[] | select(.event == "cached") | .name' <<<"$stderr" >"$TESTDIR/cached"
    assert_file_contains "$TESTDIR/cached" "RUN echo printed-by-run"
    run_kiln build --progress quiet --no-cache --iidfile "$TESTDIR/iid" .
    assert_equal "$stderr" "" "quiet stderr"
}

@test "RUN --mount=type=bind of the context: the mounted files are part of the cache key" {
    mkdir -p src && echo v1 >src/input && echo other >unrelated
    cat >Dockerfile <<EOF
FROM $BASE
RUN --mount=type=bind,source=src,target=/src cat /src/input > /seen
RUN --mount=type=bind,target=/ctx cat /ctx/unrelated > /seen-all
EOF
    kbuild -o "type=local,dest=$TESTDIR/o1" .
    assert_equal "$(cat "$TESTDIR/o1/seen")" v1
    echo v2 >src/input
    kbuild -o "type=local,dest=$TESTDIR/o2" .
    assert_equal "$(state_of 'RUN --mount=type=bind,source=src')" DONE
    assert_equal "$(cat "$TESTDIR/o2/seen")" v2
    # a file outside the mounted source busts only the step mounting it
    echo changed >unrelated
    kbuild -o "type=local,dest=$TESTDIR/o3" .
    assert_equal "$(state_of 'RUN --mount=type=bind,source=src')" CACHED
    assert_equal "$(state_of 'RUN --mount=type=bind,target=/ctx')" DONE
    assert_equal "$(cat "$TESTDIR/o3/seen-all")" changed
}

@test "--cache-to / --cache-from type=registry: a build with an empty store reuses another's steps" {
    local cache
    cache=$KILN_TEST_REGISTRY/$(unique_repo buildcache)
    printf 'shared\n' >input.txt
    cat >Dockerfile <<EOF
FROM $BASE
COPY input.txt /input.txt
RUN date +%s%N > /stamp && cat /input.txt > /copied
EOF
    kbuild --cache-dir "$TESTDIR/one" --cache-to "type=registry,ref=$cache,mode=max" \
        -o "type=oci,dest=$TESTDIR/oci1" .
    assert_equal "$(state_of 'RUN date')" DONE
    # the entries are OCI artifacts tagged by cache key in the cache repository
    run skopeo list-tags --tls-verify=false "docker://$cache"
    [[ $status -eq 0 && $output == *'"sha256-'* ]] || { echo "$output" >&2; false; }
    kbuild --cache-dir "$TESTDIR/two" --cache-from "type=registry,ref=$cache" \
        -o "type=oci,dest=$TESTDIR/oci2" .
    assert_equal "$(state_of 'RUN date')" CACHED
    assert_equal "$(state_of 'COPY input.txt')" CACHED
    # the same layers: the RUN's /stamp came from the first build
    assert_equal "$(skopeo inspect "oci:$TESTDIR/oci2" | jq -c .Layers)" \
        "$(skopeo inspect "oci:$TESTDIR/oci1" | jq -c .Layers)" "layers"
    # a changed input misses the cache and runs again
    printf 'changed\n' >input.txt
    kbuild --cache-dir "$TESTDIR/three" --cache-from "$cache" .
    assert_equal "$(state_of 'RUN date')" DONE
}

@test "--cache-from / --cache-to: bad specs are usage errors" {
    printf 'FROM %s\n' "$BASE" >Dockerfile
    run_kiln 2 build --cache-to type=local,dest=/tmp/x .
    assert_stderr_contains "kiln: error: invalid --cache-to 'type=local,dest=/tmp/x': only type=registry is supported"
    run_kiln 2 build --cache-from "type=registry" .
    assert_stderr_contains "kiln: error: invalid --cache-from 'type=registry': needs type=registry,ref=REF"
    run_kiln 2 build --cache-to "type=registry,ref=r,mode=min" .
    assert_stderr_contains "kiln: error: invalid --cache-to 'type=registry,ref=r,mode=min': unsupported option 'mode=min'"
    run_kiln 2 build --cache-to "a/b" --cache-to "c/d" .
    assert_stderr_contains "kiln: error: only one --cache-to can be given"
}
