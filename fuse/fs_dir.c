/*
 * The directory output (see fs.h), for hosts where FUSE is not allowed
 * (Kubernetes Pod Security "restricted"): the files are written into a
 * directory, meant to be memory-backed (an emptyDir with medium Memory),
 * and updated the way Kubernetes' AtomicWriter updates Secret volumes:
 *
 *   dir/..2026_11_22_10_00_00.123456789/   a generation: every present file
 *   dir/..data -> ..2026_11_22_10_00_00.123456789
 *   dir/db -> ..data/db                    a link per top-level name
 *
 * Each publish writes a complete new generation (files created with
 * O_EXCL|O_NOFOLLOW, written in full, then given their owner and mode;
 * directories get theirs after they are filled), points "..data_tmp" at it
 * and renames that over "..data". A reader resolves either the old
 * generation or the new one: never a mix, never a partial file. The old
 * generation is removed after a short grace, so a reader that resolved
 * "..data" just before the swap still finds its files.
 *
 * Every path is resolved from a descriptor of the directory with the *at()
 * calls and O_NOFOLLOW, one component at a time: a symbolic link someone
 * else planted is never followed. An entry under a file's top-level name
 * that secretfs did not make refuses the start (mount); one that appears
 * later is left alone, logged and counted. Names beginning with ".." are
 * secretfs's own here.
 *
 * Plaintext exists in the process only while a file is written: unsealed
 * into guarded memory, written, wiped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs_impl.h"
#include "mountpoint.h"
#include "secretfs/error.h"
#include "secretfs/fs.h"
#include "secretfs/log.h"
#include "secretfs/secmem.h"
#include "secretfs/stats.h"
#include "secretfs/store.h"
#include "secretfs/timing.h"

#define DATA_LINK "..data"
#define DATA_TMP "..data_tmp"
#define GEN_SHAPE "..dddd_dd_dd_dd_dd_dd.ddddddddd" /* d: a digit */
#define GEN_NAME_LEN (sizeof GEN_SHAPE - 1)
#define RETIRE_GRACE_MS 1000
#define REMOVE_MAX_DEPTH 600 /* names are at most 1024 bytes: 512 levels */
#define LINK_MAX_LEN 1100    /* "..data/" + a 255-byte segment, with room */

struct dir_file {
	char *name; /* path inside the directory */
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct store_blob *blob; /* NULL while absent */
	uint64_t version;
};

struct dir_top {
	char *name;   /* first segment of one or more file names */
	bool foreign; /* an entry we did not make stands there (reported) */
};

struct retired {
	char name[GEN_NAME_LEN + 1];
	uint64_t due; /* monotonic ms */
	struct retired *next;
};

struct fs_dir {
	struct fs base; /* first: the fs.h handle */
	struct fs_options opt;
	struct store *store;
	pthread_mutex_t lock; /* guards everything below */
	struct dir_file *files;
	size_t nfiles;
	char **dirs; /* implied directories, each after its parent */
	size_t ndirs;
	struct dir_top *tops;
	size_t ntops;
	char *path;                     /* for messages */
	int dirfd;                      /* the directory; -1 until mounted */
	char current[GEN_NAME_LEN + 1]; /* generation ..data points to; "" none */
	bool active;                    /* mounted: publishing writes */
	struct retired *retired;        /* oldest first */
	pthread_cond_t cond;
	pthread_t reaper;
	bool reaper_started, stopping;
	struct stats_set *stats; /* dir_family; NULL-safe */
};

enum { DIR_GENERATIONS, DIR_WRITE_FAILURES, DIR_REFUSED };
static const struct stats_field dir_fields[] = {
    [DIR_GENERATIONS] = {STATS_COUNTER, "secretfs_directory_generations_total",
                         "Generations of the directory output written and swapped in"},
    [DIR_WRITE_FAILURES] = {STATS_COUNTER, "secretfs_directory_write_failures_total",
                            "Generations that could not be written"},
    [DIR_REFUSED] = {STATS_COUNTER, "secretfs_directory_refused_entries_total",
                     "Entries not made by secretfs found under a configured name"},
};
static const struct stats_family dir_family = {
    dir_fields, sizeof dir_fields / sizeof dir_fields[0], NULL};

