/*
 * The backend registry: one line per implementation. Adding a backend is
 * one new file and one line here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "secretfs/backend.h"
#include "secretfs/error.h"
#include "secretfs/log.h"

/* Each defined in its backend_<type>.c. */
extern const struct backend_ops backend_file_ops, backend_dev_ops, backend_vault_ops,
    backend_aws_ops;

static const struct backend_ops *const registry[] = {
    &backend_file_ops,
    &backend_dev_ops,
    &backend_vault_ops,
    &backend_aws_ops,
};

const struct backend_ops *backend_find(const char *type)
{
	for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
		if (strcmp(registry[i]->type, type) == 0)
			return registry[i];
	return NULL;
}

int backend_start(const struct backend_env *env, const char *type, const char *name,
                  const json_t *conf, struct backend **out)
{
	const struct backend_ops *ops = backend_find(type);
	int rc = ops ? ops->create(env, name, conf, out) : SFS_EINVAL;

	if (rc < 0)
		log_event(LOG_LVL_ERROR,
		          &(struct log_fields){.event = "backend.start_failed",
		                               .backend = name},
		          "backend %s: cannot start: %s", name, sfs_strerror(rc));
	return rc;
}

const struct backend_ops *backend_nth(size_t i)
{
	return i < sizeof registry / sizeof registry[0] ? registry[i] : NULL;
}

const char *backend_type_names(void)
{
	static char names[128];

	/* Built from the registry, so the list cannot drift from it. */
	if (!names[0]) {
		size_t used = 0;
		for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
			used +=
			    (size_t)snprintf(names + used, sizeof names - used, "%s%s",
			                     i ? ", " : "", registry[i]->type);
	}
	return names;
}

void fetch_result_release(struct fetch_result *r)
{
	json_decref(r->value);
	json_decref(r->reply);
	memset(r, 0, sizeof *r);
}
