"""Vector tiles for F16-weight × float32-activation matmuls (the lm_head, F16 dense linears), written
as LLVM IR inside numba.

A tile computes the dot products of a few weight rows with a few activation rows at once, each weight
vector widened once (`fpext` of fp16 bits: `vcvtph2ps`, exact) and used by every token of the tile.
Decode (one token) goes one row at a time in four accumulators: the weights stream in memory order,
which the hardware prefetcher follows at full bandwidth. Batches go 4 rows × 4 tokens with one
accumulator per pair, so every activation vector serves four rows; the four weight streams are
prefetched one tile ahead in software. The two shapes sum in different float32 orders: a sequence's
logits in a batch differ from its logits alone by rounding (~1e-6), as in any batched BLAS; the KV
cache, and so every later step, does not depend on the lm_head. Needs K % 32 == 0 and F16C.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8
CHUNK = 32  # K must be a multiple of it (one 64-byte line of fp16 weights)
_F32 = ir.FloatType()
_V8F32 = ir.VectorType(_F32, LANES)
_V8I16 = ir.VectorType(ir.IntType(16), LANES)
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)


def _codegen(n_rows: int, n_tok: int, n_accs: int):  # noqa: ANN202
    """Arguments: w (uint16 fp16 bits), row offsets o_0..o_{n_rows-1} (elements), x (float32),
    t0 (first token's row of x), x_stride (elements per x row), k. Each (row, token) pair has
    `n_accs` accumulators: element 8·(n_accs·c + a) + l goes to lane l of accumulator a."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        w = context.make_array(signature.args[0])(context, builder, args[0]).data
        rows = args[1:1 + n_rows]
        xa = context.make_array(signature.args[1 + n_rows])(context, builder, args[1 + n_rows]).data
        t0, x_stride, k = args[2 + n_rows:5 + n_rows]
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8F32, [_V8F32] * 3),
                                             "llvm.fma.v8f32")
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), _I32, _I32, _I32]),
            "llvm.prefetch.p0i8")
        zero = ir.Constant(_V8F32, [0.0] * LANES)
        accs = [[[cgutils.alloca_once_value(builder, zero) for _ in range(n_accs)] for _ in range(n_rows)]
                for _ in range(n_tok)]
        x_rows = [builder.mul(builder.add(t0, ir.Constant(_I64, t)), x_stride) for t in range(n_tok)]
        # Several rows are several streams 2·K bytes apart, which the hardware prefetcher does not
        # follow well: each 64-byte line of the next tile's rows is asked for one tile ahead.
        ahead = builder.mul(k, ir.Constant(_I64, n_rows))
        chunks = builder.udiv(k, ir.Constant(_I64, CHUNK))
        with cgutils.for_range(builder, chunks) as loop:
            base = builder.mul(loop.index, ir.Constant(_I64, CHUNK))
            for r in range(n_rows if n_rows > 1 else 0):
                nxt = builder.gep(w, [builder.add(builder.add(rows[r], base), ahead)])
                hint = [ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)]  # read, keep, data
                builder.call(prefetch, [builder.bitcast(nxt, ir.IntType(8).as_pointer()), *hint])
            for step in range(CHUNK // LANES):
                a = step % n_accs
                d = builder.add(base, ir.Constant(_I64, step * LANES))
                wv = []
                for r in range(n_rows):
                    ptr = builder.bitcast(builder.gep(w, [builder.add(rows[r], d)]), _V8I16.as_pointer())
                    half = builder.bitcast(builder.load(ptr, align=2), ir.VectorType(ir.HalfType(), LANES))
                    wv.append(builder.fpext(half, _V8F32))
                for t in range(n_tok):
                    ptr = builder.bitcast(builder.gep(xa, [builder.add(x_rows[t], d)]), _V8F32.as_pointer())
                    xv = builder.load(ptr, align=4)
                    for r in range(n_rows):
                        acc = accs[t][r][a]
                        builder.store(builder.call(fma, [wv[r], xv, builder.load(acc)]), acc)
        out = []
        for t in range(n_tok):
            for r in range(n_rows):
                vs = [builder.load(a) for a in accs[t][r]]
                while len(vs) > 1:  # (a0 + a2) + (a1 + a3) for four
                    half_n = len(vs) // 2
                    vs = [builder.fadd(vs[i], vs[i + half_n]) for i in range(half_n)]
                e = [builder.extract_element(vs[0], ir.Constant(_I32, i)) for i in range(LANES)]
                out.append(builder.fadd(builder.fadd(builder.fadd(e[0], e[4]), builder.fadd(e[2], e[6])),
                                        builder.fadd(builder.fadd(e[1], e[5]), builder.fadd(e[3], e[7]))))
        return context.make_tuple(builder, signature.return_type, out)

    return codegen


def _sig(n: int, *args) -> types.Type:  # noqa: ANN002
    return types.UniTuple(types.float32, n)(*args)


@intrinsic
def f16_tile_1x1(typingctx, w, o0, x, t0, x_stride, k):  # noqa: ANN001, ANN201
    """Decode: the dot product of the row at element offset o0 of `w` with token t0 of `x`, in four
    accumulators (four FMA chains; one row at a time streams the weights in memory order)."""
    return _sig(1, w, o0, x, t0, x_stride, k), _codegen(1, 1, 4)


@intrinsic
def f16_tile_4x4(typingctx, w, o0, o1, o2, o3, x, t0, x_stride, k):  # noqa: ANN001, ANN201
    """Batches: rows o0..o3 with tokens t0..t0+3, one accumulator per pair (sixteen chains), results
    token-major (token t0's four first)."""
    return _sig(16, w, o0, o1, o2, o3, x, t0, x_stride, k), _codegen(4, 4, 1)


@intrinsic
def f16_tile_4x1(typingctx, w, o0, o1, o2, o3, x, t0, x_stride, k):  # noqa: ANN001, ANN201
    """A batch's last tokens, one at a time, in the pair order of f16_tile_4x4."""
    return _sig(4, w, o0, o1, o2, o3, x, t0, x_stride, k), _codegen(4, 1, 1)
