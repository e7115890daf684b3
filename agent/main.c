/*
 * secretfs: serves secrets as files through a FUSE mount (or writes them
 * into a directory), keeping them encrypted in memory and rotating them as
 * their sources change.
 *
 * main() wires the modules: config -> backends -> store -> fs -> scheduler,
 * waits for the first values, mounts, serves until SIGTERM/SIGINT, then
 * stops the scheduler, unmounts and exits 0. --once writes the files of a
 * directory mount once and exits; --ready checks from outside that a
 * running instance serves every file, touching no backend.
 */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "annotations.h"
#include "envstash.h"
#include "harden.h"
#include "monitor.h"
#include "sandbox.h"
#include "reload.h"
#include "scheduler.h"
#include "secretfs/audit.h"
#include "secretfs/backend.h"
#include "secretfs/config.h"
#include "secretfs/error.h"
#include "secretfs/fs.h"
#include "secretfs/http.h"
#include "secretfs/log.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "secretfs/stats.h"
#include "secretfs/store.h"
#include "secretfs/timing.h"
#include "aws_api.h"
#include "telemetry.h"

/* Exit codes (usage() and README.md list them). */
#define EXIT_CONFIG 1    /* invalid configuration */
#define EXIT_USAGE 2     /* bad command line or environment */
#define EXIT_SOME 3      /* --once: some files written, not all */
#define EXIT_NONE 4      /* --once: nothing written */
#define EXIT_STARTUP 5   /* a backend, the mount or the process could not start */
#define EXIT_NOT_READY 6 /* --ready: not every file is served */
#define EXIT_PARTIAL 7   /* --from-vault-annotations: some annotations not carried over */

enum mode { MODE_RUN, MODE_CHECK, MODE_ONCE, MODE_READY };

/* Options without a one-letter form. */
enum { OPT_ONCE = 256, OPT_READY, OPT_LOG_LEVEL, OPT_LOG_FORMAT, OPT_FROM_ANNOTATIONS };

static const char shortopts[] = "c:nVh";
static const struct option longopts[] = {
    {"config", required_argument, NULL, 'c'},
    {"check", no_argument, NULL, 'n'},
    {"once", no_argument, NULL, OPT_ONCE},
    {"ready", no_argument, NULL, OPT_READY},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"from-vault-annotations", required_argument, NULL, OPT_FROM_ANNOTATIONS},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: secretfs --config FILE [--check | --once | --ready]\n"
	    "                [--log-level LEVEL] [--log-format text|json]\n"
	    "       secretfs --from-vault-annotations FILE\n"
	    "       secretfs --version | --help\n"
	    "\n"
	    "Serves secrets from Vault, AWS Secrets Manager or development backends\n"
	    "as read-only files through a FUSE mount, encrypted in memory, or\n"
	    "writes them into a directory (\"mount\": {\"type\": \"directory\"}).\n"
	    "\n"
	    "  -c, --config FILE   the JSON configuration (see README.md); default:\n"
	    "                      $SECRETFS_CONFIG\n"
	    "  -n, --check         validate the configuration and exit: 0 when valid\n"
	    "      --once          (directory mounts) fetch every secret once, write\n"
	    "                      the files, leave them and exit: 0 when all were\n"
	    "                      written, 3 when only some, 4 when none (one line\n"
	    "                      per missing file)\n"
	    "      --ready         a probe: exit 0 when a running secretfs serves\n"
	    "                      every file at the mount path, else 6 naming what\n"
	    "                      is missing; starts no backend, mounts nothing\n"
	    "      --log-level LEVEL  debug, info, warn or error (overrides\n"
	    "                      $SECRETFS_LOG_LEVEL, which overrides log.level)\n"
	    "      --log-format FMT   text or json (overrides $SECRETFS_LOG_FORMAT,\n"
	    "                      which overrides log.format)\n"
	    "      --from-vault-annotations FILE\n"
	    "                      print a config serving the files the Vault Agent\n"
	    "                      injector's annotations on a pod or workload ask\n"
	    "                      for (FILE: kubectl get ... -o json output, - for\n"
	    "                      stdin); what does not carry over is listed on\n"
	    "                      stderr: exit 0 complete, 7 partial, 1 bad input\n"
	    "  -V, --version       print the version and exit\n"
	    "  -h, --help          print this help and exit\n"
	    "\n"
	    "Long options may be written with one dash too (-config FILE, -check,\n"
	    "-config=FILE), spelled in full.\n"
	    "\n"
	    "Runs in the foreground. SIGTERM or SIGINT unmounts (a directory mount:\n"
	    "removes the files unless keep_on_exit) and exits 0. SIGHUP, or an edit\n"
	    "of the config file, reloads the configuration (see README.md).\n"
	    "Exit codes: 0 success; 1 invalid configuration; 2 usage error (options,\n"
	    "environment); 3 --once wrote only some files; 4 --once wrote nothing;\n"
	    "5 start-up failure (a backend cannot start, cannot mount); 6 --ready:\n"
	    "not ready; 7 --from-vault-annotations: some annotations not carried "
	    "over.\n");
}

