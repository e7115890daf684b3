/*
 * The output front (see fs.h): picks the implementation named by the
 * options (fs_fuse.c or fs_dir.c), dispatches the public API through its
 * table of functions (fs_impl.h), and owns what every output shares: the
 * SIGTERM/SIGINT handling that ends fs_run().
 */
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>

#include "fs_impl.h"
#include "secretfs/error.h"
#include "secretfs/fs.h"

static struct fs *signal_fs; /* for the signal handler only */
static volatile sig_atomic_t stop_requested;
static void (*volatile stop_hook)(void); /* async-signal-safe, set before signals */

int fs_new(const struct fs_options *opt, struct store *st, struct fs **out)
{
	switch (opt->output) {
	case FS_OUTPUT_FUSE:
		return fs_fuse_ops.create(opt, st, out);
	case FS_OUTPUT_DIRECTORY:
		return fs_dir_ops.create(opt, st, out);
	}
	return SFS_EINVAL;
}

int fs_add_file(struct fs *fs, const char *name, mode_t mode, uid_t uid, gid_t gid,
                size_t *id)
{
	return fs->ops->add_file(fs, name, mode, uid, gid, id);
}

bool fs_can_change_files(const struct fs *fs)
{
	return fs->ops->check_name && fs->ops->remove_file && fs->ops->set_file_attrs;
}

int fs_check_name(struct fs *fs, const char *name)
{
	return fs->ops->check_name ? fs->ops->check_name(fs, name) : SFS_EINVAL;
}

int fs_remove_file(struct fs *fs, size_t id)
{
	return fs->ops->remove_file ? fs->ops->remove_file(fs, id) : SFS_EINVAL;
}

int fs_set_file_attrs(struct fs *fs, size_t id, mode_t mode, uid_t uid, gid_t gid)
{
	return fs->ops->set_file_attrs ? fs->ops->set_file_attrs(fs, id, mode, uid, gid)
	                               : SFS_EINVAL;
}

int fs_publish(struct fs *fs, struct fs_update *updates, size_t n)
{
	return fs->ops->publish(fs, updates, n);
}

int fs_mount(struct fs *fs, const char *path)
{
	return fs->ops->mount(fs, path);
}

int fs_run(struct fs *fs)
{
	if (stop_requested)
		return 0;
	return fs->ops->run(fs);
}

void fs_unmount(struct fs *fs)
{
	fs->ops->unmount(fs);
}

int fs_check_ready(struct fs *fs, const char *path, fs_report_fn report, void *arg)
{
	return fs->ops->check_ready(fs, path, report, arg);
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	if (signal_fs == fs)
		signal_fs = NULL;
	fs->ops->free(fs);
}

/* ---- signals ------------------------------------------------------------ */

static void on_stop_signal(int sig)
{
	struct fs *fs = signal_fs;

	stop_requested = 1;
	if (stop_hook)
		stop_hook();
	if (fs && fs->ops->interrupt)
		fs->ops->interrupt(fs);
}

int fs_install_signals(struct fs *fs)
{
	struct sigaction sa;

	signal_fs = fs;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: the read of /dev/fuse must return EINTR. */
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
		return SFS_EIO;
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	return 0;
}

void fs_set_stop_hook(void (*hook)(void))
{
	stop_hook = hook;
}

bool fs_stop_requested(void)
{
	return stop_requested != 0;
}

void fs_wait_for_stop(void)
{
	sigset_t stops, old;

	/* Blocked while the flag is tested, unblocked atomically by
	 * sigsuspend: a signal between the two cannot be missed. */
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stops, &old);
	while (!stop_requested) {
		sigset_t wait = old;

		sigdelset(&wait, SIGTERM);
		sigdelset(&wait, SIGINT);
		sigsuspend(&wait);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}
