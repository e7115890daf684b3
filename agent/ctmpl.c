/*
 * The consul-template engine (contract and subset in ctmpl.h): a lexer and
 * recursive-descent parser shaped after Go's text/template/parse, which
 * refuse at parse time whatever the subset leaves out, and an evaluator
 * shaped after text/template's exec with consul-template's functions.
 *
 * The parse tree holds no secret. At render time values are borrowed from
 * the Vault replies (jansson, wiping allocator) or built by functions in
 * guarded memory (secmem) that the rendering owns and wipes at its end;
 * output goes straight into the caller's secbuf. Variables are slots
 * numbered at parse time, so an undefined variable is a parse error.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "ctmpl.h"
#include "secretfs/error.h"
#include "secretfs/render.h"
#include "secretfs/secmem.h"

#define CT_MAX_CMDS 16    /* commands in one pipeline */
#define CT_MAX_CHAIN 32   /* fields in one chain */
#define CT_MAX_VARS 256   /* variables in scope */
#define CT_MAX_SLOTS 4096 /* variable declarations in a template */
#define CT_MAX_TOKENS 200000
#define CT_MAX_VALUE_DEPTH 256 /* nesting of a printed or JSON-encoded value */

/* ---------------------------------------------------------------------- */
/* The parse tree                                                          */

enum ct_tokk {
	T_EOF,
	T_TEXT,
	T_LEFT,
	T_RIGHT,
	T_SPACE,
	T_PIPE,
	T_LPAREN,
	T_RPAREN,
	T_COMMA,
	T_DECLARE,
	T_ASSIGN,
	T_STRING,
	T_RAW,
	T_NUMBER,
	T_DOT,
	T_FIELD,
	T_VAR,
	T_IDENT,
};

struct ct_tok {
	enum ct_tokk k;
	size_t off, len;
};

struct ct_name {
	const char *s; /* into the template's text */
	size_t n;
};

enum ct_argk { A_DOT, A_FIELD, A_VAR, A_STR, A_INT, A_BOOL, A_FUNC, A_PIPE };

enum ct_func {
	F_SECRET,
	F_INDEX,
	F_PRINTF,
	F_TOJSON,
	F_TOJSONPRETTY,
	F_B64ENC,
	F_B64DEC,
	F_UPPER,
	F_LOWER,
	F_TRIM,
	F_REPLACEALL,
	F_SPLIT,
	F_JOIN,
	F_EQ,
	F_NE,
	F_NOT,
	F_AND,
	F_OR,
	F_LEN,
};

struct ct_pipe;

struct ct_arg {
	enum ct_argk k;
	size_t off;
	const char *s; /* A_STR: decoded literal; A_VAR: name */
	size_t n;
	long long i;           /* A_INT, A_BOOL; A_FUNC: enum ct_func; A_VAR: slot */
	struct ct_pipe *pipe;  /* A_PIPE */
	struct ct_name *chain; /* A_FIELD, A_VAR, A_PIPE: the fields that follow */
	size_t nchain;
};

struct ct_cmd {
	size_t off;
	struct ct_arg *args;
	size_t nargs;
	size_t secret; /* F_SECRET: index of the distinct call */
};

struct ct_pipe {
	size_t off;
	int ndecl;
	bool assign;
	size_t decl[2];
	struct ct_cmd *cmds;
	size_t ncmds;
};

enum ct_nodek { N_TEXT, N_ACTION, N_IF, N_WITH, N_RANGE };

struct ct_node {
	enum ct_nodek k;
	size_t off;
	const char *s; /* N_TEXT */
	size_t n;
	struct ct_pipe *pipe;
	struct ct_node *body, *else_body;
	size_t slot_first, body_slot_first, slot_end; /* slots declared inside */
	struct ct_node *next;
};

struct ct_secret {
	char *path;
	char **params;
	size_t nparams;
};

struct ctmpl {
	char *text;
	size_t len;
	struct ct_node *root;
	struct ct_secret secrets[CTMPL_MAX_SECRETS];
	size_t nsecrets;
	size_t nslots;
	void **allocs; /* every block of the tree, freed together */
	size_t nallocs, capallocs;
};

