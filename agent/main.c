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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harden.h"
#include "scheduler.h"
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

#define EXIT_CONFIG 1
#define EXIT_USAGE 2
#define EXIT_INCOMPLETE 3 /* --once: some files could not be written */

enum mode { MODE_RUN, MODE_CHECK, MODE_ONCE, MODE_READY };

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: secretfs --config FILE [--check | --once | --ready]\n"
	    "       secretfs --version | --help\n"
	    "\n"
	    "Serves secrets from Vault, AWS Secrets Manager or development backends\n"
	    "as read-only files through a FUSE mount, encrypted in memory, or\n"
	    "writes them into a directory (\"mount\": {\"type\": \"directory\"}).\n"
	    "\n"
	    "  -c, --config FILE   the JSON configuration (see README.md)\n"
	    "  -n, --check         validate the configuration and exit: 0 when valid\n"
	    "      --once          (directory mounts) fetch every secret once, write\n"
	    "                      the files, leave them and exit: 0 when all were\n"
	    "                      written, 3 when some failed (one line each)\n"
	    "      --ready         a probe: exit 0 when a running secretfs serves\n"
	    "                      every file at the mount path, else 1 naming what\n"
	    "                      is missing; starts no backend, mounts nothing\n"
	    "  -V, --version       print the version and exit\n"
	    "  -h, --help          print this help and exit\n"
	    "\n"
	    "Runs in the foreground. SIGTERM or SIGINT unmounts (a directory mount:\n"
	    "removes the files unless keep_on_exit) and exits 0.\n"
	    "Exit codes: 0 success, 1 invalid configuration or start-up failure (or\n"
	    "not ready), 2 usage error, 3 --once wrote only some files.\n");
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
	};
	char line[1024];
	size_t n = 0;

	for (size_t i = 0; i < sizeof shown / sizeof shown[0] && n < sizeof line; i++)
		n += (size_t)snprintf(line + n, sizeof line - n, "%s%s=%lld",
		                      i ? " " : "", shown[i].key,
		                      (long long)stats_total(st, shown[i].metric));
	log_info("stats: %s", line);
}

static int create_backends(const struct config *cfg, struct store *st,
                           struct stats *stats, struct backend **out)
{
	char dirbuf[PATH_MAX];
	struct backend_env env = {.store = st, .stats = stats};

	if (realpath(cfg->file, dirbuf))
		env.config_dir = dirname(dirbuf);
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct config_backend *cb = &cfg->backends[i];
		const struct backend_ops *ops = backend_find(cb->type);
		int rc =
		    ops ? ops->create(&env, cb->name, cb->json, &out[i]) : SFS_EINVAL;
		if (rc < 0) {
			log_error("backend %s: cannot start: %s", cb->name,
			          sfs_strerror(rc));
			return rc;
		}
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
	int rc = EXIT_FAILURE, problems;
	size_t id;

