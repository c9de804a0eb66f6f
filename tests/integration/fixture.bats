#!/usr/bin/env bats
# shellcheck disable=SC2154 # bats sets output, stderr and status
# Tests of the test fixture itself (tests/fixture/), checked with tools that
# are not kiln's (skopeo, umoci, curl): the images are what the other tests
# assume, every registry serves them and enforces its auth, the fault proxy
# misbehaves as asked, and the helpers do what helpers.bash says.

load helpers

setup_file() { kiln_setup_file; }
teardown_file() { kiln_teardown_file; }

setup() {
    kiln_setup
    require_tool skopeo umoci curl jq
}

teardown() { kiln_teardown; }

# blob_path DIGEST: the file of a blob in the fixture's OCI layout.
blob_path() {
    printf '%s/blobs/%s\n' "$KILN_TEST_OCI" "${1/://}"
}

# layers TAG: the layer digests of TAG in the OCI layout, one a line.
layers() {
    local digest
    digest=$(jq -r --arg tag "$1" \
        '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $tag) | .digest' \
        "$KILN_TEST_OCI/index.json")
    jq -r '.layers[].digest' "$(blob_path "$digest")"
}

# unpack TAG DIR: umoci unpack (rootless, it works for every user) of TAG.
unpack() {
    umoci unpack --rootless --image "$KILN_TEST_OCI:$1" "$2" >/dev/null
}

# jwt_part TOKEN N: part N (0 header, 1 claims) of a JWT, decoded.
jwt_part() {
    "$KILN_PYTHON" -c 'import base64, sys
part = sys.argv[1].split(".")[int(sys.argv[2])]
sys.stdout.write(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode())' "$1" "$2"
}

# token [CURL OPTION...] QUERY: a token from the token server.
token() {
    local query=${*: -1}
    curl -sS --fail "${@:1:$#-1}" "$KILN_TEST_TOKEN_REALM?$query" | jq -r .token
}

@test "fixture: the env file sets every variable" {
    local var
    for var in KILN_TEST_FIXTURE KILN_TEST_STATE KILN_TEST_OCI KILN_TEST_BASE_DIGEST \
        KILN_TEST_LAYERED_DIGEST KILN_TEST_REGISTRY KILN_TEST_REGISTRY_TLS KILN_TEST_TLS_CA \
        KILN_TEST_TLS_CERT_DIR KILN_TEST_TLS_USER KILN_TEST_TLS_PASS KILN_TEST_REGISTRY_TOKEN \
        KILN_TEST_TOKEN_REALM KILN_TEST_TOKEN_SERVICE KILN_TEST_TOKEN_USER KILN_TEST_TOKEN_PASS; do
        [[ -n ${!var:-} ]] || {
            echo "# $var is not set" >&2
            return 1
        }
    done
    [[ -f $KILN_TEST_OCI/index.json && -f $KILN_TEST_TLS_CA && -f $KILN_TEST_TLS_CERT_DIR/ca.crt ]]
    [[ $KILN_TEST_BASE_DIGEST == sha256:* && $KILN_TEST_LAYERED_DIGEST == sha256:* ]]
    [[ -x $KILN_TEST_FIXTURE/start.sh ]]
}

@test "fixture: the OCI layout is valid and its digests are the env's" {
    umoci stat --image "$KILN_TEST_OCI:base" >/dev/null
    umoci stat --image "$KILN_TEST_OCI:layered" >/dev/null
    assert_equal "$(skopeo inspect --format '{{.Digest}}' "oci:$KILN_TEST_OCI:base")" \
        "$KILN_TEST_BASE_DIGEST" "base digest"
    assert_equal "$(skopeo inspect --format '{{.Digest}}' "oci:$KILN_TEST_OCI:layered")" \
        "$KILN_TEST_LAYERED_DIGEST" "layered digest"

    run skopeo inspect --config "oci:$KILN_TEST_OCI:base"
    [ "$status" -eq 0 ]
    assert_equal "$(jq -r '.os + "/" + .architecture' <<<"$output")" linux/amd64
    assert_equal "$(jq -c .config.Cmd <<<"$output")" '["/bin/sh"]'
    assert_equal "$(jq -r '.config.Env[]' <<<"$output")" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    assert_equal "$(layers base | wc -l)" 1 "base layer count"
    assert_equal "$(layers layered | wc -l)" 3 "layered layer count"
    assert_equal "$(layers layered | head -n1)" "$(layers base)" "layered's first layer"
}

