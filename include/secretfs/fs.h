/*
 * The FUSE filesystem (libfuse3 low-level API). A read-only tree whose
 * directories are implied by the file names given before mounting. Every
 * version of a file is its own inode with immutable content, so the kernel
 * may cache pages freely (keep_cache): rotation publishes a new inode under
 * the name and invalidates the name's dentry, and readers of the old inode
 * keep the version they opened. Opening a file unseals its content into a
 * guarded snapshot owned by the handle, wiped on release.
 */
#ifndef SECRETFS_FS_H
#define SECRETFS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct fs;
struct store;
struct store_blob;

struct fs_options {
	mode_t dir_mode;
	uid_t dir_uid;
	gid_t dir_gid;
	bool allow_other;
};

/* Creates an empty tree (only the root). st is borrowed and must outlive
 * the fs. Returns 0 or SFS_ENOMEM. */
int fs_new(const struct fs_options *opt, struct store *st, struct fs **out);

/* Declares a file (absent until first published); creates implied
 * directories. Only before fs_mount(). Writes the file's id. Returns 0,
 * SFS_EINVAL (name clashes with a directory or another file) or SFS_ENOMEM. */
int fs_add_file(struct fs *fs, const char *name, mode_t mode, uid_t uid, gid_t gid,
                size_t *id);

/* One file's new content: blob sealed as (name, version); NULL blob makes
 * the file absent. */
struct fs_update {
	size_t id;
	struct store_blob *blob; /* ownership passes to the fs */
	uint64_t version;
};

/*
 * Publishes updates atomically (an open that follows sees all of them or
 * none), then invalidates the kernel's cached entries for those names.
 * Must not be called from a FUSE request handler. Thread-safe.
 */
int fs_publish(struct fs *fs, struct fs_update *updates, size_t n);

/* Mounts at path (a directory, or /dev/fd/N for a descriptor opened by a
 * privileged helper). A stale mount left by a dead instance is detached
 * first. Returns 0 or SFS_EIO (reason logged). */
int fs_mount(struct fs *fs, const char *path);

/* Installs the SIGTERM/SIGINT handlers (stop serving; fs_run returns) and
 * ignores SIGHUP and SIGPIPE. Call once, early. Returns 0 or SFS_EIO. */
int fs_install_signals(struct fs *fs);

/* True once SIGTERM or SIGINT arrived. Async-signal-safe. */
bool fs_stop_requested(void);

/* Serves requests until SIGTERM/SIGINT or an unmount. Returns 0. */
int fs_run(struct fs *fs);

/* Unmounts if mounted. */
void fs_unmount(struct fs *fs);

/* Unmounts if needed, wipes everything and frees. NULL-safe. */
void fs_free(struct fs *fs);

#endif
