/*
 * secretfs: serves secrets as files through a FUSE mount, keeping them
 * encrypted in memory and rotating them as their sources change.
 *
 * main() wires the modules: config -> backends -> store -> fs -> scheduler,
 * waits for the first values, mounts, serves until SIGTERM/SIGINT, then
 * stops the scheduler, unmounts and exits 0.
 */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "scheduler.h"
#include "secretfs/backend.h"
#include "secretfs/config.h"
#include "secretfs/error.h"
#include "secretfs/fs.h"
#include "secretfs/log.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "secretfs/store.h"

#define EXIT_CONFIG 1
#define EXIT_USAGE 2

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: secretfs --config FILE [--check]\n"
	    "       secretfs --version | --help\n"
	    "\n"
	    "Serves secrets from Vault, AWS Secrets Manager or development backends\n"
	    "as read-only files through a FUSE mount, encrypted in memory.\n"
	    "\n"
	    "  -c, --config FILE   the JSON configuration (see README.md)\n"
	    "  -n, --check         validate the configuration and exit: 0 when valid\n"
	    "  -V, --version       print the version and exit\n"
	    "  -h, --help          print this help and exit\n"
	    "\n"
	    "Runs in the foreground. SIGTERM or SIGINT unmounts and exits 0.\n");
}

/* No core dumps, not ptrace-able by other users of our uid. */
static void harden_process(void)
{
	struct rlimit none = {0, 0};

	setrlimit(RLIMIT_CORE, &none);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

static void log_stats(struct sched *s)
{
	struct sched_stats st;

	sched_get_stats(s, &st);
	log_info("stats: reads=%lu read_failures=%lu probes=%lu renewals=%lu "
	         "renew_failures=%lu replaced=%lu revoked=%lu revoke_failures=%lu "
	         "render_failures=%lu publishes=%lu expired=%lu on_change=%lu "
	         "on_change_failures=%lu",
	         st.fetch_ok, st.fetch_failed, st.probes, st.renewals, st.renew_failed,
	         st.replaced, st.revoked, st.revoke_failed, st.render_failed,
	         st.published, st.expired, st.onchange_runs, st.onchange_failed);
}

static int create_backends(const struct config *cfg, struct store *st,
                           struct backend **out)
{
	char dirbuf[PATH_MAX];
	struct backend_env env = {.store = st};

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

static int run(const struct config *cfg)
{
	struct backend **backends = calloc(cfg->nbackends, sizeof *backends);
	struct fs_options fopt = {
	    .dir_mode = cfg->mount.dir_mode,
	    .dir_uid = cfg->mount.uid,
	    .dir_gid = cfg->mount.gid,
	    .allow_other = cfg->mount.allow_other,
	};
	struct store *st = NULL;
	struct fs *fs = NULL;
	struct sched *sched = NULL;
	uint64_t started = sched_now_ms();
	size_t missing = 0;
	int rc = EXIT_FAILURE;

	if (!backends || store_new(&st) < 0 || fs_new(&fopt, st, &fs) < 0) {
		log_error("out of memory");
		goto out;
	}
	if (create_backends(cfg, st, backends) < 0)
		goto out;
	if (fs_install_signals(fs) < 0 || sched_new(cfg, backends, fs, st, &sched) < 0 ||
	    sched_start(sched) < 0) {
		log_error("cannot start the scheduler");
		goto out;
	}
	/* Mount once the first values are in, so an application never starts
	 * on an empty mount; a source still failing at the deadline is absent
	 * (ENOENT) until it succeeds. */
	for (uint64_t waited = 0; !fs_stop_requested(); waited += 100) {
		missing = sched_wait_ready(sched, 100);
		if (missing == 0 || waited >= cfg->startup_timeout_ms)
			break;
	}
	if (fs_stop_requested()) {
		rc = EXIT_SUCCESS;
		goto out;
	}
	if (missing)
		log_warn("startup: %zu of %zu sources not read yet after %llu ms; their "
		         "files stay absent until they are",
		         missing, sched_source_count(sched),
		         (unsigned long long)(sched_now_ms() - started));
	if (fs_mount(fs, cfg->mount.path) < 0)
		goto out;
	log_info("mounted %s: %zu files from %zu sources (%zu ready) in %llu ms",
	         cfg->mount.path, cfg->nsecrets, sched_source_count(sched),
	         sched_source_count(sched) - missing,
	         (unsigned long long)(sched_now_ms() - started));
	fs_run(fs);
	log_info("stopping");
	rc = EXIT_SUCCESS;
out:
	sched_stop(sched);
	if (sched)
		log_stats(sched);
	if (fs)
		fs_unmount(fs);
	sched_free(sched);
	fs_free(fs);
	store_free(st);
	for (size_t i = 0; backends && i < cfg->nbackends; i++)
		if (backends[i])
			backends[i]->ops->free(backends[i]);
	free(backends);
	if (rc == EXIT_SUCCESS)
		log_info("stopped; %s unmounted", cfg->mount.path);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 'n'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *config_path = NULL;
	bool check_only = false;
	struct config *cfg = NULL;
	struct diag d;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:nVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'n':
			check_only = true;
			break;
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
	if (check_only) {
		printf("configuration OK\n");
		config_free(cfg);
		return EXIT_SUCCESS;
	}

	log_setup((enum log_level)cfg->log.level, cfg->log.json);
	log_info("secretfs %s starting (pid %d, config %s)", SECRETFS_VERSION,
	         (int)getpid(), config_path);
	rc = run(cfg);
	config_free(cfg);
	return rc;
}
