/*
 * on_change actions (see onchange.h). The monitor (monitor.h) sends the
 * signals and starts the commands, outside the daemon's sandbox: no shell,
 * stdin from /dev/null, an environment of only PATH, SECRETFS_MOUNT and
 * SECRETFS_FILES (never the daemon's own, which may hold VAULT_TOKEN or AWS
 * keys), and no other descriptor.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

#include "monitor.h"
#include "onchange.h"
#include "secretfs/log.h"

#define ONCHANGE_MAX_FILES_LEN 4096
#define ONCHANGE_COMMAND_TIMEOUT_MS (60 * 1000)
#define ONCHANGE_REAP_INTERVAL_MS 50
#define ONCHANGE_MAX_ARGS 256
#define ONCHANGE_DEFAULT_DEBOUNCE_MS 1000

struct onchange {
	const struct config_onchange *cfg;
	bool pending;
	uint64_t first_pending; /* when the current burst began */
	uint64_t due;
	char files[ONCHANGE_MAX_FILES_LEN]; /* space-separated names in the burst */
	bool files_incomplete;              /* a name did not fit in files */
	pid_t child;                        /* running command, or 0 */
	uint64_t child_started;
	struct stats_set *stats; /* onchange_family; NULL-safe */
	struct monitor *mon;     /* borrowed */
};

enum { OC_RUNS, OC_FAILURES };
static const struct stats_field onchange_fields[] = {
    [OC_RUNS] = {STATS_COUNTER, "secretfs_onchange_runs_total",
                 "on_change actions that ran (signal sent, or command exited 0)"},
    [OC_FAILURES] = {STATS_COUNTER, "secretfs_onchange_failures_total",
                     "on_change actions that could not run or exited non-zero"},
};
static const struct stats_family onchange_family = {
    onchange_fields, sizeof onchange_fields / sizeof onchange_fields[0], "action"};

/* --- the config block -------------------------------------------------- */

static const char *const onchange_keys[] = {"signal", "pid_file", "command", "debounce",
                                            NULL};

static const struct {
	const char *name;
	int number;
} signal_names[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"ALRM", SIGALRM}, {"WINCH", SIGWINCH},
    {"CONT", SIGCONT}, {"PIPE", SIGPIPE}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},
};
#define NSIGNALS (sizeof signal_names / sizeof signal_names[0])

/* A signal name, with or without "SIG", in any case; 0 when unknown. */
static int signal_parse(const char *s)
{
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < NSIGNALS; i++)
		if (strcasecmp(s, signal_names[i].name) == 0)
			return signal_names[i].number;
	return 0;
}

/* The accepted signal names, comma-separated, into buf; returns buf. */
static const char *signal_list(char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < NSIGNALS && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
		                         signal_names[i].name);
	return buf;
}

