/*
 * Logging: one line per event on stderr, either
 *   2026-11-22T15:22:21.123Z info  message
 * or, in JSON mode,
 *   {"ts":"2026-11-22T15:22:21.123Z","level":"info","msg":"message"}
 * where a named event (log_event) adds "event" and its fields ("file",
 * "source", "version", ...) as members of their own before "msg".
 * Each line is assembled in a local buffer and written with one write(2),
 * so lines from different threads never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "secretfs/error.h"
#include "secretfs/log.h"

static enum log_level log_threshold = LOG_LVL_INFO;
static bool log_json;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_level level, bool json)
{
	log_threshold = level;
	log_json = json;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcmp(s, "warning") == 0) {
		*out = LOG_LVL_WARN;
		return 0;
	}
	return SFS_EINVAL;
}

int log_format_parse(const char *s, bool *json)
{
	if (strcmp(s, "text") != 0 && strcmp(s, "json") != 0)
		return SFS_EINVAL;
	*json = strcmp(s, "json") == 0;
	return 0;
}

/* A line being assembled. Nothing goes past limit; the bytes after it are
 * kept for the "}\n" that closes a JSON line. */
struct log_line {
	char buf[4096];
	size_t len, limit;
	bool full; /* the last put did not fit */
};

static void line_put(struct log_line *l, const char *s, size_t n)
{
	if (n > l->limit - l->len) {
		l->full = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	/* No overlong forms, no surrogates, nothing past U+10FFFF. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

bool log_json_escape(char *dst, size_t cap, size_t *len, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		char esc[8];
		const char *out = esc;
		size_t n = utf8_len(p), step = n ? n : 1;

		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			n = 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			n = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p);
		} else if (n == 0) {
			out = "\\ufffd";
			n = 6;
		} else {
			out = (const char *)p;
		}
		if (n + 1 > cap - *len)
			return false;
		memcpy(dst + *len, out, n);
		*len += n;
		p += step;
	}
	return true;
}

/* log_json_escape into a line, up to its limit. */
static bool line_put_escaped(struct log_line *l, const char *s)
{
	return log_json_escape(l->buf, l->limit, &l->len, s);
}

/* Appends ,"key":"value" whole, or nothing when it does not fit. */
static void line_put_member(struct log_line *l, const char *key, const char *value)
{
	size_t before = l->len;

	if (!value)
		return;
	line_put(l, ",\"", 2);
	line_put(l, key, strlen(key));
	line_put(l, "\":\"", 3);
	if (!line_put_escaped(l, value))
		l->full = true;
	line_put(l, "\"", 1);
	if (l->full) {
		l->len = before;
		l->full = false;
	}
}

/* Appends ,"key":n (n != 0), or nothing. */
static void line_put_number(struct log_line *l, const char *key, long long n)
{
	char num[32];
	size_t before = l->len;
	int w;

	if (n == 0)
		return;
	w = snprintf(num, sizeof num, "%lld", n);
	line_put(l, ",\"", 2);
	line_put(l, key, strlen(key));
	line_put(l, "\":", 2);
	line_put(l, num, (size_t)w);
	if (l->full) {
		l->len = before;
		l->full = false;
	}
}

static void log_write(enum log_level level, const struct log_fields *f, const char *fmt,
                      va_list ap) __attribute__((format(printf, 3, 0)));

static void log_write(enum log_level level, const struct log_fields *f, const char *fmt,
                      va_list ap)
{
	/* Room is kept for the message until the fields are in. */
	struct log_line l = {.limit = sizeof l.buf - 2 - 512};
	char msg[1024], ts[96];
	struct timespec now;
	struct tm tm;

	if (level < log_threshold)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	/* A message is one line: control characters never split it. */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         now.tv_nsec / 1000000);

	if (log_json) {
		line_put(&l, "{\"ts\":\"", 7);
		line_put(&l, ts, strlen(ts));
		line_put(&l, "\"", 1);
		line_put_member(&l, "level", level_names[level]);
		if (f) {
			line_put_member(&l, "event", f->event);
			line_put_member(&l, "file", f->file);
			line_put_member(&l, "files", f->files);
			line_put_member(&l, "source", f->source);
			line_put_member(&l, "backend", f->backend);
			line_put_member(&l, "lease", f->lease);
			line_put_member(&l, "mount", f->mount);
			line_put_number(&l, "version", (long long)f->version);
			line_put_number(&l, "pid", f->pid);
		}
		/* The message last: cut rather than left out when long. */
		l.limit = sizeof l.buf - 2;
		line_put(&l, ",\"msg\":\"", 8);
		line_put_escaped(&l, msg);
		line_put(&l, "\"", 1);
		l.limit = sizeof l.buf;
		line_put(&l, "}\n", 2);
	} else {
		int n = snprintf(l.buf, sizeof l.buf, "%s %-5s %s\n", ts,
		                 level_names[level], msg);
		l.len = n < 0                       ? 0
		        : (size_t)n >= sizeof l.buf ? sizeof l.buf - 1
		                                    : (size_t)n;
	}
	/* Best effort: nothing useful can be done if stderr is gone. */
	ssize_t w = write(STDERR_FILENO, l.buf, l.len);
	(void)w;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write(level, NULL, fmt, ap);
	va_end(ap);
}

void log_event(enum log_level level, const struct log_fields *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write(level, f, fmt, ap);
	va_end(ap);
}
