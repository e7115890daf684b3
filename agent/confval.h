/*
 * Checks of single config values, shared by the config loader (config.c)
 * and the modules that parse their own block of the config (onchange.c).
 * Each check reports one diag per problem at a key path and counts it in
 * a struct confval, so that one pass reports every problem and the caller
 * knows whether there was one even when diag dropped a message.
 *
 * Messages name keys and quote user strings only through confval_quote
 * (escaped, cut short); they never echo values that could be secret.
 */
#ifndef SECRETFS_CONFVAL_H
#define SECRETFS_CONFVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "secretfs/diag.h"

/* Key paths: "secrets.", a secret name (at most 1024 bytes, four times
 * that escaped), then keys. Longer ones are never cut: confval_keypath
 * names the parent instead. */
#define CONFVAL_KP_MAX 5120

/* Longest path, field, pid file or command argument. */
#define CONFVAL_MAX_STR 4096

/* Bytes of a user string echoed in a message, and the buffer that holds
 * its quoted form. */
#define CONFVAL_QUOTE_MAX 80
#define CONFVAL_QUOTE_BUF (CONFVAL_QUOTE_MAX * 4 + 8)

struct confval {
	struct diag *d;  /* borrowed */
	unsigned errors; /* problems reported (diag may drop a message) */
	bool oom;        /* an allocation failed: the result is unusable */
};

/* Reports a problem at kp (may be NULL) and counts it. */
void confval_problem(struct confval *cv, const char *kp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A copy of s (free()), or NULL with cv->oom set. */
char *confval_dup(struct confval *cv, const char *s);

/*
 * Writes s into buf (len bytes, CONFVAL_QUOTE_BUF is enough) as a
 * double-quoted string with quotes, backslashes and control characters
 * escaped, cut after CONFVAL_QUOTE_MAX bytes. Returns buf.
 */
const char *confval_quote(char *buf, size_t len, const char *s);

/*
 * The key path parent.key (diag_keypath) in buf, CONFVAL_KP_MAX bytes; when
 * it would not fit (a key far longer than any the config defines), parent
 * itself, so that a message names where the key is rather than a cut path.
 */
const char *confval_keypath(char *buf, const char *parent, const char *key);

/* Whether key is in the NULL-terminated list (which may be NULL). */
bool confval_in_list(const char *const *list, const char *key);

/* Joins the names of a and b (either may be NULL) with ", " into buf. */
const char *confval_join(char *buf, size_t len, const char *const *a,
                         const char *const *b);

/* Reports every key of obj missing from allowed (and from extra), naming
 * what kp takes. */
void confval_check_keys(struct confval *cv, const json_t *obj, const char *kp,
                        const char *const *allowed, const char *const *extra);

/* The value of key in obj; reports it when required and absent. */
json_t *confval_get(struct confval *cv, const json_t *obj, const char *kp,
                    const char *key, bool required);

/*
 * A non-empty string of at most maxlen bytes at obj.key. Returns 1 and sets
 * *out (borrowed from obj) when valid, 0 when absent, -1 when invalid
 * (reported).
 */
int confval_get_str(struct confval *cv, const json_t *obj, const char *kp,
                    const char *key, bool required, size_t maxlen, const char **out);

/* A duration (a string like "90s" or a number of seconds) into *out (ms).
 * Returns 0, or -1 when invalid (reported). */
int confval_duration(struct confval *cv, const json_t *v, const char *kp, uint64_t *out);

#endif
