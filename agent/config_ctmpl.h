/*
 * The config of a "format": "consul-template" file (config_ctmpl.c): its
 * template, inline or from a file, parsed by ctmpl.h, and one source key
 * per secret the template names. Private to the config loader.
 */
#ifndef SECRETFS_CONFIG_CTMPL_H
#define SECRETFS_CONFIG_CTMPL_H

#include <jansson.h>

#include "confval.h"
#include "secretfs/config.h"

/* The keys of a secret that a consul-template file takes besides the
 * common ones (backend, format, template, mode, uid, gid, refresh,
 * on_change), and the backend keys its secret calls take from the file. */
extern const char *const config_ctmpl_refused_keys[];
extern const char *const config_ctmpl_call_keys[];

/*
 * Reads the template of obj (at key path kp): "template" (inline) or
 * "template_file" (a path, relative to the directory of config_file when
 * not absolute), exactly one of them; parses it (a refusal is reported at
 * kp.template or kp.template_file as "line L, column C: why") and fills
 * s->ctmpl and s->calls, each call's extra from s->extra (the file's
 * backend keys: revoke_on_replace goes to writes). Reports each problem in
 * cv. config_file may be NULL (relative paths are then taken as they are).
 */
void config_ctmpl_parse(struct confval *cv, const json_t *obj, const char *kp,
                        const char *config_file, struct config_secret *s);

/* Frees what config_ctmpl_parse put in s. */
void config_ctmpl_release(struct config_secret *s);

#endif
