/* dce.c — dead-code elimination: drops nodes none of whose outputs is used
 * (by a live node or as a graph output), then values nothing refers to. */
#include "passes.h"

#include <stdlib.h>

kiln_status kiln_pass_dce(kiln_graph *g, bool *changed, kiln_diag *d)
{
	bool *live = calloc((size_t)(g->n_values ? g->n_values : 1), 1);
	bool *keep = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), 1);
	if (!live || !keep) {
		free(live);
		free(keep);
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory in dce");
	}
	for (int i = 0; i < g->n_outputs; i++)
		live[g->outputs[i]->id] = true;
	/* one backward sweep suffices: users come after producers */
	for (int i = g->n_nodes - 1; i >= 0; i--) {
		const kiln_node *n = g->nodes[i];
		for (int j = 0; j < n->n_outputs && !keep[i]; j++)
			keep[i] = live[n->outputs[j]->id];
		if (!keep[i]) {
			*changed = true;
			continue;
		}
		for (int j = 0; j < n->n_inputs; j++)
			if (n->inputs[j])
				live[n->inputs[j]->id] = true;
	}
	int before = g->n_values;
	kiln_graph_compact(g, keep);
	kiln_graph_prune(g);
	*changed = *changed || g->n_values != before;
	free(live);
	free(keep);
	return KILN_OK;
}
