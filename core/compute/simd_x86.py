"""An AVX2 inner kernel for ternary × int8 sums, written as LLVM IR inside numba.

numba cannot express `vpmaddubsw` (u8 × s8 → pairwise i16 sums), the instruction llama.cpp's TQ2_0
kernel and bitnet.cpp's I2_S kernel are built on; LLVM's auto-vectorizer widens to int16 products
instead, which needs about twice the instructions per weight. The intrinsics here emit it through
LLVM's x86 intrinsics, four weight rows at a time sharing every activation load:

* `isum4` streams `n_groups` consecutive 32-byte code groups against int8 activations and returns
  the four exact integer sums Σ code·q (codes 0..2, so no saturation: |pair| <= 2·2·127); partial
  sums are widened to int32 after every group (`vpmaddwd` with ones).
* `q8k_rows4` is llama.cpp's TQ2_0 × Q8_K dot product operation for operation (int32 lanes, FMA into
  float lanes, the same horizontal sum), so Tritium's q8_k matmul equals llama.cpp's bit for bit.

`VNNI` says whether the host has `vpdpbusd` on 256-bit vectors; `q8k_rows4_vnni` and
`q8k_rows4x4_vnni` then give the same bits with it.

`AVAILABLE` is False off x86-64 or without AVX2; callers then use the portable numba kernels,
which give bit-identical results. numba's on-disk cache keys a kernel on its own module's source, so
after editing this file touch ternary_matmul.py (or clear its __pycache__) to recompile the kernels.
"""

from __future__ import annotations

import platform

from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _host_has_avx2() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        features = llvm.get_host_cpu_features()
    except RuntimeError:
        return False
    return bool(features.get("avx2", False))


AVAILABLE = _host_has_avx2()


def _host_has_vnni() -> bool:
    """`vpdpbusd` on 256-bit vectors: AVX512-VNNI with AVX512-VL, or AVX-VNNI."""
    if not AVAILABLE:
        return False
    features = llvm.get_host_cpu_features()
    return bool((features.get("avx512vnni") and features.get("avx512vl")) or features.get("avxvnni"))


VNNI = _host_has_vnni()

_I8 = ir.IntType(8)
_V32I8 = ir.VectorType(_I8, 32)
_V16I16 = ir.VectorType(ir.IntType(16), 16)
_V8I32 = ir.VectorType(ir.IntType(32), 8)


def _splat8(v: int) -> ir.Constant:
    return ir.Constant(_V32I8, [v] * 32)


