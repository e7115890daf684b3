/*
 * The "file" backend (development): a JSON document
 *   {"name": "value", "other": {"field": "value", ...}}
 * where a secret's "path" names a top-level key. The file is watched with
 * inotify (its directory, so atomic renames and ConfigMap-style symlink
 * swaps are seen); a change in content makes every source of the backend
 * read again, a malformed edit is logged and counted and the last good
 * values stay. No parsed copy is kept between fetch rounds: only a keyed
 * hash of the bytes, to tell a real change from a touch. Each refresh is a
 * version probe that costs one stat(2) (device, inode, size and times of
 * the file the path leads to): an idle daemon neither reads nor parses the
 * file; inotify is what notices an edit at once, the probe is the fallback
 * where watching fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "secretfs/backend.h"
#include "secretfs/error.h"
#include "secretfs/hash.h"
#include "secretfs/log.h"
#include "secretfs/secmem.h"

/* Registered in backend.c. */
extern const struct backend_ops backend_file_ops;

#define FILE_BACKEND_MAX (16 * 1024 * 1024)

struct file_backend {
	struct backend base;
	char *path;     /* absolute or relative to the daemon's cwd */
	char *dir;      /* directory watched */
	char *basename; /* the file's name in dir */
	int inotify_fd;
	unsigned char *hash_key; /* secmem, crypto_generichash_KEYBYTES */
	unsigned char last_hash[crypto_generichash_BYTES];
	bool have_hash;
	json_t *doc;           /* parsed document, only between batch_begin and batch_end,
	                        * or from on_watch until the round of reads it triggers */
	bool doc_fresh;        /* doc was loaded by on_watch: the next round uses it */
	int doc_err;           /* load result of this batch when doc is NULL */
	char doc_version[128]; /* stat version of the file doc was read from */
	unsigned long malformed_count;
};

/* The probe's version of the file: a 64-bit FNV-1a, in hex, of what
 * stat(2) says of it (device, inode, size, times), following links (a
 * ..data swap changes it). Short: every source of the backend keeps a copy.
 * Returns 0 or SFS_ENOTFOUND/SFS_EIO. */
static int file_stat_version(const char *path, char *out, size_t len)
{
	struct stat st;
	uint64_t fields[7];

	if (stat(path, &st) < 0)
		return errno == ENOENT ? SFS_ENOTFOUND : SFS_EIO;
	fields[0] = (uint64_t)st.st_dev;
	fields[1] = (uint64_t)st.st_ino;
	fields[2] = (uint64_t)st.st_size;
	fields[3] = (uint64_t)st.st_mtim.tv_sec;
	fields[4] = (uint64_t)st.st_mtim.tv_nsec;
	fields[5] = (uint64_t)st.st_ctim.tv_sec;
	fields[6] = (uint64_t)st.st_ctim.tv_nsec;
	snprintf(out, len, "%016llx",
	         (unsigned long long)sfs_fnv1a(SFS_FNV_BASIS, fields, sizeof fields));
	return 0;
}

/* The backend's config object, parsed (strings borrowed from it). */
struct file_conf {
	const char *path;
};

static const struct backend_conf_key file_conf_keys[] = {
    BACKEND_CONF_TYPE_KEY,
    BACKEND_CONF_STRING_KEY(struct file_conf, path, "path", .required = true),
};
static const struct backend_conf_spec file_conf_spec =
    BACKEND_CONF_SPEC("file backends take", file_conf_keys);

static int file_check(const json_t *conf, const char *keypath, struct diag *d)
{
	struct file_conf c = {0};

	return backend_conf_parse(&file_conf_spec, conf, keypath, d, &c);
}

/* Loads and parses the file. On success *doc is the document and the
 * content hash is written to hash. Logs malformed content. */