@test "fixture: base holds busybox, its applets, root and kiln" {
    unpack base "$TESTDIR/bundle"
    local rootfs=$TESTDIR/bundle/rootfs
    [ -x "$rootfs/bin/busybox" ]
    assert_equal "$(readlink "$rootfs/bin/sh")" busybox "/bin/sh"
    assert_equal "$(readlink "$rootfs/bin/ls")" busybox "/bin/ls"
    [ -d "$rootfs/usr/bin" ] && [ -d "$rootfs/sbin" ] && [ -d "$rootfs/root" ]
    [ -d "$rootfs/home/kiln" ]
    assert_equal "$(stat -c %a "$rootfs/tmp")" 1777 "mode of /tmp"
    assert_file_contains "$rootfs/etc/passwd" "root:x:0:0:"
    assert_file_contains "$rootfs/etc/passwd" "kiln:x:1000:1000:kiln test user:/home/kiln:/bin/sh"
    assert_file_contains "$rootfs/etc/group" "kiln:x:1000:"
    # The busybox is static, so it runs here as it will in a container.
    # shellcheck disable=SC2016 # expanded by busybox sh
    assert_equal "$("$rootfs/bin/sh" -c 'echo $((6 * 7))')" 42 "busybox sh"

    # A rootless unpack cannot chown, so check the owners in the layer itself.
    run tar tvzf "$(blob_path "$(layers base)")"
    [ "$status" -eq 0 ]
    [[ $output == *" 1000/1000 "*" home/kiln/"* ]]
    [[ $output == *" 0/0 "*" bin/busybox"* ]]
}

@test "fixture: layered's layer 3 holds a whiteout and an opaque whiteout" {
    run tar tzf "$(blob_path "$(layers layered | sed -n 3p)")"
    [ "$status" -eq 0 ]
    [[ $'\n'$output$'\n' == *$'\ndata/.wh.b.txt\n'* ]]
    [[ $'\n'$output$'\n' == *$'\nopq/.wh..wh..opq\n'* ]]
    [[ $'\n'$output$'\n' == *$'\netc/layered-marker\n'* ]]

    run tar tvzf "$(blob_path "$(layers layered | sed -n 2p)")"
    [ "$status" -eq 0 ]
    [[ $output == *"data/hardlink link to data/a.txt"* ]]
    [[ $output == *"-rwsr-xr-x "*" data/setuid"* ]]
    [[ $output == *"drwxrwxrwt "*" data/sticky/"* ]]
}

@test "fixture: layered unpacks with b.txt gone and /opq replaced" {
    unpack layered "$TESTDIR/bundle"
    local rootfs=$TESTDIR/bundle/rootfs
    [ -f "$rootfs/data/a.txt" ] && [ -f "$rootfs/data/sub/c.txt" ]
    [ ! -e "$rootfs/data/b.txt" ]
    assert_equal "$(ls -A "$rootfs/opq")" z "contents of /opq"
    assert_equal "$(cat "$rootfs/etc/layered-marker")" layer3 "/etc/layered-marker"
    assert_equal "$(readlink "$rootfs/data/link")" a.txt "/data/link"
    assert_equal "$(stat -c %i "$rootfs/data/hardlink")" "$(stat -c %i "$rootfs/data/a.txt")" \
        "inode of the hard link"
    assert_equal "$(stat -c %a "$rootfs/data/setuid")" 4755 "mode of /data/setuid"
    assert_equal "$(stat -c %a "$rootfs/data/sticky")" 1777 "mode of /data/sticky"
    [ -x "$rootfs/bin/busybox" ]
}

