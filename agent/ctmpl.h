/*
 * consul-template templates: the subset of Go text/template and of
 * consul-template's functions that Vault Agent / vault-k8s injector
 * templates use, parsed once and rendered from the Vault replies of the
 * secrets the template names itself ({{ with secret "path" "k=v" }}).
 *
 * Supported: text, comments, {{- and -}} trimming, actions with
 * pipes, $variables (:= and =), if / else / else if / with / range (over
 * maps in sorted key order, lists, and split's results; with else) / end,
 * field chains (.Data.data.x, $v.Data, (pipeline).Data), string, raw-string,
 * decimal integer and true/false literals, and the functions secret (literal
 * arguments only), index, printf (verbs %s %d %v %q and %%, no flags),
 * toJSON, toJSONPretty, base64Encode, base64Decode, toUpper, toLower (ASCII
 * text), trimSpace, replaceAll, split, join, and the Go builtins eq, ne,
 * not, and, or, len. Everything else (env and every other function, define,
 * template, block, break, continue, nil, character and non-decimal number
 * constants) is refused by ctmpl_parse with its line and column.
 *
 * Semantics follow consul-template (Go text/template with missingkey=zero,
 * numbers from Vault as json.Number): a missing map key prints "<no value>",
 * a field of a missing value is an error, numbers are strings that print as
 * their text and are always true, toJSON is Go's json.Marshal (sorted keys,
 * HTML-safe escapes), toJSONPretty indents by two spaces. Where Go would
 * print a "%!verb(...)" or other text nobody means, rendering fails instead.
 * One divergence: a non-integer JSON number prints in its shortest exact
 * form ("1.50" prints as 1.5), since replies are parsed with jansson.
 */
#ifndef SECRETFS_CTMPL_H
#define SECRETFS_CTMPL_H

#include <stddef.h>

#include <jansson.h>

#include "secretfs/secmem.h"

struct ctmpl;

/* Bounds: longer, larger or deeper templates are refused (SFS_ETOOBIG). */
#define CTMPL_MAX_TEXT (256 * 1024)         /* template bytes */
#define CTMPL_MAX_NODES 32768               /* parse tree objects */
#define CTMPL_MAX_DEPTH 48                  /* nested if/with/range and parentheses */
#define CTMPL_MAX_SECRETS 64                /* distinct secret calls */
#define CTMPL_MAX_PARAMS 32                 /* "k=v" parameters of one secret call */
#define CTMPL_MAX_ARGS 16                   /* arguments of one function call */
#define CTMPL_MAX_STEPS 2000000             /* evaluation steps of one rendering */
#define CTMPL_MAX_SCRATCH (8 * 1024 * 1024) /* intermediate strings */

/*
 * Parses len bytes of text. On success *out is a new template (free with
 * ctmpl_free) and 0 is returned. Otherwise *out is untouched and the result
 * is SFS_EINVAL (syntax, or a construct outside the subset), SFS_ETOOBIG (a
 * bound above) or SFS_ENOMEM, with err "line L, column C: why" (from 1).
 * err names constructs, never the template's literal strings.
 */
int ctmpl_parse(const char *text, size_t len, struct ctmpl **out, char *err,
                size_t errlen);

/* The number of distinct secret calls in t (same path and same parameters,
 * in any order, count once), in order of first appearance. */
size_t ctmpl_secret_count(const struct ctmpl *t);

/*
 * The i-th distinct secret call: its path and its "k=v" parameters, sorted
 * (no parameters: a read; some: a write with them as the body, as
 * consul-template does). Pointers are borrowed from t. Returns 0 or
 * SFS_EINVAL when i is out of range.
 */
int ctmpl_secret_at(const struct ctmpl *t, size_t i, const char **path,
                    const char *const **params, size_t *nparams);

/*
 * Renders t into out (initialised by the caller, empty). secrets[i] is the
 * reply of secret call i as Vault returns it ({"data": ..., "lease_id": ...,
 * "lease_duration": ..., "renewable": ...}), borrowed; NULL only when t
 * names no secret. Intermediate strings live in guarded memory and are
 * wiped. Returns 0, or on failure releases out and returns SFS_EINVAL (a
 * value of the wrong shape for the template, e.g. a field of a missing
 * value, bad base64), SFS_ETOOBIG (output past RENDER_MAX_LEN or out->max,
 * or a bound above) or SFS_ENOMEM, with err "line L, column C: why" naming
 * fields, functions and types, never values. Call secmem_wipe_stack() after
 * it from a shallow frame.
 */
int ctmpl_render(const struct ctmpl *t, const json_t *const *secrets, struct secbuf *out,
                 char *err, size_t errlen);

/* Frees t. NULL-safe. */
void ctmpl_free(struct ctmpl *t);

#endif
