/*
 * Secrets the daemon finds in its environment (AWS_SECRET_ACCESS_KEY and
 * the like), sealed in the store and wiped from the environment the first
 * time a backend asks for them: the environment stays readable in
 * /proc/<pid>/environ and in our memory. One stash per daemon, as the
 * environment is one per process; main.c makes it and hands it to every
 * backend in struct backend_env.
 */
#ifndef SECRETFS_ENVSTASH_H
#define SECRETFS_ENVSTASH_H

#include "secretfs/store.h"

struct envstash;

/* A new, empty stash sealing into st (borrowed; it must outlive the
 * stash). Returns 0 or SFS_ENOMEM. */
int envstash_new(struct store *st, struct envstash **out);

/* Empties the stash and frees it. NULL-safe. */
void envstash_free(struct envstash *es);

/*
 * Takes the variable var into the stash unless it was taken before: when
 * set and non-empty its value is sealed, then wiped and unset; once taken,
 * a variable set again later is not seen. Thread-safe. Returns 0 or
 * SFS_ENOMEM (the value is wiped either way).
 */
int envstash_take(struct envstash *es, const char *var);

/* A guarded copy of the value taken from var (free with secmem_free(*out)).
 * Returns 0, SFS_ENOTFOUND (never taken, or it was not set), SFS_ECRYPTO
 * or SFS_ENOMEM. Thread-safe. */
int envstash_get(struct envstash *es, const char *var, char **out);

#endif
