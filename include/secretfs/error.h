/*
 * Project-wide error codes. Functions return 0 on success or one of these
 * negative codes; sfs_strerror() names them. FUSE handlers translate to
 * -errno at the filesystem edge only.
 */
#ifndef SECRETFS_ERROR_H
#define SECRETFS_ERROR_H

#include <stdint.h>

enum sfs_error {
	SFS_OK = 0,
	SFS_ENOMEM = -1,     /* allocation failed */
	SFS_EINVAL = -2,     /* invalid argument or input */
	SFS_ENOTFOUND = -3,  /* the named thing does not exist */
	SFS_EIO = -4,        /* system call failed (errno logged where it happened) */
	SFS_EPARSE = -5,     /* malformed document */
	SFS_ETOOBIG = -6,    /* a size bound was exceeded */
	SFS_ECRYPTO = -7,    /* authentication of sealed data failed */
	SFS_ETRANSIENT = -8, /* backend temporarily unavailable: retry later */
	SFS_EDENIED = -9,    /* backend refused (authentication/authorisation) */
	SFS_EBACKEND = -10,  /* backend answered with an error */
	SFS_EEXPIRED = -11,  /* a lease or credential expired */
	SFS_ECANCELED = -12, /* cut short because secretfs is stopping */
};

/* Static description of an error code; never NULL. */
const char *sfs_strerror(int err);

/*
 * Why a run-time call failed, beside its code: the one side-channel of
 * messages from the backends, the HTTP client and the renderer (config
 * checks report through diag.h instead). Never holds secret values.
 */
struct backend_error {
	char msg[256];
	uint64_t retry_after_ms; /* server-requested delay, 0 if none */
};

/* Formats the message into err->msg (cut at its size). NULL-safe. */
void backend_error_set(struct backend_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