static int file_load(struct file_backend *fb, json_t **doc, unsigned char *hash)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	json_error_t jerr;
	int rc;

	/* Before the read: a change in between makes the next probe differ. */
	if (file_stat_version(fb->path, fb->doc_version, sizeof fb->doc_version) < 0)
		fb->doc_version[0] = '\0';
	rc = secmem_read_file(fb->path, FILE_BACKEND_MAX, &buf, &len);
	if (rc == SFS_ETOOBIG) {
		fb->malformed_count++;
		log_warn("backend %s: secrets file %s is larger than %d MiB, the file "
		         "backend's bound; keeping last good values (%lu refused so far)",
		         fb->base.name, fb->path, FILE_BACKEND_MAX / (1024 * 1024),
		         fb->malformed_count);
	}
	if (rc < 0)
		return rc;
	crypto_generichash(hash, crypto_generichash_BYTES, buf, len, fb->hash_key,
	                   crypto_generichash_KEYBYTES);
	*doc = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
	                  &jerr);
	secmem_free(buf);
	if (!*doc || !json_is_object(*doc)) {
		fb->malformed_count++;
		/* jerr.text may quote the content near the error: log only where. */
		if (*doc)
			log_warn(
			    "backend %s: malformed secrets file %s: top level is not "
			    "an object; keeping last good values (%lu malformed so far)",
			    fb->base.name, fb->path, fb->malformed_count);
		else
			log_warn("backend %s: malformed secrets file %s: invalid JSON at "
			         "line %d, column %d; keeping last good values (%lu "
			         "malformed so far)",
			         fb->base.name, fb->path, jerr.line, jerr.column,
			         fb->malformed_count);
		json_decref(*doc);
		*doc = NULL;
		return SFS_EPARSE;
	}
	return 0;
}

static int file_watch_setup(struct file_backend *fb)
{
	fb->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fb->inotify_fd < 0)
		return SFS_EIO;
	if (inotify_add_watch(fb->inotify_fd, fb->dir,
	                      /* Not IN_MODIFY: a file being written is read once
	                       * it is closed, never half-way. */
	                      IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_ATTRIB) < 0) {
		log_warn("backend %s: cannot watch %s (%s); changes are seen at each "
		         "refresh only",
		         fb->base.name, fb->dir, strerror(errno));
		close(fb->inotify_fd);
		fb->inotify_fd = -1;
	}
	return 0;
}

static void file_free(struct backend *be)
{
	struct file_backend *fb = (struct file_backend *)be;

	if (!fb)
		return;
	json_decref(fb->doc);
	if (fb->inotify_fd >= 0)
		close(fb->inotify_fd);
	secmem_free(fb->hash_key);
	free(fb->path);
	free(fb->dir);
	free(fb->basename);
	free(fb->base.name);
	free(fb);
}

static int file_create(const struct backend_env *env, const char *name,
                       const json_t *conf, struct backend **out)
{
	struct file_conf c = {0};
	struct file_backend *fb;
	char *tmp1 = NULL, *tmp2 = NULL;
	int rc = SFS_ENOMEM;

	if (backend_conf_parse(&file_conf_spec, conf, name, NULL, &c) < 0)
		return SFS_EINVAL;
	fb = calloc(1, sizeof *fb);
	if (!fb)
		return SFS_ENOMEM;
	fb->base.ops = &backend_file_ops;
	fb->inotify_fd = -1;
	fb->doc_err = 1;
	fb->base.name = strdup(name);
	if (c.path[0] == '/' || !env->config_dir)
		fb->path = strdup(c.path);
	else if (asprintf(&fb->path, "%s/%s", env->config_dir, c.path) < 0)
		fb->path = NULL;
	fb->hash_key = secmem_alloc(crypto_generichash_KEYBYTES);
	if (!fb->base.name || !fb->path || !fb->hash_key)
		goto out;
	randombytes_buf(fb->hash_key, crypto_generichash_KEYBYTES);
	tmp1 = strdup(fb->path);
	tmp2 = strdup(fb->path);
	if (!tmp1 || !tmp2)
		goto out;
	fb->dir = strdup(dirname(tmp1));
	fb->basename = strdup(basename(tmp2));
	if (!fb->dir || !fb->basename)
		goto out;
	rc = file_watch_setup(fb);
	if (rc < 0)
		goto out;
	*out = &fb->base;
	fb = NULL;
	rc = 0;
out:
	free(tmp1);
	free(tmp2);
	file_free(fb ? &fb->base : NULL);
	return rc;
}

