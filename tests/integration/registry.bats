#!/usr/bin/env bats
# kiln login / logout against the fixture's registries: the TLS one (basic
# auth, a private CA) and the token one (bearer tokens). What is written to
# config.json (content, mode 0600, other keys kept), refused passwords, and
# that no password (nor its base64) ever shows in stdout or stderr, even with
# KILN_LOG=trace.

load helpers

setup_file() { kiln_setup_file; }
teardown_file() { kiln_teardown_file; }
setup() { kiln_setup; }
teardown() { kiln_teardown; }

config() { printf '%s/config.json' "$DOCKER_CONFIG"; }

# assert_no_secret SECRET...: neither stdout nor stderr holds any SECRET
assert_no_secret() {
    local s
    for s in "$@"; do
        if [[ $output == *"$s"* || $stderr == *"$s"* ]]; then
            printf '# a secret leaked into the output\n# --- stdout ---\n%s\n# --- stderr ---\n%s\n' \
                "$output" "$stderr" >&2
            return 1
        fi
    done
}

login_tls() {
    run_kiln "$@" login --registry-ca "$KILN_TEST_TLS_CA" -u "$KILN_TEST_TLS_USER" \
        --password-stdin "$KILN_TEST_REGISTRY_TLS" <<<"$KILN_TEST_TLS_PASS"
}

@test "login over TLS stores base64 credentials in config.json, mode 0600" {
    login_tls
    assert_output_contains "Login Succeeded"
    assert_no_secret "$KILN_TEST_TLS_PASS"
    local want
    want=$(printf '%s:%s' "$KILN_TEST_TLS_USER" "$KILN_TEST_TLS_PASS" | base64 -w0)
    assert_equal "$(jq -r --arg h "$KILN_TEST_REGISTRY_TLS" '.auths[$h].auth' "$(config)")" \
        "$want" "stored auth"
    assert_equal "$(stat -c %a "$(config)")" 600 "config.json mode"
}

@test "login keeps the other keys of config.json" {
    mkdir -p "$DOCKER_CONFIG"
    cat >"$(config)" <<'EOF'
{"auths": {"other.example:5000": {"auth": "eDp5"}}, "credHelpers": {"gcr.io": "gcloud"},
 "psFormat": "table {{.ID}}"}
EOF
    chmod 0644 "$(config)"
    login_tls
    assert_equal "$(jq -r '.auths["other.example:5000"].auth' "$(config)")" "eDp5" "other auth"
    assert_equal "$(jq -r '.credHelpers["gcr.io"]' "$(config)")" "gcloud" "credHelpers"
    assert_equal "$(jq -r '.psFormat' "$(config)")" "table {{.ID}}" "psFormat"
    assert_equal "$(stat -c %a "$(config)")" 600 "config.json mode after the rewrite"
}

@test "a wrong password fails with exit 1, writes nothing, and is not printed" {
    run_kiln 1 login --registry-ca "$KILN_TEST_TLS_CA" -u "$KILN_TEST_TLS_USER" \
        --password-stdin "$KILN_TEST_REGISTRY_TLS" <<<"WrongPassw0rd"
    assert_stderr_contains "kiln: error: authentication to $KILN_TEST_REGISTRY_TLS failed: invalid username or password"
    assert_no_secret "WrongPassw0rd" "$(printf '%s:WrongPassw0rd' "$KILN_TEST_TLS_USER" | base64 -w0)"
    [[ ! -e $(config) ]]
}

@test "login to a bearer-token registry" {
    run_kiln login -u "$KILN_TEST_TOKEN_USER" --password-stdin "$KILN_TEST_REGISTRY_TOKEN" \
        <<<"$KILN_TEST_TOKEN_PASS"
    assert_output_contains "Login Succeeded"
    assert_no_secret "$KILN_TEST_TOKEN_PASS"
    local want
    want=$(printf '%s:%s' "$KILN_TEST_TOKEN_USER" "$KILN_TEST_TOKEN_PASS" | base64 -w0)
    assert_equal "$(jq -r --arg h "$KILN_TEST_REGISTRY_TOKEN" '.auths[$h].auth' "$(config)")" \
        "$want" "stored auth"
    run_kiln 1 login -u "$KILN_TEST_TOKEN_USER" --password-stdin "$KILN_TEST_REGISTRY_TOKEN" \
        <<<"not-$KILN_TEST_TOKEN_PASS"
    assert_stderr_contains "authentication to $KILN_TEST_REGISTRY_TOKEN failed: invalid username or password"
    assert_no_secret "not-$KILN_TEST_TOKEN_PASS"
}

