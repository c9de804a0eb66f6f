/*
 * Path patterns, shared by the frontend (.dockerignore, COPY --exclude) and
 * exec (walking a context, matching COPY wildcards).
 *
 * Single-pattern matching follows Go's filepath.Match (`*`, `?`, `[a-z]`,
 * `[^a]`, `\` escapes; `*` does not cross `/`). Pattern lists follow the
 * .dockerignore rules: patterns are cleaned (leading `/` and `./` dropped,
 * `..` resolved), `**` matches any number of directories, a pattern matches
 * a path when it matches the path or any of its parent directories, a
 * leading `!` makes an exception, and the last matching pattern wins.
 * Compiled lists are immutable and thread-safe to share.
 */
#ifndef KILN_PATTERN_H
#define KILN_PATTERN_H

#include "base.h"

/* filepath.Match: 0 with *match set, or -1 with *err for a malformed pattern. */
int kn_glob_match(const char *pattern, const char *name, bool *match, struct kn_error **err);
/* True if the pattern has a glob metacharacter (`*?[` or `\`). */
bool kn_glob_has_meta(const char *pattern);

struct kn_patterns;
/* Compiles .dockerignore-style patterns; NULL with *err for a malformed one. */
struct kn_patterns *kn_patterns_new(char *const *patterns, size_t n, struct kn_error **err);
void kn_patterns_free(struct kn_patterns *p);
/* True if `path` (relative, '/'-separated, no leading "./") is matched,
 * i.e. excluded by an exclude list. */
bool kn_patterns_match(const struct kn_patterns *p, const char *path);
/* True if a walk must descend into directory `dir` even though it matches,
 * because an exception pattern may re-include something below it. */
bool kn_patterns_has_exceptions_under(const struct kn_patterns *p, const char *dir);

/* Cleans a path like Go's filepath.Clean ("a/./b/../c/" -> "a/c"). Caller frees. */
char *kn_path_clean(const char *path);

#endif