static void ct_vfmt(char *err, size_t errlen, const char *text, size_t off,
                    const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

/* "line L, column C: " + message, the position counted in bytes from 1. */
static void ct_vfmt(char *err, size_t errlen, const char *text, size_t off,
                    const char *fmt, va_list ap)
{
	size_t line = 1, col = 1, i;
	int n;

	if (!err || errlen == 0)
		return;
	for (i = 0; i < off; i++) {
		if (text[i] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	n = snprintf(err, errlen, "line %zu, column %zu: ", line, col);
	if (n >= 0 && (size_t)n < errlen)
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}

/* A name from the template for a message: printable ASCII, cut short. */
static const char *ct_shown(char *dst, size_t dstlen, const char *s, size_t n)
{
	size_t i, keep = n < dstlen - 4 ? n : dstlen - 4;

	for (i = 0; i < keep; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[i] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
	}
	if (keep < n) {
		memcpy(dst + i, "...", 3);
		i += 3;
	}
	dst[i] = '\0';
	return dst;
}

/* ---------------------------------------------------------------------- */
/* Parser                                                                  */

struct ct_var {
	const char *s;
	size_t n;
	size_t slot;
};

struct ct_parser {
	struct ctmpl *t;
	struct ct_tok *toks;
	size_t ntoks, captoks, i;
	struct ct_var vars[CT_MAX_VARS];
	size_t nvars;
	int depth;
	char *err;
	size_t errlen;
	int rc;
};

static int perr(struct ct_parser *p, size_t off, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int perr(struct ct_parser *p, size_t off, int rc, const char *fmt, ...)
{
	va_list ap;

	if (p->rc == 0) {
		va_start(ap, fmt);
		ct_vfmt(p->err, p->errlen, p->t->text, off, fmt, ap);
		va_end(ap);
		p->rc = rc;
	}
	return p->rc;
}

static void *ct_new(struct ct_parser *p, size_t size)
{
	struct ctmpl *t = p->t;
	void *b;

	if (t->nallocs >= CTMPL_MAX_NODES) {
		perr(p, p->i < p->ntoks ? p->toks[p->i].off : 0, SFS_ETOOBIG,
		     "template has more than %d parts", CTMPL_MAX_NODES);
		return NULL;
	}
	if (t->nallocs == t->capallocs) {
		size_t cap = t->capallocs ? t->capallocs * 2 : 64;
		void **a = realloc(t->allocs, cap * sizeof(*a));
		if (!a) {
			perr(p, 0, SFS_ENOMEM, "out of memory");
			return NULL;
		}
		t->allocs = a;
		t->capallocs = cap;
	}
	b = calloc(1, size ? size : 1);
	if (!b) {
		perr(p, 0, SFS_ENOMEM, "out of memory");
		return NULL;
	}
	t->allocs[t->nallocs++] = b;
	return b;
}

static bool ct_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool ct_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool ct_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool ct_alnum(char c)
{
	return ct_alpha(c) || ct_digit(c);
}

/* "-" and a space right after "{{": trim the text before. */
static bool ct_left_trim_at(const char *s, size_t n, size_t i)
{
	return i + 1 < n && s[i] == '-' && ct_space(s[i + 1]);
}

/* The closing delimiter at i: 0 none, 1 "}}", 2 " -}}" (trim the text after). */
static int ct_right_at(const char *s, size_t n, size_t i)
{
	if (i + 4 <= n && ct_space(s[i]) && s[i + 1] == '-' && s[i + 2] == '}' &&
	    s[i + 3] == '}')
		return 2;
	if (i + 2 <= n && s[i] == '}' && s[i + 1] == '}')
		return 1;
	return 0;
}

/* What may follow a name, as Go's atTerminator. */
static bool ct_terminator(const char *s, size_t n, size_t i)
{
	if (i >= n || ct_space(s[i]) || ct_right_at(s, n, i))
		return true;
	return strchr(".,|:()", s[i]) != NULL;
}

static int ct_push(struct ct_parser *p, enum ct_tokk k, size_t off, size_t len)
{
	if (p->ntoks + 1 >= CT_MAX_TOKENS)
		return perr(p, off, SFS_ETOOBIG, "template has more than %d tokens",
		            CT_MAX_TOKENS);
	if (p->ntoks + 1 >= p->captoks) {
		size_t cap = p->captoks ? p->captoks * 2 : 256;
		struct ct_tok *a = realloc(p->toks, cap * sizeof(*a));
		if (!a)
			return perr(p, 0, SFS_ENOMEM, "out of memory");
		p->toks = a;
		p->captoks = cap;
	}
	p->toks[p->ntoks].k = k;
	p->toks[p->ntoks].off = off;
	p->toks[p->ntoks].len = len;
	p->ntoks++;
	return 0;
}

/* One token inside an action, at *ip (not at a closing delimiter). */
static int ct_lex_token(struct ct_parser *p, size_t start, size_t *ip)
{
	const char *s = p->t->text;
	size_t n = p->t->len, i = *ip, b = i;
	char c = s[i];
	char shown[8];

	if (ct_space(c)) {
		while (i < n && ct_space(s[i]) && !ct_right_at(s, n, i))
			i++;
		*ip = i;
		return ct_push(p, T_SPACE, b, i - b);
	}
	switch (c) {
	case '|':
	case '(':
	case ')':
	case ',':
	case '=':
		*ip = i + 1;
		return ct_push(p,
		               c == '|'   ? T_PIPE
		               : c == '(' ? T_LPAREN
		               : c == ')' ? T_RPAREN
		               : c == ',' ? T_COMMA
		                          : T_ASSIGN,
		               b, 1);
	case ':':
		if (i + 1 < n && s[i + 1] == '=') {
			*ip = i + 2;
			return ct_push(p, T_DECLARE, b, 2);
		}
		return perr(p, b, SFS_EINVAL, "expected :=");
	case '"':
		for (i++; i < n && s[i] != '"'; i++) {
			if (s[i] == '\\' && i + 1 < n && s[i + 1] != '\n')
				i++;
			if (s[i] == '\n')
				break;
		}
		if (i >= n || s[i] != '"')
			return perr(p, b, SFS_EINVAL, "unterminated quoted string");
		*ip = i + 1;
		return ct_push(p, T_STRING, b, i + 1 - b);
	case '`': {
		const char *e = memchr(s + i + 1, '`', n - i - 1);
		if (!e)
			return perr(p, b, SFS_EINVAL, "unterminated raw quoted string");
		*ip = (size_t)(e - s) + 1;
		return ct_push(p, T_RAW, b, *ip - b);
	}
	case '\'':
		return perr(p, b, SFS_EINVAL, "character constants are not supported");
	case '$':
	case '.':
		if (c == '.' && i + 1 < n && ct_digit(s[i + 1]))
			return perr(
			    p, b, SFS_EINVAL,
			    "number syntax not supported (only decimal integers)");
		for (i++; i < n && ct_alnum(s[i]); i++)
			;
		if (!ct_terminator(s, n, i))
			return perr(p, i, SFS_EINVAL, "bad character in name");
		*ip = i;
		return ct_push(p, c == '$' ? T_VAR : (i - b == 1 ? T_DOT : T_FIELD), b,
		               i - b);
	default:
		break;
	}
	if (c == '+' || c == '-' || ct_digit(c)) {
		if (c == '+' || c == '-')
			i++;
		if (i >= n || !ct_digit(s[i]))
			return perr(p, b, SFS_EINVAL, "bad number syntax");
		while (i < n && ct_digit(s[i]))
			i++;
		if (i < n && (ct_alnum(s[i]) || s[i] == '.'))
			return perr(
			    p, b, SFS_EINVAL,
			    "number syntax not supported (only decimal integers)");
		if (i - b > 18)
			return perr(p, b, SFS_EINVAL, "number too large");
		*ip = i;
		return ct_push(p, T_NUMBER, b, i - b);
	}
	if (ct_alpha(c)) {
		while (i < n && ct_alnum(s[i]))
			i++;
		if (!ct_terminator(s, n, i))
			return perr(p, i, SFS_EINVAL, "bad character in name");
		*ip = i;
		return ct_push(p, T_IDENT, b, i - b);
	}
	(void)start;
	if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
		snprintf(shown, sizeof shown, "'%c'", c);
	else
		snprintf(shown, sizeof shown, "0x%02x", (unsigned char)c);
	return perr(p, b, SFS_EINVAL, "unexpected character %s in action", shown);
}

/* Splits the text into tokens, as Go's lexer; ends with T_EOF. */
static int ct_lex(struct ct_parser *p)
{
	const char *s = p->t->text;
	size_t n = p->t->len, i = 0;

	while (p->rc == 0) {
		const char *x = i < n ? memmem(s + i, n - i, "{{", 2) : NULL;
		size_t at = x ? (size_t)(x - s) : n, tend = at, start;
		int rd;

		if (x && ct_left_trim_at(s, n, at + 2))
			while (tend > i && ct_space(s[tend - 1]))
				tend--;
		if (tend > i && ct_push(p, T_TEXT, i, tend - i))
			break;
		if (!x)
			break;
		start = at;
		i = at + 2;
		if (ct_left_trim_at(s, n, i))
			i += 2;
		if (i + 2 <= n && s[i] == '/' && s[i + 1] == '*') {
			const char *e = memmem(s + i + 2, n - i - 2, "*/", 2);
			if (!e)
				return perr(p, start, SFS_EINVAL, "unclosed comment");
			i = (size_t)(e - s) + 2;
			rd = ct_right_at(s, n, i);
			if (!rd)
				return perr(p, start, SFS_EINVAL,
				            "comment ends before closing delimiter");
			i += rd == 2 ? 4 : 2;
			if (rd == 2)
				while (i < n && ct_space(s[i]))
					i++;
			continue;
		}
		if (ct_push(p, T_LEFT, start, 2))
			break;
		for (;;) {
			rd = ct_right_at(s, n, i);
			if (rd) {
				if (ct_push(p, T_RIGHT, i, rd == 2 ? 4 : 2))
					return p->rc;
				i += rd == 2 ? 4 : 2;
				if (rd == 2)
					while (i < n && ct_space(s[i]))
						i++;
				break;
			}
			if (i >= n)
				return perr(p, start, SFS_EINVAL, "unclosed action");
			if (ct_lex_token(p, start, &i))
				return p->rc;
		}
	}
	if (p->rc == 0)
		ct_push(p, T_EOF, n, 0);
	return p->rc;
}

static struct ct_tok *tk_peek(struct ct_parser *p)
{
	return &p->toks[p->i];
}

static struct ct_tok *tk_next(struct ct_parser *p)
{
	struct ct_tok *t = &p->toks[p->i];

	if (t->k != T_EOF)
		p->i++;
	return t;
}

static struct ct_tok *tk_peek_ns(struct ct_parser *p)
{
	while (p->toks[p->i].k == T_SPACE)
		p->i++;
	return &p->toks[p->i];
}

static bool tk_is(const struct ct_parser *p, const struct ct_tok *t, const char *word)
{
	size_t n = strlen(word);
	return t->k == T_IDENT && t->len == n &&
	       memcmp(p->t->text + t->off, word, n) == 0;
}

static const char *tk_what(const struct ct_tok *t)
{
	switch (t->k) {
	case T_EOF:
		return "end of template";
	case T_TEXT:
		return "text";
	case T_LEFT:
		return "{{";
	case T_RIGHT:
		return "}}";
	case T_SPACE:
		return "space";
	case T_PIPE:
		return "|";
	case T_LPAREN:
		return "(";
	case T_RPAREN:
		return ")";
	case T_COMMA:
		return ",";
	case T_DECLARE:
		return ":=";
	case T_ASSIGN:
		return "=";
	case T_STRING:
	case T_RAW:
		return "string";
	case T_NUMBER:
		return "number";
	case T_DOT:
		return ".";
	case T_FIELD:
		return "field";
	case T_VAR:
		return "variable";
	case T_IDENT:
		return "identifier";
	}
	return "token";
}

struct ct_funcdef {
	const char *name;
	enum ct_func id;
	int min, max; /* arguments, the piped value included; max -1: variadic */
};

static const struct ct_funcdef ct_funcs[] = {
    {"secret", F_SECRET, 1, CTMPL_MAX_ARGS},
    {"index", F_INDEX, 1, CTMPL_MAX_ARGS},
    {"printf", F_PRINTF, 1, CTMPL_MAX_ARGS},
    {"toJSON", F_TOJSON, 1, 1},
    {"toJSONPretty", F_TOJSONPRETTY, 1, 1},
    {"base64Encode", F_B64ENC, 1, 1},
    {"base64Decode", F_B64DEC, 1, 1},
    {"toUpper", F_UPPER, 1, 1},
    {"toLower", F_LOWER, 1, 1},
    {"trimSpace", F_TRIM, 1, 1},
    {"replaceAll", F_REPLACEALL, 3, 3},
    {"split", F_SPLIT, 2, 2},
    {"join", F_JOIN, 2, 2},
    {"eq", F_EQ, 2, CTMPL_MAX_ARGS},
    {"ne", F_NE, 2, 2},
    {"not", F_NOT, 1, 1},
    {"and", F_AND, 1, CTMPL_MAX_ARGS},
    {"or", F_OR, 1, CTMPL_MAX_ARGS},
    {"len", F_LEN, 1, 1},
};

/* consul-template's and Go's other functions: named as unsupported rather
 * than unknown. */
static const char *const ct_unsupported[] = {
    "base64URLDecode",
    "base64URLEncode",
    "byKey",
    "byMeta",
    "byTag",
    "caLeaf",
    "caRoot",
    "connect",
    "contains",
    "containsAll",
    "containsAny",
    "containsNone",
    "containsNotAll",
    "datacenters",
    "divide",
    "executeTemplate",
    "explode",
    "explodeMap",
    "file",
    "in",
    "indent",
    "key",
    "keyExists",
    "keyOrDefault",
    "loop",
    "ls",
    "add",
    "subtract",
    "modulo",
    "multiply",
    "maximum",
    "minimum",
    "mergeMap",
    "mergeMapWithOverride",
    "node",
    "nodes",
    "parseBool",
    "parseFloat",
    "parseInt",
    "parseJSON",
    "parseUint",
    "parseYAML",
    "pkiCert",
    "plugin",
    "regexMatch",
    "regexReplaceAll",
    "safeLs",
    "safeTree",
    "scratch",
    "secrets",
    "service",
    "services",
    "sha256Hex",
    "md5sum",
    "sockaddr",
    "spew_dump",
    "spew_printf",
    "spew_sdump",
    "spew_sprintf",
    "timestamp",
    "toTitle",
    "toTOML",
    "toYAML",
    "tree",
    "writeToFile",
    "sprig_env",
    "envOrDefault",
    "mustEnv",
    "print",
    "println",
    "html",
    "js",
    "urlquery",
    "slice",
    "call",
    "lt",
    "le",
    "gt",
    "ge",
    "hmacSHA256Hex",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "byKey",
    "nomadVar",
    "nomadVarList",
    "nomadVarExists",
    "nomadService",
    "nomadServices",
    "partitions",
    "peerings",
    "exportedServices",
};

/* Registers (or finds) a secret call with literal arguments. */
static int ct_add_secret(struct ct_parser *p, struct ct_cmd *cmd)
{
	struct ctmpl *t = p->t;
	const struct ct_arg *a = cmd->args;
	size_t np = cmd->nargs - 2, i, j;
	const char *params[CTMPL_MAX_PARAMS];
	struct ct_secret *sec;

	for (i = 1; i < cmd->nargs; i++) {
		if (a[i].k != A_STR)
			return perr(p, a[i].off, SFS_EINVAL,
			            "secret takes its path and \"key=value\" parameters "
			            "as string literals");
		if (memchr(a[i].s, '\0', a[i].n))
			return perr(p, a[i].off, SFS_EINVAL,
			            "secret argument holds a NUL byte");
	}
	if (a[1].n == 0)
		return perr(p, a[1].off, SFS_EINVAL, "secret path is empty");
	if (np > CTMPL_MAX_PARAMS)
		return perr(p, a[1].off, SFS_ETOOBIG,
		            "secret has more than %d parameters", CTMPL_MAX_PARAMS);
	for (i = 0; i < np; i++) {
		const char *eq = memchr(a[i + 2].s, '=', a[i + 2].n);
		if (!eq || eq == a[i + 2].s)
			return perr(p, a[i + 2].off, SFS_EINVAL,
			            "secret parameter is not of the form \"key=value\"");
		params[i] = a[i + 2].s;
	}
	/* Insertion sort by key, refusing a key given twice. */
	for (i = 1; i < np; i++)
		for (j = i; j > 0 && strcmp(params[j - 1], params[j]) > 0; j--) {
			const char *x = params[j];
			params[j] = params[j - 1];
			params[j - 1] = x;
		}
	for (i = 1; i < np; i++) {
		size_t k1 = (size_t)(strchr(params[i - 1], '=') - params[i - 1]);
		size_t k2 = (size_t)(strchr(params[i], '=') - params[i]);
		if (k1 == k2 && memcmp(params[i - 1], params[i], k1) == 0)
			return perr(p, a[1].off, SFS_EINVAL,
			            "secret parameter key given twice");
	}
	for (i = 0; i < t->nsecrets; i++) {
		sec = &t->secrets[i];
		if (strcmp(sec->path, a[1].s) != 0 || sec->nparams != np)
			continue;
		for (j = 0; j < np && strcmp(sec->params[j], params[j]) == 0; j++)
			;
		if (j == np) {
			cmd->secret = i;
			return 0;
		}
	}
	if (t->nsecrets >= CTMPL_MAX_SECRETS)
		return perr(p, a[1].off, SFS_ETOOBIG,
		            "template names more than %d secrets", CTMPL_MAX_SECRETS);
	sec = &t->secrets[t->nsecrets];
	sec->path = (char *)a[1].s;
	sec->params = ct_new(p, (np ? np : 1) * sizeof(char *));
	if (!sec->params)
		return p->rc;
	for (i = 0; i < np; i++)
		sec->params[i] = (char *)params[i];
	sec->nparams = np;
	cmd->secret = t->nsecrets++;
	return 0;
}

/* printf's format: a literal of %s %d %v %q and %% whose verbs match nverbs. */
static int ct_check_printf(struct ct_parser *p, const struct ct_arg *f, size_t nvals)
{
	size_t i, verbs = 0;

	if (f->k != A_STR)
		return perr(p, f->off, SFS_EINVAL,
		            "printf format must be a string literal");
	for (i = 0; i < f->n; i++) {
		if (f->s[i] != '%')
			continue;
		if (i + 1 >= f->n)
			return perr(p, f->off, SFS_EINVAL, "printf format ends with %%");
		i++;
		if (f->s[i] == '%')
			continue;
		if (!strchr("sdvq", f->s[i]) || f->s[i] == '\0')
			return perr(
			    p, f->off, SFS_EINVAL,
			    "printf supports only the verbs %%s %%d %%v %%q and %%%% (no "
			    "flags, width or precision)");
		verbs++;
	}
	if (verbs != nvals)
		return perr(p, f->off, SFS_EINVAL,
		            "printf format has %zu verbs for %zu values", verbs, nvals);
	return 0;
}

static int ct_check_call(struct ct_parser *p, struct ct_cmd *cmd, size_t stage)
{
	const struct ct_funcdef *f = NULL;
	size_t i, nargs = cmd->nargs - 1 + (stage > 0);

	for (i = 0; i < sizeof ct_funcs / sizeof ct_funcs[0]; i++)
		if (ct_funcs[i].id == (enum ct_func)cmd->args[0].i)
			f = &ct_funcs[i];
	if (nargs < (size_t)f->min || nargs > (size_t)f->max)
		return perr(p, cmd->off, SFS_EINVAL,
		            "wrong number of arguments for %s: want %s%d, got %zu",
		            f->name, f->min == f->max ? "" : "at least ", f->min, nargs);
	if (f->id == F_SECRET) {
		if (stage > 0)
			return perr(
			    p, cmd->off, SFS_EINVAL,
			    "secret takes its path as a string literal, not from a pipe");
		return ct_add_secret(p, cmd);
	}
	if (f->id == F_PRINTF) {
		if (cmd->nargs < 2)
			return perr(p, cmd->off, SFS_EINVAL,
			            "printf format must be a string literal");
		return ct_check_printf(p, &cmd->args[1], nargs - 1);
	}
	return 0;
}

static struct ct_pipe *ct_parse_pipe(struct ct_parser *p, enum ct_nodek ctx,
                                     enum ct_tokk endk);

/* Adjacent .field tokens after a term. */
static int ct_parse_chain(struct ct_parser *p, struct ct_arg *a,
                          const struct ct_tok *first)
{
	struct ct_name names[CT_MAX_CHAIN];
	size_t n = 0;

	if (first) {
		names[n].s = p->t->text + first->off + 1;
		names[n++].n = first->len - 1;
	}
	while (tk_peek(p)->k == T_FIELD) {
		struct ct_tok *f = tk_next(p);
		if (n >= CT_MAX_CHAIN)
			return perr(p, f->off, SFS_ETOOBIG,
			            "more than %d fields in a chain", CT_MAX_CHAIN);
		names[n].s = p->t->text + f->off + 1;
		names[n++].n = f->len - 1;
	}
	if (n == 0)
		return 0;
	a->chain = ct_new(p, n * sizeof(*names));
	if (!a->chain)
		return p->rc;
	memcpy(a->chain, names, n * sizeof(*names));
	a->nchain = n;
	return 0;
}

static int ct_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static size_t ct_utf8_put(char *d, uint32_t r)
{
	if (r < 0x80) {
		d[0] = (char)r;
		return 1;
	}
	if (r < 0x800) {
		d[0] = (char)(0xc0 | (r >> 6));
		d[1] = (char)(0x80 | (r & 0x3f));
		return 2;
	}
	if (r < 0x10000) {
		d[0] = (char)(0xe0 | (r >> 12));
		d[1] = (char)(0x80 | ((r >> 6) & 0x3f));
		d[2] = (char)(0x80 | (r & 0x3f));
		return 3;
	}
	d[0] = (char)(0xf0 | (r >> 18));
	d[1] = (char)(0x80 | ((r >> 12) & 0x3f));
	d[2] = (char)(0x80 | ((r >> 6) & 0x3f));
	d[3] = (char)(0x80 | (r & 0x3f));
	return 4;
}

/*
 * Decodes one UTF-8 sequence of s[0..n) as Go's utf8.DecodeRune: returns its
 * length and the rune, or length 1 and -1 when invalid.
 */
static size_t ct_utf8_dec(const unsigned char *s, size_t n, int32_t *r)
{
	unsigned char c = s[0];
	size_t len, i;
	uint32_t v, min;
	unsigned char lo = 0x80, hi = 0xbf;

	*r = -1;
	if (c < 0x80) {
		*r = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, v = c & 0x0f, min = 0x800;
		if (c == 0xe0)
			lo = 0xa0;
		if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, v = c & 0x07, min = 0x10000;
		if (c == 0xf0)
			lo = 0x90;
		if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 1;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 1;
	for (i = 1; i < len; i++) {
		if (i > 1 && (s[i] < 0x80 || s[i] > 0xbf))
			return 1;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min)
		return 1;
	*r = (int32_t)v;
	return len;
}

static bool ct_utf8_valid(const char *s, size_t n)
{
	size_t i = 0;
	int32_t r;

	while (i < n) {
		i += ct_utf8_dec((const unsigned char *)s + i, n - i, &r);
		if (r < 0)
			return false;
	}
	return true;
}

/* A string literal's value, as strconv.Unquote. */
static int ct_unquote(struct ct_parser *p, const struct ct_tok *tk, struct ct_arg *a)
{
	const char *s = p->t->text + tk->off + 1;
	size_t n = tk->len - 2, i, o = 0;
	char *d = ct_new(p, n + 1);

	if (!d)
		return p->rc;
	for (i = 0; i < n; i++) {
		char c = s[i];
		uint32_t r = 0;
		int digits = 0, k;

		if (tk->k == T_RAW || c != '\\') {
			if (!(tk->k == T_RAW && c == '\r'))
				d[o++] = c;
			continue;
		}
		c = s[++i];
		switch (c) {
		case 'a':
			d[o++] = '\a';
			continue;
		case 'b':
			d[o++] = '\b';
			continue;
		case 'f':
			d[o++] = '\f';
			continue;
		case 'n':
			d[o++] = '\n';
			continue;
		case 'r':
			d[o++] = '\r';
			continue;
		case 't':
			d[o++] = '\t';
			continue;
		case 'v':
			d[o++] = '\v';
			continue;
		case '\\':
		case '"':
			d[o++] = c;
			continue;
		case 'x':
			digits = 2;
			break;
		case 'u':
			digits = 4;
			break;
		case 'U':
			digits = 8;
			break;
		default:
			if (c >= '0' && c <= '7' && i + 2 < n && s[i + 1] >= '0' &&
			    s[i + 1] <= '7' && s[i + 2] >= '0' && s[i + 2] <= '7') {
				r = (uint32_t)((c - '0') * 64 + (s[i + 1] - '0') * 8 +
				               (s[i + 2] - '0'));
				if (r > 255)
					return perr(p, tk->off, SFS_EINVAL,
					            "bad octal escape in string");
				d[o++] = (char)r;
				i += 2;
				continue;
			}
			return perr(p, tk->off, SFS_EINVAL,
			            "unknown escape sequence in string");
		}
		if (i + (size_t)digits >= n)
			return perr(p, tk->off, SFS_EINVAL,
			            "bad escape sequence in string");
		for (k = 0; k < digits; k++) {
			int h = ct_hexval(s[i + 1 + (size_t)k]);
			if (h < 0)
				return perr(p, tk->off, SFS_EINVAL,
				            "bad escape sequence in string");
			r = r * 16 + (uint32_t)h;
		}
		i += (size_t)digits;
		if (c == 'x') {
			d[o++] = (char)r;
		} else {
			if (r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff))
				return perr(p, tk->off, SFS_EINVAL,
				            "bad unicode escape in string");
			o += ct_utf8_put(d + o, r);
		}
	}
	d[o] = '\0';
	if (!ct_utf8_valid(d, o) && tk->k == T_RAW)
		return perr(p, tk->off, SFS_EINVAL, "string literal is not valid UTF-8");
	a->s = d;
	a->n = o;
	return 0;
}

static int ct_lookup_var(struct ct_parser *p, const struct ct_tok *tk, size_t *slot)
{
	const char *s = p->t->text + tk->off;
	char shown[64];
	size_t i;

	for (i = p->nvars; i-- > 0;)
		if (p->vars[i].n == tk->len && memcmp(p->vars[i].s, s, tk->len) == 0) {
			*slot = p->vars[i].slot;
			return 0;
		}
	return perr(p, tk->off, SFS_EINVAL, "undefined variable \"%s\"",
	            ct_shown(shown, sizeof shown, s, tk->len));
}

static int ct_parse_ident(struct ct_parser *p, const struct ct_tok *tk, struct ct_arg *a)
{
	static const char *const keywords[] = {"if",       "else",     "end",   "range",
	                                       "with",     "define",   "block", "break",
	                                       "continue", "template", "nil"};
	const char *s = p->t->text + tk->off;
	char shown[64];
	size_t i;

	ct_shown(shown, sizeof shown, s, tk->len);
	if (tk_is(p, tk, "true") || tk_is(p, tk, "false")) {
		a->k = A_BOOL;
		a->i = tk_is(p, tk, "true");
		return 0;
	}
	if (tk_is(p, tk, "env"))
		return perr(
		    p, tk->off, SFS_EINVAL,
		    "function \"env\" is refused: a template must not read secretfs's "
		    "environment");
	for (i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
		if (tk_is(p, tk, keywords[i]))
			return perr(p, tk->off, SFS_EINVAL,
			            "unexpected \"%s\" in operand", shown);
	for (i = 0; i < sizeof ct_funcs / sizeof ct_funcs[0]; i++)
		if (tk_is(p, tk, ct_funcs[i].name)) {
			a->k = A_FUNC;
			a->i = ct_funcs[i].id;
			return 0;
		}
	for (i = 0; i < sizeof ct_unsupported / sizeof ct_unsupported[0]; i++)
		if (tk_is(p, tk, ct_unsupported[i]))
			return perr(p, tk->off, SFS_EINVAL,
			            "function \"%s\" is not supported by secretfs's "
			            "consul-template "
			            "subset",
			            shown);
	return perr(p, tk->off, SFS_EINVAL, "function \"%s\" not defined", shown);
}

static int ct_parse_operand(struct ct_parser *p, struct ct_arg *a)
{
	struct ct_tok *tk = tk_next(p);
	size_t n;

	a->off = tk->off;
	switch (tk->k) {
	case T_DOT:
		a->k = A_DOT;
		break;
	case T_FIELD:
		a->k = A_FIELD;
		return ct_parse_chain(p, a, tk);
	case T_VAR:
		a->k = A_VAR;
		a->s = p->t->text + tk->off;
		a->n = tk->len;
		if (ct_lookup_var(p, tk, &n))
			return p->rc;
		a->i = (long long)n;
		return ct_parse_chain(p, a, NULL);
	case T_STRING:
	case T_RAW:
		a->k = A_STR;
		if (ct_unquote(p, tk, a))
			return p->rc;
		break;
	case T_NUMBER:
		a->k = A_INT;
		a->i = strtoll(p->t->text + tk->off, NULL, 10);
		break;
	case T_IDENT:
		if (ct_parse_ident(p, tk, a))
			return p->rc;
		break;
	case T_LPAREN:
		if (++p->depth > CTMPL_MAX_DEPTH)
			return perr(p, tk->off, SFS_ETOOBIG, "nesting deeper than %d",
			            CTMPL_MAX_DEPTH);
		a->k = A_PIPE;
		a->pipe = ct_parse_pipe(p, N_ACTION, T_RPAREN);
		p->depth--;
		if (!a->pipe)
			return p->rc;
		return ct_parse_chain(p, a, NULL);
	default:
		return perr(p, tk->off, SFS_EINVAL, "unexpected %s in operand",
		            tk_what(tk));
	}
	if (tk_peek(p)->k == T_FIELD)
		return perr(
		    p, tk_peek(p)->off, SFS_EINVAL,
		    "unexpected . after term (put a function call in parentheses)");
	return 0;
}

static int ct_parse_cmd(struct ct_parser *p, struct ct_cmd *cmd, enum ct_tokk endk,
                        size_t stage)
{
	struct ct_arg args[CTMPL_MAX_ARGS + 1];
	size_t na = 0, i;
	struct ct_tok *tk;

	memset(args, 0, sizeof args);
	cmd->off = tk_peek(p)->off;
	for (;;) {
		if (na > CTMPL_MAX_ARGS)
			return perr(p, tk_peek(p)->off, SFS_ETOOBIG,
			            "more than %d arguments in a command",
			            CTMPL_MAX_ARGS);
		if (ct_parse_operand(p, &args[na++]))
			return p->rc;
		tk = tk_peek(p);
		if (tk->k == T_SPACE) {
			tk = tk_peek_ns(p);
			if (tk->k == endk || tk->k == T_PIPE)
				break;
			continue;
		}
		if (tk->k == endk || tk->k == T_PIPE)
			break;
		if (tk->k == T_RIGHT || tk->k == T_RPAREN || tk->k == T_EOF)
			return perr(p, tk->off, SFS_EINVAL, "unexpected %s", tk_what(tk));
		return perr(p, tk->off, SFS_EINVAL, "unexpected %s in operand",
		            tk_what(tk));
	}
	cmd->args = ct_new(p, na * sizeof(*args));
	if (!cmd->args)
		return p->rc;
	memcpy(cmd->args, args, na * sizeof(*args));
	cmd->nargs = na;
	for (i = 1; i < na; i++)
		if (args[i].k == A_FUNC)
			return perr(p, args[i].off, SFS_EINVAL,
			            "a function used as an argument must be called in "
			            "parentheses");
	if (args[0].k == A_FUNC)
		return ct_check_call(p, cmd, stage);
	if (na > 1)
		return perr(p, args[1].off, SFS_EINVAL,
		            "can't give argument to non-function");
	if (stage > 0)
		return perr(p, cmd->off, SFS_EINVAL,
		            "non executable command in pipeline stage %zu", stage + 1);
	return 0;
}

static int ct_declare(struct ct_parser *p, const struct ct_tok *v, size_t *slot)
{
	struct ctmpl *t = p->t;

	if (p->nvars >= CT_MAX_VARS || t->nslots >= CT_MAX_SLOTS)
		return perr(p, v->off, SFS_ETOOBIG, "too many variables");
	*slot = t->nslots++;
	p->vars[p->nvars].s = t->text + v->off;
	p->vars[p->nvars].n = v->len;
	p->vars[p->nvars].slot = *slot;
	p->nvars++;
	return 0;
}

/*
 * [decl] command { "|" command } up to and including endk. ctx is N_ACTION,
 * N_IF, N_WITH or N_RANGE (only range takes two variables).
 */
static struct ct_pipe *ct_parse_pipe(struct ct_parser *p, enum ct_nodek ctx,
                                     enum ct_tokk endk)
{
	struct ct_cmd cmds[CT_MAX_CMDS];
	const struct ct_tok *decl[2] = {NULL, NULL};
	struct ct_pipe *pipe = ct_new(p, sizeof(*pipe));
	struct ct_tok *tk;
	size_t n = 0, save;
	int i;

	if (!pipe)
		return NULL;
	memset(cmds, 0, sizeof cmds);
	pipe->off = tk_peek_ns(p)->off;
	save = p->i;
	tk = tk_peek_ns(p);
	if (tk->k == T_VAR && p->toks[p->i + 1].k != T_FIELD) {
		struct ct_tok *a;
		decl[0] = tk_next(p);
		a = tk_peek_ns(p);
		if (a->k == T_DECLARE || a->k == T_ASSIGN) {
			pipe->ndecl = 1;
			pipe->assign = a->k == T_ASSIGN;
			tk_next(p);
		} else if (a->k == T_COMMA) {
			if (ctx != N_RANGE) {
				perr(p, a->off, SFS_EINVAL, "too many declarations");
				return NULL;
			}
			tk_next(p);
			if (tk_peek_ns(p)->k != T_VAR) {
				perr(p, tk_peek(p)->off, SFS_EINVAL,
				     "range can only initialize variables");
				return NULL;
			}
			decl[1] = tk_next(p);
			a = tk_peek_ns(p);
			if (a->k != T_DECLARE) {
				perr(p, a->off, SFS_EINVAL,
				     "expected := after range variables");
				return NULL;
			}
			tk_next(p);
			pipe->ndecl = 2;
		} else {
			decl[0] = NULL;
			p->i = save;
		}
	}
	for (i = 0; i < pipe->ndecl; i++)
		if (p->t->text[decl[i]->off] == '$' && decl[i]->len == 1) {
			perr(p, decl[i]->off, SFS_EINVAL,
			     "cannot declare or assign \"$\"");
			return NULL;
		}
	if (pipe->assign && ct_lookup_var(p, decl[0], &pipe->decl[0]))
		return NULL;
	for (;;) {
		tk = tk_peek_ns(p);
		if (tk->k == endk && n == 0) {
			perr(p, tk->off, SFS_EINVAL, "missing value");
			return NULL;
		}
		if (n >= CT_MAX_CMDS) {
			perr(p, tk->off, SFS_ETOOBIG,
			     "more than %d commands in a pipeline", CT_MAX_CMDS);
			return NULL;
		}
		if (ct_parse_cmd(p, &cmds[n], endk, n))
			return NULL;
		n++;
		tk = tk_next(p);
		if (tk->k == endk)
			break;
		/* A pipe: another command must follow. */
		if (tk_peek_ns(p)->k == endk) {
			perr(p, tk->off, SFS_EINVAL, "missing command after |");
			return NULL;
		}
	}
	pipe->cmds = ct_new(p, n * sizeof(*cmds));
	if (!pipe->cmds)
		return NULL;
	memcpy(pipe->cmds, cmds, n * sizeof(*cmds));
	pipe->ncmds = n;
	if (!pipe->assign)
		for (i = 0; i < pipe->ndecl; i++)
			if (ct_declare(p, decl[i], &pipe->decl[i]))
				return NULL;
	return pipe;
}

enum ct_term { TERM_EOF, TERM_END, TERM_ELSE };

static int ct_parse_list(struct ct_parser *p, struct ct_node **head, enum ct_term *term,
                         size_t *term_off);

static int ct_expect_right(struct ct_parser *p, const char *what)
{
	struct ct_tok *tk = tk_peek_ns(p);

	if (tk->k != T_RIGHT)
		return perr(p, tk->off, SFS_EINVAL, "unexpected %s in %s", tk_what(tk),
		            what);
	tk_next(p);
	return 0;
}

static struct ct_node *ct_parse_control(struct ct_parser *p, enum ct_nodek k, size_t off)
{
	static const char *const names[] = {"", "", "if", "with", "range"};
	struct ct_node *node = ct_new(p, sizeof(*node));
	size_t mark = p->nvars, term_off = 0;
	enum ct_term term;

	if (!node)
		return NULL;
	if (++p->depth > CTMPL_MAX_DEPTH) {
		perr(p, off, SFS_ETOOBIG, "nesting deeper than %d", CTMPL_MAX_DEPTH);
		return NULL;
	}
	node->k = k;
	node->off = off;
	node->slot_first = p->t->nslots;
	node->pipe = ct_parse_pipe(p, k, T_RIGHT);
	if (!node->pipe)
		return NULL;
	node->body_slot_first = p->t->nslots;
	if (ct_parse_list(p, &node->body, &term, &term_off))
		return NULL;
	if (term == TERM_ELSE) {
		struct ct_tok *tk = tk_peek_ns(p);
		if (tk_is(p, tk, "if") || tk_is(p, tk, "with")) {
			if (k != N_IF || !tk_is(p, tk, "if")) {
				perr(p, tk->off, SFS_EINVAL,
				     "{{else %s}} is not supported in {{%s}}",
				     tk_is(p, tk, "if") ? "if" : "with", names[k]);
				return NULL;
			}
			tk_next(p);
			/* {{else if}} shares the chain's single {{end}}. */
			node->else_body = ct_parse_control(p, N_IF, tk->off);
			if (!node->else_body)
				return NULL;
			term = TERM_END;
		} else {
			if (ct_expect_right(p, "else"))
				return NULL;
			if (ct_parse_list(p, &node->else_body, &term, &term_off))
				return NULL;
			if (term == TERM_ELSE) {
				perr(p, term_off, SFS_EINVAL, "expected end; found else");
				return NULL;
			}
		}
	}
	if (term != TERM_END) {
		perr(p, off, SFS_EINVAL, "unclosed {{%s}} (no matching {{end}})",
		     names[k]);
		return NULL;
	}
	p->nvars = mark;
	node->slot_end = p->t->nslots;
	p->depth--;
	return node;
}

static int ct_parse_list(struct ct_parser *p, struct ct_node **head, enum ct_term *term,
                         size_t *term_off)
{
	struct ct_node **tail = head;

	for (;;) {
		struct ct_tok *tk = tk_next(p), *kw;
		struct ct_node *node;
		size_t off = tk->off;
		char shown[32];

		if (tk->k == T_EOF) {
			*term = TERM_EOF;
			*term_off = off;
			return 0;
		}
		if (tk->k == T_TEXT) {
			node = ct_new(p, sizeof(*node));
			if (!node)
				return p->rc;
			node->k = N_TEXT;
			node->off = off;
			node->s = p->t->text + tk->off;
			node->n = tk->len;
			*tail = node;
			tail = &node->next;
			continue;
		}
		kw = tk_peek_ns(p);
		if (tk_is(p, kw, "end") || tk_is(p, kw, "else")) {
			*term = tk_is(p, kw, "end") ? TERM_END : TERM_ELSE;
			*term_off = kw->off;
			tk_next(p);
			if (*term == TERM_END && ct_expect_right(p, "end"))
				return p->rc;
			return 0;
		}
		if (tk_is(p, kw, "if") || tk_is(p, kw, "with") || tk_is(p, kw, "range")) {
			enum ct_nodek k = tk_is(p, kw, "if")     ? N_IF
			                  : tk_is(p, kw, "with") ? N_WITH
			                                         : N_RANGE;
			tk_next(p);
			node = ct_parse_control(p, k, kw->off);
			if (!node)
				return p->rc;
		} else if (tk_is(p, kw, "define") || tk_is(p, kw, "template") ||
		           tk_is(p, kw, "block") || tk_is(p, kw, "break") ||
		           tk_is(p, kw, "continue")) {
			return perr(
			    p, kw->off, SFS_EINVAL, "{{%s}} is not supported",
			    ct_shown(shown, sizeof shown, p->t->text + kw->off, kw->len));
		} else {
			node = ct_new(p, sizeof(*node));
			if (!node)
				return p->rc;
			node->k = N_ACTION;
			node->off = kw->off;
			node->pipe = ct_parse_pipe(p, N_ACTION, T_RIGHT);
			if (!node->pipe)
				return p->rc;
		}
		*tail = node;
		tail = &node->next;
	}
}

void ctmpl_free(struct ctmpl *t)
{
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->nallocs; i++)
		free(t->allocs[i]);
	free(t->allocs);
	free(t->text);
	free(t);
}

int ctmpl_parse(const char *text, size_t len, struct ctmpl **out, char *err,
                size_t errlen)
{
	struct ct_parser p;
	struct ctmpl *t;
	enum ct_term term;
	size_t term_off = 0;

	if (err && errlen)
		err[0] = '\0';
	if (!text || !out)
		return SFS_EINVAL;
	if (len > CTMPL_MAX_TEXT) {
		snprintf(err, errlen, "template is larger than %d bytes", CTMPL_MAX_TEXT);
		return SFS_ETOOBIG;
	}
	t = calloc(1, sizeof(*t));
	if (!t || !(t->text = malloc(len + 1))) {
		free(t);
		snprintf(err, errlen, "out of memory");
		return SFS_ENOMEM;
	}
	memcpy(t->text, text, len);
	t->text[len] = '\0';
	t->len = len;
	memset(&p, 0, sizeof p);
	p.t = t;
	p.err = err;
	p.errlen = errlen;
	/* Slot 0 is "$", the data the template starts with (none). */
	t->nslots = 1;
	p.vars[0].s = "$";
	p.vars[0].n = 1;
	p.nvars = 1;
	if (ct_lex(&p) == 0 && ct_parse_list(&p, &t->root, &term, &term_off) == 0 &&
	    term != TERM_EOF)
		perr(&p, term_off, SFS_EINVAL, "unexpected {{%s}}",
		     term == TERM_END ? "end" : "else");
	free(p.toks);
	if (p.rc) {
		ctmpl_free(t);
		return p.rc;
	}
	*out = t;
	return 0;
}

size_t ctmpl_secret_count(const struct ctmpl *t)
{
	return t ? t->nsecrets : 0;
}

int ctmpl_secret_at(const struct ctmpl *t, size_t i, const char **path,
                    const char *const **params, size_t *nparams)
{
	if (!t || i >= t->nsecrets)
		return SFS_EINVAL;
	*path = t->secrets[i].path;
	*params = (const char *const *)t->secrets[i].params;
	*nparams = t->secrets[i].nparams;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Values and evaluation                                                   */

/*
 * A value as text/template sees it. CV_NIL is an interface{} holding nil (a
 * JSON null, or a missing key under missingkey=zero); CV_INVALID is no value
 * at all (what a pipeline makes of CV_NIL, and the template's data). JSON
 * numbers are json.Number: strings of their text.
 */
enum cv_kind {
	CV_INVALID,
	CV_NIL,
	CV_STR,
	CV_NUM,
	CV_INT,
	CV_BOOL,
	CV_MAP,
	CV_LIST,
	CV_STRLIST,
	CV_SECRET
};

struct cv_str {
	const char *s;
	size_t n;
};

struct cv {
	enum cv_kind k;
	const char *s;             /* CV_STR */
	size_t n;                  /* CV_STR; CV_STRLIST: count */
	long long i;               /* CV_INT, CV_BOOL; CV_SECRET: index */
	const json_t *j;           /* CV_NUM, CV_LIST, CV_MAP (NULL: a nil map) */
	const struct cv_str *list; /* CV_STRLIST */
};

static const char *cv_type(const struct cv *v)
{
	static const char *const names[] = {"nil",
	                                    "interface {}",
	                                    "string",
	                                    "json.Number",
	                                    "int",
	                                    "bool",
	                                    "map[string]interface {}",
	                                    "[]interface {}",
	                                    "[]string",
	                                    "*dependency.Secret"};
	return names[v->k];
}

struct ct_exec {
	const struct ctmpl *t;
	const json_t *const *secrets;
	struct secbuf *out;
	struct cv *vars;
	unsigned char *set;
	size_t steps, scratch;
	void **blocks;
	size_t nblocks, capblocks;
	char *err;
	size_t errlen;
	bool errset;
};

static int xerr(struct ct_exec *c, size_t off, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int xerr(struct ct_exec *c, size_t off, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!c->errset) {
		va_start(ap, fmt);
		ct_vfmt(c->err, c->errlen, c->t->text, off, fmt, ap);
		va_end(ap);
		c->errset = true;
	}
	return rc;
}

/* A message for a bare code from the output or scratch helpers. */
static int xfail(struct ct_exec *c, size_t off, int rc)
{
	if (rc == SFS_ETOOBIG)
		return xerr(c, off, rc,
		            "output or an intermediate string is larger than %d bytes",
		            RENDER_MAX_LEN);
	if (rc == SFS_ENOMEM)
		return xerr(c, off, rc, "out of memory");
	return xerr(c, off, rc, "%s", sfs_strerror(rc));
}

static int bput(struct secbuf *b, const void *s, size_t n)
{
	if (b->len > RENDER_MAX_LEN || n > RENDER_MAX_LEN - b->len)
		return SFS_ETOOBIG;
	return secbuf_append(b, s, n);
}

static int bputs(struct secbuf *b, const char *s)
{
	return bput(b, s, strlen(s));
}

/* Records a guarded block to free (wiped) when the rendering ends. */
static int ct_keep(struct ct_exec *c, void *block, size_t size)
{
	if (size > CTMPL_MAX_SCRATCH - c->scratch)
		return SFS_ETOOBIG;
	if (c->nblocks == c->capblocks) {
		size_t cap = c->capblocks ? c->capblocks * 2 : 32;
		void **a = realloc(c->blocks, cap * sizeof(*a));
		if (!a)
			return SFS_ENOMEM;
		c->blocks = a;
		c->capblocks = cap;
	}
	c->blocks[c->nblocks++] = block;
	c->scratch += size;
	return 0;
}

/* A zeroed guarded block of size bytes kept until the rendering ends. */
static void *ct_scratch(struct ct_exec *c, size_t size, int *rc)
{
	void *p;

	if (size > CTMPL_MAX_SCRATCH - c->scratch) {
		*rc = SFS_ETOOBIG;
		return NULL;
	}
	p = secmem_alloc(size);
	if (!p) {
		*rc = SFS_ENOMEM;
		return NULL;
	}
	*rc = ct_keep(c, p, size);
	if (*rc) {
		secmem_free(p);
		return NULL;
	}
	return p;
}

/* Keeps b's block until the rendering ends; v becomes its text. On failure
 * b is released. */
static int ct_adopt(struct ct_exec *c, struct secbuf *b, struct cv *v)
{
	int rc;

	memset(v, 0, sizeof(*v));
	v->k = CV_STR;
	v->s = "";
	if (!b->data)
		return 0;
	rc = ct_keep(c, b->data, b->cap);
	if (rc) {
		secbuf_release(b);
		return rc;
	}
	v->s = (const char *)b->data;
	v->n = b->len;
	return 0;
}

static void cv_from_json(const json_t *j, struct cv *v)
{
	memset(v, 0, sizeof(*v));
	switch (json_typeof(j)) {
	case JSON_STRING:
		v->k = CV_STR;
		v->s = json_string_value(j);
		v->n = json_string_length(j);
		break;
	case JSON_INTEGER:
	case JSON_REAL:
		v->k = CV_NUM;
		v->j = j;
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		v->k = CV_BOOL;
		v->i = json_is_true(j);
		break;
	case JSON_OBJECT:
		v->k = CV_MAP;
		v->j = j;
		break;
	case JSON_ARRAY:
		v->k = CV_LIST;
		v->j = j;
		break;
	default:
		v->k = CV_NIL;
	}
}

/* The text of a JSON number (json.Number's string). */
static int put_num(struct secbuf *b, const json_t *j)
{
	char buf[48];
	int n = 0, rc;

	if (json_is_integer(j)) {
		n = snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT,
		             json_integer_value(j));
	} else {
		double d = json_real_value(j);
		for (int prec = 1; prec <= 17; prec++) {
			n = snprintf(buf, sizeof buf, "%.*g", prec, d);
			if (strtod(buf, NULL) == d)
				break;
		}
	}
	rc = n > 0 && (size_t)n < sizeof buf ? bput(b, buf, (size_t)n) : SFS_EINVAL;
	sodium_memzero(buf, sizeof buf);
	return rc;
}

struct ct_kv {
	const char *key;
	size_t len;
	const json_t *value;
};

static int ct_kv_cmp(const void *a, const void *b)
{
	const struct ct_kv *x = a, *y = b;
	int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);

	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* An object's members sorted by key as Go sorts strings (malloc'd; pointers only). */
static int ct_sorted(const json_t *obj, struct ct_kv **out, size_t *count)
{
	size_t n = obj ? json_object_size(obj) : 0, i = 0;
	struct ct_kv *kv;
	void *it;

	*out = NULL;
	*count = 0;
	if (n == 0)
		return 0;
	kv = calloc(n, sizeof(*kv));
	if (!kv)
		return SFS_ENOMEM;
	for (it = json_object_iter((json_t *)obj); it && i < n;
	     it = json_object_iter_next((json_t *)obj, it), i++) {
		kv[i].key = json_object_iter_key(it);
		kv[i].len = json_object_iter_key_len(it);
		kv[i].value = json_object_iter_value(it);
	}
	qsort(kv, i, sizeof(*kv), ct_kv_cmp);
	*out = kv;
	*count = i;
	return 0;
}

/* fmt's %v (top: the action's own value, where nil is "<no value>"). */
static int put_go(struct ct_exec *c, size_t off, struct secbuf *b, const struct cv *v,
                  bool top, int depth)
{
	char num[32];
	struct cv e;
	struct ct_kv *kv = NULL;
	size_t i, n = 0;
	int rc = 0;

	if (depth > CT_MAX_VALUE_DEPTH)
		return xerr(c, off, SFS_ETOOBIG, "value nested deeper than %d",
		            CT_MAX_VALUE_DEPTH);
	switch (v->k) {
	case CV_INVALID:
	case CV_NIL:
		return bputs(b, top ? "<no value>" : "<nil>");
	case CV_STR:
		return bput(b, v->s, v->n);
	case CV_NUM:
		return put_num(b, v->j);
	case CV_INT:
		snprintf(num, sizeof num, "%lld", v->i);
		return bputs(b, num);
	case CV_BOOL:
		return bputs(b, v->i ? "true" : "false");
	case CV_MAP:
		if ((rc = ct_sorted(v->j, &kv, &n)) != 0)
			return rc;
		rc = bputs(b, "map[");
		for (i = 0; rc == 0 && i < n; i++) {
			if (i)
				rc = bput(b, " ", 1);
			if (rc == 0)
				rc = bput(b, kv[i].key, kv[i].len);
			if (rc == 0)
				rc = bput(b, ":", 1);
			cv_from_json(kv[i].value, &e);
			if (rc == 0)
				rc = put_go(c, off, b, &e, false, depth + 1);
		}
		free(kv);
		return rc ? rc : bput(b, "]", 1);
	case CV_LIST:
		rc = bput(b, "[", 1);
		for (i = 0; rc == 0 && i < json_array_size(v->j); i++) {
			if (i)
				rc = bput(b, " ", 1);
			cv_from_json(json_array_get(v->j, i), &e);
			if (rc == 0)
				rc = put_go(c, off, b, &e, false, depth + 1);
		}
		return rc ? rc : bput(b, "]", 1);
	case CV_STRLIST:
		rc = bput(b, "[", 1);
		for (i = 0; rc == 0 && i < v->n; i++) {
			if (i)
				rc = bput(b, " ", 1);
			if (rc == 0)
				rc = bput(b, v->list[i].s, v->list[i].n);
		}
		return rc ? rc : bput(b, "]", 1);
	case CV_SECRET:
		break;
	}
	return xerr(
	    c, off, SFS_EINVAL,
	    "printing a whole secret is not supported (use a field such as .Data)");
}

/* A JSON string as Go's encoding/json writes it (HTML-safe, Go 1.22 escapes). */
static int put_json_str(struct secbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, run = 0;
	int rc = bput(b, "\"", 1);

	while (rc == 0 && i < n) {
		unsigned char ch = (unsigned char)s[i];
		char esc[8] = {'\\', 0};
		size_t elen = 2, adv = 1;
		int32_t r = ch;

		if (ch >= 0x80) {
			adv = ct_utf8_dec((const unsigned char *)s + i, n - i, &r);
			if (r >= 0 && r != 0x2028 && r != 0x2029) {
				i += adv;
				run += adv;
				continue;
			}
		} else if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != '<' &&
		           ch != '>' && ch != '&') {
			i++;
			run++;
			continue;
		}
		rc = bput(b, s + i - run, run);
		run = 0;
		switch (r) {
		case '"':
		case '\\':
			esc[1] = (char)r;
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		default:
			if (r < 0)
				r = 0xfffd;
			esc[1] = 'u';
			esc[2] = hex[(r >> 12) & 15];
			esc[3] = hex[(r >> 8) & 15];
			esc[4] = hex[(r >> 4) & 15];
			esc[5] = hex[r & 15];
			elen = 6;
		}
		if (rc == 0)
			rc = bput(b, esc, elen);
		i += adv;
	}
	if (rc == 0)
		rc = bput(b, s + i - run, run);
	return rc ? rc : bput(b, "\"", 1);
}

static int put_indent(struct secbuf *b, int level)
{
	int rc = bput(b, "\n", 1);

	for (int i = 0; rc == 0 && i < level; i++)
		rc = bput(b, "  ", 2);
	return rc;
}

/* Go's json.Marshal (pretty: MarshalIndent with "" and two spaces). */
static int put_json(struct ct_exec *c, size_t off, struct secbuf *b, const struct cv *v,
                    bool pretty, int level)
{
	struct ct_kv *kv = NULL;
	struct cv e;
	char num[32];
	size_t i, n = 0;
	int rc = 0;

	if (level > CT_MAX_VALUE_DEPTH)
		return xerr(c, off, SFS_ETOOBIG, "value nested deeper than %d",
		            CT_MAX_VALUE_DEPTH);
	switch (v->k) {
	case CV_INVALID:
	case CV_NIL:
		return bputs(b, "null");
	case CV_STR:
		return put_json_str(b, v->s, v->n);
	case CV_NUM:
		return put_num(b, v->j);
	case CV_INT:
		snprintf(num, sizeof num, "%lld", v->i);
		return bputs(b, num);
	case CV_BOOL:
		return bputs(b, v->i ? "true" : "false");
	case CV_MAP:
		if (!v->j)
			return bputs(b, "null");
		if ((rc = ct_sorted(v->j, &kv, &n)) != 0)
			return rc;
		rc = bput(b, "{", 1);
		for (i = 0; rc == 0 && i < n; i++) {
			if (i)
				rc = bput(b, ",", 1);
			if (rc == 0 && pretty)
				rc = put_indent(b, level + 1);
			if (rc == 0)
				rc = put_json_str(b, kv[i].key, kv[i].len);
			if (rc == 0)
				rc = pretty ? bput(b, ": ", 2) : bput(b, ":", 1);
			cv_from_json(kv[i].value, &e);
			if (rc == 0)
				rc = put_json(c, off, b, &e, pretty, level + 1);
		}
		if (rc == 0 && pretty && n)
			rc = put_indent(b, level);
		free(kv);
		return rc ? rc : bput(b, "}", 1);
	case CV_LIST:
	case CV_STRLIST:
		n = v->k == CV_LIST ? json_array_size(v->j) : v->n;
		rc = bput(b, "[", 1);
		for (i = 0; rc == 0 && i < n; i++) {
			if (i)
				rc = bput(b, ",", 1);
			if (rc == 0 && pretty)
				rc = put_indent(b, level + 1);
			if (v->k == CV_LIST) {
				cv_from_json(json_array_get(v->j, i), &e);
			} else {
				memset(&e, 0, sizeof e);
				e.k = CV_STR;
				e.s = v->list[i].s;
				e.n = v->list[i].n;
			}
			if (rc == 0)
				rc = put_json(c, off, b, &e, pretty, level + 1);
		}
		if (rc == 0 && pretty && n)
			rc = put_indent(b, level);
		return rc ? rc : bput(b, "]", 1);
	case CV_SECRET:
		break;
	}
	return xerr(c, off, SFS_EINVAL,
	            "toJSON of a whole secret is not supported (use .Data)");
}

/* strconv.Quote for printable ASCII text (and its escapes). */
static int put_quoted(struct ct_exec *c, size_t off, struct secbuf *b, const char *s,
                      size_t n)
{
	static const char hex[] = "0123456789abcdef";
	int rc = bput(b, "\"", 1);

	for (size_t i = 0; rc == 0 && i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		const char *named = strchr("\a\b\f\n\r\t\v", ch);
		char esc[4] = {'\\', 0, 0, 0};

		if (ch >= 0x80)
			return xerr(c, off, SFS_EINVAL,
			            "printf %%q of non-ASCII text is not supported");
		if (ch == '"' || ch == '\\') {
			esc[1] = (char)ch;
			rc = bput(b, esc, 2);
		} else if (ch && named) {
			esc[1] = "abfnrtv"[named - "\a\b\f\n\r\t\v"];
			rc = bput(b, esc, 2);
		} else if (ch < 0x20 || ch == 0x7f) {
			char x[4] = {'\\', 'x', hex[ch >> 4], hex[ch & 15]};
			rc = bput(b, x, 4);
		} else {
			rc = bput(b, s + i, 1);
		}
	}
	return rc ? rc : bput(b, "\"", 1);
}

static bool cv_truth(const struct cv *v)
{
	switch (v->k) {
	case CV_INVALID:
	case CV_NIL:
		return false;
	case CV_STR:
	case CV_STRLIST:
		return v->n > 0;
	case CV_NUM:
	case CV_SECRET:
		return true;
	case CV_INT:
	case CV_BOOL:
		return v->i != 0;
	case CV_MAP:
		return v->j && json_object_size(v->j) > 0;
	case CV_LIST:
		return json_array_size(v->j) > 0;
	}
	return false;
}

static int ct_step(struct ct_exec *c, size_t off)
{
	if (++c->steps > CTMPL_MAX_STEPS)
		return xerr(c, off, SFS_ETOOBIG, "rendering takes more than %d steps",
		            CTMPL_MAX_STEPS);
	return 0;
}

static int ct_field(struct ct_exec *c, size_t off, struct cv *v, const struct ct_name *f)
{
	char shown[64];
	const json_t *reply, *m;

	ct_shown(shown, sizeof shown, f->s, f->n);
	switch (v->k) {
	case CV_INVALID:
		return 0; /* missingkey=zero: a field of no value is no value */
	case CV_MAP:
		m = v->j ? json_object_getn(v->j, f->s, f->n) : NULL;
		if (m)
			cv_from_json(m, v);
		else
			v->k = CV_NIL;
		return 0;
	case CV_NIL:
		return xerr(c, off, SFS_EINVAL, "nil pointer evaluating interface {}.%s",
		            shown);
	case CV_SECRET:
		reply = c->secrets[v->i];
#define IS_FIELD(name) (f->n == strlen(name) && memcmp(f->s, name, f->n) == 0)
		if (IS_FIELD("Data")) {
			m = json_object_get(reply, "data");
			memset(v, 0, sizeof(*v));
			v->k = CV_MAP;
			v->j = json_is_object(m) ? m : NULL;
			return 0;
		}
		if (IS_FIELD("LeaseID") || IS_FIELD("RequestID")) {
			m = json_object_get(reply, IS_FIELD("LeaseID") ? "lease_id"
			                                               : "request_id");
			memset(v, 0, sizeof(*v));
			v->k = CV_STR;
			v->s = json_is_string(m) ? json_string_value(m) : "";
			v->n = json_is_string(m) ? json_string_length(m) : 0;
			return 0;
		}
		if (IS_FIELD("LeaseDuration")) {
			m = json_object_get(reply, "lease_duration");
			memset(v, 0, sizeof(*v));
			v->k = CV_INT;
			v->i = json_is_integer(m) ? (long long)json_integer_value(m) : 0;
			return 0;
		}
		if (IS_FIELD("Renewable")) {
			memset(v, 0, sizeof(*v));
			v->k = CV_BOOL;
			v->i = json_is_true(json_object_get(reply, "renewable"));
			return 0;
		}
		if (IS_FIELD("Warnings") || IS_FIELD("Auth") || IS_FIELD("WrapInfo"))
			return xerr(c, off, SFS_EINVAL,
			            "the %s field of a secret is not supported", shown);
#undef IS_FIELD
		break;
	default:
		break;
	}
	return xerr(c, off, SFS_EINVAL, "can't evaluate field %s in type %s", shown,
	            cv_type(v));
}

static int ct_chain(struct ct_exec *c, const struct ct_arg *a, struct cv *v)
{
	for (size_t i = 0; i < a->nchain; i++)
		if (ct_field(c, a->off, v, &a->chain[i]))
			return SFS_EINVAL;
	return 0;
}

static int ct_eval_pipe(struct ct_exec *c, const struct ct_pipe *pipe,
                        const struct cv *dot, struct cv *out, bool set_vars);

static int ct_eval_arg(struct ct_exec *c, const struct ct_arg *a, const struct cv *dot,
                       struct cv *v)
{
	char shown[64];
	int rc;

	memset(v, 0, sizeof(*v));
	switch (a->k) {
	case A_DOT:
		*v = *dot;
		return 0;
	case A_FIELD:
		*v = *dot;
		return ct_chain(c, a, v);
	case A_VAR:
		if (!c->set[a->i])
			return xerr(c, a->off, SFS_EINVAL,
			            "variable %s has no value here",
			            ct_shown(shown, sizeof shown, a->s, a->n));
		*v = c->vars[a->i];
		return ct_chain(c, a, v);
	case A_STR:
		v->k = CV_STR;
		v->s = a->s;
		v->n = a->n;
		return 0;
	case A_INT:
	case A_BOOL:
		v->k = a->k == A_INT ? CV_INT : CV_BOOL;
		v->i = a->i;
		return 0;
	case A_PIPE:
		if ((rc = ct_eval_pipe(c, a->pipe, dot, v, true)) != 0)
			return rc;
		return ct_chain(c, a, v);
	case A_FUNC:
		break;
	}
	return xerr(c, a->off, SFS_EINVAL, "internal: function as value");
}

/* A string argument, strictly (json.Number and nil are not strings). */
static int ct_want_str(struct ct_exec *c, size_t off, const char *fn, const struct cv *v)
{
	if (v->k == CV_STR)
		return 0;
	return xerr(c, off, SFS_EINVAL,
	            "wrong type for value of %s; expected string; got %s", fn,
	            cv_type(v));
}

static bool ct_is_go_space(int32_t r)
{
	return (r >= '\t' && r <= '\r') || r == ' ' || r == 0x85 || r == 0xa0 ||
	       r == 0x1680 || (r >= 0x2000 && r <= 0x200a) || r == 0x2028 ||
	       r == 0x2029 || r == 0x202f || r == 0x205f || r == 0x3000;
}

/* strings.TrimSpace as a view into v. */
static void ct_trim(const char *s, size_t n, size_t *from, size_t *to)
{
	size_t i = 0, first = n, last = 0;
	int32_t r;

	while (i < n) {
		size_t len = ct_utf8_dec((const unsigned char *)s + i, n - i, &r);
		if (!ct_is_go_space(r)) {
			if (first == n)
				first = i;
			last = i + len;
		}
		i += len;
	}
	*from = first == n ? 0 : first;
	*to = first == n ? 0 : last;
}

static int ct_printf(struct ct_exec *c, size_t off, const struct cv *argv, size_t argc,
                     struct secbuf *b)
{
	const char *f = argv[0].s;
	size_t n = argv[0].n, i, run = 0, k = 1;
	int rc = 0;

	for (i = 0; rc == 0 && i < n; i++) {
		const struct cv *v;
		if (f[i] != '%') {
			run++;
			continue;
		}
		rc = bput(b, f + i - run, run);
		run = 0;
		i++;
		if (rc || f[i] == '%') {
			rc = rc ? rc : bput(b, "%", 1);
			continue;
		}
		v = &argv[k++];
		if (k > argc)
			return xerr(c, off, SFS_EINVAL, "internal: printf arguments");
		switch (f[i]) {
		case 'v':
			rc = put_go(c, off, b, v, false, 0);
			break;
		case 's':
		case 'q':
			if (v->k != CV_STR && v->k != CV_NUM)
				return xerr(c, off, SFS_EINVAL,
				            "printf %%%c of a %s is not supported", f[i],
				            cv_type(v));
			if (v->k == CV_NUM && f[i] == 's')
				rc = put_num(b, v->j);
			else if (v->k == CV_NUM) {
				struct secbuf t;
				secbuf_init(&t, 64);
				rc = put_num(&t, v->j);
				if (rc == 0)
					rc = put_quoted(c, off, b, (const char *)t.data,
					                t.len);
				secbuf_release(&t);
			} else if (f[i] == 's')
				rc = bput(b, v->s, v->n);
			else
				rc = put_quoted(c, off, b, v->s, v->n);
			break;
		case 'd':
			if (v->k != CV_INT)
				return xerr(c, off, SFS_EINVAL,
				            "printf %%d of a %s is not supported%s",
				            cv_type(v),
				            v->k == CV_NUM ? " (consul-template prints "
				                             "%!d(json.Number=...); "
				                             "use %s or %v)"
				                           : "");
			rc = put_go(c, off, b, v, false, 0);
			break;
		}
	}
	return rc ? rc : bput(b, f + i - run, run);
}

/* eq's comparison of two basic values: 1 equal, 0 not, <0 error. */
static int ct_equal(struct ct_exec *c, size_t off, const struct cv *a, const struct cv *b)
{
	bool sa = a->k == CV_STR || a->k == CV_NUM, sb = b->k == CV_STR || b->k == CV_NUM;
	bool na = a->k == CV_INVALID || a->k == CV_NIL,
	     nb = b->k == CV_INVALID || b->k == CV_NIL;
	struct secbuf x, y;
	int eq;

	if (na || nb) {
		if (na && nb)
			return xerr(c, off, SFS_EINVAL,
			            "eq of two missing values is not supported");
		return 0;
	}
	if (sa && sb) {
		if (a->k == CV_STR && b->k == CV_STR)
			return a->n == b->n && memcmp(a->s, b->s, a->n) == 0;
		secbuf_init(&x, 64);
		secbuf_init(&y, 64);
		eq = put_go(c, off, &x, a, false, 0) == 0 &&
		     put_go(c, off, &y, b, false, 0) == 0 && x.len == y.len &&
		     (x.len == 0 || memcmp(x.data, y.data, x.len) == 0);
		secbuf_release(&x);
		secbuf_release(&y);
		return eq;
	}
	if ((a->k == CV_INT && b->k == CV_INT) || (a->k == CV_BOOL && b->k == CV_BOOL))
		return a->i == b->i;
	return xerr(c, off, SFS_EINVAL, "incompatible types for comparison: %s and %s",
	            cv_type(a), cv_type(b));
}

static int ct_index(struct ct_exec *c, size_t off, const struct cv *argv, size_t argc,
                    struct cv *out)
{
	struct cv v = argv[0];
	size_t i, size;

	for (i = 1; i < argc; i++) {
		const struct cv *key = &argv[i];
		switch (v.k) {
		case CV_MAP: {
			const json_t *m;
			if (key->k != CV_STR)
				return xerr(
				    c, off, SFS_EINVAL,
				    "index of a map: key has type %s; should be string",
				    cv_type(key));
			m = v.j ? json_object_getn(v.j, key->s, key->n) : NULL;
			if (m)
				cv_from_json(m, &v);
			else
				v.k = CV_NIL;
			break;
		}
		case CV_LIST:
		case CV_STRLIST:
			if (key->k != CV_INT)
				return xerr(c, off, SFS_EINVAL,
				            "cannot index a list with a %s",
				            cv_type(key));
			size = v.k == CV_LIST ? json_array_size(v.j) : v.n;
			if (key->i < 0 || (unsigned long long)key->i >= size)
				return xerr(c, off, SFS_EINVAL,
				            "index out of range: %lld", key->i);
			if (v.k == CV_LIST) {
				cv_from_json(json_array_get(v.j, (size_t)key->i), &v);
			} else {
				struct cv_str s = v.list[key->i];
				memset(&v, 0, sizeof v);
				v.k = CV_STR;
				v.s = s.s;
				v.n = s.n;
			}
			break;
		case CV_INVALID:
			return xerr(c, off, SFS_EINVAL, "index of untyped nil");
		case CV_NIL:
			return xerr(c, off, SFS_EINVAL, "index of nil pointer");
		default:
			return xerr(c, off, SFS_EINVAL, "can't index item of type %s",
			            cv_type(&v));
		}
	}
	*out = v;
	return 0;
}

static int ct_split(struct ct_exec *c, size_t off, const struct cv *sep,
                    const struct cv *str, struct cv *out)
{
	size_t from, to, n = 0, i, cap;
	struct cv_str *parts;
	const char *s;
	int32_t r;
	int rc;

	ct_trim(str->s, str->n, &from, &to);
	s = str->s + from;
	to -= from;
	if (to == 0) {
		cap = 0;
	} else if (sep->n == 0) {
		for (i = 0, cap = 0; i < to; cap++)
			i += ct_utf8_dec((const unsigned char *)s + i, to - i, &r);
	} else {
		for (i = 0, cap = 1; i + sep->n <= to;) {
			if (memcmp(s + i, sep->s, sep->n) == 0) {
				cap++;
				i += sep->n;
			} else {
				i++;
			}
		}
	}
	if (cap > RENDER_MAX_LEN)
		return xerr(c, off, SFS_ETOOBIG, "split makes too many parts");
	parts = ct_scratch(c, (cap ? cap : 1) * sizeof(*parts), &rc);
	if (!parts)
		return xfail(c, off, rc);
	if (sep->n == 0) {
		for (i = 0; i < to; n++) {
			size_t len =
			    ct_utf8_dec((const unsigned char *)s + i, to - i, &r);
			parts[n].s = s + i;
			parts[n].n = len;
			i += len;
		}
	} else if (to > 0) {
		size_t start = 0;
		for (i = 0; i + sep->n <= to;) {
			if (memcmp(s + i, sep->s, sep->n) == 0) {
				parts[n].s = s + start;
				parts[n++].n = i - start;
				i += sep->n;
				start = i;
			} else {
				i++;
			}
		}
		parts[n].s = s + start;
		parts[n++].n = to - start;
	}
	memset(out, 0, sizeof(*out));
	out->k = CV_STRLIST;
	out->list = parts;
	out->n = n;
	return 0;
}

/* One function call; argv holds the evaluated arguments, the piped value last. */
static int ct_call_values(struct ct_exec *c, size_t off, enum ct_func f, struct cv *argv,
                          size_t argc, struct cv *out)
{
	struct secbuf b;
	size_t i, from, to;
	int rc = 0;

	secbuf_init(&b, RENDER_MAX_LEN);
	memset(out, 0, sizeof(*out));
	switch (f) {
	case F_INDEX:
		return ct_index(c, off, argv, argc, out);
	case F_PRINTF:
		rc = ct_printf(c, off, argv, argc, &b);
		break;
	case F_TOJSON:
		rc = put_json(c, off, &b, &argv[0], false, 0);
		break;
	case F_TOJSONPRETTY:
		if (argv[0].k != CV_MAP && argv[0].k != CV_INVALID && argv[0].k != CV_NIL)
			return xerr(c, off, SFS_EINVAL,
			            "wrong type for value of toJSONPretty; expected "
			            "map[string]interface "
			            "{}; got %s",
			            cv_type(&argv[0]));
		rc = put_json(c, off, &b, &argv[0], true, 0);
		break;
	case F_B64ENC:
		if (ct_want_str(c, off, "base64Encode", &argv[0]))
			return SFS_EINVAL;
		{
			size_t elen = sodium_base64_encoded_len(
			    argv[0].n, sodium_base64_VARIANT_ORIGINAL);
			if (elen > RENDER_MAX_LEN)
				return xerr(c, off, SFS_ETOOBIG,
				            "base64Encode result too large");
			char *enc = ct_scratch(c, elen, &rc);
			if (!enc)
				return xfail(c, off, rc);
			sodium_bin2base64(enc, elen, (const unsigned char *)argv[0].s,
			                  argv[0].n, sodium_base64_VARIANT_ORIGINAL);
			out->k = CV_STR;
			out->s = enc;
			out->n = elen - 1;
			return 0;
		}
		break;
	case F_B64DEC:
		if (ct_want_str(c, off, "base64Decode", &argv[0]))
			return SFS_EINVAL;
		{
			size_t cap = argv[0].n / 4 * 3 + 3, dlen = 0;
			const char *end = NULL;
			unsigned char *dec = ct_scratch(c, cap, &rc);
			if (!dec)
				return xfail(c, off, rc);
			if (sodium_base642bin(dec, cap, argv[0].s, argv[0].n, "\r\n",
			                      &dlen, &end,
			                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
			    end != argv[0].s + argv[0].n)
				return xerr(
				    c, off, SFS_EINVAL,
				    "base64Decode: input is not valid padded base64");
			out->k = CV_STR;
			out->s = (const char *)dec;
			out->n = dlen;
			return 0;
		}
		break;
	case F_UPPER:
	case F_LOWER:
		if (ct_want_str(c, off, f == F_UPPER ? "toUpper" : "toLower", &argv[0]))
			return SFS_EINVAL;
		for (i = 0; i < argv[0].n; i++)
			if ((unsigned char)argv[0].s[i] >= 0x80)
				return xerr(c, off, SFS_EINVAL,
				            "%s of non-ASCII text is not supported",
				            f == F_UPPER ? "toUpper" : "toLower");
		rc = bput(&b, argv[0].s, argv[0].n);
		for (i = 0; rc == 0 && i < b.len; i++) {
			unsigned char ch = b.data[i];
			if (f == F_UPPER && ch >= 'a' && ch <= 'z')
				b.data[i] = (unsigned char)(ch - 32);
			if (f == F_LOWER && ch >= 'A' && ch <= 'Z')
				b.data[i] = (unsigned char)(ch + 32);
		}
		break;
	case F_TRIM:
		if (ct_want_str(c, off, "trimSpace", &argv[0]))
			return SFS_EINVAL;
		ct_trim(argv[0].s, argv[0].n, &from, &to);
		out->k = CV_STR;
		out->s = argv[0].s + from;
		out->n = to - from;
		return 0;
	case F_REPLACEALL: {
		const struct cv *old = &argv[0], *new = &argv[1], *s = &argv[2];
		if (ct_want_str(c, off, "replaceAll", old) ||
		    ct_want_str(c, off, "replaceAll", new) ||
		    ct_want_str(c, off, "replaceAll", s))
			return SFS_EINVAL;
		rc = bput(&b, "", 0);
		for (i = 0; rc == 0 && i <= s->n;) {
			if (old->n == 0) {
				int32_t r;
				size_t len =
				    i < s->n
				        ? ct_utf8_dec((const unsigned char *)s->s + i,
				                      s->n - i, &r)
				        : 1;
				rc = bput(&b, new->s, new->n);
				if (rc == 0 && i < s->n)
					rc = bput(&b, s->s + i, len);
				i += len;
			} else if (i + old->n <= s->n &&
			           memcmp(s->s + i, old->s, old->n) == 0) {
				rc = bput(&b, new->s, new->n);
				i += old->n;
			} else {
				if (i < s->n)
					rc = bput(&b, s->s + i, 1);
				i++;
			}
		}
		break;
	}
	case F_SPLIT:
		if (ct_want_str(c, off, "split", &argv[0]) ||
		    ct_want_str(c, off, "split", &argv[1]))
			return SFS_EINVAL;
		return ct_split(c, off, &argv[0], &argv[1], out);
	case F_JOIN:
		if (ct_want_str(c, off, "join", &argv[0]))
			return SFS_EINVAL;
		if (argv[1].k != CV_STRLIST)
			return xerr(
			    c, off, SFS_EINVAL,
			    "wrong type for value of join; expected []string; got %s",
			    cv_type(&argv[1]));
		rc = bput(&b, "", 0);
		for (i = 0; rc == 0 && i < argv[1].n; i++) {
			if (i)
				rc = bput(&b, argv[0].s, argv[0].n);
			if (rc == 0)
				rc = bput(&b, argv[1].list[i].s, argv[1].list[i].n);
		}
		break;
	case F_EQ:
	case F_NE:
		for (i = 1; i < argc; i++) {
			int e = ct_equal(c, off, &argv[0], &argv[i]);
			if (e < 0)
				return e;
			if (e)
				break;
		}
		out->k = CV_BOOL;
		out->i = (i < argc) == (f == F_EQ);
		return 0;
	case F_NOT:
		out->k = CV_BOOL;
		out->i = !cv_truth(&argv[0]);
		return 0;
	case F_LEN:
		out->k = CV_INT;
		switch (argv[0].k) {
		case CV_STR:
		case CV_STRLIST:
			out->i = (long long)argv[0].n;
			return 0;
		case CV_MAP:
			out->i = argv[0].j ? (long long)json_object_size(argv[0].j) : 0;
			return 0;
		case CV_LIST:
			out->i = (long long)json_array_size(argv[0].j);
			return 0;
		case CV_NUM:
			rc = put_num(&b, argv[0].j);
			out->i = (long long)b.len;
			secbuf_release(&b);
			return rc ? xfail(c, off, rc) : 0;
		default:
			return xerr(c, off, SFS_EINVAL, "len of type %s",
			            cv_type(&argv[0]));
		}
	default:
		return xerr(c, off, SFS_EINVAL, "internal: function");
	}
	if (rc == 0)
		rc = ct_adopt(c, &b, out);
	else
		secbuf_release(&b);
	return rc ? xfail(c, off, rc) : 0;
}

static int ct_eval_cmd(struct ct_exec *c, const struct ct_cmd *cmd, const struct cv *dot,
                       const struct cv *piped, struct cv *out)
{
	struct cv argv[CTMPL_MAX_ARGS + 1];
	enum ct_func f;
	size_t argc = 0, i;
	int rc;

	if ((rc = ct_step(c, cmd->off)) != 0)
		return rc;
	if (cmd->args[0].k != A_FUNC)
		return ct_eval_arg(c, &cmd->args[0], dot, out);
	f = (enum ct_func)cmd->args[0].i;
	if (f == F_SECRET) {
		memset(out, 0, sizeof(*out));
		out->k = CV_SECRET;
		out->i = (long long)cmd->secret;
		return 0;
	}
	if (f == F_AND || f == F_OR) {
		/* Go 1.18: stop at the first false (and) or true (or) argument. */
		for (i = 1; i <= cmd->nargs - 1 + (piped != NULL); i++) {
			if (i < cmd->nargs) {
				if ((rc = ct_eval_arg(c, &cmd->args[i], dot, out)) != 0)
					return rc;
			} else {
				*out = *piped;
			}
			if (cv_truth(out) == (f == F_OR))
				break;
		}
		return 0;
	}
	for (i = 1; i < cmd->nargs; i++)
		if ((rc = ct_eval_arg(c, &cmd->args[i], dot, &argv[argc++])) != 0)
			return rc;
	if (piped)
		argv[argc++] = *piped;
	return ct_call_values(c, cmd->off, f, argv, argc, out);
}

static int ct_eval_pipe(struct ct_exec *c, const struct ct_pipe *pipe,
                        const struct cv *dot, struct cv *out, bool set_vars)
{
	struct cv val;
	size_t i;
	int rc;

	memset(&val, 0, sizeof val);
	for (i = 0; i < pipe->ncmds; i++) {
		struct cv prev = val;
		if ((rc = ct_eval_cmd(c, &pipe->cmds[i], dot, i ? &prev : NULL, &val)) !=
		    0)
			return rc;
		/* An interface{} holding nil is no value once a command is done. */
		if (val.k == CV_NIL)
			val.k = CV_INVALID;
	}
	if (set_vars)
		for (int d = 0; d < pipe->ndecl; d++) {
			c->vars[pipe->decl[d]] = val;
			c->set[pipe->decl[d]] = 1;
		}
	*out = val;
	return 0;
}

static void ct_reset(struct ct_exec *c, size_t from, size_t to)
{
	for (size_t s = from; s < to; s++)
		c->set[s] = 0;
}

static int ct_exec_list(struct ct_exec *c, const struct ct_node *n, const struct cv *dot);

static int ct_range_one(struct ct_exec *c, const struct ct_node *n, const struct cv *key,
                        const struct cv *elem)
{
	const struct ct_pipe *pipe = n->pipe;

	ct_reset(c, n->body_slot_first, n->slot_end);
	if (pipe->ndecl == 1) {
		c->vars[pipe->decl[0]] = *elem;
		c->set[pipe->decl[0]] = 1;
	} else if (pipe->ndecl == 2) {
		c->vars[pipe->decl[0]] = *key;
		c->vars[pipe->decl[1]] = *elem;
		c->set[pipe->decl[0]] = c->set[pipe->decl[1]] = 1;
	}
	return ct_exec_list(c, n->body, elem);
}

static int ct_exec_range(struct ct_exec *c, const struct ct_node *n, const struct cv *dot)
{
	struct cv val, key, elem;
	struct ct_kv *kv = NULL;
	size_t i, count = 0;
	int rc = 0;

	if ((rc = ct_eval_pipe(c, n->pipe, dot, &val, n->pipe->assign)) != 0)
		return rc;
	memset(&key, 0, sizeof key);
	memset(&elem, 0, sizeof elem);
	switch (val.k) {
	case CV_INVALID:
		break;
	case CV_MAP:
		if ((rc = ct_sorted(val.j, &kv, &count)) != 0)
			return xfail(c, n->off, rc);
		for (i = 0; rc == 0 && i < count; i++) {
			key.k = CV_STR;
			key.s = kv[i].key;
			key.n = kv[i].len;
			cv_from_json(kv[i].value, &elem);
			rc = ct_step(c, n->off);
			if (rc == 0)
				rc = ct_range_one(c, n, &key, &elem);
		}
		free(kv);
		break;
	case CV_LIST:
	case CV_STRLIST:
		count = val.k == CV_LIST ? json_array_size(val.j) : val.n;
		for (i = 0; rc == 0 && i < count; i++) {
			key.k = CV_INT;
			key.i = (long long)i;
			if (val.k == CV_LIST) {
				cv_from_json(json_array_get(val.j, i), &elem);
			} else {
				elem.k = CV_STR;
				elem.s = val.list[i].s;
				elem.n = val.list[i].n;
			}
			rc = ct_step(c, n->off);
			if (rc == 0)
				rc = ct_range_one(c, n, &key, &elem);
		}
		break;
	default:
		return xerr(c, n->off, SFS_EINVAL, "range can't iterate over %s",
		            cv_type(&val));
	}
	if (rc == 0 && count == 0 && n->else_body)
		rc = ct_exec_list(c, n->else_body, dot);
	return rc;
}

static int ct_exec_list(struct ct_exec *c, const struct ct_node *n, const struct cv *dot)
{
	struct cv val;
	int rc = 0;

	for (; n && rc == 0; n = n->next) {
		if ((rc = ct_step(c, n->off)) != 0)
			break;
		switch (n->k) {
		case N_TEXT:
			rc = bput(c->out, n->s, n->n);
			if (rc)
				rc = xfail(c, n->off, rc);
			break;
		case N_ACTION:
			rc = ct_eval_pipe(c, n->pipe, dot, &val, true);
			if (rc == 0 && n->pipe->ndecl == 0) {
				rc = put_go(c, n->off, c->out, &val, true, 0);
				if (rc)
					rc = xfail(c, n->off, rc);
			}
			break;
		case N_IF:
		case N_WITH:
			ct_reset(c, n->slot_first, n->slot_end);
			rc = ct_eval_pipe(c, n->pipe, dot, &val, true);
			if (rc)
				break;
			if (cv_truth(&val))
				rc =
				    ct_exec_list(c, n->body, n->k == N_WITH ? &val : dot);
			else if (n->else_body)
				rc = ct_exec_list(c, n->else_body, dot);
			break;
		case N_RANGE:
			ct_reset(c, n->slot_first, n->slot_end);
			rc = ct_exec_range(c, n, dot);
			break;
		}
	}
	return rc;
}

int ctmpl_render(const struct ctmpl *t, const json_t *const *secrets, struct secbuf *out,
                 char *err, size_t errlen)
{
	struct ct_exec c;
	struct cv dot;
	size_t i;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!t || !out || (t->nsecrets && !secrets))
		return SFS_EINVAL;
	memset(&c, 0, sizeof c);
	c.t = t;
	c.secrets = secrets;
	c.out = out;
	c.err = err;
	c.errlen = errlen;
	for (i = 0; i < t->nsecrets; i++)
		if (!json_is_object(secrets[i])) {
			snprintf(err, errlen,
			         "the reply for secret \"%s\" is not a JSON object",
			         t->secrets[i].path);
			return SFS_EINVAL;
		}
	c.vars = calloc(t->nslots, sizeof(*c.vars));
	c.set = calloc(t->nslots, 1);
	if (!c.vars || !c.set) {
		rc = xerr(&c, 0, SFS_ENOMEM, "out of memory");
		goto out;
	}
	memset(&dot, 0, sizeof dot);
	c.set[0] = 1; /* "$": no data, as consul-template executes with nil */
	rc = ct_exec_list(&c, t->root, &dot);
	if (rc && !c.errset)
		xfail(&c, 0, rc);
out:
	for (i = 0; i < c.nblocks; i++)
		secmem_free(c.blocks[i]);
	free(c.blocks);
	if (c.vars)
		sodium_memzero(c.vars, t->nslots * sizeof(*c.vars));
	free(c.vars);
	free(c.set);
	if (rc)
		secbuf_release(out);
	return rc;
}
