/*
 * Diagnostics: a list of "file: key.path: reason" messages collected while
 * validating input, so that one pass reports every problem, and notes
 * ("file: key.path: note: ...") that inform but do not fail a check. The list is
 * bounded (DIAG_MAX_MSGS messages of at most DIAG_MAX_LEN bytes); past the
 * bound one last message says that more problems were dropped. Allocation
 * failures drop the message: callers track failure themselves and never rely
 * on count alone.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secretfs/diag.h"

#define DIAG_MAX_MSGS 256
/* A safety net for callers that echo unbounded input: the config's own
 * messages are bounded far below it (confval.h). */
#define DIAG_MAX_LEN (64 * 1024)

void diag_init(struct diag *d, const char *file)
{
	d->msgs = NULL;
	d->count = 0;
	d->notes = 0;
	d->file = file;
}

/* Appends an already formatted message; takes ownership of msg. */
static void diag_push(struct diag *d, char *msg)
{
	char **grown;

	grown = realloc(d->msgs, (d->count + 1) * sizeof *d->msgs);
	if (!grown) {
		free(msg);
		return;
	}
	d->msgs = grown;
	d->msgs[d->count++] = msg;
}

static char *diag_format(const char *file, const char *keypath, const char *note,
                         const char *reason)
{
	bool has_file = file && file[0];
	bool has_kp = keypath && keypath[0];
	char *msg;
	int n;

	n = asprintf(&msg, "%s%s%s%s%s%s", has_file ? file : "", has_file ? ": " : "",
	             has_kp ? keypath : "", has_kp ? ": " : "", note, reason);
	if (n < 0)
		return NULL;
	if ((size_t)n >= DIAG_MAX_LEN)
		msg[DIAG_MAX_LEN - 1] = '\0';
	return msg;
}

/* Appends a problem, or a note when note is set ("note: " before the
 * reason); notes are counted apart. */
static void diag_vadd(struct diag *d, bool note, const char *keypath, const char *fmt,
                      va_list ap) __attribute__((format(printf, 4, 0)));

static void diag_vadd(struct diag *d, bool note, const char *keypath, const char *fmt,
                      va_list ap)
{
	char *reason = NULL, *msg;

	if (!d || d->count >= DIAG_MAX_MSGS)
		return;
	if (d->count == DIAG_MAX_MSGS - 1) {
		msg = diag_format(d->file, NULL, "",
		                  "too many problems; the rest are not shown");
		if (msg)
			diag_push(d, msg);
		return;
	}
	if (vasprintf(&reason, fmt, ap) < 0)
		reason = NULL;
	msg = diag_format(d->file, keypath, note ? "note: " : "",
	                  reason ? reason : "(unprintable message)");
	free(reason);
	if (!msg)
		return;
	diag_push(d, msg);
	if (note)
		d->notes++;
}

void diag_add(struct diag *d, const char *keypath, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_vadd(d, false, keypath, fmt, ap);
	va_end(ap);
}

void diag_add_at(struct diag *d, const char *parent, const char *key, const char *fmt,
                 ...)
{
	char *kp;
	va_list ap;

	if (!d)
		return;
	kp = diag_keypath_new(parent, key);
	va_start(ap, fmt);
	diag_vadd(d, false, kp ? kp : parent, fmt, ap);
	va_end(ap);
	free(kp);
}

void diag_note(struct diag *d, const char *keypath, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_vadd(d, true, keypath, fmt, ap);
	va_end(ap);
}

size_t diag_problems(const struct diag *d)
{
	return d->count - d->notes;
}

void diag_release(struct diag *d)
{
	for (size_t i = 0; i < d->count; i++)
		free(d->msgs[i]);
	free(d->msgs);
	d->msgs = NULL;
	d->count = 0;
	d->notes = 0;
}

static bool diag_plain_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Appends s to buf[*pos], never past len - 1; *pos stops at len - 1. */
static void diag_put(char *buf, size_t len, size_t *pos, const char *s, size_t n)
{
	size_t room = len - 1 - *pos;

	if (n > room)
		n = room;
	memcpy(buf + *pos, s, n);
	*pos += n;
	buf[*pos] = '\0';
}

char *diag_keypath(char *buf, size_t len, const char *parent, const char *key)
{
	bool quote = key[0] == '\0';
	size_t pos = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	for (const char *c = key; *c && !quote; c++)
		quote = !diag_plain_char((unsigned char)*c);
	if (parent && parent[0]) {
		diag_put(buf, len, &pos, parent, strlen(parent));
		diag_put(buf, len, &pos, ".", 1);
	}
	if (!quote) {
		diag_put(buf, len, &pos, key, strlen(key));
		return buf;
	}
	diag_put(buf, len, &pos, "\"", 1);
	for (const unsigned char *c = (const unsigned char *)key; *c; c++) {
		char esc[5];

		/* Keys come from the input: keep quotes and terminal controls
		 * from garbling the message. */
		if (*c == '"' || *c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*c;
			diag_put(buf, len, &pos, esc, 2);
		} else if (*c < 0x20 || *c == 0x7f) {
			snprintf(esc, sizeof esc, "\\x%02x", *c);
			diag_put(buf, len, &pos, esc, 4);
		} else {
			diag_put(buf, len, &pos, (const char *)c, 1);
		}
	}
	diag_put(buf, len, &pos, "\"", 1);
	return buf;
}

char *diag_keypath_new(const char *parent, const char *key)
{
	/* Escaping at most quadruples a byte ("\\x01"), plus the quotes,
	 * the dot and the NUL. */
	size_t plen = parent ? strlen(parent) : 0, klen = strlen(key);
	size_t len = plen + 1 + 4 * klen + 3;
	char *buf;

	if (klen > (SIZE_MAX - plen - 4) / 4 || !(buf = malloc(len)))
		return NULL;
	return diag_keypath(buf, len, parent, key);
}
