/*
 * The AWS shared config and credentials files (INI): which profile, where
 * the files are, and what a profile says. Keys are looked up on demand so
 * secret keys are read straight into guarded memory and never kept.
 *
 * Rules as in the SDKs: the profile is the config's "profile", else
 * AWS_PROFILE, else "default"; files are AWS_CONFIG_FILE and
 * AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/config and ~/.aws/credentials;
 * in the config file a profile's section is "[profile NAME]" ("[default]"
 * for the default one), in the credentials file "[NAME]"; the credentials
 * file wins where both set a key.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "secretfs/error.h"
#include "secretfs/secmem.h"

#define AWS_INI_MAX (1024 * 1024)

static char *trim(char *s, char *end)
{
	while (s < end && isspace((unsigned char)*s))
		s++;
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	*end = '\0';
	return s;
}

/* True when the section header text (inside the brackets, trimmed) names
 * profile in a file of that style. */
static bool section_matches(const char *hdr, const char *profile, bool config_style)
{
	if (!config_style || strcmp(profile, "default") == 0)
		if (strcmp(hdr, profile) == 0)
			return true;
	if (config_style && strncmp(hdr, "profile", 7) == 0 &&
	    isspace((unsigned char)hdr[7])) {
		hdr += 7;
		while (isspace((unsigned char)*hdr))
			hdr++;
		return strcmp(hdr, profile) == 0;
	}
	return false;
}

int aws_ini_get(const char *file, const char *profile, bool config_style, const char *key,
                char **out)
{
	unsigned char *text = NULL;
	size_t len = 0;
	bool in_section = false;
	char *line, *next;
	int rc;

	if (!file)
		return SFS_ENOTFOUND;
	rc = secmem_read_file(file, AWS_INI_MAX, &text, &len);
	if (rc < 0)
		return rc;
	rc = SFS_ENOTFOUND;
	for (line = (char *)text; line && rc == SFS_ENOTFOUND; line = next) {
		char *nl = strchr(line, '\n'), *eq, *k, *v;
		char *end = nl ? nl : line + strlen(line);
		next = nl ? nl + 1 : NULL;
		/* Indented lines continue a nested key (e.g. "s3 =") we skip. */
		if (line < end && (*line == ' ' || *line == '\t'))
			continue;
		k = trim(line, end);
		if (*k == '\0' || *k == '#' || *k == ';')
			continue;
		if (*k == '[') {
			char *close = strchr(k, ']');
			in_section = close && section_matches(trim(k + 1, close), profile,
			                                      config_style);
			continue;
		}
		eq = strchr(k, '=');
		if (!in_section || !eq)
			continue;
		v = trim(eq + 1, k + strlen(k));
		if (strcmp(trim(k, eq), key) != 0)
			continue;
		size_t n = strlen(v) + 1;
		*out = secmem_alloc(n);
		rc = *out ? 0 : SFS_ENOMEM;
		if (*out)
			memcpy(*out, v, n);
	}
	secmem_free(text);
	return rc;
}

/* A non-secret key of the profile, credentials file first; malloc'd. */
static char *profile_value(const struct aws_profile *p, const char *key)
{
	char *v = NULL, *copy = NULL;

	if (aws_ini_get(p->credentials_file, p->name, false, key, &v) < 0 &&
	    aws_ini_get(p->config_file, p->name, true, key, &v) < 0)
		return NULL;
	if (*v)
		copy = strdup(v);
	secmem_free(v);
	return copy;
}

static char *home_file(const char *env, const char *rel)
{
	const char *e = getenv(env), *home = getenv("HOME");
	char *path = NULL;

	if (e && *e)
		return strdup(e);
	if (!home || !*home)
		return NULL;
	if (asprintf(&path, "%s/%s", home, rel) < 0)
		return NULL;
	return path;
}

int aws_profile_load(const char *name, struct aws_profile *out)
{
	static const char *const unsupported[] = {
	    "credential_process", "source_profile", "credential_source",
	    "sso_session",        "sso_start_url",  NULL,
	};
	const char *env = getenv("AWS_PROFILE");
	char *key;

	memset(out, 0, sizeof *out);
	out->name = strdup(name ? name : env && *env ? env : "default");
	out->config_file = home_file("AWS_CONFIG_FILE", ".aws/config");
	out->credentials_file =
	    home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
	if (!out->name)
		return SFS_ENOMEM;
	out->region = profile_value(out, "region");
	out->role_arn = profile_value(out, "role_arn");
	out->web_identity_token_file = profile_value(out, "web_identity_token_file");
	out->role_session_name = profile_value(out, "role_session_name");
	key = profile_value(out, "aws_access_key_id");
	out->has_keys = key != NULL;
	free(key);
	for (size_t i = 0; unsupported[i] && !out->unsupported; i++) {
		char *v = profile_value(out, unsupported[i]);
		if (v)
			out->unsupported = strdup(unsupported[i]);
		free(v);
	}
	return 0;
}

void aws_profile_release(struct aws_profile *p)
{
	free(p->name);
	free(p->region);
	free(p->role_arn);
	free(p->web_identity_token_file);
	free(p->role_session_name);
	free(p->unsupported);
	free(p->config_file);
	free(p->credentials_file);
	memset(p, 0, sizeof *p);
}
