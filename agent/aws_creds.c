/*
 * AWS credentials: the chain that picks a source in the SDKs' order, the
 * guarded container credentials travel in, and the small parsers the
 * sources share (ISO 8601 times, one XML element, the JSON answers of the
 * container and instance metadata endpoints).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "secretfs/error.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x21 || *s == 0x7f)
			return false;
	return true;
}

int aws_creds_set(struct aws_creds *c, const char *akid, const char *secret,
                  const char *token, time_t expiration)
{
	size_t la, ls, lt;
	char *buf;

	if (!akid || !secret || !*akid || !*secret || !printable(akid) ||
	    !printable(secret) || (token && !printable(token)))
		return SFS_EINVAL;
	la = strlen(akid);
	ls = strlen(secret);
	lt = token ? strlen(token) : 0;
	buf = secmem_alloc(la + ls + lt + 3);
	if (!buf)
		return SFS_ENOMEM;
	aws_creds_release(c);
	c->buf = buf;
	c->cap = la + ls + lt + 3;
	memcpy(buf, akid, la + 1);
	memcpy(buf + la + 1, secret, ls + 1);
	if (lt)
		memcpy(buf + la + ls + 2, token, lt + 1);
	c->access_key_id = buf;
	c->secret_access_key = buf + la + 1;
	c->session_token = lt ? buf + la + ls + 2 : NULL;
	c->expiration = expiration;
	return 0;
}

void aws_creds_release(struct aws_creds *c)
{
	secmem_free(c->buf);
	memset(c, 0, sizeof *c);
}

/* ---- secrets from the environment --------------------------------------- */

static const char *const env_secrets[] = {
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
};
#define NENV (sizeof env_secrets / sizeof env_secrets[0])

int aws_env_stash(struct envstash *es)
{
	for (size_t i = 0; i < NENV; i++) {
		int rc = envstash_take(es, env_secrets[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- the chain ------------------------------------------------------------ */

const struct aws_cred_source *aws_cred_choose(const struct aws_env *env)
{
	static const struct aws_cred_source *const chain[] = {
	    &aws_cred_environment, &aws_cred_web_identity, &aws_cred_shared_files,
	    &aws_cred_container,   &aws_cred_imds,
	};

	for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++)
		if (chain[i]->configured(env))
			return chain[i];
	return NULL;
}

/* ---- parsers ---------------------------------------------------------------- */

int aws_parse_time(const char *s, time_t *out)
{
	struct tm tm = {0};
	const char *p;
	time_t t;

	if (!s)
		return SFS_EINVAL;
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return SFS_EINVAL;
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++)
			;
	if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
		return SFS_EINVAL;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return SFS_EINVAL;
	*out = t;
	return 0;
}

static const struct {
	const char *name;
	char c;
} xml_entities[] = {
    {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''},
};

int aws_xml_text(const char *xml, size_t len, const char *tag, char **out)
{
	char open[80], close[80];
	const char *start, *end;
	size_t n = 0;
	char *buf;

	snprintf(open, sizeof open, "<%s>", tag);
	snprintf(close, sizeof close, "</%s>", tag);
	start = memmem(xml, len, open, strlen(open));
	if (!start)
		return SFS_ENOTFOUND;
	start += strlen(open);
	end = memmem(start, len - (size_t)(start - xml), close, strlen(close));
	if (!end)
		return SFS_ENOTFOUND;
	buf = secmem_alloc((size_t)(end - start) + 1);
	if (!buf)
		return SFS_ENOMEM;
	for (const char *p = start; p < end;) {
		size_t i;
		for (i = 0; i < sizeof xml_entities / sizeof xml_entities[0]; i++) {
			size_t el = strlen(xml_entities[i].name);
			if ((size_t)(end - p) >= el &&
			    memcmp(p, xml_entities[i].name, el) == 0) {
				buf[n++] = xml_entities[i].c;
				p += el;
				break;
			}
		}
		if (i == sizeof xml_entities / sizeof xml_entities[0])
			buf[n++] = *p++;
	}
	*out = buf;
	return 0;
}

int aws_creds_from_json(const char *body, size_t len, const char *what,
                        struct aws_creds *out, struct backend_error *err)
{
	json_error_t jerr;
	json_t *doc = json_loadb(body, len, 0, &jerr);
	const char *akid, *secret, *token, *exp;
	time_t expiration = 0;
	int rc;

	if (!json_is_object(doc)) {
		json_decref(doc);
		backend_error_set(err, "%s: the answer is not a JSON object", what);
		return SFS_EPARSE;
	}
	akid = json_string_value(json_object_get(doc, "AccessKeyId"));
	secret = json_string_value(json_object_get(doc, "SecretAccessKey"));
	token = json_string_value(json_object_get(doc, "Token"));
	if (!token)
		token = json_string_value(json_object_get(doc, "SessionToken"));
	exp = json_string_value(json_object_get(doc, "Expiration"));
	if (exp && aws_parse_time(exp, &expiration) < 0) {
		backend_error_set(err, "%s: Expiration is not an ISO 8601 time", what);
		rc = SFS_EPARSE;
	} else {
		rc = aws_creds_set(out, akid, secret, token, expiration);
		if (rc == SFS_EINVAL)
			backend_error_set(
			    err, "%s: the answer lacks AccessKeyId or SecretAccessKey",
			    what);
		if (rc == SFS_EINVAL)
			rc = SFS_EPARSE;
	}
	json_decref(doc);
	return rc;
}
