/*
 * Logging: one line per event on stderr, as text or as JSON lines.
 * The only process-wide state besides signal flags. Callers log names,
 * versions, lease ids and statuses - never secret values or tokens.
 */
#ifndef SECRETFS_LOG_H
#define SECRETFS_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

/* Sets the threshold and the output format (JSON lines when json is true). */
void log_setup(enum log_level level, bool json);

/* The accepted spellings, for messages that refuse a value. */
#define LOG_LEVEL_CHOICES "debug, info, warn, error"
#define LOG_FORMAT_CHOICES "\"text\" or \"json\""

/* Parses "debug", "info", "warn" or "error"; returns 0 or SFS_EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

/* Parses "text" (*json = false) or "json" (true); returns 0 or SFS_EINVAL. */
int log_format_parse(const char *s, bool *json);

/* Writes one event line when level passes the threshold. Thread-safe. */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif
