/*
 * The Vault backend's auth token. It comes from the auth method (auth_*.c)
 * and is kept sealed in the store between requests. maintain() renews it
 * at ~2/3 of its TTL and logs in again when it can no longer be renewed
 * far enough (lease_next(), the same rule as for leases), was revoked, or
 * a request is refused with a token that no longer looks valid. A new
 * token never resets sources: leases stay and are renewed with whichever
 * token is current; only the end of the token they were made under is
 * remembered, as their deadline.
 */
#include <stdlib.h>
#include <string.h>

#include "secretfs/error.h"
#include "secretfs/http.h"
#include "secretfs/lease.h"
#include "secretfs/log.h"
#include "secretfs/secmem.h"
#include "secretfs/timing.h"
#include "vault_backend.h"

#define VAULT_LOGIN_BASE_MS 1000
#define VAULT_LOGIN_CAP_MS (5 * 60 * 1000)

int vault_token_init(struct vault_token *t, struct store *st, const char *backend)
{
	memset(t, 0, sizeof *t);
	return credcache_init(&t->cache, st, VAULT_LOGIN_BASE_MS, VAULT_LOGIN_CAP_MS,
	                      "\x01vault/%s/token", backend);
}

void vault_token_release(struct vault_token *t)
{
	credcache_release(&t->cache);
}

/* Plans the next renewal or login after the token got ttl_ms (lease.h:
 * the same rule as for leases); lock held. */
static void token_schedule(struct vault *v, uint64_t now, uint64_t ttl_ms, bool capped)
{
	struct vault_token *t = &v->token;
	struct lease_terms terms = {
	    .issued = t->issued,
	    .life_ms = t->ttl_ms,
	    .renewable = t->renewable,
	    .capped = capped,
	};
	enum lease_step step;
	uint64_t due;

	if (ttl_ms == 0) {
		t->expires = UINT64_MAX;
		t->due = UINT64_MAX;
		return;
	}
	t->expires = now + ttl_ms;
	step = lease_next(&terms, now, ttl_ms, timing_random(), &due);
	t->relogin = step == LEASE_REPLACE && v->auth->can_relogin;
	if (step == LEASE_REPLACE && !v->auth->can_relogin)
		/* A token that cannot be replaced is renewed while it can be;
		 * a static one needs nothing. */
		due = t->renewable ? now + timing_renew_after(ttl_ms, timing_random())
		                   : UINT64_MAX;
	t->due = due;
}

/* Remembers when a token being replaced ends: its leases end with it.
 * A token replaced because it was refused is already dead. Lock held. */
static void token_retire(struct vault *v, uint64_t now, bool dead)
{
	struct vault_token *t = &v->token;
	struct vault_generation *g;

	if (!credcache_has_locked(&t->cache))
		return;
	if (t->npast == VAULT_GENERATIONS) {
		memmove(t->past, t->past + 1, (VAULT_GENERATIONS - 1) * sizeof *t->past);
		t->npast--;
	}
	g = &t->past[t->npast++];
	g->gen = credcache_gen_locked(&t->cache);
	g->expires = dead ? now : t->expires;
}

/*
 * Logs in and installs the new token. seen is the token version the
 * caller saw: when another thread logged in meanwhile, that login is used.
 * dead says the current token was refused.
 */
static int token_login(struct vault *v, uint64_t now, uint64_t seen, bool dead)
{
	struct vault_token *t = &v->token;
	struct backend_error err = {0};
	struct vault_login login = {0};
	int rc;

	/* After the stop signal the only network work is revoking leases;
	 * a new login is not part of it. */
	if (http_stopping())
		return SFS_ECANCELED;
	rc = credcache_refresh_begin(&t->cache, seen, false, now, NULL);
	if (rc <= 0)
		return rc; /* another thread logged in since */

	rc = v->auth->login(v, v->auth_conf, &login, &err);
	credcache_lock(&t->cache);
	if (rc == 0) {
		token_retire(v, now, dead);
		rc = credcache_put_locked(&t->cache, login.token, strlen(login.token));
	}
	secmem_free(login.token);
	if (rc < 0) {
		uint64_t delay =
		    credcache_failed_locked(&t->cache, now, err.retry_after_ms, err.msg);
		log_warn("backend %s: %s login failed (attempt %u): %s%s%s; retrying in "
		         "%llu ms",
		         v->base.name, v->auth->method, t->cache.attempt,
		         sfs_strerror(rc), err.msg[0] ? ": " : "", err.msg,
		         (unsigned long long)delay);
		t->relogin = true;
		t->due = now + delay;
	} else {
		t->ttl_ms = login.ttl_ms;
		t->renewable = login.renewable;
		t->issued = now;
		token_schedule(v, now, login.ttl_ms, false);
		log_info("backend %s: logged in with %s (token ttl %llu s, %s)",
		         v->base.name, v->auth->method,
		         (unsigned long long)(login.ttl_ms / 1000),
		         login.renewable ? "renewable" : "not renewable");
	}
	credcache_unlock(&t->cache);
	credcache_refresh_end(&t->cache);
	return rc;
}

uint64_t vault_token_seen(struct vault *v)
{
	return credcache_gen(&v->token.cache);
}

int vault_token_get(struct vault *v, char **out)
{
	return credcache_get(&v->token.cache, out, NULL);
}

