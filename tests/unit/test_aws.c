/*
 * Unit tests of the AWS helpers that need no network: the shared config
 * and credentials files, the credential chain's choice, times, the XML and
 * JSON credential answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../agent/aws.h"
#include "secretfs/error.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "secretfs/store.h"
#include "test.h"

static char dir[] = "/tmp/secretfs-test-aws-XXXXXX";

static char *write_file(const char *name, const char *text)
{
	static char path[2][256];
	static int which;
	char *p = path[which++ % 2];
	FILE *f;

	snprintf(p, 256, "%s/%s", dir, name);
	f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
	return p;
}

static char *ini(const char *file, const char *profile, bool config_style,
                 const char *key)
{
	static char copy[256];
	char *v = NULL;

	if (aws_ini_get(file, profile, config_style, key, &v) < 0)
		return NULL;
	snprintf(copy, sizeof copy, "%s", v);
	secmem_free(v);
	return copy;
}

TEST(test_ini_sections_by_file_style)
{
	const char *cred = write_file("credentials", "# comment\n"
	                                             "[default]\n"
	                                             "aws_access_key_id = AKIDDEFAULT\n"
	                                             "[dev]\n"
	                                             "aws_access_key_id=AKIDDEV  \n"
	                                             "  nested = ignored\n"
	                                             "; other comment\n");
	const char *conf = write_file("config", "[default]\n"
	                                        "region = eu-west-1\n"
	                                        "[profile dev]\n"
	                                        "region = us-east-2\n"
	                                        "s3 =\n"
	                                        "  region = nested-not-this\n"
	                                        "[dev]\n"
	                                        "region = wrong-style\n");

	CHECK_STR_EQ(ini(cred, "default", false, "aws_access_key_id"), "AKIDDEFAULT");
	CHECK_STR_EQ(ini(cred, "dev", false, "aws_access_key_id"), "AKIDDEV");
	CHECK(ini(cred, "dev", false, "nested") == NULL);
	CHECK(ini(cred, "prod", false, "aws_access_key_id") == NULL);
	CHECK_STR_EQ(ini(conf, "default", true, "region"), "eu-west-1");
	CHECK_STR_EQ(ini(conf, "dev", true, "region"), "us-east-2");
	CHECK(ini("/nonexistent/file", "default", true, "region") == NULL);
}

TEST(test_profile_load_from_env_files)
{
	struct aws_profile p;
	const char *cred = write_file("credentials", "[team]\naws_access_key_id = A\n"
	                                             "aws_secret_access_key = S\n");

	setenv("AWS_SHARED_CREDENTIALS_FILE", cred, 1);
	setenv("AWS_CONFIG_FILE",
	       write_file("config", "[profile team]\nregion = ap-south-1\n"
	                            "[profile sso]\nsso_session = corp\n"
	                            "[profile irsa]\nrole_arn = arn:aws:iam::1:role/r\n"
	                            "web_identity_token_file = /t\n"),
	       1);
	setenv("AWS_PROFILE", "team", 1);
	CHECK_EQ_INT(aws_profile_load(NULL, &p), 0);
	CHECK_STR_EQ(p.name, "team");
	CHECK_STR_EQ(p.region, "ap-south-1");
	CHECK(p.has_keys);
	CHECK(p.unsupported == NULL);
	aws_profile_release(&p);

	CHECK_EQ_INT(aws_profile_load("sso", &p), 0);
	CHECK(!p.has_keys);
	CHECK_STR_EQ(p.unsupported, "sso_session");
	aws_profile_release(&p);

	CHECK_EQ_INT(aws_profile_load("irsa", &p), 0);
	CHECK_STR_EQ(p.role_arn, "arn:aws:iam::1:role/r");
	CHECK_STR_EQ(p.web_identity_token_file, "/t");
	aws_profile_release(&p);
	unsetenv("AWS_PROFILE");
	unsetenv("AWS_CONFIG_FILE");
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

TEST(test_chain_order)
{
	struct aws_env env = {0};
	struct store *st = NULL;
	char *v = NULL;
	const char *const vars[] = {"AWS_ACCESS_KEY_ID", "AWS_ROLE_ARN",
	                            "AWS_WEB_IDENTITY_TOKEN_FILE",
	                            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	                            "AWS_CONTAINER_CREDENTIALS_FULL_URI"};

	CHECK_EQ_INT(store_new(&st), 0);
	CHECK_EQ_INT(envstash_new(st, &env.secrets), 0);
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	CHECK(aws_cred_choose(&env) == NULL);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	CHECK(aws_cred_choose(&env) == &aws_cred_imds);
	setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x", 1);
	CHECK(aws_cred_choose(&env) == &aws_cred_container);
	env.profile.has_keys = true;
	CHECK(aws_cred_choose(&env) == &aws_cred_shared_files);
	setenv("AWS_ROLE_ARN", "arn:aws:iam::1:role/r", 1);
	CHECK(aws_cred_choose(&env) == &aws_cred_shared_files); /* no token file */
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token", 1);
	CHECK(aws_cred_choose(&env) == &aws_cred_web_identity);
	/* The environment's keys come first, unless a profile was named. */
	setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secret-key-for-test", 1);
	CHECK(aws_cred_choose(&env) == &aws_cred_web_identity); /* not stashed yet */
	CHECK_EQ_INT(aws_env_stash(env.secrets), 0);
	CHECK(getenv("AWS_SECRET_ACCESS_KEY") == NULL); /* sealed and wiped */
	CHECK(aws_cred_choose(&env) == &aws_cred_environment);
	CHECK_EQ_INT(envstash_get(env.secrets, "AWS_SECRET_ACCESS_KEY", &v), 0);
	CHECK_STR_EQ(v, "secret-key-for-test");
	secmem_free(v);
	env.profile_explicit = true;
	CHECK(aws_cred_choose(&env) == &aws_cred_web_identity);
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
	envstash_free(env.secrets);
	store_free(st);
}