@test "fixture: build-images.sh gives the same digests again" {
    "$KILN_FIXTURE_DIR/build-images.sh" "$TESTDIR/images"
    assert_equal "$(cat "$TESTDIR/images/digests")" \
        "$(printf 'base %s\nlayered %s' "$KILN_TEST_BASE_DIGEST" "$KILN_TEST_LAYERED_DIGEST")" \
        "digests"
    # A second run finds the complete directory and leaves it alone.
    touch "$TESTDIR/images/digests" -d @0
    "$KILN_FIXTURE_DIR/build-images.sh" "$TESTDIR/images"
    assert_equal "$(stat -c %Y "$TESTDIR/images/digests")" 0 "mtime of the untouched digests"
}

@test "fixture: the plain registry serves the images with the layout's digests" {
    local repo
    for repo in kiln/base library/busybox; do
        assert_equal "$(skopeo inspect --tls-verify=false --format '{{.Digest}}' \
            "docker://$KILN_TEST_REGISTRY/$repo:latest")" "$KILN_TEST_BASE_DIGEST" "$repo"
    done
    assert_equal "$(skopeo inspect --tls-verify=false --format '{{.Digest}}' \
        "docker://$KILN_TEST_REGISTRY/kiln/layered:latest")" "$KILN_TEST_LAYERED_DIGEST" layered
    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' "http://$KILN_TEST_REGISTRY/v2/")" 200
}

