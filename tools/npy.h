/* npy.h — kiln's own reader and writer for NumPy's .npy files.
 *
 * The CLI reads model inputs from .npy and writes outputs to .npy; tests use
 * the same code. Supported: format versions 1.0, 2.0 and 3.0 on read, 1.0 on
 * write (a header never outgrows 1.0 with KILN_MAX_RANK dims); C order only;
 * little-endian only. dtypes:
 *
 *   .npy descr   kiln dtype        .npy descr   kiln dtype
 *   '<f4'        f32               '<i4'        i32
 *   '<f2'        f16               '|i1'        i8
 *   '<f8'        f64               '|u1'        u8
 *   '<i8'        i64               '|b1'        bool
 *
 * bf16 has no NumPy dtype: kiln_npy_write stores a bf16 tensor as '<f4'
 * (exactly: every bf16 value is an f32 value). Every error is one message,
 * prefixed with the file's path, through `d`. */
#ifndef KILN_NPY_H
#define KILN_NPY_H

#include "kiln.h"

/* Reads `path` into *t. On success t->data is malloc'd (caller frees; never
 * NULL, even for zero elements). On failure *t is zeroed and nothing needs
 * freeing. Errors: KILN_ERR_IO (cannot open/read), KILN_ERR_INVALID_ARG
 * (not a .npy file, malformed header, truncated data, unsupported dtype or
 * layout), KILN_ERR_OOM. */
kiln_status kiln_npy_read(const char *path, kiln_tensor *t, kiln_diag *d);

/* Writes *t to `path` through a temporary file in the same directory, renamed
 * over `path` on success: a failed write leaves no file behind and an
 * existing `path` untouched. Errors: KILN_ERR_IO, KILN_ERR_INVALID_ARG
 * (bad dtype or rank), KILN_ERR_OOM. */
kiln_status kiln_npy_write(const char *path, const kiln_tensor *t, kiln_diag *d);

#endif