	if (fs_new(&fopt, NULL, &fs) < 0) {
		fprintf(stderr, "secretfs: out of memory\n");
		return EXIT_FAILURE;
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
	if (problems == 0) {
		printf("ready: %zu files in %s\n", cfg->nsecrets, cfg->mount.path);
		rc = EXIT_SUCCESS;
	}
out:
	fs_free(fs);
	return rc;
}

static void print_missing(void *arg, const char *file, const char *source,
                          const char *why)
{
	fprintf(stderr, "secretfs: %s: not written: %s (from %s)\n", file, why, source);
}

static int run(const struct config *cfg, bool once)
{
	struct backend **backends = calloc(cfg->nbackends, sizeof *backends);
	struct fs_options fopt = fs_options_of(cfg, once);
	struct stats *stats = NULL;
	struct store *st = NULL;
	struct fs *fs = NULL;
	struct sched *sched = NULL;
	uint64_t started = timing_now_ms();
	size_t missing = 0;
	int rc = EXIT_FAILURE;

	if (!backends || stats_new(&stats) < 0 || store_new(&st) < 0 ||
	    (fopt.stats = stats, fs_new(&fopt, st, &fs) < 0)) {
		log_error("out of memory");
		goto out;
	}
	if (create_backends(cfg, st, stats, backends) < 0)
		goto out;
	fs_set_stop_hook(http_stop);
	if (fs_install_signals(fs) < 0 ||
	    sched_new(cfg, backends, fs, st, stats, &sched) < 0 ||
	    sched_start(sched) < 0) {
		log_error("cannot start the scheduler");
		goto out;
	}
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
		rc = once ? EXIT_FAILURE : EXIT_SUCCESS;
		goto out;
	}
	if (missing)
		log_warn("startup: %zu of %zu sources not read yet after %llu ms; their "
		         "files stay absent until they are",
		         missing, sched_source_count(sched),
		         (unsigned long long)(timing_now_ms() - started));
	if (fs_mount(fs, cfg->mount.path) < 0)
		goto out;
	harden_after_mount(fopt.output == FS_OUTPUT_FUSE);
	log_info("%s %s: %zu files from %zu sources (%zu ready) in %llu ms",
	         fopt.output == FS_OUTPUT_FUSE ? "mounted" : "wrote", cfg->mount.path,
	         cfg->nsecrets, sched_source_count(sched),
	         sched_source_count(sched) - missing,
	         (unsigned long long)(timing_now_ms() - started));
	if (once) {
		sched_stop(sched);
		rc = sched_report_missing(sched, print_missing, NULL) ? EXIT_INCOMPLETE
		                                                      : EXIT_SUCCESS;
		goto out;
	}
	fs_run(fs);
	log_info("stopping");
	rc = EXIT_SUCCESS;
out:
	sched_stop(sched);
	if (sched)
		log_stats(stats);
	if (fs)
		fs_unmount(fs);
	sched_free(sched);
	fs_free(fs);
	store_free(st);
	stats_free(stats);
	for (size_t i = 0; backends && i < cfg->nbackends; i++)
		if (backends[i])
			backends[i]->ops->free(backends[i]);
	free(backends);
	if (rc == EXIT_SUCCESS && !once)
		log_info("stopped; %s %s", cfg->mount.path,
		         fopt.output == FS_OUTPUT_FUSE ? "unmounted"
		         : fopt.keep_on_exit           ? "left in place"
		                                       : "cleared");
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 'n'},
	    {"once", no_argument, NULL, 'O'},
	    {"ready", no_argument, NULL, 'R'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *config_path = NULL;
	enum mode mode = MODE_RUN;
	struct config *cfg = NULL;
	struct diag d;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:nVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'n':
		case 'O':
		case 'R': {
			enum mode m = opt == 'n'   ? MODE_CHECK
			              : opt == 'O' ? MODE_ONCE
			                           : MODE_READY;
			if (mode != MODE_RUN && mode != m) {
				fprintf(stderr, "secretfs: --check, --once and --ready "
				                "exclude each other\n");
				usage(stderr);
				return EXIT_USAGE;
			}
			mode = m;
			break;
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
	if (optind < argc || !config_path) {
		fprintf(stderr, "secretfs: %s\n",
		        optind < argc ? "unexpected argument"
		                      : "--config FILE is required");
		usage(stderr);
		return EXIT_USAGE;
	}

	harden_process();
	secjson_init();
	if (secmem_init() < 0) {
		fprintf(stderr, "secretfs: cannot initialise libsodium\n");
		return EXIT_FAILURE;
	}

	diag_init(&d, config_path);
	rc = config_load(config_path, &d, &cfg);
	for (size_t i = 0; i < d.count; i++)
		fprintf(stderr, "%s\n", d.msgs[i]);
	diag_release(&d);
	if (rc < 0)
		return EXIT_CONFIG;
	if (mode == MODE_CHECK) {
		printf("configuration OK\n");
		config_free(cfg);
		return EXIT_SUCCESS;
	}
	if (mode == MODE_READY) {
		rc = check_ready(cfg);
		config_free(cfg);
		return rc;
	}
	if (mode == MODE_ONCE && cfg->mount.type != MOUNT_DIRECTORY) {
		fprintf(stderr, "secretfs: --once needs a directory mount "
		                "(\"mount\": {\"type\": \"directory\"})\n");
		config_free(cfg);
		return EXIT_USAGE;
	}

	log_setup((enum log_level)cfg->log.level, cfg->log.json);
	log_info("secretfs %s starting (pid %d, config %s)", SECRETFS_VERSION,
	         (int)getpid(), config_path);
	rc = run(cfg, mode == MODE_ONCE);
	config_free(cfg);
	return rc;
}