@test "fixture: the TLS registry serves the images to who has the CA and the password" {
    local creds=$KILN_TEST_TLS_USER:$KILN_TEST_TLS_PASS
    assert_equal "$(skopeo inspect --cert-dir "$KILN_TEST_TLS_CERT_DIR" --creds "$creds" \
        --format '{{.Digest}}' "docker://$KILN_TEST_REGISTRY_TLS/kiln/base:latest")" \
        "$KILN_TEST_BASE_DIGEST" base
    assert_equal "$(skopeo inspect --cert-dir "$KILN_TEST_TLS_CERT_DIR" --creds "$creds" \
        --format '{{.Digest}}' "docker://$KILN_TEST_REGISTRY_TLS/kiln/layered:latest")" \
        "$KILN_TEST_LAYERED_DIGEST" layered
    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$KILN_TEST_TLS_CA" \
        -u "$creds" "https://$KILN_TEST_REGISTRY_TLS/v2/")" 200
    # The certificate names both loopback spellings.
    local port=${KILN_TEST_REGISTRY_TLS##*:}
    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$KILN_TEST_TLS_CA" \
        -u "$creds" "https://localhost:$port/v2/")" 200 "via localhost"
}

@test "fixture: the TLS registry rejects wrong credentials" {
    run skopeo inspect --cert-dir "$KILN_TEST_TLS_CERT_DIR" --creds "$KILN_TEST_TLS_USER:wrong" \
        "docker://$KILN_TEST_REGISTRY_TLS/kiln/base:latest"
    [ "$status" -ne 0 ]
    [[ $output == *unauthorized* || $output == *"authentication required"* ]]
    run skopeo inspect --cert-dir "$KILN_TEST_TLS_CERT_DIR" \
        "docker://$KILN_TEST_REGISTRY_TLS/kiln/base:latest"
    [ "$status" -ne 0 ]
    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$KILN_TEST_TLS_CA" \
        -u "$KILN_TEST_TLS_USER:wrong" "https://$KILN_TEST_REGISTRY_TLS/v2/")" 401
    run curl -sS -D - -o /dev/null --cacert "$KILN_TEST_TLS_CA" "https://$KILN_TEST_REGISTRY_TLS/v2/"
    [[ ${output,,} == *"www-authenticate: basic realm="* ]] # HTTP/2 headers are lower case
}

@test "fixture: the TLS registry is refused without its CA" {
    run skopeo inspect --creds "$KILN_TEST_TLS_USER:$KILN_TEST_TLS_PASS" \
        "docker://$KILN_TEST_REGISTRY_TLS/kiln/base:latest"
    [ "$status" -ne 0 ]
    [[ $output == *x509* || $output == *certificate* ]]
    run curl -sS -o /dev/null -u "$KILN_TEST_TLS_USER:$KILN_TEST_TLS_PASS" \
        "https://$KILN_TEST_REGISTRY_TLS/v2/"
    [ "$status" -eq 60 ] # SSL certificate problem
}

@test "fixture: the token registry lets anyone pull" {
    assert_equal "$(skopeo inspect --tls-verify=false --format '{{.Digest}}' \
        "docker://$KILN_TEST_REGISTRY_TOKEN/kiln/base:latest")" "$KILN_TEST_BASE_DIGEST" anonymous
    assert_equal "$(skopeo inspect --tls-verify=false \
        --creds "$KILN_TEST_TOKEN_USER:$KILN_TEST_TOKEN_PASS" --format '{{.Digest}}' \
        "docker://$KILN_TEST_REGISTRY_TOKEN/kiln/base:latest")" "$KILN_TEST_BASE_DIGEST" tokenuser
    run curl -sS -D - -o /dev/null "http://$KILN_TEST_REGISTRY_TOKEN/v2/"
    [[ $output == *"Www-Authenticate: Bearer realm=\"$KILN_TEST_TOKEN_REALM\",service=\"$KILN_TEST_TOKEN_SERVICE\""* ]]
}

@test "fixture: the token registry takes pushes with credentials only" {
    local repo
    repo=$(unique_repo token-push)
    run skopeo copy --dest-tls-verify=false "oci:$KILN_TEST_OCI:base" \
        "docker://$KILN_TEST_REGISTRY_TOKEN/$repo:anonymous"
    [ "$status" -ne 0 ]
    [[ $output == *denied* || $output == *unauthorized* || $output == *"authentication required"* ]]

    skopeo copy --quiet --dest-tls-verify=false \
        --dest-creds "$KILN_TEST_TOKEN_USER:$KILN_TEST_TOKEN_PASS" \
        "oci:$KILN_TEST_OCI:layered" "docker://$KILN_TEST_REGISTRY_TOKEN/$repo:pushed"
    assert_equal "$(skopeo inspect --tls-verify=false --format '{{.Digest}}' \
        "docker://$KILN_TEST_REGISTRY_TOKEN/$repo:pushed")" "$KILN_TEST_LAYERED_DIGEST"

    run skopeo copy --dest-tls-verify=false --dest-creds "$KILN_TEST_TOKEN_USER:wrong" \
        "oci:$KILN_TEST_OCI:base" "docker://$KILN_TEST_REGISTRY_TOKEN/$repo:wrong"
    [ "$status" -ne 0 ]
}

@test "fixture: the token server grants pull to anyone, push to its user" {
    local scope="service=$KILN_TEST_TOKEN_SERVICE&scope=repository:kiln/base:pull,push"
    local tok claims
    tok=$(token "$scope")
    claims=$(jwt_part "$tok" 1)
    assert_equal "$(jq -c .access <<<"$claims")" \
        '[{"type":"repository","name":"kiln/base","actions":["pull"]}]' "anonymous access"
    assert_equal "$(jq -r .aud <<<"$claims")" "$KILN_TEST_TOKEN_SERVICE" aud
    assert_equal "$(jwt_part "$tok" 0 | jq -r '.alg + " " + (.x5c | length | tostring)')" "RS256 1"

    tok=$(token -u "$KILN_TEST_TOKEN_USER:$KILN_TEST_TOKEN_PASS" "$scope")
    assert_equal "$(jwt_part "$tok" 1 | jq -c '.access[0].actions')" '["pull","push"]' \
        "tokenuser's actions"
    assert_equal "$(jwt_part "$tok" 1 | jq -r .sub)" "$KILN_TEST_TOKEN_USER" sub

    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' -u "$KILN_TEST_TOKEN_USER:wrong" \
        "$KILN_TEST_TOKEN_REALM?$scope")" 401 "wrong password"

    # The OAuth2 form, with a refresh token.
    run curl -sS --fail -d grant_type=password -d "username=$KILN_TEST_TOKEN_USER" \
        -d "password=$KILN_TEST_TOKEN_PASS" -d "service=$KILN_TEST_TOKEN_SERVICE" \
        -d "scope=repository:kiln/base:pull,push" -d access_type=offline -d client_id=kiln \
        "$KILN_TEST_TOKEN_REALM"
    [ "$status" -eq 0 ]
    local refresh
    refresh=$(jq -r .refresh_token <<<"$output")
    [ -n "$refresh" ] && [ "$refresh" != null ]
    run curl -sS --fail -d grant_type=refresh_token -d "refresh_token=$refresh" \
        -d "service=$KILN_TEST_TOKEN_SERVICE" -d "scope=repository:kiln/base:pull" \
        "$KILN_TEST_TOKEN_REALM"
    [ "$status" -eq 0 ]
    assert_equal "$(jwt_part "$(jq -r .access_token <<<"$output")" 1 | jq -r .sub)" \
        "$KILN_TEST_TOKEN_USER" "sub of the refreshed token"
}

@test "fixture: the token registry checks the token's signature" {
    local tok forged url="http://$KILN_TEST_REGISTRY_TOKEN/v2/kiln/base/manifests/latest"
    local accept=application/vnd.oci.image.manifest.v1+json
    tok=$(token "service=$KILN_TEST_TOKEN_SERVICE&scope=repository:kiln/base:pull")
    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' -H "Accept: $accept" \
        -H "Authorization: Bearer $tok" "$url")" 200 "with the token"
    # Same signature, other claims: a registry that does not verify would take it.
    forged=$("$KILN_PYTHON" -c 'import base64, json, sys
h, c, s = sys.argv[1].split(".")
claims = json.loads(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)))
claims["sub"] = "mallory"
c = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
print(".".join((h, c, s)))' "$tok")
    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' -H "Accept: $accept" \
        -H "Authorization: Bearer $forged" "$url")" 401 "with a forged token"
}

