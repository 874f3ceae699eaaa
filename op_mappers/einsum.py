"""Einsum of two operands that is a (batched) matrix product -> the MatMul composition (matmul.product), with
Transposes (_permute, bit-exact copies) only where the operands' or the output's letter order needs them.

The letters of `A,B->Y` are classified: batch (in A, B and Y), contracted K (in A and B, not in Y), M (only in A
and Y), N (only in B and Y). A is read as (batch, M, K) or, transposed in place, (batch, K, M); B as
(batch, K, N) or (batch, N, K) - the orders attention writes (MaxViT: 'BGHID,BGHJD->BGHIJ' is q k^T,
'BGHIJ,BGHJD->BGHID' is attn v). Any other letter order is permuted into one of those first, and the output
(batch, M, N) permuted into Y's order. Several letters of a group are flattened into one axis (a free view).
Exactness and cost are MatMul's (|err| <= K 2^-24 sum |a b|; the B*M*K*N products materialised, limit 2^26).
Refused: one operand or three, a letter repeated within an operand (a diagonal), a letter of one operand that
the output drops (a sum over it), and broadcasting of unit batch axes against larger ones in the equation.
"""

from __future__ import annotations

import math

from onnx2caffe.registry import register

from ._compose import fresh, permute, reshape, tidy, view
from .matmul import _operand, product


def parse(node, equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """(operand letter strings, output letters) with '...' expanded and the implicit output made explicit."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        node.reject_attr("equation", equation, f"{len(terms)} operand terms for {len(ranks)} inputs")
    counts = [rank - (len(t) - 3) if "..." in t else 0 for t, rank in zip(terms, ranks, strict=True)]
    ell = "".join(chr(ord("A") + 26 + i) for i in range(max(counts)))  # private letters after 'Z'
    out_terms = []
    for term, rank, n in zip(terms, ranks, counts, strict=True):
        term = term.replace("...", ell[len(ell) - n :] if n else "")
        if len(term) != rank:
            node.reject_attr("equation", equation, f"term '{term}' does not match a rank-{rank} input")
        out_terms.append(term)
    if arrow:
        out = rhs.replace("...", ell)
    else:  # implicit: the letters that appear once, sorted, after the ellipsis axes
        once = [
            c for c in sorted(set("".join(out_terms))) if "".join(out_terms).count(c) == 1 and c.isalpha()
        ]
        out = ell + "".join(once)
    return out_terms, out


@register(
    "Einsum",
    since=12,
    layers=("InnerProduct", "Convolution", "Concat", "Scale", "Eltwise", "Reshape", "Slice", "Power"),
    notes="two-operand (batched) matrix products (e.g. 'bhid,bhjd->bhij', 'bhij,bhjd->bhid') -> the MatMul "
    "composition (operands read transposed in place; other letter orders permuted by bit-exact copies); same "
    "bound and limit as MatMul",
)
def einsum(node, ctx):
    """Einsum A,B->Y as a batched matrix product (see the module docstring)."""
    equation = node.attr("equation")
    inputs = [t for t in node.inputs if t]
    if len(inputs) != 2:
        node.reject(f"{len(inputs)} operands (only products of two operands are composed)")
    if all(ctx.is_const(t) for t in inputs):
        node.reject("every input is a constant (not folded)")
    y = node.output(0)
    out_shape = tuple(ctx.shape(y))
    if not out_shape:
        node.reject("a rank-0 (scalar) output has no Caffe blob form")
    blobs = []
    layers: list = []
    for t, what in zip(inputs, ("first", "second"), strict=True):
        blob, shape, more = _operand(ctx, node, t, what)
        layers += more
        blobs.append((blob, tuple(shape)))
    (ta_letters, tb_letters), out = parse(node, equation, [len(s) for _, s in blobs])
    for term in (ta_letters, tb_letters, out):
        if len(set(term)) != len(term):
            node.reject_attr("equation", equation, "a letter repeated within one term (a diagonal or trace)")
    sizes: dict[str, int] = {}
    for term, (_, shape) in ((ta_letters, blobs[0]), (tb_letters, blobs[1])):
        for c, d in zip(term, shape, strict=True):
            if sizes.setdefault(c, d) != d:
                node.reject_attr("equation", equation, f"letter '{c}' has sizes {sizes[c]} and {d}")
    sa, sb, so = set(ta_letters), set(tb_letters), set(out)
    if (sa | sb) - so - (sa & sb):
        node.reject_attr("equation", equation, "a letter of one operand is summed away (only contractions)")
    if so - (sa | sb):
        node.reject_attr("equation", equation, "an output letter no operand has")
    batch = [c for c in out if c in sa and c in sb]
    m_letters = [c for c in ta_letters if c in so and c not in sb]
    n_letters = [c for c in tb_letters if c in so and c not in sa]
    k_letters = [c for c in ta_letters if c not in so]

    def size(letters):
        return math.prod(sizes[c] for c in letters)

    Bs = [sizes[c] for c in batch]
    M, N = size(m_letters), size(n_letters)

    def prepared(op, letters, first, second):
        """(blob, shape, transposed): the operand as (batch, first, second) or (batch, second, first)."""
        blob, shape = blobs[op]
        for order, trans in ((batch + first + second, False), (batch + second + first, True)):
            if letters == "".join(order):
                dims = (*Bs, size(first), size(second)) if not trans else (*Bs, size(second), size(first))
                more, v = view(ctx, node, blob, shape, dims, f"op{op}_view")
                layers.extend(more)
                return v, dims, trans
        want = "".join(batch + first + second)
        perm = [letters.index(c) for c in want]
        t = fresh(ctx, node, f"op{op}_t")
        dims = (*Bs, size(first), size(second))
        layers.extend(permute(ctx, node, blob, t, shape, perm, f"op{op}_t", top_shape=dims))
        return t, dims, False

    a, a_shape, ta = prepared(0, ta_letters, m_letters, k_letters)
    b, b_shape, tb = prepared(1, tb_letters, k_letters, n_letters)
    natural = "".join(batch + m_letters + n_letters)
    top = ctx.blob(y)
    prod_shape = (*Bs, M, N)
    if out == natural:
        layers += product(ctx, node, a, a_shape, ta, b, b_shape, tb, top, out_shape)
    else:
        mid = fresh(ctx, node, "product")
        layers += product(ctx, node, a, a_shape, ta, b, b_shape, tb, mid, prod_shape)
        full = tuple(sizes[c] for c in natural)
        perm = [natural.index(c) for c in out]
        if sorted(perm) == perm:
            layers.append(reshape(ctx, fresh(ctx, node, "out"), mid, top, out_shape))
        else:
            layers += permute(
                ctx, node, mid, top, full, perm, "out_t", bottom_shape=prod_shape, top_shape=out_shape
            )
    return tidy(ctx, node, layers)