@intrinsic
def isum4(typingctx, flat, o0, o1, o2, o3, x8, xo, n_groups, ahead):  # noqa: ANN001, ANN201 - intrinsic
    """(Σ c·q for row 0, 1, 2, 3): rows' code groups start at byte offsets o0..o3 of `flat` (uint8),
    the activations at element `xo` of `x8` (int8, plane-permuted); n_groups groups of 128 values.
    The bytes `ahead` further in each row are prefetched."""
    ret = types.UniTuple(types.int64, 4)
    sig = ret(flat, o0, o1, o2, o3, x8, xo, n_groups, ahead)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        mod = builder.module
        madd_ub = cgutils.get_or_insert_function(mod, ir.FunctionType(_V16I16, [_V32I8, _V32I8]),
                                                 "llvm.x86.avx2.pmadd.ub.sw")
        madd_wd = cgutils.get_or_insert_function(mod, ir.FunctionType(_V8I32, [_V16I16, _V16I16]),
                                                 "llvm.x86.avx2.pmadd.wd")
        reduce_add = cgutils.get_or_insert_function(mod, ir.FunctionType(ir.IntType(32), [_V8I32]),
                                                    "llvm.vector.reduce.add.v8i32")

        i32t = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            mod, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), i32t, i32t, i32t]),
            "llvm.prefetch.p0i8")
        codes = context.make_array(signature.args[0])(context, builder, args[0])
        acts = context.make_array(signature.args[5])(context, builder, args[5])
        ones = ir.Constant(_V16I16, [1] * 16)
        mask = _splat8(3)
        i64 = ir.IntType(64)
        rows = [builder.gep(codes.data, [a]) for a in args[1:5]]
        xbase = builder.gep(acts.data, [args[6]])
        accs = [cgutils.alloca_once_value(builder, ir.Constant(_V8I32, [0] * 8)) for _ in range(4)]

        def load32(ptr: ir.Value) -> ir.Value:
            return builder.load(builder.bitcast(ptr, _V32I8.as_pointer()), align=1)

        with cgutils.for_range(builder, args[7]) as loop:
            g = loop.index
            xg = builder.mul(g, ir.Constant(i64, 128))
            xs = [load32(builder.gep(xbase, [builder.add(xg, ir.Constant(i64, 32 * p))])) for p in range(4)]
            cg = builder.mul(g, ir.Constant(i64, 32))
            for r in range(4):
                builder.call(prefetch, [builder.gep(rows[r], [builder.add(cg, args[8])]),
                                        ir.Constant(i32t, 0), ir.Constant(i32t, 3), ir.Constant(i32t, 1)])
                c = load32(builder.gep(rows[r], [cg]))
                planes = [builder.and_(c, mask),
                          builder.and_(builder.lshr(c, _splat8(2)), mask),
                          builder.and_(builder.lshr(c, _splat8(4)), mask),
                          builder.lshr(c, _splat8(6))]
                s = builder.call(madd_ub, [planes[0], xs[0]])
                for p in range(1, 4):
                    s = builder.add(s, builder.call(madd_ub, [planes[p], xs[p]]))
                acc = builder.load(accs[r])
                builder.store(builder.add(acc, builder.call(madd_wd, [s, ones])), accs[r])
        out = [builder.sext(builder.call(reduce_add, [builder.load(a)]), i64) for a in accs]
        return context.make_tuple(builder, ret, out)

    return sig, codegen


