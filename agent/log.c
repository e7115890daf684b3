/*
 * Logging: one line per event on stderr, either
 *   2026-11-22T15:22:21.123Z info  message
 * or, in JSON mode,
 *   {"ts":"2026-11-22T15:22:21.123Z","level":"info","msg":"message"}
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

/* Appends s JSON-escaped to buf at *pos, never past cap - 1. */
static void json_escape_into(char *buf, size_t cap, size_t *pos, const char *s)
{
	for (; *s && *pos + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[(*pos)++] = '\\';
			buf[(*pos)++] = (char)c;
		} else if (c < 0x20) {
			*pos += (size_t)snprintf(buf + *pos, cap - *pos, "\\u%04x", c);
		} else {
			buf[(*pos)++] = (char)c;
		}
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char msg[1024], line[2200], ts[96];
	struct timespec now;
	struct tm tm;
	size_t pos;
	va_list ap;

	if (level < log_threshold)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
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
		pos = (size_t)snprintf(line, sizeof line,
		                       "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
		                       level_names[level]);
		json_escape_into(line, sizeof line - 4, &pos, msg);
		memcpy(line + pos, "\"}\n", 3);
		pos += 3;
	} else {
		int n = snprintf(line, sizeof line, "%s %-5s %s\n", ts,
		                 level_names[level], msg);
		pos = n < 0 ? 0 : (size_t)n >= sizeof line ? sizeof line - 1 : (size_t)n;
	}
	/* Best effort: nothing useful can be done if stderr is gone. */
	ssize_t w = write(STDERR_FILENO, line, pos);
	(void)w;
}
