/*
 * Unit test for --trace: the Chrome trace of a small run is valid JSON
 * (parsed with jansson), with one complete ("X") event per vertex that ran,
 * each on a worker slot's track with its digest and cached flag, and the
 * tracks named.
 */
#include "fake.h"
#include "tap.h"

#include <jansson.h>

int main(void)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t a = gadd(g, "[s 1/4] FROM a", NULL, 0);
    uint32_t b = gadd1(g, "[s 2/4] RUN \"b\"", a);
    uint32_t c = gadd1(g, "[s 3/4] RUN c", a);
    uint32_t d = gadd2(g, "[s 4/4] COPY --from=x", b, c);
    uint32_t pull = gadd(g, "pull", NULL, 0);
    struct fake *f = fake_new(g);
    char key[SCHED_KEY_SIZE];
    fake_key(g, a, NULL, key);
    fake_cache_add(f, key, "[s 1/4] FROM a");
    f->sleep_ms[b] = 30;
    f->sleep_ms[c] = 30;
    f->io[pull] = true;
    struct sched_handlers h = fake_handlers(f);
    char *path = kn_asprintf("%s/trace.json", tap_tmpdir());
    struct sched_opts o = {.jobs = 2, .io_jobs = 1, .trace_path = path};
    uint32_t roots[] = {d, pull};
    void *res[2];
    struct sched_stats st;
    struct kn_error *err = NULL;
    is_int(sched_run(g, roots, 2, &h, &o, res, &st, &err), 0, "trace: run succeeds");
    fake_release(f, res[0]);
    fake_release(f, res[1]);

    json_error_t je;
    json_t *arr = json_load_file(path, 0, &je);
    ok(arr != NULL, "trace: valid JSON (%s)", arr ? "ok" : je.text);
    ok(json_is_array(arr), "trace: an array");
    int x = 0, cached = 0, bad = 0, names = 0;
    bool seen[5] = {0};
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *ph = json_string_value(json_object_get(e, "ph"));
        if (ph && strcmp(ph, "M") == 0) {
            const char *n = json_string_value(json_object_get(json_object_get(e, "args"), "name"));
            if (n && (strcmp(n, "cpu 1") == 0 || strcmp(n, "cpu 2") == 0 || strcmp(n, "io 1") == 0))
                names++;
            continue;
        }
        if (!ph || strcmp(ph, "X") != 0) {
            bad++;
            continue;
        }
        x++;
        json_t *args = json_object_get(e, "args");
        json_int_t vi = json_integer_value(json_object_get(args, "vertex"));
        json_int_t tid = json_integer_value(json_object_get(e, "tid"));
        const char *digest = json_string_value(json_object_get(args, "digest"));
        const char *name = json_string_value(json_object_get(e, "name"));
        if (vi < 0 || vi >= 5 || seen[vi] || !digest || strcmp(digest, g->v[vi].digest) != 0 ||
            !name || strcmp(name, g->v[vi].name) != 0 ||
            json_integer_value(json_object_get(e, "pid")) != 1 ||
            !json_is_integer(json_object_get(e, "ts")) ||
            !json_is_integer(json_object_get(e, "dur"))) {
            bad++;
            continue;
        }
        seen[vi] = true;
        /* CPU work on slots 1-2, the pull on the I/O slot 3 */
        if ((uint32_t)vi == pull ? tid != 3 : (tid < 1 || tid > 2))
            bad++;
        if (json_is_true(json_object_get(args, "cached"))) {
            cached++;
            if ((uint32_t)vi != a)
                bad++;
        }
        if ((uint32_t)vi == b && json_integer_value(json_object_get(e, "dur")) < 30000)
            bad++;
    }
    is_int(x, 5, "trace: one X event per vertex that ran");
    is_int((size_t)x, st.executed + st.cached, "trace: as many as executed + cached");
    is_int(cached, 1, "trace: the cached vertex is marked");
    is_int(bad, 0, "trace: every event has name, digest, vertex, pid 1, ts, dur, its slot");
    is_int(names, 3, "trace: the worker tracks are named");
    json_decref(arr);
    free(path);
    fake_free(f);
    ir_graph_free(g);
    return tap_done();
}
