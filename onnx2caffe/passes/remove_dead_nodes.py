"""Remove nodes none of whose outputs is used (by a node or as a graph output), and unused initializers."""

from __future__ import annotations

NAME = "remove_dead_nodes"
DESCRIPTION = "remove nodes whose outputs are never used"


def run(graph) -> bool:
    g = graph.graph
    needed = {o.name for o in g.output}
    dead = []
    for node in reversed(list(g.node)):
        if any(o and o in needed for o in node.output):
            needed.update(i for i in node.input if i)
        else:
            dead.append(node)
    if dead:
        graph.remove_nodes(dead)
    before = len(g.initializer)
    graph.remove_unused_initializers()
    return bool(dead) or len(g.initializer) != before