static void file_batch_begin(struct backend *be)
{
	struct file_backend *fb = (struct file_backend *)be;

	/* A change notification just parsed the file: read from that. */
	if (fb->doc_fresh) {
		fb->doc_fresh = false;
		return;
	}
	json_decref(fb->doc);
	fb->doc = NULL;
	fb->doc_err = 1; /* not loaded yet */
}

static void file_batch_end(struct backend *be)
{
	struct file_backend *fb = (struct file_backend *)be;

	json_decref(fb->doc);
	fb->doc = NULL;
	fb->doc_err = 1;
}

static int file_fetch(struct backend *be, const struct source_key *key,
                      struct fetch_result *out, struct backend_error *err)
{
	struct file_backend *fb = (struct file_backend *)be;
	unsigned char hash[crypto_generichash_BYTES];
	json_t *v;
	int rc;

	if (!fb->doc && fb->doc_err == 1) {
		fb->doc_err = file_load(fb, &fb->doc, hash);
		if (fb->doc_err == 0) {
			memcpy(fb->last_hash, hash, sizeof hash);
			fb->have_hash = true;
		}
	}
	if (!fb->doc) {
		rc = fb->doc_err < 0 ? fb->doc_err : SFS_EIO;
		backend_error_set(err, "secrets file %s: %s", fb->path,
		                  rc == SFS_EPARSE ? "malformed" : sfs_strerror(rc));
		/* Outside a batch, do not pin the error for the next call. */
		return rc;
	}
	v = json_object_get(fb->doc, key->path);
	if (!v || json_is_null(v)) {
		backend_error_set(err, "key \"%s\" not found in %s", key->path, fb->path);
		return SFS_ENOTFOUND;
	}
	memset(out, 0, sizeof *out);
	out->value = json_incref(v);
	snprintf(out->version, sizeof out->version, "%s", fb->doc_version);
	return 0;
}

static int file_probe(struct backend *be, const struct source_key *key, char *version,
                      size_t versionlen, struct backend_error *err)
{
	struct file_backend *fb = (struct file_backend *)be;
	int rc = file_stat_version(fb->path, version, versionlen);

	if (rc < 0)
		backend_error_set(err, "secrets file %s: %s", fb->path, sfs_strerror(rc));
	return rc;
}

static int file_watch_fd(struct backend *be)
{
	return ((struct file_backend *)be)->inotify_fd;
}

static int file_on_watch(struct backend *be)
{
	struct file_backend *fb = (struct file_backend *)be;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	unsigned char hash[crypto_generichash_BYTES];
	json_t *doc = NULL;
	bool relevant = false;
	ssize_t n;

	while ((n = read(fb->inotify_fd, buf, sizeof buf)) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			/* The file itself, or a symlink swap (..data) above it. */
			if (ev->len == 0 || strcmp(ev->name, fb->basename) == 0 ||
			    ev->name[0] == '.')
				relevant = true;
			if (ev->mask & IN_Q_OVERFLOW)
				relevant = true;
			p += sizeof *ev + ev->len;
		}
	}
	if (!relevant)
		return 0;
	if (file_load(fb, &doc, hash) < 0)
		return 0;
	if (fb->have_hash && sodium_memcmp(hash, fb->last_hash, sizeof hash) == 0) {
		json_decref(doc);
		return 0;
	}
	/* Every source is read again right away: hand it this parse. */
	json_decref(fb->doc);
	fb->doc = doc;
	fb->doc_err = 0;
	fb->doc_fresh = true;
	memcpy(fb->last_hash, hash, sizeof hash);
	fb->have_hash = true;
	log_info("backend %s: %s changed", fb->base.name, fb->path);
	return 1;
}

static const char *const file_secret_keys[] = {NULL};

const struct backend_ops backend_file_ops = {
    .type = "file",
    .secret_keys = file_secret_keys,
    .default_refresh_ms = 60 * 1000,
    .check = file_check,
    .probe = file_probe,
    .create = file_create,
    .free = file_free,
    .fetch = file_fetch,
    .watch_fd = file_watch_fd,
    .on_watch = file_on_watch,
    .batch_begin = file_batch_begin,
    .batch_end = file_batch_end,
};