static bool is_generation_name(const char *s)
{
	if (strlen(s) != GEN_NAME_LEN)
		return false;
	for (size_t i = 0; i < GEN_NAME_LEN; i++) {
		if (GEN_SHAPE[i] == 'd' ? (s[i] < '0' || s[i] > '9')
		                        : s[i] != GEN_SHAPE[i])
			return false;
	}
	return true;
}

/* Whether name in at is a symbolic link to exactly "..data/name": the
 * top-level link secretfs makes. */
static bool is_our_link(int at, const char *name)
{
	char want[LINK_MAX_LEN], got[LINK_MAX_LEN];
	ssize_t n;

	if (snprintf(want, sizeof want, DATA_LINK "/%s", name) >= (int)sizeof want)
		return false;
	n = readlinkat(at, name, got, sizeof got - 1);
	if (n < 0)
		return false;
	got[n] = '\0';
	return strcmp(got, want) == 0;
}

static const char *kind_of(mode_t m)
{
	if (S_ISLNK(m))
		return "a symbolic link";
	if (S_ISREG(m))
		return "a regular file";
	if (S_ISDIR(m))
		return "a directory";
	return "a special file";
}

/*
 * Opens the directory named by the first len bytes of rel ('/'-separated;
 * len 0: at itself) below at, one component at a time, never following a
 * symbolic link. Returns a new descriptor or -1 with errno set.
 */
