/*
 * What an output implementation of fs.h provides: a table of functions,
 * one file per implementation (fs_fuse.c, fs_dir.c), chosen by fs_new()
 * from the options' output type. fs.c dispatches the public API through
 * the table and owns what all outputs share (the stop signals).
 */
#ifndef SECRETFS_FS_IMPL_H
#define SECRETFS_FS_IMPL_H

#include "secretfs/fs.h"

struct fs_ops {
	const char *name; /* for messages: "fuse", "directory" */
	int (*create)(const struct fs_options *opt, struct store *st, struct fs **out);
	int (*add_file)(struct fs *fs, const char *name, mode_t mode, uid_t uid,
	                gid_t gid, size_t *id);
	/* For a reload of the file set; optional (NULL: not supported). */
	int (*check_name)(struct fs *fs, const char *name);
	int (*remove_file)(struct fs *fs, size_t id);
	int (*set_file_attrs)(struct fs *fs, size_t id, mode_t mode, uid_t uid,
	                      gid_t gid);
	int (*publish)(struct fs *fs, struct fs_update *updates, size_t n);
	int (*mount)(struct fs *fs, const char *path);
	/* Serves until fs_stop_requested(); returns 0. */
	int (*run)(struct fs *fs);
	/* From the SIGTERM/SIGINT handler: async-signal-safe; optional. */
	void (*interrupt)(struct fs *fs);
	void (*unmount)(struct fs *fs);
	int (*check_ready)(struct fs *fs, const char *path, fs_report_fn report,
	                   void *arg);
	void (*free)(struct fs *fs);
};

/* Every implementation embeds this as its first member. */
struct fs {
	const struct fs_ops *ops;
};

extern const struct fs_ops fs_fuse_ops;
extern const struct fs_ops fs_dir_ops;

/* Blocks until SIGTERM or SIGINT has arrived (fs_install_signals must have
 * run). For outputs with nothing to serve. */
void fs_wait_for_stop(void);

#endif
