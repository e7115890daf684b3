/*
 * Unit tests of the Vault login answer parser (vault_login_from_reply):
 * the token and its TTL are taken as Vault documents them; a negative
 * lease_duration, a token with a NUL byte or a missing token are refused;
 * an absurd TTL is capped instead of wrapping around.
 */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "secretfs/backend.h"
#include "secretfs/error.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "test.h"
#include "vault.h"

static int parse(const char *text, struct vault_login *out, struct backend_error *err)
{
	json_t *reply;
	int rc;

	secjson_init();
	CHECK_EQ_INT(secmem_init(), 0);
	reply = json_loads(text, JSON_ALLOW_NUL, NULL);
	CHECK(reply != NULL);
	rc = vault_login_from_reply(reply, out, err);
	json_decref(reply);
	return rc;
}

TEST(login_reply_gives_token_ttl_and_renewable)
{
	struct backend_error err = {0};
	struct vault_login l;

	CHECK_EQ_INT(parse("{\"auth\": {\"client_token\": \"hvs.abc\", "
	                   "\"lease_duration\": 3600, \"renewable\": true}}",
	                   &l, &err),
	             0);
	CHECK_STR_EQ(l.token, "hvs.abc");
	CHECK_EQ_INT(l.ttl_ms, 3600000);
	CHECK(l.renewable);
	secmem_free(l.token);
}

TEST(login_reply_with_a_negative_ttl_is_refused)
{
	struct backend_error err = {0};
	struct vault_login l;

	CHECK_EQ_INT(
	    parse("{\"auth\": {\"client_token\": \"t\", \"lease_duration\": -5}}", &l,
	          &err),
	    SFS_EPARSE);
	CHECK_STR_CONTAINS(err.msg, "negative");
}

TEST(login_reply_with_a_nul_in_the_token_is_refused)
{
	struct backend_error err = {0};
	struct vault_login l;

	CHECK_EQ_INT(parse("{\"auth\": {\"client_token\": \"a\\u0000b\"}}", &l, &err),
	             SFS_EPARSE);
	CHECK_EQ_INT(parse("{\"auth\": {}}", &l, &err), SFS_EPARSE);
}

TEST(login_reply_with_a_huge_ttl_is_capped_not_wrapped)
{
	struct backend_error err = {0};
	struct vault_login l;

	CHECK_EQ_INT(parse("{\"auth\": {\"client_token\": \"t\", "
	                   "\"lease_duration\": 9223372036854775807}}",
	                   &l, &err),
	             0);
	CHECK_EQ_INT(l.ttl_ms, 10ull * 365 * 24 * 3600 * 1000);
	secmem_free(l.token);
}

TEST_MAIN(login_reply_gives_token_ttl_and_renewable,
          login_reply_with_a_negative_ttl_is_refused,
          login_reply_with_a_nul_in_the_token_is_refused,
          login_reply_with_a_huge_ttl_is_capped_not_wrapped)
