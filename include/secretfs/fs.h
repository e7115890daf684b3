/*
 * The output: how the files reach applications. A read-only tree whose
 * directories are implied by the file names given before mounting, served
 * by one of two implementations chosen at fs_new():
 *
 * - FS_OUTPUT_FUSE (fs_fuse.c, libfuse3 low-level API). Every version of a
 *   file is its own inode with immutable content, so the kernel may cache
 *   pages freely (keep_cache): rotation publishes a new inode under the
 *   name and invalidates the name's dentry, and readers of the old inode
 *   keep the version they opened. Opening a file pins its version; the
 *   first read that misses the page cache unseals the content into a
 *   guarded snapshot owned by the handle, wiped on release. Requests are
 *   served by several threads at once.
 *
 * - FS_OUTPUT_DIRECTORY (fs_dir.c), for hosts where FUSE is not allowed:
 *   every publish writes a complete generation directory "..<timestamp>"
 *   into the mount directory (meant to be memory-backed) and swaps the
 *   "..data" symlink to it with rename(2), as Kubernetes updates Secret
 *   volumes; each top-level name is a symlink "name -> ..data/name". The
 *   files on disk are plaintext (that is the trade-off); the process still
 *   holds none at rest.
 */
#ifndef SECRETFS_FS_H
#define SECRETFS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct audit;
struct fs;
struct stats;
struct store;
struct store_blob;

enum fs_output { FS_OUTPUT_FUSE = 0, FS_OUTPUT_DIRECTORY };

/* What the output leaves to a privileged helper once this process holds
 * no capability (main.c: the monitor, monitor.h). */
struct fs_privops {
	void *arg;
	/* FUSE: unmounts the mount (lazily) at exit. Returns 0 or -1. */
	int (*detach)(void *arg);
	/* Directory: gives what fd (O_PATH will do) opens to uid:gid and,
	 * unless mode is (mode_t)-1, mode. Returns 0 or -1 with errno set. */
	int (*own)(void *arg, int fd, uid_t uid, gid_t gid, mode_t mode);
};

struct fs_options {
	enum fs_output output;
	mode_t dir_mode;
	uid_t dir_uid;
	gid_t dir_gid;
	bool allow_other;    /* FUSE only */
	bool keep_on_exit;   /* directory only: leave the files in place at exit */
	struct stats *stats; /* where the output counts its work; borrowed, may be NULL */
	/* FUSE only; borrowed, may be NULL. When set, every open of a file is
	 * audited, and the mount goes without default_permissions (the kernel
	 * would refuse opens unseen): secretfs checks modes itself, as the
	 * kernel would (fs_perm.h). */
	struct audit *audit;
	/* Borrowed, may be NULL (or a member NULL): the output does it itself. */
	const struct fs_privops *priv;
	/* FUSE only: handles open at once (limits.max_open_handles); an open
	 * past it fails with ENFILE, logged and counted. 0: unbounded. */
	size_t max_handles;
	/* FUSE only (mount.fast_open): where the kernel can, it opens files
	 * without asking the daemon (FUSE_CAP_NO_OPEN_SUPPORT) and content is
	 * read by inode. No per-open snapshot, count or audit (audit must be
	 * NULL), no max_handles. */
	bool fast_open;
};

/* Creates an empty tree (only the root) served by opt->output. st is
 * borrowed and must outlive the fs (it may be NULL for an fs used only for
 * fs_check_ready). Returns 0, SFS_EINVAL (unknown output) or SFS_ENOMEM. */
int fs_new(const struct fs_options *opt, struct store *st, struct fs **out);

/* Declares a file (absent until first published); creates implied
 * directories. Before fs_mount(), or after it where fs_can_change_files
 * (a configuration reload; thread-safe then). A name that fs_remove_file
 * removed gets its old id back. Writes the file's id. Returns 0,
 * SFS_EINVAL (name clashes with a directory or another file) or SFS_ENOMEM. */
int fs_add_file(struct fs *fs, const char *name, mode_t mode, uid_t uid, gid_t gid,
                size_t *id);

