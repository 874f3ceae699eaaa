"""Remove Identity nodes and inference-mode Dropout (output = input)."""

from __future__ import annotations

NAME = "eliminate_identity"
DESCRIPTION = "remove Identity and inference-mode Dropout"


def _passthrough(graph, node) -> bool:
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Identity":
        return len(node.input) == 1 and bool(node.input[0])
    if node.op_type != "Dropout" or not node.input or not node.input[0]:
        return False
    # the mask output must be unused
    if (
        len(node.output) > 1
        and node.output[1]
        and (graph.consumers(node.output[1]) or graph.is_graph_output(node.output[1]))
    ):
        return False
    attrs = {a.name: a for a in node.attribute}
    if "is_test" in attrs and attrs["is_test"].i == 0:
        return False  # opset < 7 training mode
    if len(node.input) > 2 and node.input[2]:  # training_mode (opset 12+)
        mode = graph.const(node.input[2])
        if mode is None or bool(mode.reshape(-1)[0]):
            return False
    return True


def run(graph) -> bool:
    changed = False
    for node in graph.nodes:
        if not _passthrough(graph, node):
            continue
        x, y = node.input[0], node.output[0]
        if not graph.is_graph_output(y):
            graph.rename_input_uses(y, x)
            graph.aliases[y] = x
        elif not (
            graph.is_graph_input(x) or graph.is_graph_output(x) or graph.is_const(x)
        ) and graph.producer(x):
            # y is a graph output: let x's producer write y directly
            prod = graph.producer(x)
            for k, o in enumerate(prod.output):
                if o == x:
                    prod.output[k] = y
            graph.rename_input_uses(x, y)
            graph.aliases[x] = y
        else:
            continue  # an input or constant passed straight to an output: kept (mapped to a Split copy)
        # the indices of `graph` go stale here; the conditions above only read facts these edits keep valid
        graph.remove_nodes([node])
        changed = True
    return changed
