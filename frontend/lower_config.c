/*
 * The OCI image config of a stage: read from a base image's config document
 * (what the resolver returns) and written as the output's config document
 * (architecture, os, variant, author, config{Env, Cmd, Entrypoint,
 * WorkingDir, User, Labels, ExposedPorts, Volumes, StopSignal, Healthcheck,
 * Shell, OnBuild}). Keys are written sorted so equal configs are equal bytes.
 * Uses jansson (linked through kiln_ir); no jansson type leaves this file.
 */
#include "frontend/internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define LW_MAX_CONFIG (16u << 20)

static void read_strings(struct lw *lw, json_t *arr, lw_strvec *out, bool *has)
{
    out->n = 0;
    if (has)
        *has = json_is_array(arr);
    if (!json_is_array(arr))
        return;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v))
            kn_vec_push(out, lw_strdup(lw, json_string_value(v)));
    }
}

static void read_keys(struct lw *lw, json_t *obj, lw_strvec *out)
{
    out->n = 0;
    if (!json_is_object(obj))
        return;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        (void)v;
        kn_vec_push(out, lw_strdup(lw, k));
    }
}

static char *opt_string(struct lw *lw, json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) && *json_string_value(v) ? lw_strdup(lw, json_string_value(v)) : NULL;
}

int lw_image_from_json(struct lw *lw, const char *json, struct lw_image *img, struct kn_error **err)
{
    size_t len = strlen(json);
    if (len > LW_MAX_CONFIG)
        return kn_err_set(err, KN_E_UNSAFE, "image config too large (%zu bytes)", len);
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return kn_err_set(err, KN_E_PARSE, "invalid image config JSON: %s", je.text);
    }
    img->author = opt_string(lw, root, "author");
    json_t *c = json_object_get(root, "config");
    if (json_is_object(c)) {
        read_strings(lw, json_object_get(c, "Env"), &img->env, NULL);
        read_strings(lw, json_object_get(c, "Cmd"), &img->cmd, &img->has_cmd);
        read_strings(lw, json_object_get(c, "Entrypoint"), &img->entrypoint, &img->has_entrypoint);
        read_strings(lw, json_object_get(c, "Shell"), &img->shell, &img->has_shell);
        read_strings(lw, json_object_get(c, "OnBuild"), &img->onbuild, NULL);
        read_keys(lw, json_object_get(c, "ExposedPorts"), &img->ports);
        read_keys(lw, json_object_get(c, "Volumes"), &img->volumes);
        img->workdir = opt_string(lw, c, "WorkingDir");
        img->user = opt_string(lw, c, "User");
        img->stopsignal = opt_string(lw, c, "StopSignal");
        img->args_escaped = json_is_true(json_object_get(c, "ArgsEscaped"));
        json_t *labels = json_object_get(c, "Labels");
        img->labels.n = 0;
        if (json_is_object(labels)) {
            const char *k;
            json_t *v;
            json_object_foreach(labels, k, v)
            {
                struct lw_kv kv = {lw_strdup(lw, k),
                                   lw_strdup(lw, json_is_string(v) ? json_string_value(v) : "")};
                kn_vec_push(&img->labels, kv);
            }
        }
        json_t *h = json_object_get(c, "Healthcheck");
        if (json_is_object(h)) {
            img->health.set = true;
            read_strings(lw, json_object_get(h, "Test"), &img->health.test, NULL);
            img->health.interval = json_integer_value(json_object_get(h, "Interval"));
            img->health.timeout = json_integer_value(json_object_get(h, "Timeout"));
            img->health.start_period = json_integer_value(json_object_get(h, "StartPeriod"));
            img->health.start_interval = json_integer_value(json_object_get(h, "StartInterval"));
            img->health.retries = (int)json_integer_value(json_object_get(h, "Retries"));
        }
    }
    json_decref(root);
    return 0;
}

static void copy_vec(lw_strvec *dst, const lw_strvec *src)
{
    memset(dst, 0, sizeof(*dst));
    for (size_t i = 0; i < src->n; i++)
        kn_vec_push(dst, src->v[i]);
}

