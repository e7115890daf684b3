/*
 * Names of the project-wide error codes (error.h), for log lines and
 * messages to the operator.
 */
#include <stdarg.h>
#include <stdio.h>

#include "secretfs/error.h"

/* Static lowercase description of err; "unknown error" for any other value. */
const char *sfs_strerror(int err)
{
	switch (err) {
	case SFS_OK:
		return "success";
	case SFS_ENOMEM:
		return "out of memory";
	case SFS_EINVAL:
		return "invalid argument";
	case SFS_ENOTFOUND:
		return "not found";
	case SFS_EIO:
		return "input/output error";
	case SFS_EPARSE:
		return "malformed document";
	case SFS_ETOOBIG:
		return "size limit exceeded";
	case SFS_ECRYPTO:
		return "authentication of sealed data failed";
	case SFS_ETRANSIENT:
		return "backend temporarily unavailable";
	case SFS_EDENIED:
		return "access denied by backend";
	case SFS_EBACKEND:
		return "backend error";
	case SFS_EEXPIRED:
		return "lease or credential expired";
	case SFS_ECANCELED:
		return "cancelled: secretfs is stopping";
	}
	return "unknown error";
}

void backend_error_set(struct backend_error *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
}
