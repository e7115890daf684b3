/* The STS AssumeRoleWithWebIdentity answer: one XML element's text at a
 * time (aws_xml_text), as the web identity source reads it. */
#include "aws.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const tags[] = {"AccessKeyId",  "SecretAccessKey",
	                                   "SessionToken", "Expiration",
	                                   "Code",         "Message"};
	char *xml = fuzz_strndup(data, size);

	for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
		char *text = NULL;
		time_t t;

		if (aws_xml_text(xml, size, tags[i], &text) == 0) {
			if (strlen(text) >= size)
				abort();
			aws_parse_time(text, &t);
			secmem_free(text);
		}
	}
	free(xml);
	return 0;
}