@test "faultproxy: wrong-bytes makes skopeo copy fail with a digest error" {
    local port
    port=$(start_faultproxy wrong-bytes)
    run skopeo copy --src-tls-verify=false "docker://127.0.0.1:$port/kiln/base:latest" \
        "oci:$TESTDIR/out:base"
    [ "$status" -ne 0 ]
    [[ $output == *"Digest did not match"* ]]
    assert_file_contains "$FAULTPROXY_LOG" "GET /v2/kiln/base/blobs/sha256:"
}

@test "faultproxy: 500-once answers 500, then forwards" {
    local port
    port=$(start_faultproxy 500-once)
    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" 500 first
    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" 200 second
    assert_file_contains "$FAULTPROXY_LOG" "GET /v2/ 500 -"
    assert_file_contains "$FAULTPROXY_LOG" "GET /v2/ 200 -"
}

@test "faultproxy: 429-once answers 429 with Retry-After, then forwards" {
    local port
    port=$(start_faultproxy 429-once 2)
    run curl -sS -D - -o /dev/null "http://127.0.0.1:$port/v2/"
    [[ $output == *"HTTP/1.1 429"* ]]
    [[ $output == *"Retry-After: 1"* ]]
    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" 429 second
    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" 200 third
}

@test "faultproxy: drop-mid-blob cuts a blob in half, then answers a Range request" {
    local port digest size got
    port=$(start_faultproxy drop-mid-blob)
    digest=$(layers base)
    size=$(stat -c %s "$(blob_path "$digest")")
    local url="http://127.0.0.1:$port/v2/kiln/base/blobs/$digest"

    run curl -sS -o "$TESTDIR/blob" "$url"
    [ "$status" -eq 18 ] # partial file
    got=$(stat -c %s "$TESTDIR/blob")
    assert_equal "$got" $((size / 2)) "bytes before the drop"

    run curl -sS -D "$TESTDIR/headers" -H "Range: bytes=$got-" -o "$TESTDIR/rest" "$url"
    [ "$status" -eq 0 ]
    assert_file_contains "$TESTDIR/headers" "HTTP/1.1 206"
    assert_file_contains "$TESTDIR/headers" "Content-Range: bytes $got-$((size - 1))/$size"
    assert_equal "sha256:$(cat "$TESTDIR/blob" "$TESTDIR/rest" | sha256sum | cut -d' ' -f1)" \
        "$digest" "digest of the resumed blob"
    assert_file_contains "$FAULTPROXY_LOG" "GET /v2/kiln/base/blobs/$digest 206 bytes=$got-"
}

