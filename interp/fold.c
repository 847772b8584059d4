/* fold.c — kiln_import_onnx: the ONNX frontend with the reference interpreter
 * as its constant folder (shape computations such as Shape -> Gather ->
 * Concat -> Reshape become constants during import). */
#include "interp.h"

static kiln_status fold_node(void *user, const kiln_node *node, void **out_data, kiln_diag *d)
{
	(void)user;
	return kiln_interp_eval_node(node, out_data, d);
}

kiln_status kiln_import_onnx(const char *path, const kiln_import_opts *opts, kiln_graph **out,
                             kiln_diag *d)
{
	kiln_import_opts o = {0};
	if (opts)
		o = *opts;
	o.fold = fold_node;
	o.fold_user = NULL;
	return kiln_onnx_import(path, &o, out, d);
}
