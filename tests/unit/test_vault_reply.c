/*
 * Unit tests of the Vault and Secrets Manager reply parsers that the
 * fuzz_vault_reply and fuzz_sm_reply targets exercise: documented replies
 * parse as Vault and AWS describe them; what a hostile server could send
 * to wrap a lease duration, cut a lease or version id, or make a mount
 * prefix claim paths it does not begin is refused.
 */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "aws.h"
#include "secretfs/error.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "test.h"
#include "vault_backend.h"

static json_t *load(const char *text)
{
	json_t *j;

	secjson_init();
	CHECK_EQ_INT(secmem_init(), 0);
	j = json_loads(text, JSON_ALLOW_NUL, NULL);
	CHECK(j != NULL);
	return j;
}

TEST(mount_reply_gives_prefix_and_kv_version)
{
	json_t *r = load("{\"data\": {\"path\": \"secret/\", \"type\": \"kv\", "
	                 "\"options\": {\"version\": \"2\"}}}");
	const char *prefix, *type;
	int kvv;

	CHECK_EQ_INT(vault_kv_mount_from_reply(r, "secret/app", &prefix, &type, &kvv), 0);
	CHECK_STR_EQ(prefix, "secret/");
	CHECK_EQ_INT(kvv, 2);
	json_decref(r);
}

TEST(mount_reply_whose_prefix_does_not_begin_the_path_is_refused)
{
	/* kv2_path cuts the path after the prefix: a longer one read past
	 * the path's end. */
	json_t *r =
	    load("{\"data\": {\"path\": \"averyveryverylongmount/\", \"type\": \"kv\"}}");
	json_t *e = load("{\"data\": {\"path\": \"\", \"type\": \"kv\"}}");
	json_t *n = load("{\"data\": {\"path\": \"a\\u0000b/\", \"type\": \"kv\"}}");
	const char *prefix, *type;
	int kvv;

	CHECK_EQ_INT(vault_kv_mount_from_reply(r, "a/b", &prefix, &type, &kvv),
	             SFS_EPARSE);
	CHECK_EQ_INT(vault_kv_mount_from_reply(e, "a/b", &prefix, &type, &kvv),
	             SFS_EPARSE);
	CHECK_EQ_INT(vault_kv_mount_from_reply(n, "a/b", &prefix, &type, &kvv),
	             SFS_EPARSE);
	json_decref(r);
	json_decref(e);
	json_decref(n);
}

TEST(kv2_404_names_a_destroyed_version)
{
	json_t *r = load("{\"data\": {\"data\": null, \"metadata\": {\"version\": 3, "
	                 "\"destroyed\": true, \"deletion_time\": \"\"}}}");
	struct backend_error err = {0};
	struct fetch_result out = {0};

	CHECK_EQ_INT(vault_kv_read_from_reply(r, SFS_ENOTFOUND, "secret/x", &out, &err),
	             SFS_ENOTFOUND);
	CHECK_STR_CONTAINS(err.msg, "version 3 is destroyed");
	json_decref(r);
}

TEST(leased_read_gives_lease_id_duration_and_renewable)
{
	json_t *r =
	    load("{\"lease_id\": \"database/creds/app/2f6a\", \"lease_duration\": 3600, "
	         "\"renewable\": true, \"data\": {\"username\": \"u\"}}");
	struct backend_error err = {0};
	struct fetch_result out = {0};

	CHECK_EQ_INT(vault_lease_from_reply(r, "database/creds/app", 4, &out, &err), 0);
	CHECK_STR_EQ(out.lease_id, "database/creds/app/2f6a");
	CHECK_EQ_INT(out.lease_ms, 3600000);
	CHECK(out.renewable);
	CHECK_EQ_INT(out.auth_generation, 4);
	fetch_result_release(&out);
	json_decref(r);
}

TEST(lease_with_a_negative_duration_is_refused_and_a_huge_one_capped)
{
	/* (uint64_t)-1 * 1000 used to be a lease of 584 million years. */
	json_t *neg = load("{\"lease_id\": \"l\", \"lease_duration\": -1, \"data\": {}}");
	json_t *huge =
	    load("{\"lease_id\": \"l\", \"lease_duration\": 9223372036854775807, "
	         "\"data\": {}}");
	json_t *renew = load("{\"lease_duration\": -30, \"renewable\": true}");
	struct backend_error err = {0};
	struct fetch_result out = {0};
	uint64_t ms = 0;

	CHECK_EQ_INT(vault_lease_from_reply(neg, "p", 0, &out, &err), SFS_EPARSE);
	CHECK_EQ_INT(vault_lease_from_reply(huge, "p", 0, &out, &err), 0);
	CHECK_EQ_INT(out.lease_ms, (uint64_t)VAULT_MAX_TTL_S * 1000);
	fetch_result_release(&out);
	CHECK_EQ_INT(vault_renewal_from_reply(renew, &ms, &err), SFS_EPARSE);
	json_decref(neg);
	json_decref(huge);
	json_decref(renew);
}

TEST(lease_id_with_a_nul_is_refused)
{
	json_t *r =
	    load("{\"lease_id\": \"a\\u0000b\", \"lease_duration\": 60, \"data\": {}}");
	struct backend_error err = {0};
	struct fetch_result out = {0};

	CHECK_EQ_INT(vault_lease_from_reply(r, "p", 0, &out, &err), SFS_EPARSE);
	json_decref(r);
}