@test "faultproxy: refuse closes the connection, then forwards" {
    local port
    port=$(start_faultproxy refuse)
    run curl -sS -o /dev/null "http://127.0.0.1:$port/v2/"
    [ "$status" -eq 52 ] || [ "$status" -eq 56 ] # empty reply, or reset
    assert_equal "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" 200 second
    assert_file_contains "$FAULTPROXY_LOG" "GET /v2/ 000 -"
}

@test "faultproxy: slow holds a blob back for --delay seconds" {
    local port start
    port=$(start_faultproxy slow 1 --delay 1)
    start=$SECONDS
    curl -sS --fail -o /dev/null "http://127.0.0.1:$port/v2/kiln/base/blobs/$(layers base)"
    ((SECONDS - start >= 1))
    curl -sS --fail -o /dev/null "http://127.0.0.1:$port/v2/"
}

@test "mktar.py writes the entries it is told to, hostile ones too" {
    "$KILN_PYTHON" "$KILN_FIXTURE_DIR/mktar.py" --mtime 0 --gzip "$TESTDIR/evil.tar.gz" <<'EOF'
# a layer no honest tool writes
file ../escape data='out\n'
file /abs mode=0600
symlink link /etc/passwd
hardlink hl ../../etc/shadow
chardev null 1 3
whiteout dir/gone
opaque dir
file "name with spaces" data=x uid=1000 gid=1000
EOF
    # tar(1) tidies names up when it lists them; tarfile shows them as stored.
    run "$KILN_PYTHON" -c 'import sys, tarfile
for m in tarfile.open(sys.argv[1]):
    print(m.type.decode(), m.name, m.linkname or "-", m.uid, m.gid, oct(m.mode), m.size)' \
        "$TESTDIR/evil.tar.gz"
    [ "$status" -eq 0 ]
    assert_equal "$output" "0 ../escape - 0 0 0o644 4
0 /abs - 0 0 0o600 0
2 link /etc/passwd 0 0 0o777 0
1 hl ../../etc/shadow 0 0 0o644 0
3 null - 0 0 0o666 0
0 dir/.wh.gone - 0 0 0o644 0
0 dir/.wh..wh..opq - 0 0 0o644 0
0 name with spaces - 1000 1000 0o644 1" "the archive's entries"
}

@test "faultproxy: pass forwards pulls and pushes unchanged" {
    local port repo
    port=$(start_faultproxy pass)
    repo=$(unique_repo proxied)
    skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
        "docker://127.0.0.1:$port/kiln/layered:latest" "docker://127.0.0.1:$port/$repo:latest"
    assert_equal "$(skopeo inspect --tls-verify=false --format '{{.Digest}}' \
        "docker://$KILN_TEST_REGISTRY/$repo:latest")" "$KILN_TEST_LAYERED_DIGEST"
    assert_file_contains "$FAULTPROXY_LOG" "PUT /v2/$repo/manifests/latest 201 -"
}

@test "helpers: run_kiln checks the exit status and separates the streams" {
    printf '#!/bin/sh\necho "out $*"\necho err >&2\nexit 3\n' >"$TESTDIR/fake-kiln"
    chmod +x "$TESTDIR/fake-kiln"
    export KILN_BIN=$TESTDIR/fake-kiln
    run_kiln 3 build .
    assert_equal "$output" "out build ." stdout
    assert_equal "$stderr" err stderr
    run run_kiln build .
    [ "$status" -eq 1 ]
    [[ $output == *"exit status 3, expected 0"* ]]
}

@test "helpers: require_tool fails instead of skipping when CI=true" {
    CI=true run require_tool kiln-no-such-tool
    [ "$status" -eq 1 ]
    [[ $output == *"kiln-no-such-tool not installed"* ]]
    require_tool sh
}

@test "helpers: processes of a test are registered for teardown" {
    local port pid
    port=$(start_faultproxy pass)
    [ -n "$port" ]
    pid=$(tail -n1 "$BATS_TEST_TMPDIR/.kiln-pids")
    _kiln_alive "$pid"
    _kiln_kill_registered
    run _kiln_alive "$pid"
    [ "$status" -ne 0 ]
}
