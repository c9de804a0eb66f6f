/*
 * Unit tests for the -o/--output SPEC parser (tools/output.c, compiled in
 * here since tools/ is not a library): every type, tar detection, names,
 * quoting, and each usage error with its exact message.
 */
#include "tap.h"

#include "tools/output.c"

static const char *parse_err(const char *spec)
{
    static char buf[512];
    struct ex_output o;
    struct kn_error *e = NULL;
    if (kiln_output_parse(spec, EX_OUTPUT_OCI, &o, &e) == 0) {
        ex_output_release(&o);
        return "(accepted)";
    }
    snprintf(buf, sizeof(buf), "%s%s", e->code == KN_E_USAGE ? "" : "[not usage] ", e->msg);
    kn_err_free(e);
    return buf;
}

int main(void)
{
    struct ex_output o;
    struct kn_error *e = NULL;

    is_int(kiln_output_parse("type=oci,dest=out", EX_OUTPUT_OCI, &o, &e), 0, "oci dir");
    is_int(o.type, EX_OUTPUT_OCI, "type oci");
    is_str(o.dest, "out", "dest");
    ok(!o.tar, "a directory");
    ex_output_release(&o);

    is_int(kiln_output_parse("type=oci,dest=/x/img.tar", EX_OUTPUT_OCI, &o, &e), 0, "oci tar");
    ok(o.tar, "dest ending in .tar is an archive");
    ex_output_release(&o);

    is_int(kiln_output_parse("type=oci,dest=img.tar,tar=false", EX_OUTPUT_OCI, &o, &e), 0,
           "tar=false");
    ok(!o.tar, "tar=false wins over the suffix");
    ex_output_release(&o);

    is_int(kiln_output_parse("dest=archive,tar=true", EX_OUTPUT_OCI, &o, &e), 0, "default type");
    is_int(o.type, EX_OUTPUT_OCI, "default type applied");
    ok(o.tar, "tar=true");
    ex_output_release(&o);

    is_int(kiln_output_parse("some/dir", EX_OUTPUT_LOCAL, &o, &e), 0, "bare path");
    is_int(o.type, EX_OUTPUT_LOCAL, "bare path gets the default type");
    is_str(o.dest, "some/dir", "bare path is the dest");
    ex_output_release(&o);

    is_int(kiln_output_parse("type=docker,dest=img.tar,name=a:1", EX_OUTPUT_OCI, &o, &e), 0,
           "docker");
    is_int(o.type, EX_OUTPUT_DOCKER, "type docker");
    ok(!o.tar, "tar is only for oci");
    is_int(o.names.n, 1, "one name");
    is_str(o.names.v[0], "a:1", "name");
    ex_output_release(&o);

    is_int(kiln_output_parse("type=local,\"name=x:1,y:2\",dest=d", EX_OUTPUT_OCI, &o, &e), 0,
           "quoted field with commas");
    is_int(o.type, EX_OUTPUT_LOCAL, "type local");
    is_int(o.names.n, 2, "two names");
    is_str(o.names.v[1], "y:2", "second name");
    is_str(o.dest, "d", "dest after the quoted field");
    ex_output_release(&o);

    is_int(kiln_output_parse("type=registry,name=h/x:1,name=h/y:2", EX_OUTPUT_OCI, &o, &e), 0,
           "registry");
    is_int(o.type, EX_OUTPUT_REGISTRY, "type registry");
    ok(o.dest == NULL, "no dest");
    is_int(o.names.n, 2, "repeated name= adds");
    ex_output_release(&o);

    is_int(kiln_output_parse("type=image,push=true", EX_OUTPUT_OCI, &o, &e), 0, "image,push");
    is_int(o.type, EX_OUTPUT_REGISTRY, "type=image,push=true is registry");
    ex_output_release(&o);

    is_str(parse_err(""), "invalid output '': empty", "empty spec");
    is_str(parse_err("type=oci"), "invalid output 'type=oci': missing dest=PATH", "no dest");
    is_str(parse_err("type=tarball,dest=x"),
           "invalid output 'type=tarball,dest=x': unknown type 'tarball' (want oci, docker, local "
           "or registry)",
           "unknown type");
    is_str(parse_err("type=oci,dest=x,color=red"),
           "invalid output 'type=oci,dest=x,color=red': unknown key 'color'", "unknown key");
    is_str(parse_err("type=oci,type=docker,dest=x"),
           "invalid output 'type=oci,type=docker,dest=x': type given twice", "type twice");
    is_str(parse_err("dest=a,dest=b"), "invalid output 'dest=a,dest=b': dest given twice",
           "dest twice");
    is_str(parse_err("type=oci,,dest=x"), "invalid output 'type=oci,,dest=x': empty field",
           "empty field");
    is_str(parse_err("type=oci,\"dest=x"), "invalid output 'type=oci,\"dest=x': unterminated quote",
           "unterminated quote");
    is_str(parse_err("type=oci,dest=x,tar=maybe"),
           "invalid output 'type=oci,dest=x,tar=maybe': tar wants true or false, not 'maybe'",
           "bad bool");
    is_str(parse_err("type=docker,dest=x,tar=true"),
           "invalid output 'type=docker,dest=x,tar=true': tar= applies to type=oci only",
           "tar on docker");
    is_str(parse_err("type=registry,dest=x"),
           "invalid output 'type=registry,dest=x': type=registry takes no dest", "registry dest");
    is_str(parse_err("type=oci,dest=-"),
           "invalid output 'type=oci,dest=-': dest=- (stdout) is not supported", "stdout");
    is_str(parse_err("type=oci,dest="), "invalid output 'type=oci,dest=': empty dest",
           "empty dest");
    is_str(parse_err("type=oci,dest=x,name="), "invalid output 'type=oci,dest=x,name=': empty name",
           "empty name");
    is_str(parse_err("type=oci,dest=x,name=a,,b"),
           "invalid output 'type=oci,dest=x,name=a,,b': empty field", "empty name in a list");
    is_str(parse_err("type=oci,dest=x,push=true"),
           "invalid output 'type=oci,dest=x,push=true': push=true needs type=registry",
           "push on oci");
    is_str(parse_err("a,b"), "invalid output 'a,b': field 'a' is not key=value", "bare fields");
    return tap_done();
}
