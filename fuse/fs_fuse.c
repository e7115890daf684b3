/*
 * The FUSE output (see fs.h), on the libfuse3 low-level API.
 *
 * Names form a fixed tree of nodes built before mounting. A file node points
 * at its current version, an inode (fs_inode) with an immutable sealed blob
 * and its own inode number. Publishing a version makes a new inode current
 * and invalidates the name's dentry, so the next lookup gets the new inode
 * while handles (and page cache) of the old one stay with the old content:
 * no torn reads and no stale cache for new opens. Superseded inodes are
 * freed when the kernel forgets them and no handle has them open.
 *
 * With an audit (fs_options.audit) every open of a file is recorded, and
 * the mount goes without default_permissions so that refused opens reach
 * the daemon too: the handlers check modes themselves (fs_perm.h), where
 * the kernel would: search (x) on the directory in lookup, read in open and
 * opendir, the mask of access(2). The kernel checks nothing on a cached
 * dentry, so the entries of a directory that not everyone may search are
 * not cached (every path walk through it asks lookup again).
 *
 * An open pins the version it found (the inode stays alive while any
 * handle has it) and audits; the content is unsealed into the handle's
 * snapshot only at the first READ, which comes only when the kernel's page
 * cache misses (keep_cache: an unchanged file is read once, then served by
 * the kernel). So a warm open+read+close costs two requests, OPEN and the
 * RELEASE that close sends without waiting for its answer; one thread
 * serves them (fusefs_run). The stack is wiped after an unseal, the only
 * place plaintext touches it.
 *
 * With fast_open (no audit, so default_permissions: the kernel checks
 * modes, as it does in the default mode without an audit) the first OPEN
 * is answered ENOSYS, after which the kernel opens files without asking
 * (FUSE_CAP_NO_OPEN_SUPPORT): READs come without a handle and are served by inode
 * (read_inode). The kernel holds a lookup of the inode while a file has it open, and a
 * superseded inode lives until forgotten, so an old handle keeps its
 * version after a rotation and after its pages are evicted, while the
 * invalidated name leads new opens to the new inode.
 *
 * Directories are opened with cache_readdir and keep_cache: the kernel
 * keeps their listing until a publish changes what it would say (a file
 * appears, disappears, or gets a new inode), and then the directory's
 * inode is invalidated. Without an audit nothing is checked or counted at
 * OPENDIR, so the first is answered ENOSYS (FUSE_CAP_NO_OPENDIR_SUPPORT)
 * and the kernel opens directories itself, with the same caching
 * (FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR is its default then).
 *
 * Requests run in several threads at once. One mutex guards what changes
 * after mounting: the inode table, each file's current inode, the inodes'
 * counts, the handle list, directory times, and the tree itself, which a
 * configuration reload may grow (fs_add_file) or mark removed
 * (fs_remove_file) and whose modes and owners it may change. Nodes are
 * never freed before the fs, so a node pointer found under the mutex stays
 * valid, and a child's index in its directory never changes (readdir
 * offsets stay stable); names are immutable. Permission checks copy the
 * mode and owner under the mutex and run outside it (they may read /proc
 * for the caller's groups). A handle's own mutex guards its snapshot. The kernel is
 * notified only after the mutex is released and never from a request handler (the
 * scheduler publishes): an invalidation waits for the directory lock that
 * an in-flight lookup holds, and that lookup may be waiting for this
 * process to answer.
 */
#include <errno.h>
#include <fuse_lowlevel.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs_impl.h"
#include "fs_perm.h"
#include "mountpoint.h"
#include "secretfs/audit.h"
#include "secretfs/error.h"
#include "secretfs/fs.h"
#include "secretfs/fuse_metrics.h"
#include "secretfs/log.h"
#include "secretfs/secmem.h"
#include "secretfs/stats.h"
#include "secretfs/store.h"
#include "secretfs/timing.h"

/* Names and attributes change only through explicit invalidation. */
#define FS_ENTRY_TIMEOUT 3600.0
#define FS_ATTR_TIMEOUT 3600.0
/* Supplementary groups read for a check; more are ignored (refusing what
 * only a later group would allow). */
#define FS_MAX_GROUPS 1024
/* Opens refused past max_handles are logged at most this often. */
#define FS_REFUSED_LOG_MS 10000
/* At exit, after the helper's lazy unmount: how long the connection's end
 * is waited for (fusefs_release_session). */
#define FUSE_DETACH_WAIT_MS 500
/* Room for a file's full name (config names are at most 1024 bytes). */
#define FS_PATH_MAX 4096

struct fs_inode;

struct fs_node {
	struct fs_node *parent;
	struct fs_node **children; /* directories */
	size_t nchildren;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	/* files: the index in fs_fuse.files, and the audit's id (with an
	 * audit); 32 bits, as limits.max_files is at most CONFIG_MAX_MAX_FILES */
	uint32_t id, audit_id;
	bool is_dir;
	bool removed;             /* files: undeclared by a reload (fs_remove_file) */
	struct fs_inode *current; /* files: NULL while absent; dirs: their inode */
	struct stats_set *opens;  /* files: fuse_metrics_register_file; NULL-safe */
	uint64_t hash;            /* of (parent, name), for the children table */
	struct fs_node *hnext;    /* children table chain */
	uint64_t publish_mark;    /* dirs: the last publish that changed them */
	size_t nlive;             /* dirs: declared files below; none: hidden */
	/* The last path segment, in the node's block (one allocation a node;
	 * members ordered for size: 10 000 files); the full name is made by
	 * node_path. */
	char name[];
};

/* Opens of replaced versions remembered at once (fs_fuse.stale). */
#define FS_STALE_SLOTS 8

struct fs_inode {
	fuse_ino_t ino;
	struct fs_node *node;
	uint64_t version;
	struct store_blob *blob; /* files; NULL for directories */
	struct timespec mtime;
	uint64_t nlookup;
	unsigned nopen;
	bool superseded;
	struct fs_inode *hnext; /* hash chain */
};

struct fs_handle {
	pthread_mutex_t lock; /* guards the three below */
	bool unsealed;        /* data and len are set, at the first READ */
	unsigned char *data;  /* secmem snapshot */
	size_t len;
	struct fs_inode *inode;        /* pinned (nopen) until release */
	struct fs_handle *prev, *next; /* all open handles, for teardown */
};

