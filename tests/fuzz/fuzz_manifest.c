/*
 * libFuzzer target: image documents from outside (registries, layouts).
 * Every manifest, index and config parser must reject or accept any bytes
 * without crashing, leaking or reading out of bounds; what a parser
 * accepts, the serializers must handle.
 */
#include "exec/image/image.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';

    struct kn_error *err = NULL;
    struct ex_manifest m = {0};
    if (ex_manifest_decode(s, size, NULL, &m, &err) == 0) {
        struct kn_buf b = KN_BUF_INIT;
        ex_manifest_build(&m.config, m.layers, m.nlayers, &b);
        struct ex_manifest again = {0};
        /* what we write, we read back */
        if (ex_manifest_decode(b.data, b.len, NULL, &again, NULL) < 0)
            abort();
        ex_manifest_release(&again);
        kn_buf_release(&b);
        ex_manifest_release(&m);
    }
    kn_err_free(err);
    err = NULL;

    struct ex_index ix = {0};
    if (ex_index_decode(s, size, NULL, &ix, &err) == 0) {
        struct ir_platform p = {.os = "linux", .arch = "amd64"};
        (void)ex_index_select(&ix, &p, NULL);
        ex_index_release(&ix);
    }
    kn_err_free(err);
    err = NULL;

    struct kn_buf oci = KN_BUF_INIT;
    (void)ex_manifest_to_oci(s, size, &oci, NULL);
    kn_buf_release(&oci);
    (void)ex_media_type_sniff(s, size);

    (void)ex_config_validate(s, size, true, NULL);
    struct ex_config *c = ex_config_parse(s, size, &err);
    if (c) {
        struct ex_config *base = ex_config_parse(s, size, NULL);
        (void)ex_config_set_base(c, s, size, NULL);
        ex_config_add_history(
            c, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "RUN fuzz", NULL, 0);
        struct kn_buf out = KN_BUF_INIT;
        ex_config_serialize(c, &out);
        kn_buf_release(&out);
        ex_config_free(base);
        ex_config_free(c);
    }
    kn_err_free(err);
    free(s);
    return 0;
}