static int token_renew(struct vault *v, uint64_t now)
{
	struct vault_token *t = &v->token;
	struct backend_error err = {0};
	uint64_t seen = vault_token_seen(v);
	json_t *reply = NULL;
	uint64_t ttl = 0;
	int rc;

	rc = vault_call(v, "POST", "auth/token/renew-self", NULL, NULL, true, NULL,
	                &reply, &err);
	if (rc == SFS_EDENIED && v->auth->can_relogin) {
		log_warn("backend %s: token renewal refused (%s); logging in again",
		         v->base.name, err.msg);
		json_decref(reply);
		return token_login(v, now, seen, true);
	}
	if (rc == 0 && vault_duration_ms(json_object_get(json_object_get(reply, "auth"),
	                                                 "lease_duration"),
	                                 &ttl) < 0) {
		backend_error_set(
		    &err, "token renewal reply has a negative auth.lease_duration");
		rc = SFS_EPARSE;
	}
	credcache_lock(&t->cache);
	if (rc < 0) {
		uint64_t delay =
		    credcache_failed_locked(&t->cache, now, err.retry_after_ms, err.msg);
		log_warn("backend %s: token renewal failed: %s; retrying in %llu ms",
		         v->base.name, err.msg, (unsigned long long)delay);
		t->due = now + delay;
		if (t->due >= t->expires && v->auth->can_relogin) {
			t->relogin = true;
			t->due = now;
		}
	} else {
		credcache_succeeded_locked(&t->cache);
		if (ttl == 0) {
			/* Renewed for 0 s: capped with under a second left, it
			 * ends now (only a login's TTL 0 means "never"). */
			t->expires = now;
			t->relogin = v->auth->can_relogin;
			t->due = v->auth->can_relogin ? now : UINT64_MAX;
			if (!v->auth->can_relogin)
				log_error(
				    "backend %s: the token has reached its max TTL "
				    "and cannot be replaced with the %s auth method",
				    v->base.name, v->auth->method);
		} else {
			/* renew-self asks for the token's own TTL: less means
			 * max TTL. */
			token_schedule(v, now, ttl, ttl + 1000 < t->ttl_ms);
		}
		log_debug("backend %s: token renewed for %llu s%s", v->base.name,
		          (unsigned long long)(ttl / 1000),
		          t->relogin ? " (max TTL near: logging in again before it ends)"
		                     : "");
	}
	credcache_unlock(&t->cache);
	json_decref(reply);
	return rc;
}

uint64_t vault_token_maintain(struct vault *v, uint64_t now)
{
	struct vault_token *t = &v->token;
	bool login, renew;
	uint64_t due;

	credcache_lock(&t->cache);
	login = !credcache_has_locked(&t->cache) || (t->relogin && now >= t->due);
	renew = !login && now >= t->due;
	credcache_unlock(&t->cache);
	if (login)
		token_login(v, now, vault_token_seen(v), false);
	else if (renew)
		token_renew(v, now);
	credcache_lock(&t->cache);
	due = t->due;
	credcache_unlock(&t->cache);
	return due;
}

uint64_t vault_token_lease_deadline(struct vault *v, uint64_t gen)
{
	struct vault_token *t = &v->token;
	uint64_t dl = UINT64_MAX;

	/* Only a token already replaced gives its leases a deadline: moving
	 * them earlier would only put them under the same dying token. */
	credcache_lock(&t->cache);
	for (size_t i = 0; i < t->npast; i++)
		if (t->past[i].gen == gen)
			dl = t->past[i].expires;
	credcache_unlock(&t->cache);
	return dl;
}

/* Makes sure there is a token; logs in when there is none yet. */
static int token_ensure(struct vault *v, struct backend_error *err)
{
	struct vault_token *t = &v->token;
	uint64_t now = timing_now_ms();
	bool have, backing_off;
	int rc;

	credcache_lock(&t->cache);
	have = credcache_has_locked(&t->cache);
	backing_off = now < t->due && t->cache.attempt > 0;
	credcache_unlock(&t->cache);
	if (have)
		return 0;
	if (backing_off) {
		backend_error_set(err,
		                  "not logged in to Vault yet (login is backing off)");
		return SFS_ETRANSIENT;
	}
	if ((rc = token_login(v, now, 0, false)) < 0) {
		backend_error_set(err, rc == SFS_ECANCELED
		                           ? "not logged in, and no login while stopping"
		                           : "cannot log in to Vault");
		return rc == SFS_ECANCELED ? rc : SFS_ETRANSIENT;
	}
	return 0;
}

/* A request refused with 403: if the token itself is no longer valid,
 * log in again (once) so the caller can retry. Returns 1 to retry. */
static int token_recover(struct vault *v, uint64_t seen)
{
	struct backend_error err = {0};
	json_t *reply = NULL;
	int rc;

	if (!v->auth->can_relogin)
		return 0;
	if (vault_token_seen(v) != seen)
		return 1; /* someone logged in since: just retry */
	rc = vault_call(v, "GET", "auth/token/lookup-self", NULL, NULL, true, NULL,
	                &reply, &err);
	json_decref(reply);
	if (rc != SFS_EDENIED)
		return 0; /* the token is fine: the path is really forbidden */
	log_warn("backend %s: the token is no longer valid; logging in again",
	         v->base.name);
	return token_login(v, timing_now_ms(), seen, true) == 0 ? 1 : 0;
}

int vault_call_authed(struct vault *v, const char *method, const char *path,
                      const char *query, const json_t *body, json_t **out,
                      struct backend_error *err)
{
	int rc = token_ensure(v, err);
	uint64_t seen;

	if (rc < 0)
		return rc;
	seen = vault_token_seen(v);
	rc = vault_call(v, method, path, query, body, true, NULL, out, err);
	if (rc == SFS_EDENIED && token_recover(v, seen) == 1) {
		json_decref(*out);
		memset(err, 0, sizeof *err);
		rc = vault_call(v, method, path, query, body, true, NULL, out, err);
	}
	return rc;
}