struct fs_fuse {
	struct fs base; /* first: the fs.h handle */
	struct fs_options opt;
	struct store *store;
	pthread_mutex_t lock;
	struct fs_node *root;
	struct fs_node **files; /* by id */
	size_t nfiles;
	struct fs_inode **buckets;
	size_t nbuckets, ninodes;
	struct fs_node **children; /* every node but the root, by (parent, name) */
	size_t nchildren_buckets, nnodes;
	uint64_t publishes; /* marks directories a publish changes */
	fuse_ino_t next_ino;
	size_t nhandles;
	struct fs_handle *handles;
	uint64_t handles_refused; /* opens past opt.max_handles */
	uint64_t refused_logged_ms;
	struct fuse_session *se;
	bool mounted;
	bool detached; /* unmounted by opt.priv->detach */
	/* OPEN (fast_open), OPENDIR (no audit) answered ENOSYS where the
	 * kernel can (set in init, before any other request). */
	bool no_open, no_opendir;
	struct stats_set *requests; /* fuse_metrics_register; NULL-safe */
	/* The last opens answered ESTALE (stale_open), so the kernel's one
	 * retry of the same open is told apart. */
	struct {
		fuse_ino_t ino;
		pid_t pid;
	} stale[FS_STALE_SLOTS];
	unsigned stale_next;
};

/* ---- inode table ---------------------------------------------------- */

static int inode_table_grow(struct fs_fuse *fs)
{
	size_t n = fs->nbuckets ? fs->nbuckets * 2 : 256;
	struct fs_inode **b = calloc(n, sizeof *b);

	if (!b)
		return SFS_ENOMEM;
	for (size_t i = 0; i < fs->nbuckets; i++) {
		struct fs_inode *in = fs->buckets[i], *next;
		for (; in; in = next) {
			next = in->hnext;
			in->hnext = b[in->ino & (n - 1)];
			b[in->ino & (n - 1)] = in;
		}
	}
	free(fs->buckets);
	fs->buckets = b;
	fs->nbuckets = n;
	return 0;
}

static struct fs_inode *inode_find(struct fs_fuse *fs, fuse_ino_t ino)
{
	struct fs_inode *in;

	if (!fs->nbuckets)
		return NULL;
	for (in = fs->buckets[ino & (fs->nbuckets - 1)]; in; in = in->hnext)
		if (in->ino == ino)
			return in;
	return NULL;
}

static struct fs_inode *inode_new(struct fs_fuse *fs, struct fs_node *node)
{
	struct fs_inode *in;

	if (fs->ninodes >= fs->nbuckets && inode_table_grow(fs) < 0)
		return NULL;
	in = calloc(1, sizeof *in);
	if (!in)
		return NULL;
	in->ino = fs->next_ino++;
	in->node = node;
	clock_gettime(CLOCK_REALTIME, &in->mtime);
	in->hnext = fs->buckets[in->ino & (fs->nbuckets - 1)];
	fs->buckets[in->ino & (fs->nbuckets - 1)] = in;
	fs->ninodes++;
	return in;
}

static void inode_unlink_free(struct fs_fuse *fs, struct fs_inode *in)
{
	struct fs_inode **pp = &fs->buckets[in->ino & (fs->nbuckets - 1)];

	while (*pp && *pp != in)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = in->hnext;
	fs->ninodes--;
	store_blob_free(in->blob);
	free(in);
}

/* Frees a superseded version nobody can reach any more. */
static void inode_maybe_free(struct fs_fuse *fs, struct fs_inode *in)
{
	if (in->superseded && in->nlookup == 0 && in->nopen == 0)
		inode_unlink_free(fs, in);
}

/* Links a handle into the open list; lock held. */
static void handle_link(struct fs_fuse *fs, struct fs_handle *h)
{
	h->inode->nopen++;
	fs->nhandles++;
	h->prev = NULL;
	h->next = fs->handles;
	if (fs->handles)
		fs->handles->prev = h;
	fs->handles = h;
}

/* Unlinks, wipes and frees a handle; lock held. */
static void handle_release(struct fs_fuse *fs, struct fs_handle *h)
{
	if (h->prev)
		h->prev->next = h->next;
	else
		fs->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	fs->nhandles--;
	h->inode->nopen--;
	inode_maybe_free(fs, h->inode);
	secmem_free(h->data);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/* ---- tree --------------------------------------------------------------- */

/* FNV-1a of the parent's address and the name: a child is found in one
 * table for the whole tree, in constant time, however wide its directory. */
static uint64_t child_hash(const struct fs_node *parent, const char *name, size_t len)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)parent;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)name[i];
		h *= 1099511628211ull;
	}
	return h;
}

static int child_table_grow(struct fs_fuse *fs)
{
	size_t n = fs->nchildren_buckets ? fs->nchildren_buckets * 2 : 256;
	struct fs_node **b = calloc(n, sizeof *b);

	if (!b)
		return SFS_ENOMEM;
	for (size_t i = 0; i < fs->nchildren_buckets; i++) {
		struct fs_node *c = fs->children[i], *next;
		for (; c; c = next) {
			next = c->hnext;
			c->hnext = b[c->hash & (n - 1)];
			b[c->hash & (n - 1)] = c;
		}
	}
	free(fs->children);
	fs->children = b;
	fs->nchildren_buckets = n;
	return 0;
}

static struct fs_node *node_new(struct fs_fuse *fs, struct fs_node *parent,
                                const char *name, size_t len, bool is_dir)
{
	struct fs_node *n = calloc(1, sizeof *n + len + 1);
	struct fs_node **grown;

	if (!n)
		goto fail;
	memcpy(n->name, name, len);
	n->parent = parent;
	n->is_dir = is_dir;
	if (is_dir) {
		n->mode = fs->opt.dir_mode;
		n->uid = fs->opt.dir_uid;
		n->gid = fs->opt.dir_gid;
		if (!(n->current = inode_new(fs, n)))
			goto fail;
	}
	if (parent) {
		if (fs->nnodes >= fs->nchildren_buckets && child_table_grow(fs) < 0)
			goto fail;
		grown =
		    realloc(parent->children, (parent->nchildren + 1) * sizeof *grown);
		if (!grown)
			goto fail;
		parent->children = grown;
		parent->children[parent->nchildren++] = n;
		n->hash = child_hash(parent, name, len);
		n->hnext = fs->children[n->hash & (fs->nchildren_buckets - 1)];
		fs->children[n->hash & (fs->nchildren_buckets - 1)] = n;
		fs->nnodes++;
	}
	return n;
fail:
	if (n && n->current)
		inode_unlink_free(fs, n->current);
	free(n);
	return NULL;
}

