"""Vector inner loops of attention, written as LLVM IR inside numba: a query·key dot product and a
probability-weighted sum of value rows, over K/V caches stored as fp16 bit patterns or float32.

numba's own loops over `head_dim` reduce one scalar per key (a horizontal sum every key) and keep the
output row in memory between keys; here the dot product runs in four 8-lane float32 accumulators with
one fixed reduction at the end, and the weighted sum keeps 32 output dims in registers across all
keys. fp16 rows are widened by `fpext` (`vcvtph2ps` with F16C: exact). The order of the float32 sums
is fixed, so a result never depends on the batch around it.

Both need `head_dim % 32 == 0` (64, 128, ...); `attention.py` uses its plain kernel otherwise, and
wherever fp16 caches have no hardware conversion (`float16.F16C`).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8
CHUNK = 32  # dims per accumulator set: 4 vectors of 8 float32

_F32 = ir.FloatType()
_V8F32 = ir.VectorType(_F32, LANES)
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)


def _row_loader(builder: ir.IRBuilder, f16: bool):  # noqa: ANN202
    """load8(ptr, index) -> v8f32 of elements index..index+7 of a float32 or fp16-bits row."""
    elem = ir.IntType(16) if f16 else _F32
    vec = ir.VectorType(elem, LANES)

    def load8(ptr: ir.Value, index: ir.Value) -> ir.Value:
        v = builder.load(builder.bitcast(builder.gep(ptr, [index]), vec.as_pointer()), align=2 if f16 else 4)
        if f16:
            v = builder.fpext(builder.bitcast(v, ir.VectorType(ir.HalfType(), LANES)), _V8F32)
        return v

    return load8


def _fma(builder: ir.IRBuilder):  # noqa: ANN202
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8F32, [_V8F32] * 3),
                                        "llvm.fma.v8f32")
    return lambda a, b, c: builder.call(fn, [a, b, c])


def _hsum(builder: ir.IRBuilder, v: ir.Value) -> ir.Value:
    e = [builder.extract_element(v, ir.Constant(_I32, i)) for i in range(LANES)]
    return builder.fadd(builder.fadd(builder.fadd(e[0], e[4]), builder.fadd(e[2], e[6])),
                        builder.fadd(builder.fadd(e[1], e[5]), builder.fadd(e[3], e[7])))


@intrinsic
def dot_row(typingctx, q, q_off, k, k_off, n):  # noqa: ANN001, ANN201 - numba intrinsic signature
    """Σ_d q[q_off + d] · k[k_off + d] for d < n (n % 32 == 0) in float32; q float32, k float32 or
    uint16 fp16 bits (any dimensionality: offsets index the flat data)."""
    sig = types.float32(q, q_off, k, k_off, n)
    f16 = k.dtype == types.uint16

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        qa = context.make_array(signature.args[0])(context, builder, args[0])
        ka = context.make_array(signature.args[2])(context, builder, args[2])
        load_q, load_k, fma = _row_loader(builder, False), _row_loader(builder, f16), _fma(builder)
        zero = ir.Constant(_V8F32, [0.0] * LANES)
        accs = [cgutils.alloca_once_value(builder, zero) for _ in range(4)]
        steps = builder.udiv(args[4], ir.Constant(_I64, CHUNK))
        with cgutils.for_range(builder, steps) as loop:
            d = builder.mul(loop.index, ir.Constant(_I64, CHUNK))
            for a in range(4):
                o = builder.add(d, ir.Constant(_I64, LANES * a))
                x = load_q(qa.data, builder.add(args[1], o))
                y = load_k(ka.data, builder.add(args[3], o))
                builder.store(fma(x, y, builder.load(accs[a])), accs[a])
        a0, a1, a2, a3 = (builder.load(a) for a in accs)
        return _hsum(builder, builder.fadd(builder.fadd(a0, a2), builder.fadd(a1, a3)))

    return sig, codegen


@intrinsic
def weighted_rows(typingctx, p, n, v, v_off, stride, out, out_off, dims):  # noqa: ANN001, ANN201
    """out[out_off + d] = Σ_j p[j] · v[v_off + j·stride + d] for j < n, d < dims (dims % 32 == 0),
    float32; v float32 or uint16 fp16 bits. Each 32-dim chunk keeps its sums in registers over j."""
    sig = types.void(p, n, v, v_off, stride, out, out_off, dims)
    f16 = v.dtype == types.uint16

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        pa = context.make_array(signature.args[0])(context, builder, args[0])
        va = context.make_array(signature.args[2])(context, builder, args[2])
        oa = context.make_array(signature.args[5])(context, builder, args[5])
        load_v, fma = _row_loader(builder, f16), _fma(builder)
        zero = ir.Constant(_V8F32, [0.0] * LANES)
        chunks = builder.udiv(args[7], ir.Constant(_I64, CHUNK))
        with cgutils.for_range(builder, chunks) as outer:
            c = builder.mul(outer.index, ir.Constant(_I64, CHUNK))
            accs = [cgutils.alloca_once_value(builder, zero) for _ in range(4)]
            for a in accs:
                builder.store(zero, a)
            with cgutils.for_range(builder, args[1]) as inner:
                j = inner.index
                pj = builder.load(builder.gep(pa.data, [j]))
                pv = builder.insert_element(ir.Constant(_V8F32, ir.Undefined), pj, ir.Constant(_I32, 0))
                pv = builder.shuffle_vector(pv, ir.Constant(_V8F32, ir.Undefined),
                                            ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))
                row = builder.add(builder.add(args[3], builder.mul(j, args[4])), c)
                for a in range(4):
                    x = load_v(va.data, builder.add(row, ir.Constant(_I64, LANES * a)))
                    builder.store(fma(pv, x, builder.load(accs[a])), accs[a])
            for a in range(4):
                at = builder.add(args[6], builder.add(c, ir.Constant(_I64, LANES * a)))
                dst = builder.gep(oa.data, [at])
                builder.store(builder.load(accs[a]), builder.bitcast(dst, _V8F32.as_pointer()), align=4)

    return sig, codegen