/* Edit distance between a[0..an) and b, both short; larger ones count as far. */
static size_t edit_distance(const char *a, size_t an, const char *b)
{
	size_t bn = strlen(b), row[32], diag, up;

	if (an >= sizeof row / sizeof row[0] || bn >= sizeof row / sizeof row[0])
		return SIZE_MAX;
	for (size_t j = 0; j <= bn; j++)
		row[j] = j;
	for (size_t i = 1; i <= an; i++) {
		diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= bn; j++) {
			size_t best = diag + (a[i - 1] != b[j - 1]);

			up = row[j];
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[bn];
}

/* The long option called exactly name[0..n), or NULL. */
static const struct option *long_option_named(const char *name, size_t n)
{
	for (const struct option *o = longopts; o->name; o++)
		if (strlen(o->name) == n && strncmp(o->name, name, n) == 0)
			return o;
	return NULL;
}

/* The long option that "--name" selects as getopt_long would: an exact
 * name, else the only one it abbreviates. NULL when none or ambiguous. */
static const struct option *long_option_of(const char *name, size_t n)
{
	const struct option *found = long_option_named(name, n);

	if (found)
		return found;
	for (const struct option *o = longopts; o->name; o++) {
		if (strncmp(o->name, name, n) != 0)
			continue;
		if (found)
			return NULL;
		found = o;
	}
	return found;
}

/* Why a single-dash word that is no option was refused, and its right form. */
static void refuse_single_dash(const char *arg)
{
	const char *name = arg + 1;
	size_t n = strcspn(name, "="), best = SIZE_MAX;
	const struct option *near, *nearest = NULL;

	/* An abbreviation names its option; else the nearest spelling. */
	near = long_option_of(name, n);
	for (const struct option *o = longopts; !near && o->name; o++) {
		size_t d = edit_distance(name, n, o->name);
		if (d < best) {
			best = d;
			nearest = o;
		}
	}
	if (!near && best <= 2)
		near = nearest;
	if (near)
		fprintf(stderr, "secretfs: unknown option %.*s; did you mean --%s?\n",
		        (int)n + 1, arg, near->name);
	else if (name[0] == 'c')
		fprintf(
		    stderr,
		    "secretfs: unknown option %s; did you mean -c %s (--config %s)?\n",
		    arg, name + 1, name + 1);
	else
		fprintf(
		    stderr,
		    "secretfs: unknown option %.*s: a single dash takes one letter "
		    "(-c FILE) or a whole option name (-config FILE, --config FILE)\n",
		    (int)n + 1, arg);
	fprintf(stderr, "Try 'secretfs --help'.\n");
}

/*
 * Before getopt: every word of one dash and several letters must be a whole
 * long option name, Go style (-config FILE, -check, -config=FILE); anything
 * else (-chek, -cfoo.json) is refused, where getopt would read -check as
 * "-c heck" and start the daemon. Values of options are skipped. Returns 0,
 * or -1 after explaining the refusal.
 */
static int check_single_dash_words(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const struct option *o = NULL;
		size_t n;

		if (strcmp(arg, "--") == 0)
			break;
		if (arg[0] != '-' || arg[1] == '\0')
			continue;
		if (arg[1] == '-') {
			n = strcspn(arg + 2, "=");
			o = long_option_of(arg + 2, n);
			n += 2;
		} else if (arg[2] == '\0') {
			/* getopt_long_only would take -o for --once. */
			const char *letter = strchr(shortopts, arg[1]);
			if (!letter || arg[1] == ':') {
				refuse_single_dash(arg);
				return -1;
			}
			if (letter[1] == ':')
				i++;
			continue;
		} else {
			n = strcspn(arg + 1, "=");
			o = long_option_named(arg + 1, n);
			if (!o) {
				refuse_single_dash(arg);
				return -1;
			}
			n += 1;
		}
		if (o && o->has_arg == required_argument && arg[n] != '=')
			i++;
	}
	return 0;
}