void lw_image_copy(struct lw_image *dst, const struct lw_image *src)
{
    lw_image_release(dst);
    *dst = *src;
    copy_vec(&dst->env, &src->env);
    copy_vec(&dst->cmd, &src->cmd);
    copy_vec(&dst->entrypoint, &src->entrypoint);
    copy_vec(&dst->ports, &src->ports);
    copy_vec(&dst->volumes, &src->volumes);
    copy_vec(&dst->shell, &src->shell);
    copy_vec(&dst->onbuild, &src->onbuild);
    copy_vec(&dst->health.test, &src->health.test);
    memset(&dst->labels, 0, sizeof(dst->labels));
    for (size_t i = 0; i < src->labels.n; i++)
        kn_vec_push(&dst->labels, src->labels.v[i]);
}

void lw_image_release(struct lw_image *img)
{
    free(img->env.v);
    free(img->cmd.v);
    free(img->entrypoint.v);
    free(img->ports.v);
    free(img->volumes.v);
    free(img->shell.v);
    free(img->onbuild.v);
    free(img->health.test.v);
    free(img->labels.v);
    memset(img, 0, sizeof(*img));
}

static json_t *strings(const lw_strvec *v)
{
    json_t *a = json_array();
    for (size_t i = 0; i < v->n; i++)
        json_array_append_new(a, json_string(v->v[i]));
    return a;
}

static json_t *set_of(const lw_strvec *v)
{
    json_t *o = json_object();
    for (size_t i = 0; i < v->n; i++)
        json_object_set_new(o, v->v[i], json_object());
    return o;
}

char *lw_image_to_json(struct lw *lw, const struct lw_image *img, const struct ir_platform *p)
{
    json_t *root = json_object();
    json_object_set_new(root, "architecture", json_string(p->arch));
    json_object_set_new(root, "os", json_string(p->os));
    if (p->variant && *p->variant)
        json_object_set_new(root, "variant", json_string(p->variant));
    if (img->author)
        json_object_set_new(root, "author", json_string(img->author));
    json_t *c = json_object();
    /* every image gets a PATH, as BuildKit gives one to scratch images */
    lw_strvec env = {0};
    copy_vec(&env, &img->env);
    if (!lw_env_get(&env, "PATH"))
        kn_vec_push(&env, lw_strdup(lw, "PATH=" LW_DEFAULT_PATH));
    json_object_set_new(c, "Env", strings(&env));
    free(env.v);
    if (img->has_cmd)
        json_object_set_new(c, "Cmd", strings(&img->cmd));
    if (img->has_entrypoint)
        json_object_set_new(c, "Entrypoint", strings(&img->entrypoint));
    if (img->workdir)
        json_object_set_new(c, "WorkingDir", json_string(img->workdir));
    if (img->user)
        json_object_set_new(c, "User", json_string(img->user));
    if (img->labels.n) {
        json_t *l = json_object();
        for (size_t i = 0; i < img->labels.n; i++)
            json_object_set_new(l, img->labels.v[i].key, json_string(img->labels.v[i].value));
        json_object_set_new(c, "Labels", l);
    }
    if (img->ports.n)
        json_object_set_new(c, "ExposedPorts", set_of(&img->ports));
    if (img->volumes.n)
        json_object_set_new(c, "Volumes", set_of(&img->volumes));
    if (img->stopsignal)
        json_object_set_new(c, "StopSignal", json_string(img->stopsignal));
    if (img->health.set) {
        json_t *h = json_object();
        json_object_set_new(h, "Test", strings(&img->health.test));
        if (img->health.interval)
            json_object_set_new(h, "Interval", json_integer(img->health.interval));
        if (img->health.timeout)
            json_object_set_new(h, "Timeout", json_integer(img->health.timeout));
        if (img->health.start_period)
            json_object_set_new(h, "StartPeriod", json_integer(img->health.start_period));
        if (img->health.start_interval)
            json_object_set_new(h, "StartInterval", json_integer(img->health.start_interval));
        if (img->health.retries)
            json_object_set_new(h, "Retries", json_integer(img->health.retries));
        json_object_set_new(c, "Healthcheck", h);
    }
    if (img->has_shell)
        json_object_set_new(c, "Shell", strings(&img->shell));
    if (img->onbuild.n)
        json_object_set_new(c, "OnBuild", strings(&img->onbuild));
    if (img->args_escaped)
        json_object_set_new(c, "ArgsEscaped", json_true());
    json_object_set_new(root, "config", c);
    char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (!s)
        kn_die("cannot serialize an image config");
    /* hand out a kn_malloc'd copy so callers free() it like the rest of kiln */
    char *out = kn_strdup(s);
    free(s);
    return out;
}