static struct fs_node *node_child(struct fs_fuse *fs, const struct fs_node *dir,
                                  const char *name, size_t len)
{
	uint64_t h = child_hash(dir, name, len);

	if (!fs->nchildren_buckets)
		return NULL;
	for (struct fs_node *c = fs->children[h & (fs->nchildren_buckets - 1)]; c;
	     c = c->hnext)
		if (c->hash == h && c->parent == dir && strlen(c->name) == len &&
		    memcmp(c->name, name, len) == 0)
			return c;
	return NULL;
}

static void node_free(struct fs_fuse *fs, struct fs_node *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nchildren; i++)
		node_free(fs, n->children[i]);
	free(n->children);
	free(n);
}

/* The node's full name inside the mount, into buf (FS_PATH_MAX bytes; the
 * names are bounded by the config far below that). Not kept per node: with
 * 10 000 files the copies cost 300 KiB. */
static const char *node_path(const struct fs_node *n, char *buf)
{
	size_t len = strlen(n->name), at;

	if (!n->parent || !n->parent->parent) {
		snprintf(buf, FS_PATH_MAX, "%s", n->name);
		return buf;
	}
	node_path(n->parent, buf);
	at = strlen(buf);
	if (at + 1 + len < FS_PATH_MAX) {
		buf[at] = '/';
		memcpy(buf + at + 1, n->name, len + 1);
	}
	return buf;
}

static void fusefs_free(struct fs *base);

static int fusefs_create(const struct fs_options *opt, struct store *st, struct fs **out)
{
	struct fs_fuse *fs = calloc(1, sizeof *fs);

	if (!fs)
		return SFS_ENOMEM;
	fs->base.ops = &fs_fuse_ops;
	fs->opt = *opt;
	fs->store = st;
	fs->next_ino = FUSE_ROOT_ID;
	fs->requests = fuse_metrics_register(opt->stats);
	pthread_mutex_init(&fs->lock, NULL);
	fs->root = node_new(fs, NULL, "", 0, true);
	if (!fs->root) {
		fusefs_free(&fs->base);
		return SFS_ENOMEM;
	}
	*out = &fs->base;
	return 0;
}

/* The node of a file name and the directory it would go in, walking the
 * tree: *dir is the deepest existing directory on the way, *node the
 * existing node of the whole name or NULL. Returns SFS_EINVAL when a
 * segment on the way is a file, or the whole name is a directory. Lock
 * held (or not mounted). */
static int name_walk(struct fs_fuse *fs, const char *name, struct fs_node **node)
{
	struct fs_node *dir = fs->root, *n = NULL;
	const char *seg = name, *slash;

	*node = NULL;
	while ((slash = strchr(seg, '/'))) {
		n = node_child(fs, dir, seg, (size_t)(slash - seg));
		if (n && !n->is_dir)
			return SFS_EINVAL;
		if (!n)
			return 0;
		dir = n;
		seg = slash + 1;
	}
	if (!*seg)
		return SFS_EINVAL;
	n = node_child(fs, dir, seg, strlen(seg));
	if (n && n->is_dir)
		return SFS_EINVAL;
	*node = n;
	return 0;
}