static int open_dir_at(int at, const char *rel, size_t len)
{
	char seg[256];
	int fd = fcntl(at, F_DUPFD_CLOEXEC, 0);
	size_t i = 0;

	while (fd >= 0 && i < len) {
		size_t n = 0;
		int next;

		while (i + n < len && rel[i + n] != '/')
			n++;
		if (n == 0 || n >= sizeof seg) {
			close(fd);
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(seg, rel + i, n);
		seg[n] = '\0';
		next = openat(fd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		fd = next;
		i += n + 1;
	}
	return fd;
}

/* Length of the directory part of name ("a/b" of "a/b/c"; 0 for "c"). */
static size_t dir_part(const char *name)
{
	const char *slash = strrchr(name, '/');

	return slash ? (size_t)(slash - name) : 0;
}

static const char *base_part(const char *name)
{
	const char *slash = strrchr(name, '/');

	return slash ? slash + 1 : name;
}

/*
 * Removes name in at and, for a directory, everything below it, without
 * following symbolic links (a link is removed, never its target). Our
 * directories may be read-only by then: each is made writable first.
 * Returns 0, or -1 when something could not be removed.
 */
static int remove_tree(const struct fs_privops *priv, int at, const char *name, int depth)
{
	struct dirent *e;
	struct stat st;
	DIR *dp;
	int fd, rc = 0;

	if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(at, name, 0) < 0 && errno != ENOENT ? -1 : 0;
	if (depth > REMOVE_MAX_DEPTH) {
		errno = ELOOP;
		return -1;
	}
	/* A directory given to another owner is taken back first, by the
	 * helper that holds the capability this process dropped. */
	if (st.st_uid != geteuid() && priv && priv->own) {
		fd = openat(at, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || priv->own(priv->arg, fd, geteuid(), getegid(), 0700) < 0)
			log_debug("cannot take %s back for removal: %s", name,
			          strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if ((st.st_mode & 0700) != 0700 && fchmod(fd, 0700) < 0)
		log_debug("cannot make %s writable for removal: %s", name,
		          strerror(errno));
	dp = fdopendir(fd);
	if (!dp) {
		close(fd);
		return -1;
	}
	while ((e = readdir(dp))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (remove_tree(priv, dirfd(dp), e->d_name, depth + 1) < 0)
			rc = -1;
	}
	closedir(dp);
	if (unlinkat(at, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = -1;
	return rc;
}

static void remove_generation(struct fs_dir *d, const char *gen)
{
	if (remove_tree(d->opt.priv, d->dirfd, gen, 0) < 0)
		log_warn("directory %s: cannot remove old generation %s: %s", d->path,
		         gen, strerror(errno));
	else
		log_debug("directory %s: removed old generation %s", d->path, gen);
}

/* ---- the reaper: removes replaced generations after their grace ------- */

static void *dir_reaper(void *arg)
{
	struct fs_dir *d = arg;

	pthread_mutex_lock(&d->lock);
	while (!d->stopping) {
		struct retired *r = d->retired;
		uint64_t now = timing_now_ms();

		if (!r) {
			pthread_cond_wait(&d->cond, &d->lock);
			continue;
		}
		if (r->due > now) {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += (time_t)((r->due - now) / 1000);
			ts.tv_nsec += (long)((r->due - now) % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&d->cond, &d->lock, &ts);
			continue;
		}
		d->retired = r->next;
		/* Outside the lock: a publish may write meanwhile. The
		 * descriptor stays open until this thread is joined. */
		pthread_mutex_unlock(&d->lock);
		remove_generation(d, r->name);
		free(r);
		pthread_mutex_lock(&d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* Queues gen for removal after the grace period; lock held. */
static void retire(struct fs_dir *d, const char *gen)
{
	struct retired *r = calloc(1, sizeof *r), **pp;

	if (!r || !d->reaper_started) {
		free(r);
		remove_generation(d, gen);
		return;
	}
	snprintf(r->name, sizeof r->name, "%s", gen);
	r->due = timing_now_ms() + RETIRE_GRACE_MS;
	for (pp = &d->retired; *pp; pp = &(*pp)->next)
		;
	*pp = r;
	pthread_cond_signal(&d->cond);
}

static int start_reaper(struct fs_dir *d)
{
	sigset_t all, old;
	int rc;

	/* Signals go to the main thread, never here. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&d->reaper, NULL, dir_reaper, d);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_error("directory %s: cannot start a thread: %s", d->path,
		          strerror(rc));
		return SFS_EIO;
	}
	d->reaper_started = true;
	return 0;
}

/* ---- writing a generation ----------------------------------------------- */

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Creates a new, empty generation directory (0700 while it is filled);
 * writes its name. Returns 0 or -1 with errno set. */
static int make_generation(struct fs_dir *d, char *gen, size_t genlen)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	for (int attempt = 0; attempt < 100; attempt++) {
		gmtime_r(&ts.tv_sec, &tm);
		snprintf(gen, genlen, "..%04d_%02d_%02d_%02d_%02d_%02d.%09ld",
		         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		         tm.tm_min, tm.tm_sec, ts.tv_nsec);
		if (!is_generation_name(gen)) {
			errno = ERANGE; /* a clock past the year 9999 */
			return -1;
		}
		if (mkdirat(d->dirfd, gen, 0700) == 0)
			return 0;
		if (errno != EEXIST)
			return -1;
		/* Same nanosecond as an earlier one (or the clock went back). */
		if (++ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec = 0;
		}
	}
	return -1;
}

/* Gives fd to uid:gid: itself when that changes no owner, else through the
 * privileged helper when there is one. Returns 0 or -1 with errno set. */
static int give_owner(struct fs_dir *d, int fd, uid_t uid, gid_t gid)
{
	const struct fs_privops *priv = d->opt.priv;

	if ((uid == geteuid() && gid == getegid()) || !priv || !priv->own)
		return fchown(fd, uid, gid);
	return priv->own(priv->arg, fd, uid, gid, (mode_t)-1);
}

/* Writes one file into the generation at genfd. Returns 0 or SFS_ code. */
static int write_file(struct fs_dir *d, int genfd, const struct dir_file *f)
{
	unsigned char *data = NULL;
	size_t len = 0;
	int pfd, fd = -1, rc = SFS_EIO;

	pfd = open_dir_at(genfd, f->name, dir_part(f->name));
	if (pfd >= 0)
		fd = openat(pfd, base_part(f->name),
		            O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	rc = store_unseal(d->store, f->blob, f->name, f->version, &data, &len);
	if (rc < 0) {
		log_error("file %s: cannot open sealed content: %s", f->name,
		          sfs_strerror(rc));
		goto out;
	}
	rc = SFS_EIO;
	/* The mode while we own it: afterwards only the owner may set it. */
	if (write_all(fd, data, len) < 0 || fchmod(fd, f->mode) < 0 ||
	    give_owner(d, fd, f->uid, f->gid) < 0)
		goto fail;
	rc = 0;
	goto out;
fail:
	log_error("directory %s: cannot write %s: %s", d->path, f->name, strerror(errno));
out:
	secmem_free(data);
	if (fd >= 0)
		close(fd);
	if (pfd >= 0)
		close(pfd);
	return rc;
}

/* Gives the directory rel (len bytes; 0: the generation itself) below
 * genfd its owner and mode. Returns 0 or -1 with errno set. */
static int finish_dir(struct fs_dir *d, int genfd, const char *rel, size_t len)
{
	int fd = open_dir_at(genfd, rel, len), rc = -1;

	if (fd < 0)
		return -1;
	if (fchmod(fd, d->opt.dir_mode) == 0 &&
	    give_owner(d, fd, d->opt.dir_uid, d->opt.dir_gid) == 0)
		rc = 0;
	close(fd);
	return rc;
}

/* Fills the generation gen: directories, then every present file, then
 * the directories' owners and modes (last, so that a read-only mode does
 * not stop the filling). Returns 0 or SFS_ code (logged). */
static int fill_generation(struct fs_dir *d, const char *gen)
{
	struct stat st;
	int genfd, pfd, rc = 0;

	genfd = openat(d->dirfd, gen, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (genfd < 0) {
		log_error("directory %s: cannot open %s: %s", d->path, gen,
		          strerror(errno));
		return SFS_EIO;
	}
	/* Still the directory we just made, not one swapped in under its name
	 * by someone who may write to the parent: only we can have made a
	 * private directory owned by us. */
	if (fstat(genfd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 077)) {
		log_error(
		    "directory %s: %s was replaced while being written; refusing it",
		    d->path, gen);
		stats_inc(d->stats, DIR_REFUSED);
		close(genfd);
		return SFS_EIO;
	}
	for (size_t i = 0; i < d->ndirs && rc == 0; i++) {
		pfd = open_dir_at(genfd, d->dirs[i], dir_part(d->dirs[i]));
		if (pfd < 0 || mkdirat(pfd, base_part(d->dirs[i]), 0700) < 0) {
			log_error("directory %s: cannot create %s: %s", d->path,
			          d->dirs[i], strerror(errno));
			rc = SFS_EIO;
		}
		if (pfd >= 0)
			close(pfd);
	}
	for (size_t i = 0; i < d->nfiles && rc == 0; i++)
		if (d->files[i].blob)
			rc = write_file(d, genfd, &d->files[i]);
	for (size_t i = d->ndirs; i-- > 0 && rc == 0;) {
		if (finish_dir(d, genfd, d->dirs[i], strlen(d->dirs[i])) < 0) {
			log_error("directory %s: cannot set owner and mode of %s: %s",
			          d->path, d->dirs[i], strerror(errno));
			rc = SFS_EIO;
		}
	}
	if (rc == 0 && finish_dir(d, genfd, "", 0) < 0) {
		log_error("directory %s: cannot set owner and mode of %s: %s", d->path,
		          gen, strerror(errno));
		rc = SFS_EIO;
	}
	close(genfd);
	return rc;
}

/* Points ..data at gen: a new link renamed over the old one. */
static int swap_data_link(struct fs_dir *d, const char *gen)
{
	if ((unlinkat(d->dirfd, DATA_TMP, 0) < 0 && errno != ENOENT) ||
	    symlinkat(gen, d->dirfd, DATA_TMP) < 0 ||
	    renameat(d->dirfd, DATA_TMP, d->dirfd, DATA_LINK) < 0) {
		log_error("directory %s: cannot point " DATA_LINK " at %s: %s", d->path,
		          gen, strerror(errno));
		return SFS_EIO;
	}
	return 0;
}

/*
 * Makes each top-level name that the current generation has a link
 * "name -> ..data/name" where nothing stands yet. An entry we did not make
 * is left alone: logged once while it stays, counted. Lock held.
 */
static void link_tops(struct fs_dir *d)
{
	char target[LINK_MAX_LEN];
	struct stat st;
	int genfd;

	genfd =
	    openat(d->dirfd, d->current, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (genfd < 0) {
		log_error("directory %s: cannot open %s: %s", d->path, d->current,
		          strerror(errno));
		return;
	}
	for (size_t i = 0; i < d->ntops; i++) {
		struct dir_top *t = &d->tops[i];

		if (fstatat(d->dirfd, t->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (is_our_link(d->dirfd, t->name)) {
				t->foreign = false;
				continue;
			}
			if (!t->foreign) {
				log_error(
				    "directory %s: %s is %s that secretfs did not make; "
				    "refusing to follow or replace it (readers of that "
				    "name do not get secretfs's files)",
				    d->path, t->name, kind_of(st.st_mode));
				stats_inc(d->stats, DIR_REFUSED);
				t->foreign = true;
			}
			continue;
		}
		t->foreign = false;
		/* A link to a name the generation lacks would only dangle. */
		if (fstatat(genfd, t->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		snprintf(target, sizeof target, DATA_LINK "/%s", t->name);
		if (symlinkat(target, d->dirfd, t->name) < 0 && errno != EEXIST)
			log_error("directory %s: cannot link %s: %s", d->path, t->name,
			          strerror(errno));
	}
	close(genfd);
}

/*
 * Writes a complete new generation from the files' current blobs, swaps
 * ..data to it, links new top-level names and retires the previous
 * generation. On failure the half-written generation is removed and
 * ..data still points at the previous one. Lock held.
 */
static int write_generation(struct fs_dir *d)
{
	char gen[64] = "";
	size_t present = 0;
	int rc;

	if (make_generation(d, gen, sizeof gen) < 0) {
		log_error("directory %s: cannot create a generation directory: %s",
		          d->path, strerror(errno));
		gen[0] = '\0';
		rc = SFS_EIO;
		goto fail;
	}
	rc = fill_generation(d, gen);
	/* Unsealing left fragments of plaintext in the frames below. */
	secmem_wipe_stack();
	if (rc < 0)
		goto fail;
	rc = swap_data_link(d, gen);
	if (rc < 0)
		goto fail;
	if (d->current[0])
		retire(d, d->current);
	memcpy(d->current, gen, GEN_NAME_LEN + 1);
	link_tops(d);
	stats_inc(d->stats, DIR_GENERATIONS);
	for (size_t i = 0; i < d->nfiles; i++)
		present += d->files[i].blob != NULL;
	log_debug("directory %s: " DATA_LINK " -> %s (%zu of %zu files)", d->path, gen,
	          present, d->nfiles);
	return 0;
fail:
	stats_inc(d->stats, DIR_WRITE_FAILURES);
	if (gen[0] && remove_tree(d->opt.priv, d->dirfd, gen, 0) < 0)
		log_warn("directory %s: cannot remove the unfinished %s: %s", d->path,
		         gen, strerror(errno));
	return rc;
}

/* ---- fs_ops ------------------------------------------------------------- */

static void dir_free(struct fs *base);

static int dir_create(const struct fs_options *opt, struct store *st, struct fs **out)
{
	struct fs_dir *d = calloc(1, sizeof *d);
	pthread_condattr_t ca;

	if (!d)
		return SFS_ENOMEM;
	d->base.ops = &fs_dir_ops;
	d->opt = *opt;
	d->store = st;
	d->dirfd = -1;
	d->stats = stats_register(opt->stats, &dir_family, NULL);
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	*out = &d->base;
	return 0;
}

/* Whether a is b followed by '/' and more ("db" of "db/password"). */
static bool is_dir_of(const char *a, const char *b)
{
	size_t n = strlen(a);

	return strncmp(a, b, n) == 0 && b[n] == '/';
}

static int add_dir(struct fs_dir *d, const char *name, size_t len)
{
	char **grown;

	for (size_t i = 0; i < d->ndirs; i++)
		if (strlen(d->dirs[i]) == len && memcmp(d->dirs[i], name, len) == 0)
			return 0;
	grown = realloc(d->dirs, (d->ndirs + 1) * sizeof *grown);
	if (!grown)
		return SFS_ENOMEM;
	d->dirs = grown;
	if (!(d->dirs[d->ndirs] = strndup(name, len)))
		return SFS_ENOMEM;
	d->ndirs++;
	return 0;
}

static int add_top(struct fs_dir *d, const char *name, size_t len)
{
	struct dir_top *grown;

	for (size_t i = 0; i < d->ntops; i++)
		if (strlen(d->tops[i].name) == len &&
		    memcmp(d->tops[i].name, name, len) == 0)
			return 0;
	grown = realloc(d->tops, (d->ntops + 1) * sizeof *grown);
	if (!grown)
		return SFS_ENOMEM;
	d->tops = grown;
	memset(&d->tops[d->ntops], 0, sizeof *d->tops);
	if (!(d->tops[d->ntops].name = strndup(name, len)))
		return SFS_ENOMEM;
	d->ntops++;
	return 0;
}

static int dir_add_file(struct fs *base, const char *name, mode_t mode, uid_t uid,
                        gid_t gid, size_t *id)
{
	struct fs_dir *d = (struct fs_dir *)base;
	struct dir_file *grown;
	size_t top = strcspn(name, "/");
	int rc;

	/* ".." names (..data, generations) are ours; config.c says so first. */
	if (!*name || name[0] == '/' || strncmp(name, "..", 2) == 0 ||
	    name[strlen(name) - 1] == '/')
		return SFS_EINVAL;
	for (size_t i = 0; i < d->nfiles; i++) {
		const char *other = d->files[i].name;

		if (strcmp(other, name) == 0 || is_dir_of(other, name) ||
		    is_dir_of(name, other))
			return SFS_EINVAL;
	}
	for (const char *c = strchr(name, '/'); c; c = strchr(c + 1, '/'))
		if ((rc = add_dir(d, name, (size_t)(c - name))) < 0)
			return rc;
	if ((rc = add_top(d, name, top)) < 0)
		return rc;
	grown = realloc(d->files, (d->nfiles + 1) * sizeof *grown);
	if (!grown)
		return SFS_ENOMEM;
	d->files = grown;
	memset(&d->files[d->nfiles], 0, sizeof *d->files);
	if (!(d->files[d->nfiles].name = strdup(name)))
		return SFS_ENOMEM;
	d->files[d->nfiles].mode = mode;
	d->files[d->nfiles].uid = uid;
	d->files[d->nfiles].gid = gid;
	*id = d->nfiles++;
	return 0;
}

static int dir_publish(struct fs *base, struct fs_update *updates, size_t n)
{
	struct fs_dir *d = (struct fs_dir *)base;
	struct dir_file *saved;
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		if (updates[i].id >= d->nfiles)
			return SFS_EINVAL;
	saved = calloc(n ? n : 1, sizeof *saved);
	if (!saved)
		return SFS_ENOMEM;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < n; i++) {
		struct dir_file *f = &d->files[updates[i].id];

		saved[i] = *f;
		f->blob = updates[i].blob;
		f->version = updates[i].version;
	}
	if (d->active)
		rc = write_generation(d);
	if (rc < 0) {
		/* Nothing changed on disk: nothing changes here either. */
		for (size_t i = n; i-- > 0;)
			d->files[updates[i].id] = saved[i];
	} else {
		for (size_t i = 0; i < n; i++) {
			store_blob_free(saved[i].blob);
			updates[i].blob = NULL;
		}
	}
	pthread_mutex_unlock(&d->lock);
	free(saved);
	return rc;
}

static struct dir_top *find_top(struct fs_dir *d, const char *name)
{
	for (size_t i = 0; i < d->ntops; i++)
		if (strcmp(d->tops[i].name, name) == 0)
			return &d->tops[i];
	return NULL;
}

static void refuse(struct fs_dir *d, const char *name, mode_t m)
{
	log_error("directory %s: %s is %s that secretfs did not make; refusing to "
	          "follow or replace it: remove it, or give secretfs an empty directory",
	          d->path, name, kind_of(m));
	stats_inc(d->stats, DIR_REFUSED);
}

/*
 * Looks at what the directory holds before the first generation: keeps the
 * generation ..data points to (retired after the first swap), removes
 * other generations, ..data_tmp and our links of names no longer
 * configured, and refuses entries under reserved or configured names that
 * we did not make. Entries of other names are left alone. Writes the
 * previous generation's name into prev ("" if none). Returns 0 or SFS_EIO. Lock held.
 */
static int scan_leftovers(struct fs_dir *d, char prev[GEN_NAME_LEN + 1])
{
	char link[LINK_MAX_LEN];
	struct dirent *e;
	struct stat st;
	int fd, refused = 0;
	ssize_t n;
	DIR *dp;

	prev[0] = '\0';
	if (fstatat(d->dirfd, DATA_LINK, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		n = readlinkat(d->dirfd, DATA_LINK, link, sizeof link - 1);
		if (n >= 0)
			link[n] = '\0';
		if (n < 0 || !is_generation_name(link)) {
			refuse(d, DATA_LINK, st.st_mode);
			refused++;
		} else {
			memcpy(prev, link, GEN_NAME_LEN + 1);
		}
	}
	fd = fcntl(d->dirfd, F_DUPFD_CLOEXEC, 0);
	dp = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dp) {
		log_error("directory %s: cannot list it: %s", d->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return SFS_EIO;
	}
	while ((e = readdir(dp))) {
		const char *name = e->d_name;

		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
		    strcmp(name, DATA_LINK) == 0 ||
		    fstatat(d->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (strcmp(name, DATA_TMP) == 0) {
			if (!S_ISLNK(st.st_mode)) {
				refuse(d, name, st.st_mode);
				refused++;
			} else if (unlinkat(d->dirfd, name, 0) < 0) {
				log_warn("directory %s: cannot remove %s: %s", d->path,
				         name, strerror(errno));
			}
		} else if (is_generation_name(name)) {
			if (S_ISDIR(st.st_mode) && strcmp(name, prev) != 0) {
				log_info(
				    "directory %s: removing %s left by an earlier run",
				    d->path, name);
				remove_generation(d, name);
			}
		} else if (is_our_link(d->dirfd, name)) {
			if (!find_top(d, name)) {
				log_info("directory %s: removing the link %s left by an "
				         "earlier run",
				         d->path, name);
				unlinkat(d->dirfd, name, 0);
			}
		} else if (find_top(d, name)) {
			find_top(d, name)->foreign = true;
			refuse(d, name, st.st_mode);
			refused++;
		}
	}
	closedir(dp);
	return refused ? SFS_EIO : 0;
}

static int dir_mount(struct fs *base, const char *path)
{
	struct fs_dir *d = (struct fs_dir *)base;
	char prev[GEN_NAME_LEN + 1];
	int fd, rc;

	free(d->path);
	if (!(d->path = strdup(path)))
		return SFS_ENOMEM;
	if (mountpoint_make_dir(path) < 0)
		return SFS_EIO;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		log_error("cannot open directory %s: %s", path, strerror(errno));
		return SFS_EIO;
	}
	pthread_mutex_lock(&d->lock);
	d->dirfd = fd;
	rc = scan_leftovers(d, prev);
	if (rc == 0)
		rc = start_reaper(d);
	if (rc == 0) {
		/* The previous run's generation serves readers until ours is in. */
		snprintf(d->current, sizeof d->current, "%s", prev);
		rc = write_generation(d);
	}
	d->active = rc == 0;
	pthread_mutex_unlock(&d->lock);
	return rc < 0 ? SFS_EIO : 0;
}

static int dir_run(struct fs *base)
{
	fs_wait_for_stop();
	return 0;
}

/* Removes our links, ..data and the current generation; lock held. */
static void remove_everything(struct fs_dir *d)
{
	char link[LINK_MAX_LEN];
	ssize_t n;

	for (size_t i = 0; i < d->ntops; i++)
		if (is_our_link(d->dirfd, d->tops[i].name))
			unlinkat(d->dirfd, d->tops[i].name, 0);
	n = readlinkat(d->dirfd, DATA_LINK, link, sizeof link - 1);
	if (n >= 0) {
		link[n] = '\0';
		if (strcmp(link, d->current) == 0)
			unlinkat(d->dirfd, DATA_LINK, 0);
	}
	if (d->current[0])
		remove_generation(d, d->current);
	d->current[0] = '\0';
}

static void dir_unmount(struct fs *base)
{
	struct fs_dir *d = (struct fs_dir *)base;

	pthread_mutex_lock(&d->lock);
	if (d->reaper_started) {
		d->stopping = true;
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
		pthread_join(d->reaper, NULL);
		pthread_mutex_lock(&d->lock);
		d->reaper_started = false;
	}
	while (d->retired) {
		struct retired *r = d->retired;

		d->retired = r->next;
		remove_generation(d, r->name);
		free(r);
	}
	if (d->active) {
		if (d->opt.keep_on_exit) {
			log_info("directory %s: files left in place (keep_on_exit)",
			         d->path);
		} else {
			remove_everything(d);
			log_info("directory %s: files removed", d->path);
		}
		log_info("directory %s: generations=%lld write_failures=%lld "
		         "refused_entries=%lld",
		         d->path, (long long)stats_get(d->stats, DIR_GENERATIONS),
		         (long long)stats_get(d->stats, DIR_WRITE_FAILURES),
		         (long long)stats_get(d->stats, DIR_REFUSED));
	}
	d->active = false;
	if (d->dirfd >= 0)
		close(d->dirfd);
	d->dirfd = -1;
	pthread_mutex_unlock(&d->lock);
}

/* Reports one file's problem; returns 1 when there is one. */
static int check_file(int dirfd, int genfd, const char *name, fs_report_fn report,
                      void *arg)
{
	char top[256];
	size_t toplen = strcspn(name, "/");
	struct stat st;
	int pfd, rc;

	snprintf(top, sizeof top, "%.*s", (int)toplen, name);
	if (!is_our_link(dirfd, top)) {
		report(arg, name,
		       fstatat(dirfd, top, &st, AT_SYMLINK_NOFOLLOW) < 0
		           ? "missing"
		           : "its top-level entry was not made by secretfs");
		return 1;
	}
	pfd = open_dir_at(genfd, name, dir_part(name));
	rc = pfd < 0 ? -1 : fstatat(pfd, base_part(name), &st, AT_SYMLINK_NOFOLLOW);
	if (pfd >= 0)
		close(pfd);
	if (rc < 0) {
		report(arg, name, errno == ENOENT ? "missing" : strerror(errno));
		return 1;
	}
	if (!S_ISREG(st.st_mode)) {
		report(arg, name, "not a regular file");
		return 1;
	}
	return 0;
}

static int dir_check_ready(struct fs *base, const char *path, fs_report_fn report,
                           void *arg)
{
	struct fs_dir *d = (struct fs_dir *)base;
	char gen[LINK_MAX_LEN];
	int dirfd, genfd = -1, problems = 0;
	ssize_t n;

	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0) {
		report(arg, NULL, strerror(errno));
		return 1;
	}
	n = readlinkat(dirfd, DATA_LINK, gen, sizeof gen - 1);
	if (n >= 0)
		gen[n] = '\0';
	if (n < 0 && errno == ENOENT)
		report(arg, NULL, "no " DATA_LINK " link: nothing written yet");
	else if (n < 0 || !is_generation_name(gen))
		report(arg, NULL, DATA_LINK " was not made by secretfs");
	else if ((genfd = openat(dirfd, gen,
	                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		report(arg, NULL, DATA_LINK " points to a missing generation");
	if (genfd < 0) {
		close(dirfd);
		return 1;
	}
	for (size_t i = 0; i < d->nfiles; i++)
		problems += check_file(dirfd, genfd, d->files[i].name, report, arg);
	close(genfd);
	close(dirfd);
	return problems;
}

static void dir_free(struct fs *base)
{
	struct fs_dir *d = (struct fs_dir *)base;

	dir_unmount(base);
	for (size_t i = 0; i < d->nfiles; i++) {
		store_blob_free(d->files[i].blob);
		free(d->files[i].name);
	}
	for (size_t i = 0; i < d->ndirs; i++)
		free(d->dirs[i]);
	for (size_t i = 0; i < d->ntops; i++)
		free(d->tops[i].name);
	free(d->files);
	free(d->dirs);
	free(d->tops);
	free(d->path);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

const struct fs_ops fs_dir_ops = {
    .name = "directory",
    .create = dir_create,
    .add_file = dir_add_file,
    .publish = dir_publish,
    .mount = dir_mount,
    .run = dir_run,
    .unmount = dir_unmount,
    .check_ready = dir_check_ready,
    .free = dir_free,
};