TEST(renewal_to_zero_that_is_not_renewable_is_the_end)
{
	json_t *r = load("{\"lease_duration\": 0, \"renewable\": false}");
	struct backend_error err = {0};
	uint64_t ms = 1;

	CHECK_EQ_INT(vault_renewal_from_reply(r, &ms, &err), SFS_EEXPIRED);
	json_decref(r);
}

TEST(get_secret_value_gives_fields_and_version)
{
	json_t *r = load("{\"SecretString\": \"{\\\"password\\\": \\\"pw\\\"}\", "
	                 "\"VersionId\": \"v-1\"}");
	struct backend_error err = {0};
	char version[128];
	json_t *value = NULL;

	CHECK_EQ_INT(
	    aws_secret_value_from_reply(r, &value, version, sizeof version, &err, "s"),
	    0);
	CHECK_STR_EQ(json_string_value(json_object_get(value, "password")), "pw");
	CHECK_STR_EQ(version, "v-1");
	json_decref(value);
	json_decref(r);
}

TEST(get_secret_value_with_a_version_id_that_would_be_cut_is_refused)
{
	char text[400], version[16];
	struct backend_error err = {0};
	json_t *value = NULL, *r, *nul;

	snprintf(text, sizeof text, "{\"SecretString\": \"x\", \"VersionId\": \"%040d\"}",
	         1);
	r = load(text);
	nul = load("{\"SecretString\": \"x\", \"VersionId\": \"a\\u0000b\"}");
	CHECK_EQ_INT(
	    aws_secret_value_from_reply(r, &value, version, sizeof version, &err, "s"),
	    SFS_EPARSE);
	CHECK_EQ_INT(
	    aws_secret_value_from_reply(nul, &value, version, sizeof version, &err, "s"),
	    SFS_EPARSE);
	json_decref(r);
	json_decref(nul);
}

TEST(describe_secret_gives_the_version_of_the_stage)
{
	json_t *r = load("{\"VersionIdsToStages\": {\"v1\": [\"AWSPREVIOUS\"], "
	                 "\"v2\": [\"AWSCURRENT\"]}}");
	json_t *del = load("{\"VersionIdsToStages\": {\"v2\": [\"AWSCURRENT\"]}, "
	                   "\"DeletedDate\": 1700000000.5}");
	struct backend_error err = {0};
	char version[128];

	CHECK_EQ_INT(aws_version_from_describe(r, "AWSCURRENT", version, sizeof version,
	                                       &err, "s"),
	             0);
	CHECK_STR_EQ(version, "v2");
	CHECK_EQ_INT(aws_version_from_describe(r, "AWSPENDING", version, sizeof version,
	                                       &err, "s"),
	             SFS_ENOTFOUND);
	CHECK_EQ_INT(aws_version_from_describe(del, "AWSCURRENT", version, sizeof version,
	                                       &err, "s"),
	             SFS_EBACKEND);
	json_decref(r);
	json_decref(del);
}

TEST(pki_revoke_id_names_the_mount_of_the_issue)
{
	char id[64];

	CHECK_EQ_INT(vault_pki_revoke_id("pki/issue/web", "1a:2b", id, sizeof id), 0);
	CHECK_STR_EQ(id, "pki/cert/1a:2b");
	CHECK_EQ_INT(vault_pki_revoke_id("teams/a/pki_int/sign/web", "0f", id, sizeof id),
	             0);
	CHECK_STR_EQ(id, "teams/a/pki_int/cert/0f");
	CHECK_EQ_INT(
	    vault_pki_revoke_id("pki/issuer/default/issue/web", "0f", id, sizeof id), 0);
	CHECK_STR_EQ(id, "pki/cert/0f");
	CHECK_EQ_INT(vault_pki_revoke_id("pki/sign-verbatim", "0f", id, sizeof id), 0);
	CHECK_STR_EQ(id, "pki/cert/0f");
	CHECK_EQ_INT(vault_pki_revoke_id("database/creds/app", "0f", id, sizeof id),
	             SFS_EINVAL);
	CHECK_EQ_INT(vault_pki_revoke_id("pki/issue/web", "../x", id, sizeof id),
	             SFS_EINVAL);
	CHECK_EQ_INT(vault_pki_revoke_id("pki/issue/web", NULL, id, sizeof id),
	             SFS_EINVAL);
	CHECK_STR_EQ(id, "");
	CHECK_EQ_INT(vault_pki_revoke_id("pki/issue/web", "1a:2b", id, 10), SFS_ETOOBIG);
}

TEST_MAIN(pki_revoke_id_names_the_mount_of_the_issue,
          mount_reply_gives_prefix_and_kv_version,
          mount_reply_whose_prefix_does_not_begin_the_path_is_refused,
          kv2_404_names_a_destroyed_version,
          leased_read_gives_lease_id_duration_and_renewable,
          lease_with_a_negative_duration_is_refused_and_a_huge_one_capped,
          lease_id_with_a_nul_is_refused,
          renewal_to_zero_that_is_not_renewable_is_the_end,
          get_secret_value_gives_fields_and_version,
          get_secret_value_with_a_version_id_that_would_be_cut_is_refused,
          describe_secret_gives_the_version_of_the_stage)
