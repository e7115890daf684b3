/*
 * The Secrets Manager reply parsers: GetSecretValue
 * (aws_secret_value_from_reply: SecretString as JSON or text,
 * SecretBinary as base64, VersionId) and DescribeSecret
 * (aws_version_from_describe: the version holding a stage, DeletedDate).
 * Input: one byte choosing the parser, the stage, a NUL, then the reply's
 * JSON (NUL bytes allowed inside strings, as a hostile endpoint may send).
 */
#include "aws.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct backend_error err = {0};
	char version[128];
	const uint8_t *nul;
	json_t *reply, *value = NULL;
	char *stage;

	if (size < 1 || !(nul = memchr(data + 1, '\0', size - 1)))
		return 0;
	stage = fuzz_strndup(data + 1, (size_t)(nul - data - 1));
	reply = json_loadb((const char *)nul + 1, size - (size_t)(nul + 1 - data),
	                   JSON_ALLOW_NUL, NULL);
	if (reply && data[0] % 2 == 0) {
		if (aws_secret_value_from_reply(reply, &value, version, sizeof version,
		                                &err, "s") == 0) {
			const json_t *id = json_object_get(reply, "VersionId");
			if (!value ||
			    (!json_is_object(value) && !json_is_string(value)) ||
			    strcmp(version, id ? json_string_value(id) : "") != 0)
				abort(); /* a value of another shape, or a version cut */
			json_decref(value);
		}
	} else if (reply) {
		if (aws_version_from_describe(reply, stage, version, sizeof version, &err,
		                              "s") == 0 &&
		    !json_object_get(json_object_get(reply, "VersionIdsToStages"),
		                     version))
			abort(); /* a version id cut to fit */
	}
	if (!memchr(err.msg, '\0', sizeof err.msg))
		abort();
	json_decref(reply);
	free(stage);
	return 0;
}