TEST(test_times)
{
	time_t t = 0;

	CHECK_EQ_INT(aws_parse_time("2026-11-22T10:00:00Z", &t), 0);
	CHECK_EQ_INT(t, 1795341600);
	CHECK_EQ_INT(aws_parse_time("2026-11-22T10:00:00.123456Z", &t), 0);
	CHECK_EQ_INT(t, 1795341600);
	CHECK_EQ_INT(aws_parse_time("2026-11-22T10:00:00+00:00", &t), 0);
	CHECK_EQ_INT(aws_parse_time("2026-11-22T10:00:00+02:00", &t), SFS_EINVAL);
	CHECK_EQ_INT(aws_parse_time("2026-11-22 10:00:00Z", &t), SFS_EINVAL);
	CHECK_EQ_INT(aws_parse_time("soon", &t), SFS_EINVAL);
	CHECK_EQ_INT(aws_parse_time(NULL, &t), SFS_EINVAL);
}

TEST(test_xml_text)
{
	const char *xml = "<R><Credentials><AccessKeyId>ASIA1</AccessKeyId>"
	                  "<SessionToken>a&amp;b&lt;c&gt;&quot;&apos;</SessionToken>"
	                  "<Empty></Empty></Credentials></R>";
	char *v = NULL;

	CHECK_EQ_INT(aws_xml_text(xml, strlen(xml), "AccessKeyId", &v), 0);
	CHECK_STR_EQ(v, "ASIA1");
	secmem_free(v);
	CHECK_EQ_INT(aws_xml_text(xml, strlen(xml), "SessionToken", &v), 0);
	CHECK_STR_EQ(v, "a&b<c>\"'");
	secmem_free(v);
	CHECK_EQ_INT(aws_xml_text(xml, strlen(xml), "Empty", &v), 0);
	CHECK_STR_EQ(v, "");
	secmem_free(v);
	CHECK_EQ_INT(aws_xml_text(xml, strlen(xml), "Missing", &v), SFS_ENOTFOUND);
	CHECK_EQ_INT(aws_xml_text(xml, 20, "SessionToken", &v), SFS_ENOTFOUND);
}

TEST(test_creds_from_json)
{
	struct aws_creds c = {0};
	struct backend_error err = {0};
	const char *ok = "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIA2\","
	                 "\"SecretAccessKey\":\"s3cr3t\",\"Token\":\"tok\","
	                 "\"Expiration\":\"2026-11-22T10:00:00Z\"}";
	const char *pod =
	    "{\"AccessKeyId\":\"ASIA3\",\"SecretAccessKey\":\"s\","
	    "\"SessionToken\":\"t\",\"Expiration\":\"2026-11-22T10:00:00Z\"}";

	CHECK_EQ_INT(aws_creds_from_json(ok, strlen(ok), "imds", &c, &err), 0);
	CHECK_STR_EQ(c.access_key_id, "ASIA2");
	CHECK_STR_EQ(c.secret_access_key, "s3cr3t");
	CHECK_STR_EQ(c.session_token, "tok");
	CHECK_EQ_INT(c.expiration, 1795341600);
	CHECK_EQ_INT(aws_creds_from_json(pod, strlen(pod), "pod", &c, &err), 0);
	CHECK_STR_EQ(c.session_token, "t");
	CHECK_EQ_INT(aws_creds_from_json("[]", 2, "x", &c, &err), SFS_EPARSE);
	CHECK_EQ_INT(aws_creds_from_json("{\"AccessKeyId\":\"A\"}", 19, "x", &c, &err),
	             SFS_EPARSE);
	CHECK_STR_CONTAINS(err.msg, "lacks AccessKeyId or SecretAccessKey");
	aws_creds_release(&c);
}

TEST(test_creds_reject_control_characters)
{
	struct aws_creds c = {0};

	CHECK_EQ_INT(aws_creds_set(&c, "AKID", "secret", NULL, 0), 0);
	CHECK(c.session_token == NULL);
	CHECK_EQ_INT(aws_creds_set(&c, "AKID", "sec\nret", NULL, 0), SFS_EINVAL);
	CHECK_EQ_INT(aws_creds_set(&c, "", "secret", NULL, 0), SFS_EINVAL);
	CHECK_EQ_INT(aws_creds_set(&c, "AKID", "secret", "to\rken", 0), SFS_EINVAL);
	aws_creds_release(&c);
}

int main(void)
{
	static const struct test_case_ tests[] = {
	    TEST_ENTRY_(test_ini_sections_by_file_style)
	        TEST_ENTRY_(test_profile_load_from_env_files)
	            TEST_ENTRY_(test_chain_order) TEST_ENTRY_(test_times)
	                TEST_ENTRY_(test_xml_text) TEST_ENTRY_(test_creds_from_json)
	                    TEST_ENTRY_(test_creds_reject_control_characters)};
	int rc;

	secjson_init();
	if (secmem_init() < 0 || !mkdtemp(dir))
		return 1;
	rc = test_run_all_(tests, sizeof tests / sizeof tests[0]);
	unlink(write_file("credentials", ""));
	unlink(write_file("config", ""));
	rmdir(dir);
	return rc;
}
