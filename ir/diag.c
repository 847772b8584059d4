/* diag.c — diagnostics: one formatted line per error, sent to a sink. */
#include "ir.h"

#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
	[KILN_OK] = "ok",
	[KILN_ERR_INVALID_MODEL] = "invalid model",
	[KILN_ERR_UNSUPPORTED] = "unsupported",
	[KILN_ERR_SHAPE] = "shape or type mismatch",
	[KILN_ERR_OOM] = "out of memory",
	[KILN_ERR_IO] = "I/O error",
	[KILN_ERR_INVALID_ARG] = "invalid argument",
	[KILN_ERR_PARSE] = "parse error",
	[KILN_ERR_VERIFY] = "IR verification failed",
	[KILN_ERR_INTERNAL] = "internal error",
};
_Static_assert(sizeof status_names / sizeof *status_names == KILN_STATUS_COUNT,
               "status_names must cover kiln_status");

const char *kiln_status_str(kiln_status s)
{
	if ((unsigned)s >= KILN_STATUS_COUNT)
		return "unknown status";
	return status_names[s];
}

static void to_stderr(void *user, const char *msg)
{
	(void)user;
	fprintf(stderr, "%s\n", msg);
}

void kiln_diag_init(kiln_diag *d, const char *file)
{
	memset(d, 0, sizeof *d);
	d->fn = to_stderr;
	d->file = file;
}

kiln_diag *kiln_diag_enter(kiln_diag *d, kiln_diag *local, const char *file, const char **saved)
{
	if (!d) {
		kiln_diag_init(local, NULL);
		local->fn = NULL;
		d = local;
	}
	*saved = d->file;
	if (!d->file)
		d->file = file;
	return d;
}

void kiln_diag_leave(kiln_diag *d, const char *saved)
{
	d->file = saved;
}

static void emit(kiln_diag *d, const char *msg)
{
	snprintf(d->last, sizeof d->last, "%s", msg);
	if (d->fn)
		d->fn(d->user, msg);
}

kiln_status kiln_diag_verror(kiln_diag *d, kiln_status status, const kiln_node *node,
                             const char *fmt, va_list ap)
{
	if (!d)
		return status;
	char msg[1024];
	size_t len = 0;
	if (d->file)
		len += (size_t)snprintf(msg + len, sizeof msg - len, "%s: ", d->file);
	if (node && len < sizeof msg)
		len += (size_t)snprintf(msg + len, sizeof msg - len, "node '%s' (%s): ",
		                        node->name, kiln_op_name(node->op));
	if (len < sizeof msg)
		vsnprintf(msg + len, sizeof msg - len, fmt, ap);
	d->n_errors++;
	emit(d, msg);
	return status;
}

kiln_status kiln_diag_error(kiln_diag *d, kiln_status status, const kiln_node *node,
                            const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	kiln_status s = kiln_diag_verror(d, status, node, fmt, ap);
	va_end(ap);
	return s;
}

void kiln_diag_note(kiln_diag *d, const char *fmt, ...)
{
	if (!d)
		return;
	char msg[1024];
	size_t len = 0;
	if (d->file)
		len += (size_t)snprintf(msg, sizeof msg, "%s: ", d->file);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + len, sizeof msg - len, fmt, ap);
	va_end(ap);
	emit(d, msg);
}