def _q8k_codegen(nt: int, vnni: bool = False):  # noqa: ANN202
    """Codegen of a q8_k row-quad dot for `nt` tokens sharing every code load and plane unpack.
    Arguments: flat, o0..o3, goffs, (x8, lsum, da) per token, w0..w3, wstep, n_blocks, ahead.
    With `vnni`, each lane's four byte products are summed by one `vpdpbusd` (u8 codes × s8 values
    into int32 lanes: the same lanes as `vpmaddubsw` + `vpmaddwd`, exact, in fewer instructions; the
    kernel gains 5-20%, as the float part per block and the plane unpacking stay)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        mod = builder.module
        f32 = ir.FloatType()
        v8f32 = ir.VectorType(f32, 8)
        i64 = ir.IntType(64)
        i32t = ir.IntType(32)
        madd_ub = cgutils.get_or_insert_function(mod, ir.FunctionType(_V16I16, [_V32I8, _V32I8]),
                                                 "llvm.x86.avx2.pmadd.ub.sw")
        madd_wd = cgutils.get_or_insert_function(mod, ir.FunctionType(_V8I32, [_V16I16, _V16I16]),
                                                 "llvm.x86.avx2.pmadd.wd")
        fma = cgutils.get_or_insert_function(mod, ir.FunctionType(v8f32, [v8f32, v8f32, v8f32]),
                                             "llvm.fma.v8f32")
        prefetch = cgutils.get_or_insert_function(
            mod, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), i32t, i32t, i32t]),
            "llvm.prefetch.p0i8")
        dpbusd = cgutils.get_or_insert_function(mod, ir.FunctionType(_V8I32, [_V8I32, _V8I32, _V8I32]),
                                                "llvm.x86.avx512.vpdpbusd.256") if vnni else None

        def lane_sums(planes: list, xs: list) -> ir.Value:
            """int32 lane l = Σ over both groups and all planes of bytes 4l..4l+3, code × value."""
            if vnni:
                acc = ir.Constant(_V8I32, [0] * 8)
                for h in range(2):
                    for p in range(4):
                        acc = builder.call(dpbusd, [acc, builder.bitcast(planes[h][p], _V8I32),
                                                    builder.bitcast(xs[h][p], _V8I32)])
                return acc
            s = None
            for h in range(2):
                for p in range(4):
                    m = builder.call(madd_ub, [planes[h][p], xs[h][p]])
                    s = m if s is None else builder.add(s, m)
            return builder.call(madd_wd, [s, ones])

        def data(i: int) -> ir.Value:
            return context.make_array(signature.args[i])(context, builder, args[i]).data

        codes, goff_p = data(0), data(5)
        tok = [(data(6 + 3 * t), data(7 + 3 * t), data(8 + 3 * t)) for t in range(nt)]
        base = 6 + 3 * nt
        w_p = [data(base + r) for r in range(4)]
        wstep, n_blocks, ahead = args[base + 4], args[base + 5], args[base + 6]
        rows = [builder.gep(codes, [a]) for a in args[1:5]]
        ones = ir.Constant(_V16I16, [1] * 16)
        mask = _splat8(3)
        zero8 = ir.Constant(v8f32, [0.0] * 8)
        accs = [[cgutils.alloca_once_value(builder, zero8) for _ in range(4)] for _ in range(nt)]

        def load32(ptr: ir.Value) -> ir.Value:
            return builder.load(builder.bitcast(ptr, _V32I8.as_pointer()), align=1)

        def splat(x: ir.Value) -> ir.Value:
            v = builder.insert_element(ir.Constant(v8f32, ir.Undefined), x, ir.Constant(i32t, 0))
            return builder.shuffle_vector(v, ir.Constant(v8f32, ir.Undefined),
                                          ir.Constant(ir.VectorType(i32t, 8), [0] * 8))

        with cgutils.for_range(builder, n_blocks) as loop:
            b = loop.index
            g0 = builder.mul(b, ir.Constant(i64, 2))
            offs = [builder.load(builder.gep(goff_p, [builder.add(g0, ir.Constant(i64, h))]))
                    for h in range(2)]
            xb = builder.mul(b, ir.Constant(i64, 256))
            xv, ls, da = [], [], []
            for xs_p, lsum_p, da_p in tok:
                xv.append([[load32(builder.gep(xs_p, [builder.add(xb, ir.Constant(i64, 128 * h + 32 * p))]))
                            for p in range(4)] for h in range(2)])
                ls_ptr = builder.bitcast(builder.gep(lsum_p, [builder.mul(b, ir.Constant(i64, 8))]),
                                         _V8I32.as_pointer())
                ls.append(builder.load(ls_ptr, align=4))
                da.append(builder.load(builder.gep(da_p, [b])))
            wi = builder.mul(b, wstep)
            for r in range(4):
                # rows `ahead` bytes further: DRAM latency is the limit once the arithmetic is this short
                builder.call(prefetch, [builder.gep(rows[r], [builder.add(offs[0], ahead)]),
                                        ir.Constant(i32t, 0), ir.Constant(i32t, 3), ir.Constant(i32t, 1)])
                planes = []
                for h in range(2):
                    c = load32(builder.gep(rows[r], [offs[h]]))
                    planes.append([builder.and_(c, mask),
                                   builder.and_(builder.lshr(c, _splat8(2)), mask),
                                   builder.and_(builder.lshr(c, _splat8(4)), mask),
                                   builder.lshr(c, _splat8(6))])
                w_rb = builder.load(builder.gep(w_p[r], [wi]))
                for t in range(nt):
                    lanes = builder.sub(lane_sums(planes, xv[t]), ls[t])
                    dv = splat(builder.fmul(w_rb, da[t]))
                    acc = builder.load(accs[t][r])
                    builder.store(builder.call(fma, [builder.sitofp(lanes, v8f32), dv, acc]), accs[t][r])
        out = []
        for t in range(nt):
            for r in range(4):
                f = builder.load(accs[t][r])
                e = [builder.extract_element(f, ir.Constant(i32t, i)) for i in range(8)]
                rr = [builder.fadd(e[4 + i], e[i]) for i in range(4)]
                out.append(builder.fadd(builder.fadd(rr[0], rr[2]), builder.fadd(rr[1], rr[3])))
        return context.make_tuple(builder, signature.return_type, out)

    return codegen


@intrinsic
def q8k_rows4(typingctx, flat, o0, o1, o2, o3, goffs, x8, lsum, da, w0, w1, w2, w3, wstep,  # noqa: ANN001, ANN201
              n_blocks, ahead):  # noqa: ANN001
    """A whole q8_k row quad in registers, exactly llama.cpp's AVX2 TQ2_0 dot. For every 256-value
    block b: 8 int32 lanes per row (lane l = bytes 4l..4l+3 of both 32-byte groups, all planes) minus
    lsum[8b:8b+8] (llama.cpp's bsums, paired), converted to float32 and fused-multiply-added with
    d = w_r[b·wstep]·da[b] into 8 float lanes; then hsum_float_8. Rows start at byte offsets o0..o3
    of `flat`; block b's two groups sit at goffs[2b] and goffs[2b+1] inside a row; the bytes `ahead`
    further in each row are prefetched. Returns the 4 row results."""
    sig = types.UniTuple(types.float32, 4)(flat, o0, o1, o2, o3, goffs, x8, lsum, da, w0, w1, w2, w3,
                                           wstep, n_blocks, ahead)
    return sig, _q8k_codegen(1)


@intrinsic
def q8k_rows4x2(typingctx, flat, o0, o1, o2, o3, goffs, x8a, lsuma, daa, x8b, lsumb, dab,  # noqa: ANN001, ANN201
                w0, w1, w2, w3, wstep, n_blocks, ahead):  # noqa: ANN001
    """`q8k_rows4` for two tokens at once (prefill): each code load and plane unpack serves both.
    Returns token a's 4 row results, then token b's."""
    sig = types.UniTuple(types.float32, 8)(flat, o0, o1, o2, o3, goffs, x8a, lsuma, daa, x8b, lsumb, dab,
                                           w0, w1, w2, w3, wstep, n_blocks, ahead)
    return sig, _q8k_codegen(2)


@intrinsic
def q8k_rows4_vnni(typingctx, flat, o0, o1, o2, o3, goffs, x8, lsum, da, w0, w1, w2, w3, wstep,  # noqa: ANN001, ANN201
                   n_blocks, ahead):  # noqa: ANN001
    """`q8k_rows4` with `vpdpbusd` (VNNI hosts only): the same bits."""
    sig = types.UniTuple(types.float32, 4)(flat, o0, o1, o2, o3, goffs, x8, lsum, da, w0, w1, w2, w3,
                                           wstep, n_blocks, ahead)
    return sig, _q8k_codegen(1, vnni=True)


@intrinsic
def q8k_rows4x4_vnni(typingctx, flat, o0, o1, o2, o3, goffs, x8a, lsuma, daa, x8b, lsumb, dab,  # noqa: ANN001, ANN201
                     x8c, lsumc, dac, x8d, lsumd, dad, w0, w1, w2, w3, wstep, n_blocks, ahead):  # noqa: ANN001
    """`q8k_rows4` with `vpdpbusd` for four tokens at once (prefill: each row quad's codes are unpacked
    once for four tokens). Returns token a's 4 row results, then b's, c's, d's."""
    sig = types.UniTuple(types.float32, 16)(flat, o0, o1, o2, o3, goffs, x8a, lsuma, daa, x8b, lsumb, dab,
                                            x8c, lsumc, dac, x8d, lsumd, dad, w0, w1, w2, w3, wstep,
                                            n_blocks, ahead)
    return sig, _q8k_codegen(4, vnni=True)
