/* cmd_common.c — what every kiln command shares: usage errors, flag matching,
 * --shape parsing and loading a model. (Named cmd_* so the build links it
 * into the kiln executable with the commands.) */
#include "cli.h"
#include "ir.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kiln_cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("kiln: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (cmd)
		fprintf(stderr, "\nRun 'kiln %s --help' for usage.\n", cmd);
	else
		fputs("\nRun 'kiln --help' for usage.\n", stderr);
	return KILN_EXIT_USAGE;
}

bool kiln_cli_is_help(const char *arg)
{
	return !strcmp(arg, "--help") || !strcmp(arg, "-h");
}

bool kiln_cli_flag(char **argv, int argc, int *i, const char *name, const char **value)
{
	const char *arg = argv[*i];
	size_t len = strlen(name);
	if (strncmp(arg, name, len))
		return false;
	if (arg[len] == '=') {
		*value = arg + len + 1;
		*i += 1;
		return true;
	}
	if (arg[len])
		return false;
	*value = *i + 1 < argc ? argv[*i + 1] : NULL;
	*i += *value ? 2 : 1;
	return true;
}

static bool parse_dims(const char *s, kiln_shape_pin *pin)
{
	pin->rank = 0;
	for (;;) {
		if (*s < '0' || *s > '9')
			return false;
		errno = 0;
		char *end;
		long long v = strtoll(s, &end, 10);
		if (errno || pin->rank == KILN_MAX_RANK)
			return false;
		pin->dims[pin->rank++] = v;
		if (!*end)
			return true;
		if (*end != 'x')
			return false;
		s = end + 1;
	}
}

bool kiln_cli_add_pin(kiln_cli_pins *p, const char *cmd, const char *spec)
{
	const char *eq = strrchr(spec, '=');
	kiln_shape_pin pin = {0};
	if (!eq || eq == spec || !parse_dims(eq + 1, &pin)) {
		kiln_cli_usage(cmd, "--shape '%s': expected NAME=DIMxDIM... with up to %d "
		               "non-negative integer dims (e.g. input=1x3x224x224)",
		               spec, KILN_MAX_RANK);
		return false;
	}
	/* The name is a prefix of the argument; keep it in the pin's own copy. */
	char *name = malloc((size_t)(eq - spec) + 1);
	kiln_shape_pin *grown = realloc(p->pins, (size_t)(p->n + 1) * sizeof *p->pins);
	if (!name || !grown) {
		free(name);
		if (grown)
			p->pins = grown;
		fprintf(stderr, "kiln: out of memory\n");
		return false;
	}
	memcpy(name, spec, (size_t)(eq - spec));
	name[eq - spec] = '\0';
	p->pins = grown;
	for (int i = 0; i < p->n; i++) {
		if (!strcmp(p->pins[i].name, name)) {
			kiln_cli_usage(cmd, "--shape '%s': input '%s' is pinned twice", spec, name);
			free(name);
			return false;
		}
	}
	pin.name = name;
	p->pins[p->n++] = pin;
	return true;
}

void kiln_cli_pins_free(kiln_cli_pins *p)
{
	for (int i = 0; i < p->n; i++)
		free((char *)p->pins[i].name);
	free(p->pins);
	p->pins = NULL;
	p->n = 0;
}

void kiln_cli_input_list(const kiln_graph *g, char *buf, size_t size)
{
	size_t len = 0;
	buf[0] = '\0';
	if (!g->n_inputs)
		snprintf(buf, size, "none");
	for (int i = 0; i < g->n_inputs && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, i ? ", '%s'" : "'%s'",
		                        g->inputs[i]->name);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

/* Reads a whole text file; NULL (error printed) on failure. */
static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
		return NULL;
	}
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		len += fread(buf + len, 1, cap - len - 1, f);
		if (ferror(f)) {
			fprintf(stderr, "%s: cannot read: %s\n", path, strerror(errno));
			free(buf);
			buf = NULL;
			break;
		}
		if (feof(f)) {
			buf[len] = '\0';
			break;
		}
		cap *= 2;
		char *grown = realloc(buf, cap);
		if (!grown)
			free(buf);
		buf = grown;
	}
	if (!buf && !ferror(f))
		fprintf(stderr, "%s: out of memory\n", path);
	fclose(f);
	return buf;
}

int kiln_cli_load(const char *cmd, const char *path, const kiln_cli_pins *pins,
                  kiln_graph **out)
{
	*out = NULL;
	kiln_diag d;
	kiln_diag_init(&d, path);
	kiln_graph *g = NULL;
	if (ends_with(path, ".kir")) {
		if (pins->n)
			return kiln_cli_usage(cmd, "--shape applies to ONNX models only; '%s' is "
			                      "textual IR, whose shapes are already static", path);
		char *text = read_text(path);
		if (!text)
			return KILN_EXIT_ERROR;
		kiln_status s = kiln_graph_parse(text, path, &g, &d);
		free(text);
		if (s == KILN_OK)
			s = kiln_graph_verify(g, &d);
		if (s != KILN_OK) {
			kiln_graph_destroy(g);
			return KILN_EXIT_ERROR;
		}
	} else {
		kiln_import_opts opts = {.pins = pins->pins, .n_pins = pins->n};
		if (kiln_import_onnx(path, &opts, &g, &d) != KILN_OK) {
			kiln_graph_destroy(g);
			return KILN_EXIT_ERROR;
		}
	}
	*out = g;
	return KILN_EXIT_OK;
}

bool kiln_cli_pass_flag(const char *cmd, char **argv, int argc, int *i, kiln_opt_opts *o,
                        int *rc)
{
	const char *arg = argv[*i], *value;
	if (arg[0] == '-' && arg[1] == 'O' && arg[2] >= '0' && arg[2] <= '3' && !arg[3]) {
		o->opt_level = arg[2] - '0';
		(*i)++;
	} else if (kiln_cli_flag(argv, argc, i, "--passes", &value)) {
		if (!value)
			*rc = kiln_cli_usage(cmd, "--passes needs a comma-separated list of passes");
		o->passes = value;
	} else if (kiln_cli_flag(argv, argc, i, "--disable-pass", &value)) {
		if (!value || !*value)
			*rc = kiln_cli_usage(cmd, "--disable-pass needs a pass name");
		o->disable = value;
	} else {
		return false;
	}
	return true;
}

int kiln_cli_check_passes(const char *cmd, const kiln_opt_opts *o)
{
	kiln_diag check;
	kiln_diag_init(&check, "kiln");
	if (kiln_opt_check(o, &check) == KILN_OK)
		return KILN_EXIT_OK;
	fprintf(stderr, "Run 'kiln %s --help' for usage.\n", cmd);
	return KILN_EXIT_USAGE;
}

bool kiln_cli_shape_flag(const char *cmd, char **argv, int argc, int *i, kiln_cli_pins *p,
                         int *rc)
{
	const char *value;
	if (!kiln_cli_flag(argv, argc, i, "--shape", &value))
		return false;
	if (!value)
		*rc = kiln_cli_usage(cmd, "--shape needs a value NAME=DIMxDIM...");
	else if (!kiln_cli_add_pin(p, cmd, value))
		*rc = KILN_EXIT_USAGE;
	return true;
}