@test "KILN_LOG=trace shows the exchange but never a password, its base64 or a token" {
    local b64tls b64tok
    b64tls=$(printf '%s:%s' "$KILN_TEST_TLS_USER" "$KILN_TEST_TLS_PASS" | base64 -w0)
    b64tok=$(printf '%s:%s' "$KILN_TEST_TOKEN_USER" "$KILN_TEST_TOKEN_PASS" | base64 -w0)
    KILN_LOG=trace login_tls
    assert_stderr_contains "Authorization: Basic <redacted>"
    assert_no_secret "$KILN_TEST_TLS_PASS" "$b64tls"
    KILN_LOG=trace run_kiln login -u "$KILN_TEST_TOKEN_USER" --password-stdin \
        "$KILN_TEST_REGISTRY_TOKEN" <<<"$KILN_TEST_TOKEN_PASS"
    assert_stderr_contains "> GET $KILN_TEST_TOKEN_REALM?"
    assert_stderr_contains "Authorization: Bearer <redacted>"
    assert_no_secret "$KILN_TEST_TOKEN_PASS" "$b64tok" "Bearer ey" '"token"'
}

@test "logout removes the entry; logging out twice is not an error" {
    login_tls
    run_kiln logout "$KILN_TEST_REGISTRY_TLS"
    assert_output_contains "Removing login credentials for $KILN_TEST_REGISTRY_TLS"
    assert_equal "$(jq -r --arg h "$KILN_TEST_REGISTRY_TLS" '.auths[$h]' "$(config)")" null \
        "entry after logout"
    assert_equal "$(stat -c %a "$(config)")" 600 "config.json mode after logout"
    run_kiln logout "$KILN_TEST_REGISTRY_TLS"
    assert_stderr_contains "not logged in to $KILN_TEST_REGISTRY_TLS"
}

@test "--authfile is used instead of config.json" {
    local af=$TESTDIR/auth.json
    run_kiln login --authfile "$af" --registry-ca "$KILN_TEST_TLS_CA" -u "$KILN_TEST_TLS_USER" \
        --password-stdin "$KILN_TEST_REGISTRY_TLS" <<<"$KILN_TEST_TLS_PASS"
    [[ -f $af && ! -e $(config) ]]
    assert_equal "$(stat -c %a "$af")" 600 "auth file mode"
    run_kiln logout --authfile "$af" "$KILN_TEST_REGISTRY_TLS"
    assert_equal "$(jq -c .auths "$af")" "{}" "auths after logout"
}

@test "login without the CA fails on the certificate" {
    run_kiln 1 login -u "$KILN_TEST_TLS_USER" --password-stdin "$KILN_TEST_REGISTRY_TLS" \
        <<<"$KILN_TEST_TLS_PASS"
    assert_stderr_contains "cannot log in to $KILN_TEST_REGISTRY_TLS: SSL certificate problem"
    assert_no_secret "$KILN_TEST_TLS_PASS"
}

@test "usage errors exit 2" {
    run_kiln 2 login -u x --password-stdin </dev/null
    assert_stderr_contains "login needs exactly one registry host"
    run_kiln 2 login -u x -p y --password-stdin host.example </dev/null
    assert_stderr_contains "--password and --password-stdin are mutually exclusive"
    run_kiln 2 login --password-stdin host.example </dev/null
    assert_stderr_contains "--password-stdin needs --username"
    run_kiln 2 login -u x host.example </dev/null
    assert_stderr_contains "no password given (use --password-stdin) and no terminal to ask on"
    run_kiln 2 logout
    assert_stderr_contains "logout needs exactly one registry host"
}

@test "-p works but warns that the password is visible" {
    run_kiln login --registry-ca "$KILN_TEST_TLS_CA" -u "$KILN_TEST_TLS_USER" \
        -p "$KILN_TEST_TLS_PASS" "$KILN_TEST_REGISTRY_TLS"
    assert_stderr_contains "a password on the command line is visible to other users"
    assert_no_secret "$KILN_TEST_TLS_PASS"
}
