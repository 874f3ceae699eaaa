"""Drop the linear branch torch's dynamo exporter writes around nn.Softplus() (beta 1, threshold 20):

    y = Where(Greater(x, t), x, Softplus(x))

For every float32 x above 14.55609 (measured on every float32 from 10 to 40, and for larger x log1p(exp(-x))
is below half an ulp of x), onnxruntime's Softplus(x) is x itself, so with t >= that value the selection always
returns what Softplus returns: y = Softplus(x) exactly. The comparison must be read by the Where alone and not be
a graph output. Other betas (Mul / Div around the Softplus) are left alone.
"""

from __future__ import annotations

from .fuse_l2_normalize import _private, _scalar, _std

NAME = "remove_softplus_threshold"
DESCRIPTION = "remove Where(x > t, x, Softplus(x)) with t >= 14.55609 (float32 softplus(x) is x there)"

# the largest float32 x with softplus(x) != x in onnxruntime (and in exact arithmetic rounded to float32)
SOFTPLUS_IS_X_ABOVE = 14.55609


def _match(graph, where):
    if where.op_type != "Where" or not _std(where) or len(where.input) != 3:
        return None
    cond, a, b = where.input
    cmp, sp = graph.producer(cond), graph.producer(b)
    if cmp is None or sp is None or not _std(cmp) or not _std(sp):
        return None
    if cmp.op_type != "Greater" or sp.op_type != "Softplus" or not _private(graph, cond, where):
        return None
    if cmp.input[0] != a or sp.input[0] != a or a == b:
        return None
    t = _scalar(graph, cmp.input[1])
    if t is None or not t >= SOFTPLUS_IS_X_ABOVE:
        return None
    return cmp, sp


def run(graph) -> bool:
    changed = False
    for where in graph.nodes:
        found = _match(graph, where)
        if found is None:
            continue
        cmp, sp = found
        y, b = where.output[0], where.input[2]
        if not graph.is_graph_output(y):
            graph.rename_input_uses(y, b)
            graph.aliases[y] = b
        elif _private(graph, b, where):
            sp.output[0] = y  # the Softplus writes the graph output itself
            graph.aliases[b] = y
        else:
            continue
        graph.remove_nodes([where, cmp])
        changed = True
        graph.refresh()
    return changed