/* The command line, with the environment filled in where it is silent. */
struct cli {
	const char *config_path;
	enum mode mode;
	int log_level; /* enum log_level, or -1: the config's */
	int log_json;  /* 0 or 1, or -1: the config's */
};

/* Parses one log setting from where (an option or a variable name). */
static int parse_log_setting(const char *where, int opt, const char *value,
                             struct cli *cli)
{
	enum log_level level;
	bool json;

	if (opt == OPT_LOG_LEVEL) {
		if (log_level_parse(value, &level) < 0) {
			fprintf(stderr,
			        "secretfs: %s: must be one of " LOG_LEVEL_CHOICES "\n",
			        where);
			return -1;
		}
		cli->log_level = (int)level;
	} else {
		if (log_format_parse(value, &json) < 0) {
			fprintf(stderr, "secretfs: %s: must be " LOG_FORMAT_CHOICES "\n",
			        where);
			return -1;
		}
		cli->log_json = json;
	}
	return 0;
}

/* SECRETFS_CONFIG, SECRETFS_LOG_LEVEL and SECRETFS_LOG_FORMAT, where the
 * command line did not say. An empty variable counts as unset. */
static int apply_environment(struct cli *cli)
{
	const char *v;

	if (!cli->config_path && (v = getenv("SECRETFS_CONFIG")) && *v)
		cli->config_path = v;
	if (cli->log_level < 0 && (v = getenv("SECRETFS_LOG_LEVEL")) && *v &&
	    parse_log_setting("SECRETFS_LOG_LEVEL", OPT_LOG_LEVEL, v, cli) < 0)
		return -1;
	if (cli->log_json < 0 && (v = getenv("SECRETFS_LOG_FORMAT")) && *v &&
	    parse_log_setting("SECRETFS_LOG_FORMAT", OPT_LOG_FORMAT, v, cli) < 0)
		return -1;
	return 0;
}

/*
 * Parses argv into cli. Returns -1 to go on, or the exit status to leave
 * with at once (--version, --help, a usage error already explained).
 */
