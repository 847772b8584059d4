/* interp_session.h — interpreter internals shared beyond interp.c: per-value
 * access to a session (for the numerics bisector) and the dtype-conversion
 * helpers the generic (non-f32) kernel paths use. */
#ifndef KILN_INTERP_SESSION_H
#define KILN_INTERP_SESSION_H

#include "interp.h"

/* The tensor of value `value_id` after the last run (type and data; data is
 * NULL before the first run for graph inputs). NULL if the id is out of range. */
const kiln_tensor *kiln_interp_value(const kiln_interp *it, int value_id);

/* t's elements converted to double / float, malloc'd (caller frees; at least
 * one element is allocated so an empty tensor still gives non-NULL).
 * NULL on OOM. */
double *kiln_load_f64(const kiln_tensor *t);
float *kiln_load_f32(const kiln_tensor *t);
/* Stores numel(t) values into t, converting to its dtype. */
void kiln_store_f64(kiln_tensor *t, const double *v);

#endif
