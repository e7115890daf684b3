/*
 * Diagnostics collected while validating input (the config, mostly): one
 * message per problem, each naming where ("file: key.path: why").
 */
#ifndef SECRETFS_DIAG_H
#define SECRETFS_DIAG_H

#include <stddef.h>

struct diag {
	char **msgs; /* owned, count entries: problems and notes, in order */
	size_t count;
	size_t notes;     /* how many of them are notes */
	const char *file; /* borrowed: prefix of every message, may be NULL */
};

/* Initialises an empty list; no allocation. */
void diag_init(struct diag *d, const char *file);

/* Appends "file: keypath: <formatted reason>". keypath may be NULL or "".
 * With d NULL nothing is recorded (a caller that only wants the verdict). */
void diag_add(struct diag *d, const char *keypath, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* diag_add at the key path parent.key (diag_keypath_new: never cut; the
 * parent alone when out of memory). */
void diag_add_at(struct diag *d, const char *parent, const char *key, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

/* Appends "file: keypath: note: <formatted text>": printed with the
 * problems, but it does not make the input invalid. */
void diag_note(struct diag *d, const char *keypath, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* How many messages are problems (count less the notes). */
size_t diag_problems(const struct diag *d);

/* Frees all messages; the struct may be reused after diag_init(). */
void diag_release(struct diag *d);

/*
 * Builds a child key path into buf: "parent.key" for plain keys, or
 * parent."key" when key holds characters other than [A-Za-z0-9_-].
 * Returns buf.
 */
char *diag_keypath(char *buf, size_t len, const char *parent, const char *key);

/* The same key path in a new string of its own length (free()); NULL when
 * out of memory. */
char *diag_keypath_new(const char *parent, const char *key);

#endif