static int parse_command_line(int argc, char **argv, struct cli *cli)
{
	int opt;

	if (check_single_dash_words(argc, argv) < 0)
		return EXIT_USAGE;
	/* _only: the single-dash words left are whole long option names. */
	while ((opt = getopt_long_only(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			cli->config_path = optarg;
			break;
		case 'n':
		case OPT_ONCE:
		case OPT_READY: {
			enum mode m = opt == 'n'        ? MODE_CHECK
			              : opt == OPT_ONCE ? MODE_ONCE
			                                : MODE_READY;
			if (cli->mode != MODE_RUN && cli->mode != m) {
				fprintf(stderr, "secretfs: --check, --once and --ready "
				                "exclude each other\n");
				usage(stderr);
				return EXIT_USAGE;
			}
			cli->mode = m;
			break;
		}
		case OPT_LOG_LEVEL:
		case OPT_LOG_FORMAT:
			if (parse_log_setting(opt == OPT_LOG_LEVEL ? "--log-level"
			                                           : "--log-format",
			                      opt, optarg, cli) < 0)
				return EXIT_USAGE;
			break;
		case OPT_FROM_ANNOTATIONS:
			switch (annotations_convert(optarg, stdout, stderr)) {
			case ANNOT_COMPLETE:
				return EXIT_SUCCESS;
			case ANNOT_INCOMPLETE:
				return EXIT_PARTIAL;
			default:
				return EXIT_CONFIG;
			}
		case 'V':
			printf("secretfs %s\n", SECRETFS_VERSION);
			return EXIT_SUCCESS;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (apply_environment(cli) < 0)
		return EXIT_USAGE;
	if (optind < argc || !cli->config_path || !*cli->config_path) {
		fprintf(stderr, "secretfs: %s\n",
		        optind < argc ? "unexpected argument"
		                      : "--config FILE (or SECRETFS_CONFIG) is required");
		usage(stderr);
		return EXIT_USAGE;
	}
	return -1;
}

/* The shutdown summary: each counter summed over its sources and files. */
static void log_stats(struct stats *st)
{
	static const struct {
		const char *key, *metric;
	} shown[] = {
	    {"reads", "secretfs_source_reads_total"},
	    {"read_failures", "secretfs_source_read_failures_total"},
	    {"probes", "secretfs_source_probes_total"},
	    {"renewals", "secretfs_lease_renewals_total"},
	    {"renew_failures", "secretfs_lease_renewal_failures_total"},
	    {"replaced", "secretfs_lease_replacements_total"},
	    {"revoked", "secretfs_lease_revocations_total"},
	    {"revoke_failures", "secretfs_lease_revocation_failures_total"},
	    {"render_failures", "secretfs_file_render_failures_total"},
	    {"publishes", "secretfs_source_publishes_total"},
	    {"expired", "secretfs_lease_expiries_total"},
	    {"on_change", "secretfs_onchange_runs_total"},
	    {"on_change_failures", "secretfs_onchange_failures_total"},
	    {"audit_written", "secretfs_audit_lines_written_total"},
	    {"audit_dropped", "secretfs_audit_lines_dropped_total"},
	};
	char line[1024];
	size_t n = 0;

	for (size_t i = 0; i < sizeof shown / sizeof shown[0] && n < sizeof line; i++)
		n += (size_t)snprintf(line + n, sizeof line - n, "%s%s=%lld",
		                      i ? " " : "", shown[i].key,
		                      (long long)stats_total(st, shown[i].metric));
	log_event(LOG_LVL_INFO, &(struct log_fields){.event = "daemon.stats"},
	          "stats: %s", line);
}

static struct audit *signal_audit; /* for on_reopen_signal only */

static void on_reopen_signal(int sig)
{
	audit_request_reopen(signal_audit);
}

/* SIGUSR1 reopens the audit file (log rotation), or does nothing: a
 * logrotate script sending it must never kill the daemon. a may be NULL;
 * call again with NULL before freeing a. */
static void set_reopen_signal(struct audit *a)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = a ? on_reopen_signal : SIG_IGN;
	if (!a)
		sigaction(SIGUSR1, &sa, NULL);
	signal_audit = a;
	if (a)
		sigaction(SIGUSR1, &sa, NULL);
}

static int create_backends(const struct config *cfg, struct store *st,
                           struct stats *stats, struct envstash *es, struct backend **out)
{
	char dirbuf[PATH_MAX];
	struct backend_env env = {.store = st, .stats = stats, .envstash = es};

	if (realpath(cfg->file, dirbuf))
		env.config_dir = dirname(dirbuf);
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct config_backend *cb = &cfg->backends[i];
		int rc = backend_start(&env, cb->type, cb->name, cb->json, &out[i]);

		if (rc < 0)
			return rc;
		backend_calls_register(out[i], stats);
	}
	return 0;
}

static struct fs_options fs_options_of(const struct config *cfg, bool once)
{
	struct fs_options fopt = {
	    .output =
	        cfg->mount.type == MOUNT_DIRECTORY ? FS_OUTPUT_DIRECTORY : FS_OUTPUT_FUSE,
	    .dir_mode = cfg->mount.dir_mode,
	    .dir_uid = cfg->mount.uid,
	    .dir_gid = cfg->mount.gid,
	    .allow_other = cfg->mount.allow_other,
	    .keep_on_exit = cfg->mount.keep_on_exit || once,
	    .max_handles = cfg->limits.max_open_handles,
	    .fast_open = cfg->mount.fast_open,
	};
	return fopt;
}

static void print_ready_problem(void *arg, const char *name, const char *why)
{
	const char *path = arg;

	if (name)
		printf("not ready: %s: %s\n", name, why);
	else
		printf("not ready: %s: %s\n", path, why);
}

/* --ready: whether a running instance serves every file. Reads only the
 * mount (and /proc/self/mountinfo): no backend, no network, no mount. */
static int check_ready(const struct config *cfg)
{
	struct fs_options fopt = fs_options_of(cfg, false);
	struct fs *fs = NULL;
	int rc = EXIT_STARTUP, problems;
	size_t id;

	if (fs_new(&fopt, NULL, &fs) < 0) {
		fprintf(stderr, "secretfs: out of memory\n");
		return EXIT_STARTUP;
	}
	for (size_t i = 0; i < cfg->nsecrets; i++) {
		const struct config_secret *cs = &cfg->secrets[i];

		if (fs_add_file(fs, cs->name, cs->has_mode ? cs->mode : cfg->mount.mode,
		                cs->has_uid ? cs->uid : cfg->mount.uid,
		                cs->has_gid ? cs->gid : cfg->mount.gid, &id) < 0) {
			fprintf(stderr, "secretfs: cannot declare %s\n", cs->name);
			goto out;
		}
	}
	problems =
	    fs_check_ready(fs, cfg->mount.path, print_ready_problem, cfg->mount.path);
	if (problems == 0)
		printf("ready: %zu files in %s\n", cfg->nsecrets, cfg->mount.path);
	rc = problems == 0 ? EXIT_SUCCESS : EXIT_NOT_READY;
out:
	fs_free(fs);
	return rc;
}

static void print_missing(void *arg, const char *file, const char *source,
                          const char *why)
{
	fprintf(stderr, "secretfs: %s: not written: %s (from %s)\n", file, why, source);
}

/* What run() needs of the command line besides the config. */
struct run_options {
	const char *config_path;
	bool once;
	int log_level, log_json; /* cli's: set by the command line or environment */
};

static int run(const struct config *cfg, const struct run_options *ro)
{
	bool once = ro->once;
	struct reload *reload = NULL;
	struct backend **backends = calloc(cfg->nbackends, sizeof *backends);
	struct fs_options fopt = fs_options_of(cfg, once);
	struct stats *stats = NULL;
	struct audit *audit = NULL;
	struct store *st = NULL;
	struct envstash *es = NULL;
	struct fs *fs = NULL;
	struct sched *sched = NULL;
	struct telemetry *tm = NULL;
	struct aws_api *awsapi = NULL;
	struct monitor *mon = NULL;
	struct fs_privops priv;
	uint64_t started = timing_now_ms();
	size_t missing = 0, served;
	int rc = EXIT_STARTUP;

	/* First: the monitor never sees a secret, a backend or a thread. */
	if (monitor_start(cfg, &mon) < 0)
		goto out;
	priv = monitor_privops(mon);
	fopt.priv = &priv;
	if (!backends || stats_new(&stats) < 0 || store_new(&st) < 0 ||
	    envstash_new(st, &es) < 0) {
		log_error("out of memory");
		goto out;
	}
	if (cfg->audit && audit_new(cfg->audit, stats, &audit) < 0)
		goto out;
	set_reopen_signal(audit);
	fopt.stats = stats;
	fopt.audit = audit;
	if (fs_new(&fopt, st, &fs) < 0) {
		log_error("out of memory");
		goto out;
	}
	/* A busy telemetry address is a start-up error: before any backend. */
	if (cfg->telemetry && !once && telemetry_new(cfg, &tm) < 0)
		goto out;
	if (create_backends(cfg, st, stats, es, backends) < 0)
		goto out;
	fs_set_stop_hook(http_stop);
	if (fs_install_signals(fs) < 0 ||
	    sched_new(cfg, backends, fs, st, stats, mon, &sched) < 0) {
		log_error("cannot start the scheduler");
		goto out;
	}
	/* SIGHUP and edits of the config file reload it (not with --once). */
	if (!once) {
		struct reload_env renv = {.path = ro->config_path,
		                          .cfg = cfg,
		                          .backends = backends,
		                          .sched = sched,
		                          .store = st,
		                          .stats = stats,
		                          .envstash = es,
		                          .log_level = ro->log_level,
		                          .log_json = ro->log_json};
		if (reload_new(&renv, &reload) < 0) {
			log_error("cannot set up configuration reloads");
			goto out;
		}
	}
	if (sched_start(sched) < 0) {
		log_error("cannot start the scheduler");
		goto out;
	}
	if (tm && telemetry_start(tm, stats, sched) < 0)
		goto out;
	if (cfg->aws_api && !once &&
	    aws_api_new(cfg, backends, es, st, stats, &awsapi) < 0)
		goto out;
	/* Mount once the first values are in, so an application never starts
	 * on an empty mount; a source still failing at the deadline is absent
	 * (ENOENT) until it succeeds. */
	for (uint64_t waited = 0; !fs_stop_requested(); waited += 100) {
		/* --once gives up at once on what retrying will not cure. */
		missing =
		    once ? sched_wait_settled(sched, 100) : sched_wait_ready(sched, 100);
		if (missing == 0 || waited >= cfg->startup_timeout_ms)
			break;
	}
	if (once)
		missing = sched_wait_ready(sched, 0);
	if (fs_stop_requested()) {
		if (once)
			log_warn("interrupted before anything was written");
		rc = once ? EXIT_NONE : EXIT_SUCCESS;
		goto out;
	}
	if (missing)
		log_event(LOG_LVL_WARN,
		          &(struct log_fields){.event = "daemon.sources_missing",
		                               .mount = cfg->mount.path},
		          "startup: %zu of %zu sources not read yet after %llu ms; their "
		          "files stay absent until they are",
		          missing, sched_source_count(sched),
		          (unsigned long long)(timing_now_ms() - started));
	if (fs_mount(fs, cfg->mount.path) < 0)
		goto out;
	if (fopt.output == FS_OUTPUT_FUSE && monitor_mounted(mon) < 0)
		log_warn("the monitor is gone: the mount may outlive a crash");
	harden_after_mount();
	if (sandbox_enter(cfg) < 0)
		goto out;
	sandbox_run_test_hook();
	telemetry_set_mounted(tm, true);
	if (reload)
		reload_catch_signal(reload);
	/* --once leaves what is written now: count it once nothing changes. */
	if (once)
		sched_stop(sched);
	/* A source can be read while a file of it failed to render: count the
	 * files served, not the sources read. */
	served = sched_published_count(sched);
	log_event(
	    LOG_LVL_INFO,
	    &(struct log_fields){.event = "daemon.mounted", .mount = cfg->mount.path},
	    "%s %s: %zu of %zu files from %zu sources (%zu ready) in %llu ms",
	    fopt.output == FS_OUTPUT_FUSE ? "mounted" : "wrote", cfg->mount.path, served,
	    cfg->nsecrets, sched_source_count(sched), sched_source_count(sched) - missing,
	    (unsigned long long)(timing_now_ms() - started));
	/* Start-up parsed the config and built every file on this thread: the
	 * parsed documents are freed but their pages kept (megabytes with
	 * 10 000 files) until trimmed. */
	malloc_trim(0);
	if (once) {
		sched_report_missing(sched, true, print_missing, NULL);
		rc = served == cfg->nsecrets ? EXIT_SUCCESS
		     : served == 0           ? EXIT_NONE
		                             : EXIT_SOME;
		goto out;
	}
	fs_run(fs);
	log_event(
	    LOG_LVL_INFO,
	    &(struct log_fields){.event = "daemon.stopping", .mount = cfg->mount.path},
	    "stopping");
	rc = EXIT_SUCCESS;
out:
	/* The listener reads the scheduler: it goes first. */
	telemetry_set_mounted(tm, false);
	telemetry_free(tm);
	aws_api_free(awsapi);
	sched_stop(sched);
	/* No FUSE request runs past fs_run: what is queued is all there is. */
	set_reopen_signal(NULL);
	audit_free(audit);
	if (sched)
		log_stats(stats);
	if (fs)
		fs_unmount(fs);
	sched_free(sched);
	/* The backends and configs of reloads: once nothing borrows them. */
	reload_free(reload);
	fs_free(fs);
	store_free(st);
	stats_free(stats);
	for (size_t i = 0; backends && i < cfg->nbackends; i++)
		if (backends[i])
			backends[i]->ops->free(backends[i]);
	free(backends);
	envstash_free(es);
	monitor_free(mon);
	if (rc == EXIT_SUCCESS && !once)
		log_event(LOG_LVL_INFO,
		          &(struct log_fields){.event = "daemon.stopped",
		                               .mount = cfg->mount.path},
		          "stopped; %s %s", cfg->mount.path,
		          fopt.output == FS_OUTPUT_FUSE ? "unmounted"
		          : fopt.keep_on_exit           ? "left in place"
		                                        : "cleared");
	return rc;
}

int main(int argc, char **argv)
{
	struct cli cli = {.mode = MODE_RUN, .log_level = -1, .log_json = -1};
	struct config *cfg = NULL;
	struct diag d;
	int rc;

	rc = parse_command_line(argc, argv, &cli);
	if (rc >= 0)
		return rc;

	harden_process();
	sandbox_take_test_hook();
	secjson_init();
	if (secmem_init() < 0) {
		fprintf(stderr, "secretfs: cannot initialise libsodium\n");
		return EXIT_STARTUP;
	}

	diag_init(&d, cli.config_path);
	rc = config_load(cli.config_path, &d, &cfg);
	for (size_t i = 0; i < d.count; i++)
		fprintf(stderr, "%s\n", d.msgs[i]);
	diag_release(&d);
	if (rc < 0)
		return EXIT_CONFIG;
	if (cli.mode == MODE_CHECK) {
		printf("configuration OK\n");
		if (cfg->mount.fast_open)
			printf(
			    "note: mount.fast_open: the kernel opens files without "
			    "asking "
			    "secretfs, so there is no per-open audit, open counting "
			    "(secretfs_file_opens_total) or limits.max_open_handles, "
			    "and the plaintext of each version a reader opened stays in "
			    "the kernel's page cache until the kernel drops it\n");
		config_free(cfg);
		return EXIT_SUCCESS;
	}
	if (cli.mode == MODE_READY) {
		rc = check_ready(cfg);
		config_free(cfg);
		return rc;
	}
	if (cli.mode == MODE_ONCE && cfg->mount.type != MOUNT_DIRECTORY) {
		fprintf(stderr, "secretfs: --once needs a directory mount "
		                "(\"mount\": {\"type\": \"directory\"})\n");
		config_free(cfg);
		return EXIT_USAGE;
	}

	/* The command line, then the environment, then the config file. */
	log_setup(cli.log_level >= 0 ? (enum log_level)cli.log_level
	                             : (enum log_level)cfg->log.level,
	          cli.log_json >= 0 ? cli.log_json != 0 : cfg->log.json);
	log_event(LOG_LVL_INFO,
	          &(struct log_fields){.event = "daemon.starting", .pid = (long)getpid()},
	          "secretfs %s starting (pid %d, config %s)", SECRETFS_VERSION,
	          (int)getpid(), cli.config_path);
	rc = run(cfg, &(struct run_options){.config_path = cli.config_path,
	                                    .once = cli.mode == MODE_ONCE,
	                                    .log_level = cli.log_level,
	                                    .log_json = cli.log_json});
	config_free(cfg);
	return rc;
}
