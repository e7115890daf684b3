/*
 * Unit tests for logging (log.c): text lines are the message alone, JSON
 * lines are valid JSON objects whose named-event fields are members of
 * their own, escaped (quotes, control characters, bytes that are not
 * UTF-8) and bounded.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "secretfs/log.h"
#include "test.h"

static char line_[8192];
static FILE *capture_;
static int saved_stderr_ = -1;

/* Sends stderr to a temporary file until capture_end(). */
static void capture_begin(void)
{
	fflush(stderr);
	capture_ = tmpfile();
	saved_stderr_ = dup(STDERR_FILENO);
	if (!capture_ || saved_stderr_ < 0 || dup2(fileno(capture_), STDERR_FILENO) < 0)
		abort();
}

/* Restores stderr; line_ holds what was written. */
static void capture_end(void)
{
	size_t n;

	dup2(saved_stderr_, STDERR_FILENO);
	close(saved_stderr_);
	rewind(capture_);
	n = fread(line_, 1, sizeof line_ - 1, capture_);
	line_[n] = '\0';
	fclose(capture_);
}

/* line_ parsed as one JSON object (the caller decrefs), or NULL. */
static json_t *parsed(void)
{
	json_error_t e;
	json_t *v = json_loads(line_, 0, &e);

	if (!v || !json_is_object(v)) {
		fprintf(stderr, "  not a JSON object: %s (%s)\n", line_, e.text);
		json_decref(v);
		return NULL;
	}
	return v;
}

static const char *member(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

TEST(test_text_line_is_the_message_alone_with_or_without_fields)
{
	char plain[sizeof line_];

	log_setup(LOG_LVL_INFO, false);
	capture_begin();
	log_info("file %s: published version %d from %s", "db.env", 1, "local:db");
	capture_end();
	snprintf(plain, sizeof plain, "%s", line_);
	capture_begin();
	log_event(LOG_LVL_INFO,
	          &(struct log_fields){.event = "file.published",
	                               .file = "db.env",
	                               .source = "local:db",
	                               .version = 1},
	          "file %s: published version %d from %s", "db.env", 1, "local:db");
	capture_end();
	CHECK_STR_CONTAINS(plain,
	                   " info  file db.env: published version 1 from local:db\n");
	/* Same but for the millisecond of the timestamp. */
	CHECK_STR_EQ(strchr(line_, ' '), strchr(plain, ' '));
}

TEST(test_json_event_fields_are_members_of_their_own)
{
	json_t *o;

	log_setup(LOG_LVL_DEBUG, true);
	capture_begin();
	log_event(LOG_LVL_WARN,
	          &(struct log_fields){.event = "lease.revoke_failed",
	                               .source = "vault:database/creds/app",
	                               .backend = "vault",
	                               .lease = "database/creds/app/abc",
	                               .version = 3,
	                               .pid = 42},
	          "source %s: cannot revoke", "vault:database/creds/app");
	capture_end();
	CHECK(line_[strlen(line_) - 1] == '\n');
	o = parsed();
	CHECK(o != NULL);
	if (!o)
		return;
	CHECK_STR_EQ(member(o, "level"), "warn");
	CHECK_STR_EQ(member(o, "event"), "lease.revoke_failed");
	CHECK_STR_EQ(member(o, "source"), "vault:database/creds/app");
	CHECK_STR_EQ(member(o, "backend"), "vault");
	CHECK_STR_EQ(member(o, "lease"), "database/creds/app/abc");
	CHECK_EQ_INT(json_integer_value(json_object_get(o, "version")), 3);
	CHECK_EQ_INT(json_integer_value(json_object_get(o, "pid")), 42);
	CHECK_STR_EQ(member(o, "msg"), "source vault:database/creds/app: cannot revoke");
	CHECK(member(o, "ts") != NULL);
	/* Absent fields are left out, not written empty. */
	CHECK(json_object_get(o, "file") == NULL);
	CHECK(json_object_get(o, "files") == NULL);
	CHECK(json_object_get(o, "mount") == NULL);
	CHECK(strncmp(line_, "{\"ts\":", 6) == 0);
	CHECK(strstr(line_, "\"level\":\"warn\",\"event\":\"lease.revoke_failed\"") !=
	      NULL);
	json_decref(o);
}

TEST(test_json_escapes_quotes_controls_and_bytes_that_are_not_utf8)
{
	json_t *o;

	log_setup(LOG_LVL_DEBUG, true);
	capture_begin();
	log_event(LOG_LVL_INFO,
	          &(struct log_fields){.event = "file.updated",
	                               .file = "a\"b\\c\nd\x01\x7f\xff\xc3(\xc3\xa9"},
	          "x\"%s", "\xe2\x82");
	capture_end();
	o = parsed();
	CHECK(o != NULL);
	if (!o)
		return;
	CHECK_STR_EQ(member(o, "file"),
	             "a\"b\\c\nd\x01\x7f\xef\xbf\xbd\xef\xbf\xbd(\xc3\xa9");
	CHECK_STR_EQ(member(o, "msg"), "x\"\xef\xbf\xbd\xef\xbf\xbd");
	json_decref(o);
}

TEST(test_json_line_stays_valid_when_cut)
{
	char big[3000];
	json_t *o;

	memset(big, '"', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	log_setup(LOG_LVL_DEBUG, true);
	capture_begin();
	log_event(LOG_LVL_INFO,
	          &(struct log_fields){.event = "e", .file = big, .source = big}, "%s",
	          big);
	capture_end();
	o = parsed();
	CHECK(o != NULL);
	CHECK(strlen(line_) <= 4096);
	if (o) {
		CHECK_STR_EQ(member(o, "event"), "e");
		CHECK(member(o, "msg") != NULL);
	}
	json_decref(o);
}

TEST(test_below_threshold_writes_nothing)
{
	log_setup(LOG_LVL_WARN, true);
	capture_begin();
	log_event(LOG_LVL_INFO, &(struct log_fields){.event = "file.updated"}, "quiet");
	log_debug("quiet too");
	capture_end();
	CHECK_STR_EQ(line_, "");
}

TEST(test_log_format_parse)
{
	bool json = false;

	CHECK_EQ_INT(log_format_parse("json", &json), 0);
	CHECK(json);
	CHECK_EQ_INT(log_format_parse("text", &json), 0);
	CHECK(!json);
	CHECK(log_format_parse("JSON", &json) < 0);
	CHECK(log_format_parse("", &json) < 0);
}

TEST_MAIN(test_text_line_is_the_message_alone_with_or_without_fields,
          test_json_event_fields_are_members_of_their_own,
          test_json_escapes_quotes_controls_and_bytes_that_are_not_utf8,
          test_json_line_stays_valid_when_cut, test_below_threshold_writes_nothing,
          test_log_format_parse)