static int fusefs_check_name(struct fs *base, const char *name)
{
	struct fs_fuse *fs = (struct fs_fuse *)base;
	struct fs_node *n;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = name_walk(fs, name, &n);
	if (rc == 0 && n && !n->removed)
		rc = SFS_EINVAL;
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* A directory that a reload made appear or disappear: its parent's
 * listing and its entry there are to be invalidated (name NULL: none). */
struct dir_change {
	const char *name; /* the directory's, immutable */
	fuse_ino_t parent;
};

/*
 * Counts file n in (delta 1) or out (-1) of the directories above it. A
 * directory without declared files is hidden (a reload removed them all):
 * the highest one that appears or disappears goes to *chg once mounted.
 * Lock held.
 */
static void count_live(struct fs_fuse *fs, struct fs_node *n, int delta,
                       struct dir_change *chg)
{
	chg->name = NULL;
	for (struct fs_node *d = n->parent; d; d = d->parent) {
		bool flips = delta > 0 ? d->nlive++ == 0 : --d->nlive == 0;

		/* The root is never hidden. */
		if (flips && d->parent && fs->mounted)
			*chg = (struct dir_change){d->name, d->parent->current->ino};
	}
}

/* After the lock, never from a handler. */
static void notify_dir_change(struct fs_fuse *fs, const struct dir_change *chg)
{
	int r;

	if (!chg->name)
		return;
	r = fuse_lowlevel_notify_inval_entry(fs->se, chg->parent, chg->name,
	                                     strlen(chg->name));
	if (r < 0 && r != -ENOENT)
		log_debug("invalidating directory %s: %s", chg->name, strerror(-r));
	r = fuse_lowlevel_notify_inval_inode(fs->se, chg->parent, 0, 0);
	if (r < 0 && r != -ENOENT)
		log_debug("invalidating a directory: %s", strerror(-r));
}

static int add_file_locked(struct fs_fuse *fs, const char *name, mode_t mode, uid_t uid,
                           gid_t gid, size_t *id, struct dir_change *chg)
{
	struct fs_node *dir = fs->root, *n, **grown;
	size_t audit_id;
	const char *seg = name, *slash;

	if (name_walk(fs, name, &n) < 0 || (n && !n->removed))
		return SFS_EINVAL;
	if (n) {
		/* Declared again after a reload removed it: same node, same id. */
		n->removed = false;
		n->mode = mode;
		n->uid = uid;
		n->gid = gid;
		*id = n->id;
		count_live(fs, n, 1, chg);
		return 0;
	}
	while ((slash = strchr(seg, '/'))) {
		n = node_child(fs, dir, seg, (size_t)(slash - seg));
		if (!n && !(n = node_new(fs, dir, seg, (size_t)(slash - seg), true)))
			return SFS_ENOMEM;
		dir = n;
		seg = slash + 1;
	}
	grown = realloc(fs->files, (fs->nfiles + 1) * sizeof *grown);
	if (!grown)
		return SFS_ENOMEM;
	fs->files = grown;
	n = node_new(fs, dir, seg, strlen(seg), false);
	if (!n)
		return SFS_ENOMEM;
	n->mode = mode;
	n->uid = uid;
	n->gid = gid;
	n->opens = fuse_metrics_register_file(fs->opt.stats, name);
	if (fs->opt.audit) {
		if (audit_add_file(fs->opt.audit, name, &audit_id) < 0)
			return SFS_ENOMEM;
		n->audit_id = (uint32_t)audit_id;
	}
	n->id = (uint32_t)fs->nfiles;
	*id = fs->nfiles;
	fs->files[fs->nfiles++] = n;
	count_live(fs, n, 1, chg);
	return 0;
}

static int fusefs_add_file(struct fs *base, const char *name, mode_t mode, uid_t uid,
                           gid_t gid, size_t *id)
{
	struct fs_fuse *fs = (struct fs_fuse *)base;
	struct dir_change chg = {NULL, 0};
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = add_file_locked(fs, name, mode, uid, gid, id, &chg);
	pthread_mutex_unlock(&fs->lock);
	notify_dir_change(fs, &chg);
	return rc;
}

/* ---- publishing ----------------------------------------------------- */

static int fusefs_publish(struct fs *base, struct fs_update *updates, size_t n)
{
	struct fs_fuse *fs = (struct fs_fuse *)base;
	struct fs_inode **fresh = calloc(n ? n : 1, sizeof *fresh);
	struct fs_node **nodes = calloc(n ? n : 1, sizeof *nodes);
	fuse_ino_t *dirs = calloc(n ? n : 1, sizeof *dirs);
	size_t ndirs = 0;
	struct timespec now;
	uint64_t mark;
	bool mounted;
	int rc = 0;

	if (!fresh || !nodes || !dirs) {
		free(fresh);
		free(nodes);
		free(dirs);
		return SFS_ENOMEM;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&fs->lock);
	/* Allocate everything first so the swap below cannot fail half-way. */
	for (size_t i = 0; i < n; i++) {
		if (updates[i].id >= fs->nfiles) {
			rc = SFS_EINVAL;
			goto undo;
		}
		/* Collected here: a reload may grow fs->files meanwhile. */
		nodes[i] = fs->files[updates[i].id];
		if (!updates[i].blob)
			continue;
		fresh[i] = inode_new(fs, fs->files[updates[i].id]);
		if (!fresh[i]) {
			rc = SFS_ENOMEM;
			goto undo;
		}
	}
	mark = ++fs->publishes;
	for (size_t i = 0; i < n; i++) {
		struct fs_node *node = fs->files[updates[i].id];
		struct fs_inode *old = node->current;

		if (fresh[i]) {
			fresh[i]->blob = updates[i].blob;
			fresh[i]->version = updates[i].version;
			updates[i].blob = NULL;
		}
		node->current = fresh[i];
		if (old) {
			old->superseded = true;
			inode_maybe_free(fs, old);
		}
		/* The directory's listing names the inode: it changed. */
		if ((old || fresh[i]) && node->parent->publish_mark != mark) {
			node->parent->publish_mark = mark;
			node->parent->current->mtime = now;
			dirs[ndirs++] = node->parent->current->ino;
		}
	}
	mounted = fs->mounted;
	pthread_mutex_unlock(&fs->lock);

	if (mounted) {
		for (size_t i = 0; i < n; i++) {
			struct fs_node *node = nodes[i];
			char path[FS_PATH_MAX];
			int r = fuse_lowlevel_notify_inval_entry(
			    fs->se, node->parent->current->ino, node->name,
			    strlen(node->name));
			if (r < 0 && r != -ENOENT)
				log_debug("invalidating %s: %s", node_path(node, path),
				          strerror(-r));
		}
		/* Drops the cached listing (cache_readdir) and attributes. */
		for (size_t i = 0; i < ndirs; i++) {
			int r = fuse_lowlevel_notify_inval_inode(fs->se, dirs[i], 0, 0);
			if (r < 0 && r != -ENOENT)
				log_debug("invalidating a directory: %s", strerror(-r));
		}
	}
	free(fresh);
	free(nodes);
	free(dirs);
	return 0;
undo:
	for (size_t i = 0; i < n; i++)
		if (fresh[i])
			inode_unlink_free(fs, fresh[i]);
	pthread_mutex_unlock(&fs->lock);
	free(fresh);
	free(nodes);
	free(dirs);
	return rc;
}

static int fusefs_remove_file(struct fs *base, size_t id)
{
	struct fs_fuse *fs = (struct fs_fuse *)base;
	struct fs_update upd = {.id = id};
	struct dir_change chg = {NULL, 0};
	int rc = fusefs_publish(base, &upd, 1);

	if (rc == 0) {
		pthread_mutex_lock(&fs->lock);
		if (!fs->files[id]->removed) {
			fs->files[id]->removed = true;
			count_live(fs, fs->files[id], -1, &chg);
		}
		pthread_mutex_unlock(&fs->lock);
	}
	notify_dir_change(fs, &chg);
	return rc;
}

static int fusefs_set_file_attrs(struct fs *base, size_t id, mode_t mode, uid_t uid,
                                 gid_t gid)
{
	struct fs_fuse *fs = (struct fs_fuse *)base;
	fuse_ino_t ino = 0;
	bool mounted;

	pthread_mutex_lock(&fs->lock);
	if (id >= fs->nfiles) {
		pthread_mutex_unlock(&fs->lock);
		return SFS_EINVAL;
	}
	fs->files[id]->mode = mode;
	fs->files[id]->uid = uid;
	fs->files[id]->gid = gid;
	if (fs->files[id]->current)
		ino = fs->files[id]->current->ino;
	mounted = fs->mounted;
	pthread_mutex_unlock(&fs->lock);
	/* The kernel checks permissions against the attributes it cached. */
	if (mounted && ino) {
		char path[FS_PATH_MAX];
		int r = fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
		if (r < 0 && r != -ENOENT)
			log_debug("invalidating the attributes of %s: %s",
			          node_path(fs->files[id], path), strerror(-r));
	}
	return 0;
}

/* ---- request handlers --------------------------------------------------- */

static void fill_stat(const struct fs_inode *in, struct stat *st)
{
	const struct fs_node *n = in->node;

	memset(st, 0, sizeof *st);
	st->st_ino = in->ino;
	st->st_uid = n->uid;
	st->st_gid = n->gid;
	st->st_mtim = in->mtime;
	st->st_ctim = in->mtime;
	st->st_atim = in->mtime;
	if (n->is_dir) {
		st->st_mode = S_IFDIR | n->mode;
		st->st_nlink = 2;
	} else {
		size_t size = store_blob_len(in->blob);

		st->st_mode = S_IFREG | n->mode;
		st->st_nlink = 1;
		st->st_size = (off_t)size;
		st->st_blocks = (blkcnt_t)((size + 511) / 512);
	}
	st->st_blksize = 4096;
}

/* Who sent a request; its supplementary groups are read (from /proc, by
 * libfuse) once, when a check first depends on them. */
struct caller {
	fuse_req_t req;
	pid_t pid;
	struct perm_caller ids;
	bool have_groups;
	gid_t groups[FS_MAX_GROUPS];
};

static void caller_init(struct caller *c, fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	c->req = req;
	c->pid = ctx->pid;
	c->ids = (struct perm_caller){ctx->uid, ctx->gid, c->groups, 0};
	c->have_groups = false;
}

/* 0, or EACCES when the caller may not access n for want (PERM_* bits).
 * Without an audit the kernel has checked already (default_permissions). */
static int caller_may(struct fs_fuse *fs, struct caller *c, const struct fs_node *n,
                      int want)
{
	struct perm_obj o;

	if (!fs->opt.audit)
		return 0;
	/* A reload may change them. */
	pthread_mutex_lock(&fs->lock);
	o = (struct perm_obj){(n->is_dir ? S_IFDIR : S_IFREG) | n->mode, n->uid, n->gid};
	pthread_mutex_unlock(&fs->lock);
	if (!c->have_groups && perm_needs_groups(&o, c->ids.uid, c->ids.gid, want)) {
		int k = fuse_req_getgroups(c->req, FS_MAX_GROUPS, c->groups);

		c->ids.ngroups = k < 0               ? 0
		                 : k > FS_MAX_GROUPS ? FS_MAX_GROUPS
		                                     : (size_t)k;
		c->have_groups = true;
	}
	return perm_check(&o, &c->ids, want) < 0 ? EACCES : 0;
}

/* Counts an open of file n that ended with err, and audits it. */
static void count_open(struct fs_fuse *fs, const struct caller *c,
                       const struct fs_node *n, uint64_t version, int err)
{
	fuse_metrics_open(n->opens, err);
	audit_open(fs->opt.audit, n->audit_id, version, c->pid, c->ids.uid, c->ids.gid,
	           err);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_fuse *fs = fuse_req_userdata(req);
	struct fuse_entry_param e;
	struct fs_inode *dir_in, *in;
	struct fs_node *dir, *child;
	struct caller c;
	uint64_t version;

	memset(&e, 0, sizeof e);
	pthread_mutex_lock(&fs->lock);
	dir_in = inode_find(fs, parent);
	dir = dir_in ? dir_in->node : NULL;
	pthread_mutex_unlock(&fs->lock);
	if (!dir || !dir->is_dir) {
		fuse_reply_err(req, dir ? ENOTDIR : ENOENT);
		return;
	}
	/* A reload may grow the tree: the name is found under the lock; the
	 * node stays valid after it. */
	pthread_mutex_lock(&fs->lock);
	child = node_child(fs, dir, name, strlen(name));
	pthread_mutex_unlock(&fs->lock);
	caller_init(&c, req);
	if (caller_may(fs, &c, dir, PERM_EXEC)) {
		/* A probe for a secret through a directory it may not search:
		 * audited like a refused open (it may have been a stat). */
		if (child && !child->is_dir) {
			pthread_mutex_lock(&fs->lock);
			version = child->current ? child->current->version : 0;
			pthread_mutex_unlock(&fs->lock);
			count_open(fs, &c, child, version, EACCES);
		}
		fuse_reply_err(req, EACCES);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	in = child && (!child->is_dir || child->nlive) ? child->current : NULL;
	if (!in) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, ENOENT);
		return;
	}
	in->nlookup++;
	e.ino = in->ino;
	e.generation = 1;
	e.attr_timeout = FS_ATTR_TIMEOUT;
	/* Checking ourselves, only a lookup can refuse the search. */
	e.entry_timeout =
	    fs->opt.audit && (dir->mode & 0111) != 0111 ? 0 : FS_ENTRY_TIMEOUT;
	fill_stat(in, &e.attr);
	pthread_mutex_unlock(&fs->lock);
	if (fuse_reply_entry(req, &e) != 0) {
		/* The kernel did not take the reference after all. */
		pthread_mutex_lock(&fs->lock);
		in->nlookup--;
		inode_maybe_free(fs, in);
		pthread_mutex_unlock(&fs->lock);
	}
}

