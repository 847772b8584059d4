/* interp_session.h — interpreter internals shared beyond interp.c: per-value
 * access to a session (for the numerics bisector). */
#ifndef KILN_INTERP_SESSION_H
#define KILN_INTERP_SESSION_H

#include "interp.h"

/* The tensor of value `value_id` after the last run (type and data; data is
 * NULL before the first run for graph inputs). NULL if the id is out of range. */
const kiln_tensor *kiln_interp_value(const kiln_interp *it, int value_id);

#endif