static void argv_free(char **argv)
{
	for (size_t i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

/* An argv array; *out is set only when every element is valid. */
static void parse_command(struct confval *cv, const json_t *v, const char *kp,
                          char ***out)
{
	char ekp[CONFVAL_KP_MAX];
	char **argv = NULL;
	size_t n = 0;
	bool ok = true;

	if (!json_is_array(v) || (n = json_array_size(v)) == 0) {
		confval_problem(cv, kp, "must be a non-empty array of strings");
		return;
	}
	if (n > ONCHANGE_MAX_ARGS) {
		confval_problem(cv, kp, "must have at most %d elements",
		                ONCHANGE_MAX_ARGS);
		return;
	}
	argv = calloc(n + 1, sizeof *argv);
	if (!argv) {
		cv->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(v, i);
		const char *s;

		/* kp is a secret's, which always leaves room (config.c). */
		int w = snprintf(ekp, sizeof ekp, "%s[%zu]", kp, i);
		const char *at = w >= 0 && (size_t)w < sizeof ekp ? ekp : kp;

		if (!json_is_string(e)) {
			confval_problem(cv, at, "must be a string");
			ok = false;
			continue;
		}
		s = json_string_value(e);
		if (json_string_length(e) == 0) {
			confval_problem(cv, at, "must not be empty");
			ok = false;
		} else if (json_string_length(e) > CONFVAL_MAX_STR) {
			confval_problem(cv, at, "must be at most %d bytes",
			                CONFVAL_MAX_STR);
			ok = false;
		} else if (i == 0 && s[0] != '/' && strchr(s, '/')) {
			confval_problem(
			    cv, at,
			    "must be an absolute path or a command name without \"/\"");
			ok = false;
		} else if (ok) {
			argv[i] = confval_dup(cv, s);
			ok = argv[i] != NULL;
		}
	}
	if (ok)
		*out = argv;
	else
		argv_free(argv);
}

void onchange_parse(struct confval *cv, const json_t *obj, const char *kp,
                    struct config_onchange **out)
{
	char ckp[CONFVAL_KP_MAX], q[CONFVAL_QUOTE_BUF], names[128];
	struct config_onchange *oc;
	json_t *sig, *cmd, *pid, *v;
	const char *str;

	if (!json_is_object(obj)) {
		confval_problem(cv, kp, "must be an object");
		return;
	}
	confval_check_keys(cv, obj, kp, onchange_keys, NULL);
	oc = calloc(1, sizeof *oc);
	if (!oc) {
		cv->oom = true;
		return;
	}
	*out = oc;
	oc->debounce_ms = ONCHANGE_DEFAULT_DEBOUNCE_MS;
	sig = json_object_get(obj, "signal");
	cmd = json_object_get(obj, "command");
	pid = json_object_get(obj, "pid_file");
	if (sig && cmd)
		confval_problem(cv, kp,
		                "give either \"signal\" or \"command\", not both");
	else if (!sig && !cmd)
		confval_problem(
		    cv, kp,
		    "missing required key \"signal\" (with \"pid_file\") or \"command\"");
	if (sig && confval_get_str(cv, obj, kp, "signal", false, 64, &str) == 1) {
		oc->signal = signal_parse(str);
		if (!oc->signal)
			confval_problem(cv, confval_keypath(ckp, kp, "signal"),
			                "unknown signal %s (known: %s)",
			                confval_quote(q, sizeof q, str),
			                signal_list(names, sizeof names));
	}
	if (sig && !cmd && !pid)
		confval_problem(
		    cv, kp, "missing required key \"pid_file\" (needed with \"signal\")");
	if (pid && !sig)
		confval_problem(cv, confval_keypath(ckp, kp, "pid_file"),
		                "is only valid with \"signal\"");
	else if (pid && confval_get_str(cv, obj, kp, "pid_file", false, CONFVAL_MAX_STR,
	                                &str) == 1)
		oc->pid_file = confval_dup(cv, str);
	if (cmd)
		parse_command(cv, cmd, confval_keypath(ckp, kp, "command"), &oc->argv);
	if ((v = json_object_get(obj, "debounce")))
		confval_duration(cv, v, confval_keypath(ckp, kp, "debounce"),
		                 &oc->debounce_ms);
}

void onchange_config_free(struct config_onchange *cfg)
{
	if (!cfg)
		return;
	free(cfg->pid_file);
	argv_free(cfg->argv);
	free(cfg);
}

/* --- the action ---------------------------------------------------------- */

struct onchange *onchange_new(const struct config_onchange *cfg, struct stats *stats,
                              struct monitor *mon)
{
	struct onchange *oc = calloc(1, sizeof *oc);
	char label[PATH_MAX + 32];

	if (!oc)
		return NULL;
	oc->cfg = cfg;
	oc->mon = mon;
	/* Named by what the config says, never by an argument (which could
	 * carry anything). */
	if (cfg->signal)
		snprintf(label, sizeof label, "signal %s to %s",
		         sigabbrev_np(cfg->signal), cfg->pid_file);
	else
		snprintf(label, sizeof label, "command %s", cfg->argv[0]);
	oc->stats = stats_register(stats, &onchange_family, label);
	return oc;
}

void onchange_rebind(struct onchange *oc, const struct config_onchange *cfg)
{
	oc->cfg = cfg;
}

bool onchange_same(const struct onchange *oc, const struct config_onchange *cfg)
{
	return onchange_config_same(oc->cfg, cfg);
}

bool onchange_config_same(const struct config_onchange *a,
                          const struct config_onchange *cfg)
{
	size_t i;

	if (a->signal != cfg->signal)
		return false;
	if (a->signal)
		return strcmp(a->pid_file, cfg->pid_file) == 0;
	for (i = 0; a->argv[i] && cfg->argv[i]; i++)
		if (strcmp(a->argv[i], cfg->argv[i]) != 0)
			return false;
	return !a->argv[i] && !cfg->argv[i];
}

void onchange_trigger(struct onchange *oc, const char *file, uint64_t now)
{
	size_t used = strlen(oc->files), n = strlen(file);
	uint64_t debounce = oc->cfg->debounce_ms, latest;

	if (!oc->pending) {
		oc->pending = true;
		oc->first_pending = now;
		oc->files[0] = '\0';
		oc->files_incomplete = false;
		used = 0;
	}
	/* Record each name once. */
	for (const char *p = oc->files; (p = strstr(p, file)); p += n)
		if ((p == oc->files || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			goto scheduled;
	if (used + n + 2 < sizeof oc->files) {
		snprintf(oc->files + used, sizeof oc->files - used, "%s%s",
		         used ? " " : "", file);
	} else if (!oc->files_incomplete) {
		/* Never a list that looks whole but is not: the command is told. */
		oc->files_incomplete = true;
		log_warn("on_change: the changed files' names pass %d bytes, the bound "
		         "of SECRETFS_FILES; %s and later names not listed, "
		         "SECRETFS_FILES_INCOMPLETE=1 set for this run",
		         ONCHANGE_MAX_FILES_LEN - 1, file);
	}
scheduled:
	/* Trailing debounce, but a steady stream of changes still runs the
	 * action at least every ten debounce periods. */
	latest = oc->first_pending + 10 * (debounce ? debounce : 1);
	oc->due = now + debounce < latest ? now + debounce : latest;
}

static void onchange_signal(struct onchange *oc)
{
	pid_t pid = 0;
	int rc = monitor_signal(oc->mon, oc->cfg->pid_file, oc->cfg->signal, &pid);

	if (rc < 0 && pid == 0) {
		stats_inc(oc->stats, OC_FAILURES);
		log_event(
		    LOG_LVL_WARN,
		    &(struct log_fields){.event = "onchange.failed", .files = oc->files},
		    "on_change: cannot read a pid from %s; signal %s not sent "
		    "(files: %s)",
		    oc->cfg->pid_file, sigabbrev_np(oc->cfg->signal), oc->files);
		return;
	}
	if (rc < 0) {
		stats_inc(oc->stats, OC_FAILURES);
		log_event(LOG_LVL_WARN,
		          &(struct log_fields){.event = "onchange.failed",
		                               .files = oc->files,
		                               .pid = (long)pid},
		          "on_change: cannot send SIG%s to pid %d (from %s): %s",
		          sigabbrev_np(oc->cfg->signal), (int)pid, oc->cfg->pid_file,
		          strerror(-rc));
		return;
	}
	log_event(LOG_LVL_INFO,
	          &(struct log_fields){
	              .event = "onchange.ran", .files = oc->files, .pid = (long)pid},
	          "on_change: sent SIG%s to pid %d (files: %s)",
	          sigabbrev_np(oc->cfg->signal), (int)pid, oc->files);
}

static void onchange_spawn(struct onchange *oc, uint64_t now)
{
	pid_t pid;
	int rc =
	    monitor_spawn(oc->mon, oc->cfg->argv, oc->files, oc->files_incomplete, &pid);

	if (rc < 0) {
		stats_inc(oc->stats, OC_FAILURES);
		log_event(
		    LOG_LVL_WARN,
		    &(struct log_fields){.event = "onchange.failed", .files = oc->files},
		    "on_change: cannot run %s: %s", oc->cfg->argv[0], strerror(-rc));
		return;
	}
	oc->child = pid;
	oc->child_started = now;
	log_event(LOG_LVL_INFO,
	          &(struct log_fields){
	              .event = "onchange.ran", .files = oc->files, .pid = (long)pid},
	          "on_change: started %s as pid %d (files: %s)", oc->cfg->argv[0],
	          (int)pid, oc->files);
}

static void onchange_reap(struct onchange *oc, uint64_t now)
{
	int status, r;

	if (!oc->child)
		return;
	r = monitor_reap(oc->mon, oc->child, &status);
	if (r == 0) {
		if (now - oc->child_started > ONCHANGE_COMMAND_TIMEOUT_MS) {
			log_event(
			    LOG_LVL_WARN,
			    &(struct log_fields){.event = "onchange.failed",
			                         .files = oc->files,
			                         .pid = (long)oc->child},
			    "on_change: %s (pid %d) ran longer than %d s; killing it",
			    oc->cfg->argv[0], (int)oc->child,
			    ONCHANGE_COMMAND_TIMEOUT_MS / 1000);
			monitor_kill(oc->mon, oc->child);
		}
		return;
	}
	if (r < 0) {
		oc->child = 0;
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		log_event(LOG_LVL_INFO,
		          &(struct log_fields){.event = "onchange.exited",
		                               .files = oc->files,
		                               .pid = (long)oc->child},
		          "on_change: %s (pid %d) exited 0", oc->cfg->argv[0],
		          (int)oc->child);
	} else {
		stats_inc(oc->stats, OC_FAILURES);
		if (WIFEXITED(status))
			log_event(LOG_LVL_WARN,
			          &(struct log_fields){.event = "onchange.failed",
			                               .files = oc->files,
			                               .pid = (long)oc->child},
			          "on_change: %s (pid %d) exited %d", oc->cfg->argv[0],
			          (int)oc->child, WEXITSTATUS(status));
		else
			log_event(LOG_LVL_WARN,
			          &(struct log_fields){.event = "onchange.failed",
			                               .files = oc->files,
			                               .pid = (long)oc->child},
			          "on_change: %s (pid %d) killed by signal %d",
			          oc->cfg->argv[0], (int)oc->child, WTERMSIG(status));
	}
	oc->child = 0;
}

uint64_t onchange_poll(struct onchange *oc, uint64_t now)
{
	onchange_reap(oc, now);
	/* One command at a time: a burst during a run waits for it to end. */
	if (oc->pending && now >= oc->due && !oc->child) {
		oc->pending = false;
		stats_inc(oc->stats, OC_RUNS);
		if (oc->cfg->signal)
			onchange_signal(oc);
		else
			onchange_spawn(oc, now);
	}
	if (oc->child)
		return now + ONCHANGE_REAP_INTERVAL_MS;
	return oc->pending ? oc->due : UINT64_MAX;
}

void onchange_free(struct onchange *oc)
{
	free(oc);
}