static void forget_one(struct fs_fuse *fs, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs_inode *in = inode_find(fs, ino);

	if (!in || in->node->is_dir)
		return;
	in->nlookup = nlookup > in->nlookup ? 0 : in->nlookup - nlookup;
	inode_maybe_free(fs, in);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs_fuse *fs = fuse_req_userdata(req);

	pthread_mutex_lock(&fs->lock);
	forget_one(fs, ino, nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
                            struct fuse_forget_data *forgets)
{
	struct fs_fuse *fs = fuse_req_userdata(req);

	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < count; i++)
		forget_one(fs, forgets[i].ino, forgets[i].nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_fuse *fs = fuse_req_userdata(req);
	struct fs_inode *in;
	struct stat st;

	pthread_mutex_lock(&fs->lock);
	in = inode_find(fs, ino);
	if (in)
		fill_stat(in, &st);
	pthread_mutex_unlock(&fs->lock);
	if (!in)
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_attr(req, &st, FS_ATTR_TIMEOUT);
}

/*
 * An OPEN of a version a publish has replaced comes from a name the kernel
 * still maps to it (its entry invalidation was not there yet when the path
 * was walked). The first such open of ino by pid is answered ESTALE: the
 * kernel then walks the path again, revalidating each name (LOOKUP_REVAL),
 * finds the current inode and opens that, with its own attributes, so
 * fstat agrees with what is read. Its retry, if it lands on ino again (a
 * reopen through /proc/<pid>/fd of an O_PATH descriptor), is served the
 * current content instead (redirected). Returns whether to answer ESTALE.
 * Called under fs->lock.
 */
static bool stale_open(struct fs_fuse *fs, fuse_ino_t ino, pid_t pid)
{
	for (unsigned i = 0; i < FS_STALE_SLOTS; i++) {
		if (fs->stale[i].ino == ino && fs->stale[i].pid == pid) {
			fs->stale[i].ino = 0; /* the retry */
			return false;
		}
	}
	fs->stale[fs->stale_next].ino = ino;
	fs->stale[fs->stale_next].pid = pid;
	fs->stale_next = (fs->stale_next + 1) % FS_STALE_SLOTS;
	return true;
}

/*
 * Pins the file's inode in a new handle and audits the open; the content
 * stays sealed until the first READ (handle_unseal). Nothing secret is
 * touched here, so nothing is wiped.
 */
static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_fuse *fs = fuse_req_userdata(req);
	struct fs_handle *h = NULL;
	struct fs_node *file = NULL;
	struct fs_inode *in;
	uint64_t version = 0;
	struct caller c;
	bool redirected = false;
	uint64_t refused = 0;
	int err = 0;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	/* fast_open: the kernel takes this as "open without asking from now
	 * on"; this open and every later one read by inode (read_inode). */
	if (fs->no_open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	h = calloc(1, sizeof *h);
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&h->lock, NULL);
	caller_init(&c, req);
	pthread_mutex_lock(&fs->lock);
	in = inode_find(fs, ino);
	if (!in || !in->blob) {
		err = in ? EISDIR : ENOENT;
	} else {
		file = in->node;
		/*
		 * A name the kernel still maps to a replaced version (its entry
		 * invalidation may not have arrived yet) opens the current one:
		 * once a publish is done every open sees it, so the files of one
		 * source agree. Through a fresh lookup (stale_open), or served
		 * without the old inode's page cache where that lands here again.
		 */
		if (in->superseded && file->current && file->current->blob) {
			if (stale_open(fs, ino, c.pid))
				err = ESTALE;
			else
				redirected = true;
		}
		if (redirected)
			in = file->current;
		version = in->version;
		if (err) {
			/* ESTALE: the kernel looks the name up again and reopens */
		} else if (fs->opt.max_handles && fs->nhandles >= fs->opt.max_handles) {
			err = ENFILE;
			refused = ++fs->handles_refused;
			if (refused == 1 ||
			    timing_now_ms() - fs->refused_logged_ms >= FS_REFUSED_LOG_MS)
				fs->refused_logged_ms = timing_now_ms();
			else
				refused = 0; /* logged not long ago */
		} else {
			h->inode = in;
			handle_link(fs, h);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (refused) {
		char path[FS_PATH_MAX];

		log_warn("open of %s refused (ENFILE): %zu handles open, the bound "
		         "limits.max_open_handles; %llu refused so far",
		         node_path(file, path), fs->opt.max_handles,
		         (unsigned long long)refused);
	}
	/* Pinned: the check (which may read /proc) runs without the lock. */
	if (file && !err && (err = caller_may(fs, &c, file, PERM_READ))) {
		pthread_mutex_lock(&fs->lock);
		handle_release(fs, h);
		pthread_mutex_unlock(&fs->lock);
		h = NULL;
	}
	if (file && err != ESTALE)
		count_open(fs, &c, file, version, err);
	if (err) {
		if (h)
			pthread_mutex_destroy(&h->lock);
		free(h);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	/* This inode's content never changes: its page cache stays valid. A
	 * redirected open must not fill or use the old inode's cache. */
	fi->keep_cache = !redirected;
	fi->direct_io = redirected;
	fi->noflush = 1;
	if (fuse_reply_open(req, fi) != 0) {
		/* The opener went away: release now, there will be no RELEASE. */
		pthread_mutex_lock(&fs->lock);
		handle_release(fs, h);
		pthread_mutex_unlock(&fs->lock);
	}
}

/* Unseals a pinned inode's content into secmem (*data, *len). Returns 0
 * or an errno; the caller wipes the stack. */
static int inode_unseal(struct fs_fuse *fs, const struct fs_inode *in,
                        unsigned char **data, size_t *len)
{
	char path[FS_PATH_MAX];
	int rc = store_unseal(fs->store, in->blob, node_path(in->node, path), in->version,
	                      data, len);

	if (rc == 0)
		return 0;
	log_error("file %s: cannot open sealed content: %s", path, sfs_strerror(rc));
	return rc == SFS_ENOMEM ? ENOMEM : EIO;
}

/*
 * Unseals the handle's snapshot unless an earlier READ did (READs of one
 * handle may run at once). The pinned inode's blob never changes, so
 * only the handle's mutex is taken. Returns 0 or an errno.
 */
static int handle_unseal(struct fs_fuse *fs, struct fs_handle *h)
{
	int err = 0;
	bool unsealed_now = false;

	pthread_mutex_lock(&h->lock);
	if (!h->unsealed) {
		err = inode_unseal(fs, h->inode, &h->data, &h->len);
		h->unsealed = err == 0;
		unsealed_now = true;
	}
	pthread_mutex_unlock(&h->lock);
	/* Decryption left the tail of the content in stack frames. */
	if (unsealed_now)
		secmem_wipe_stack();
	return err;
}

/*
 * A READ without a handle (fast_open): the version is the inode's, which
 * the kernel keeps (nlookup) while any file has it open, however many
 * rotations follow; it is pinned here only while the content is unsealed
 * and sent. READs come only when the page cache misses.
 */
static void read_inode(struct fs_fuse *fs, fuse_req_t req, fuse_ino_t ino, size_t size,
                       off_t off)
{
	struct fs_inode *in;
	unsigned char *data = NULL;
	size_t len = 0;
	int err = 0;

	pthread_mutex_lock(&fs->lock);
	in = inode_find(fs, ino);
	if (!in)
		err = ENOENT;
	else if (!in->blob)
		err = EISDIR;
	else
		in->nopen++;
	pthread_mutex_unlock(&fs->lock);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	err = inode_unseal(fs, in, &data, &len);
	secmem_wipe_stack();
	if (err)
		fuse_reply_err(req, err);
	else if (off < 0 || (size_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, (const char *)data + off,
		               size < len - (size_t)off ? size : len - (size_t)off);
	secmem_free(data);
	pthread_mutex_lock(&fs->lock);
	in->nopen--;
	inode_maybe_free(fs, in);
	pthread_mutex_unlock(&fs->lock);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct fs_fuse *fs = fuse_req_userdata(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	size_t len;
	int err;

	if (!h) {
		read_inode(fs, req, ino, size, off);
		return;
	}
	len = store_blob_len(h->inode->blob); /* immutable */
	if (off < 0 || (size_t)off >= len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if ((err = handle_unseal(fs, h))) {
		fuse_reply_err(req, err);
		return;
	}
	if (size > len - (size_t)off)
		size = len - (size_t)off;
	/* Sent straight from the snapshot with writev: no copy. The snapshot
	 * is not changed again until release, which waits for every READ. */
	fuse_reply_buf(req, (const char *)h->data + off, size);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_fuse *fs = fuse_req_userdata(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;

	/* No handle: the open the kernel made without asking (fast_open). */
	if (h) {
		pthread_mutex_lock(&fs->lock);
		handle_release(fs, h);
		pthread_mutex_unlock(&fs->lock);
	}
	fuse_reply_err(req, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_fuse *fs = fuse_req_userdata(req);
	struct fs_inode *in;
	struct fs_node *node;
	struct caller c;
	int err = 0;

	/* From now on the kernel opens directories itself. */
	if (fs->no_opendir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	caller_init(&c, req);
	pthread_mutex_lock(&fs->lock);
	in = inode_find(fs, ino);
	node = in ? in->node : NULL;
	pthread_mutex_unlock(&fs->lock);
	if (!node)
		err = ENOENT;
	else if (!node->is_dir)
		err = ENOTDIR;
	else
		err = caller_may(fs, &c, node, PERM_READ);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	/* The listing stays cached until a publish invalidates the directory. */
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/* Entries are ".", ".." then the children in order; the offset of an entry
 * is its index + 1, stable because children are only ever appended. */
static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	struct fs_fuse *fs = fuse_req_userdata(req);
	struct fs_inode *dir;
	struct stat st;
	char *buf;
	size_t used = 0;

	if (size > 128 * 1024)
		size = 128 * 1024;
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	dir = inode_find(fs, ino);
	if (!dir || !dir->node->is_dir) {
		pthread_mutex_unlock(&fs->lock);
		free(buf);
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	for (size_t i = (size_t)(off < 0 ? 0 : off); i < dir->node->nchildren + 2; i++) {
		const char *name;
		size_t need;

		memset(&st, 0, sizeof st);
		if (i == 0) {
			name = ".";
			st.st_ino = dir->ino;
			st.st_mode = S_IFDIR;
		} else if (i == 1) {
			struct fs_node *p =
			    dir->node->parent ? dir->node->parent : dir->node;
			name = "..";
			st.st_ino = p->current->ino;
			st.st_mode = S_IFDIR;
		} else {
			struct fs_node *c = dir->node->children[i - 2];
			if (!c->current || (c->is_dir && !c->nlive))
				continue; /* absent file, or a directory a reload emptied
				           */
			name = c->name;
			st.st_ino = c->current->ino;
			st.st_mode = c->is_dir ? S_IFDIR : S_IFREG;
		}
		need = fuse_add_direntry(req, buf + used, size - used, name, &st,
		                         (off_t)(i + 1));
		if (need > size - used)
			break;
		used += need;
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

/* Sent instead of a check of the kernel's for access(2) and chdir(2), only
 * without default_permissions (audit on). */
static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct fs_fuse *fs = fuse_req_userdata(req);
	struct fs_inode *in;
	struct fs_node *node;
	struct caller c;
	int err;

	caller_init(&c, req);
	pthread_mutex_lock(&fs->lock);
	in = inode_find(fs, ino);
	node = in ? in->node : NULL;
	pthread_mutex_unlock(&fs->lock);
	err = node ? caller_may(fs, &c, node, mask & (PERM_READ | PERM_WRITE | PERM_EXEC))
	           : ENOENT;
	fuse_reply_err(req, err);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	memset(&sv, 0, sizeof sv);
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_namemax = 255;
	sv.f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
	fuse_reply_statfs(req, &sv);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs_fuse *fs = userdata;

	/* Nothing here is ever written: no writeback cache, no locks. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* The audit checks the caller's search and read rights at OPENDIR. */
	fs->no_opendir =
	    !fs->opt.audit && (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
	if (!fs->opt.fast_open)
		return;
	if (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT)
		fs->no_open = true;
	else
		log_warn("mount.fast_open: this kernel cannot open files without asking "
		         "the daemon (no FUSE_CAP_NO_OPEN_SUPPORT): opens go through "
		         "secretfs as in the default mode");
}

/*
 * Each timed operation runs inside a wrapper that records its duration in
 * secretfs_fuse_request_duration_seconds{op}. The mount is taken from the
 * request before the operation runs: a request is gone once answered.
 */
#define FS_TIMED(op, OP, params, args)                                                   \
	static void timed_##op params                                                    \
	{                                                                                \
		struct stats_set *requests =                                             \
		    ((struct fs_fuse *)fuse_req_userdata(req))->requests;                \
		uint64_t started = timing_now_us();                                      \
		op args;                                                                 \
		fuse_metrics_request(requests, OP, started);                             \
	}
FS_TIMED(op_lookup, FUSE_OP_LOOKUP, (fuse_req_t req, fuse_ino_t parent, const char *name),
         (req, parent, name))
FS_TIMED(op_getattr, FUSE_OP_GETATTR,
         (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), (req, ino, fi))
FS_TIMED(op_open, FUSE_OP_OPEN,
         (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), (req, ino, fi))
FS_TIMED(op_read, FUSE_OP_READ,
         (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
          struct fuse_file_info *fi),
         (req, ino, size, off, fi))
FS_TIMED(op_release, FUSE_OP_RELEASE,
         (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), (req, ino, fi))
FS_TIMED(op_opendir, FUSE_OP_OPENDIR,
         (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi), (req, ino, fi))
FS_TIMED(op_readdir, FUSE_OP_READDIR,
         (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
          struct fuse_file_info *fi),
         (req, ino, size, off, fi))
FS_TIMED(op_access, FUSE_OP_OTHER, (fuse_req_t req, fuse_ino_t ino, int mask),
         (req, ino, mask))

static const struct fuse_lowlevel_ops fs_ops = {
    .init = op_init,
    .lookup = timed_op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = timed_op_getattr,
    .open = timed_op_open,
    .read = timed_op_read,
    .release = timed_op_release,
    .opendir = timed_op_opendir,
    .readdir = timed_op_readdir,
    .access = timed_op_access,
    .statfs = op_statfs,
};

/* ---- session ------------------------------------------------------------ */

static void fusefs_interrupt(struct fs *base)
{
	struct fs_fuse *fs = (struct fs_fuse *)base;

	if (fs->se)
		fuse_session_exit(fs->se);
}

static int fusefs_mount(struct fs *base, const char *path)
{
	struct fs_fuse *fs = (struct fs_fuse *)base;
	char opts[256];
	char *argv[] = {"secretfs", "-o", opts, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);

	snprintf(opts, sizeof opts,
	         "ro,%snosuid,nodev,fsname=secretfs,subtype=secretfs%s",
	         fs->opt.audit ? "" : "default_permissions,",
	         fs->opt.allow_other ? ",allow_other" : "");
	if (mountpoint_prepare(path) < 0)
		return SFS_EIO;
	fs->se = fuse_session_new(&args, &fs_ops, sizeof fs_ops, fs);
	fuse_opt_free_args(&args);
	if (!fs->se) {
		log_error("cannot create the FUSE session");
		return SFS_EIO;
	}
	if (fuse_session_mount(fs->se, path) != 0) {
		log_error("cannot mount on %s (is /dev/fuse available, and may this user "
		          "mount?)",
		          path);
		return SFS_EIO;
	}
	pthread_mutex_lock(&fs->lock);
	fs->mounted = true;
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

static int fusefs_run(struct fs *base)
{
	struct fs_fuse *fs = (struct fs_fuse *)base;
	int rc;

	/*
	 * One thread. The handlers are thread-safe, but measured on 2 vCPUs
	 * (bench/reads.py, 3 rounds, default mode, median) a multi-threaded
	 * loop costs more than it gives: open+read+close 17 µs here against
	 * 35 µs (clone_fd, 2 threads), 42 µs (clone_fd, 4 idle), 102-128 µs (1
	 * idle: threads made and ended per request), and 8 readers got 56-70k
	 * opens/s here against 75-81k at best there, within the noise of a
	 * shared VM. Each request wakes another thread, while one thread finds
	 * the next OPEN already queued behind a RELEASE. fast_open takes the
	 * daemon off the path instead.
	 */
	rc = fuse_session_loop(fs->se);
	if (rc < 0)
		log_warn("FUSE session ended: %s", strerror(-rc));
	return 0;
}

static void fusefs_unmount(struct fs *base)
{
	struct fs_fuse *fs = (struct fs_fuse *)base;
	bool was;

	pthread_mutex_lock(&fs->lock);
	was = fs->mounted;
	fs->mounted = false;
	pthread_mutex_unlock(&fs->lock);
	/* Without CAP_SYS_ADMIN the helper unmounts; the session's descriptor
	 * is closed with the session. */
	if (was && fs->opt.priv && fs->opt.priv->detach) {
		fs->opt.priv->detach(fs->opt.priv->arg);
		fs->detached = true;
	} else if (was) {
		fuse_session_unmount(fs->se);
	}
}

/*
 * After the helper's lazy unmount, the kernel ends the connection once no
 * file is open (POLLERR on the session's descriptor; waited for a moment).
 * Then fuse_session_unmount only closes the descriptor and frees libfuse's
 * copy of the mount path, which nothing else frees: it would unmount
 * itself (umount2, or fork fusermount3) were the connection still up,
 * which the sandbox refuses, so it is not called then.
 */
static void fusefs_release_session(struct fs_fuse *fs)
{
	struct pollfd pfd = {.fd = fuse_session_fd(fs->se), .events = 0};
	int n;

	do
		n = poll(&pfd, 1, FUSE_DETACH_WAIT_MS);
	while (n < 0 && errno == EINTR);
	if (n == 1 && (pfd.revents & POLLERR))
		fuse_session_unmount(fs->se);
}

/* Whether path is a secretfs FUSE mount serving every declared file. */
static int fusefs_check_ready(struct fs *base, const char *path, fs_report_fn report,
                              void *arg)
{
	struct fs_fuse *fs = (struct fs_fuse *)base;
	char full[4096], name_buf[FS_PATH_MAX];
	struct stat st;
	int problems = 0;

	if (mountpoint_is_fd(path)) {
		report(arg, NULL,
		       "a mount given as /dev/fd/N cannot be checked from here: "
		       "probe the path where the helper mounted it instead");
		return 1;
	}
	if (!mountpoint_is_secretfs(path)) {
		report(arg, NULL, "no secretfs FUSE mount there (yet)");
		return 1;
	}
	for (size_t i = 0; i < fs->nfiles; i++) {
		const char *name = node_path(fs->files[i], name_buf);

		if (snprintf(full, sizeof full, "%s/%s", path, name) >=
		    (int)sizeof full) {
			report(arg, name, "path too long");
			problems++;
		} else if (stat(full, &st) < 0) {
			report(arg, name, strerror(errno));
			problems++;
		} else if (!S_ISREG(st.st_mode)) {
			report(arg, name, "not a regular file");
			problems++;
		}
	}
	return problems;
}

static void fusefs_free(struct fs *base)
{
	struct fs_fuse *fs = (struct fs_fuse *)base;

	fusefs_unmount(base);
	if (fs->se && fs->detached)
		fusefs_release_session(fs);
	if (fs->se)
		fuse_session_destroy(fs->se);
	/* Handles whose RELEASE never came (closed as we stopped): wipe them. */
	while (fs->handles)
		handle_release(fs, fs->handles);
	for (size_t i = 0; i < fs->nbuckets; i++) {
		struct fs_inode *in = fs->buckets[i], *next;
		for (; in; in = next) {
			next = in->hnext;
			store_blob_free(in->blob);
			free(in);
		}
	}
	free(fs->buckets);
	free(fs->children);
	node_free(fs, fs->root);
	free(fs->files);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}

const struct fs_ops fs_fuse_ops = {
    .name = "fuse",
    .create = fusefs_create,
    .add_file = fusefs_add_file,
    .check_name = fusefs_check_name,
    .remove_file = fusefs_remove_file,
    .set_file_attrs = fusefs_set_file_attrs,
    .publish = fusefs_publish,
    .mount = fusefs_mount,
    .run = fusefs_run,
    .interrupt = fusefs_interrupt,
    .unmount = fusefs_unmount,
    .check_ready = fusefs_check_ready,
    .free = fusefs_free,
};