/* Whether this output can add, remove and re-own files once mounted (the
 * FUSE output can; the directory output cannot). */
bool fs_can_change_files(const struct fs *fs);

/* Whether fs_add_file would accept name now: 0, or SFS_EINVAL when it is
 * declared already or clashes with a directory or a file, removed ones
 * included (their nodes stay). Thread-safe. */
int fs_check_name(struct fs *fs, const char *name);

/* Makes file id absent and undeclared (fs_add_file may declare it again);
 * the kernel's entries for it are invalidated as by fs_publish. Same
 * calling rules as fs_publish. Returns 0 or what fs_publish returns;
 * SFS_EINVAL where !fs_can_change_files. */
int fs_remove_file(struct fs *fs, size_t id);

/* New mode and owner of file id, for every version; the kernel's cached
 * attributes are invalidated. Same calling rules as fs_publish. Returns 0
 * or SFS_EINVAL (no such file, or !fs_can_change_files). */
int fs_set_file_attrs(struct fs *fs, size_t id, mode_t mode, uid_t uid, gid_t gid);

/* One file's new content: blob sealed as (name, version); NULL blob makes
 * the file absent. */
struct fs_update {
	size_t id;
	struct store_blob *blob; /* ownership passes to the fs */
	uint64_t version;
};

/*
 * Publishes updates atomically (an open that follows sees all of them or
 * none): FUSE invalidates the kernel's cached entries for those names; the
 * directory output writes and swaps in a new generation (once mounted;
 * before that it only keeps the blobs). When it returns 0 the new content
 * is visible and the blobs belong to the fs; on failure nothing changed and
 * they stay the caller's. Must not be called from a FUSE request handler.
 * Thread-safe. Returns 0, SFS_EINVAL, SFS_ENOMEM or SFS_EIO (logged).
 */
int fs_publish(struct fs *fs, struct fs_update *updates, size_t n);

/* Mounts at path (a directory, or /dev/fd/N for a descriptor opened by a
 * privileged helper). A stale mount left by a dead instance is detached
 * first. The directory output instead creates the directory if missing,
 * removes what an earlier run of secretfs left there (recognised by name),
 * refuses entries under the files' names that it did not make, and writes
 * the first generation. Returns 0 or SFS_EIO (reason logged). */
int fs_mount(struct fs *fs, const char *path);

/* Installs the SIGTERM/SIGINT handlers (stop serving; fs_run returns) and
 * ignores SIGHUP and SIGPIPE. Call once, early. Returns 0 or SFS_EIO. */
int fs_install_signals(struct fs *fs);

/* hook runs inside the SIGTERM/SIGINT handler, right after the stop flag
 * is set: it must be async-signal-safe (e.g. http_stop). Set it before
 * fs_install_signals; NULL for none. */
void fs_set_stop_hook(void (*hook)(void));

/* True once SIGTERM or SIGINT arrived. Async-signal-safe. */
bool fs_stop_requested(void);

/* Serves requests until SIGTERM/SIGINT or an unmount. Returns 0. */
int fs_run(struct fs *fs);

/* Unmounts if mounted. The directory output removes its files, links and
 * generations unless keep_on_exit (old generations go in any case). */
void fs_unmount(struct fs *fs);

/* Called by fs_check_ready for each problem: name is a file name, or NULL
 * for the mount as a whole; why is a short reason. */
typedef void (*fs_report_fn)(void *arg, const char *name, const char *why);

/*
 * Checks from outside, without serving anything, that the files declared
 * with fs_add_file are in place at path as a running secretfs would serve
 * them: for FUSE, a fuse.secretfs mount at path and every file present;
 * for the directory output, "..data" our symlink to a generation, each
 * top-level name our symlink, and every file a regular file inside the
 * generation (never following a symlink someone else planted). Returns 0
 * when ready, else the number of problems reported (at least 1).
 */
int fs_check_ready(struct fs *fs, const char *path, fs_report_fn report, void *arg);

/* Unmounts if needed, wipes everything and frees. NULL-safe. */
void fs_free(struct fs *fs);

#endif
