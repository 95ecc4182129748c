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
* `q8k_row6` / `q8k_row2` (prefill) compute one row against 6 or 2 tokens, each activation vector
  used once so its load folds into the multiply: no register spills.

`VNNI` says whether the host has `vpdpbusd` on 256-bit vectors; the q8_k intrinsics' `vnni` argument
then selects it at run time (the same bits; elsewhere it is ignored).

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
        q = _Q8kIR(builder)
        reduce_add = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), [_V8I32]),
                                                    "llvm.vector.reduce.add.v8i32")
        codes = context.make_array(signature.args[0])(context, builder, args[0])
        acts = context.make_array(signature.args[5])(context, builder, args[5])
        ones = ir.Constant(_V16I16, [1] * 16)
        rows = [builder.gep(codes.data, [a]) for a in args[1:5]]
        xbase = builder.gep(acts.data, [args[6]])
        accs = [cgutils.alloca_once_value(builder, ir.Constant(_V8I32, [0] * 8)) for _ in range(4)]

        with cgutils.for_range(builder, args[7]) as loop:
            g = loop.index
            xg = builder.mul(g, q.const(128))
            xs = [q.load32(builder.gep(xbase, [builder.add(xg, q.const(32 * p))])) for p in range(4)]
            cg = builder.mul(g, q.const(32))
            for r in range(4):
                q.prefetch(builder.gep(rows[r], [builder.add(cg, args[8])]))
                planes = q.planes(rows[r], [cg])
                s = builder.call(q.madd_ub, [planes[0], xs[0]])
                for p in range(1, 4):
                    s = builder.add(s, builder.call(q.madd_ub, [planes[p], xs[p]]))
                acc = builder.load(accs[r])
                builder.store(builder.add(acc, builder.call(q.madd_wd, [s, ones])), accs[r])
        out = [builder.sext(builder.call(reduce_add, [builder.load(a)]), ir.IntType(64)) for a in accs]
        return context.make_tuple(builder, ret, out)

    return sig, codegen


class _Q8kIR:
    """The IR pieces the codegens here share (isum4's and the q8_k ones), bound to one builder."""

    def __init__(self, builder: ir.IRBuilder) -> None:
        self.b = builder
        mod = builder.module
        self.f32 = ir.FloatType()
        self.v8f32 = ir.VectorType(self.f32, 8)
        i32t = ir.IntType(32)

        def fn(name: str, ret: ir.Type, *params: ir.Type) -> ir.Function:
            return cgutils.get_or_insert_function(mod, ir.FunctionType(ret, list(params)), name)

        self.madd_ub = fn("llvm.x86.avx2.pmadd.ub.sw", _V16I16, _V32I8, _V32I8)
        self.madd_wd = fn("llvm.x86.avx2.pmadd.wd", _V8I32, _V16I16, _V16I16)
        self.fma = fn("llvm.fma.v8f32", self.v8f32, self.v8f32, self.v8f32, self.v8f32)
        self.prefetch_fn = fn("llvm.prefetch.p0i8", ir.VoidType(), _I8.as_pointer(), i32t, i32t, i32t)
        self.dpbusd = fn("llvm.x86.avx512.vpdpbusd.256", _V8I32, _V8I32, _V8I32, _V8I32) if VNNI else None

    def const(self, v: int) -> ir.Constant:
        return ir.Constant(ir.IntType(64), v)

    def load32(self, ptr: ir.Value) -> ir.Value:
        return self.b.load(self.b.bitcast(ptr, _V32I8.as_pointer()), align=1)

    def prefetch(self, ptr: ir.Value) -> None:
        i32t = ir.IntType(32)
        self.b.call(self.prefetch_fn, [ptr, ir.Constant(i32t, 0), ir.Constant(i32t, 3), ir.Constant(i32t, 1)])

    def planes(self, row: ir.Value, offs: list) -> list:
        """The 8 code vectors (2 groups × 4 planes, values 0..2) of one row's 256-value block."""
        out = []
        mask = _splat8(3)
        for off in offs:
            c = self.load32(self.b.gep(row, [off]))
            out += [self.b.and_(c, mask), self.b.and_(self.b.lshr(c, _splat8(2)), mask),
                    self.b.and_(self.b.lshr(c, _splat8(4)), mask), self.b.lshr(c, _splat8(6))]
        return out

    def lane_sums(self, planes: list, xs: list, vnni: bool) -> ir.Value:
        """int32 lane l = Σ over the 8 (code, value) vector pairs of bytes 4l..4l+3, code × value."""
        b = self.b
        if vnni:  # two chains of 4: one chain of 8 dependent vpdpbusd waits on their latency
            halves = []
            for h in range(2):
                acc = ir.Constant(_V8I32, [0] * 8)
                for j in range(4 * h, 4 * h + 4):
                    acc = b.call(self.dpbusd, [acc, b.bitcast(planes[j], _V8I32), b.bitcast(xs[j], _V8I32)])
                halves.append(acc)
            return b.add(halves[0], halves[1])
        s = b.call(self.madd_ub, [planes[0], xs[0]])
        for j in range(1, 8):
            s = b.add(s, b.call(self.madd_ub, [planes[j], xs[j]]))
        return b.call(self.madd_wd, [s, ir.Constant(_V16I16, [1] * 16)])

    def accumulate(self, acc: ir.Value, lanes: ir.Value, lsum: ir.Value, d: ir.Value) -> None:
        """acc (an alloca of 8 floats) = fma(float(lanes - lsum), splat(d), acc): llama.cpp's step."""
        b = self.b
        i32t = ir.IntType(32)
        v = b.insert_element(ir.Constant(self.v8f32, ir.Undefined), d, ir.Constant(i32t, 0))
        dv = b.shuffle_vector(v, ir.Constant(self.v8f32, ir.Undefined),
                              ir.Constant(ir.VectorType(i32t, 8), [0] * 8))
        f = b.sitofp(b.sub(lanes, lsum), self.v8f32)
        b.store(b.call(self.fma, [f, dv, b.load(acc)]), acc)

    def new_acc(self) -> ir.Value:
        return cgutils.alloca_once_value(self.b, ir.Constant(self.v8f32, [0.0] * 8))

    def hsum(self, acc: ir.Value) -> ir.Value:
        """llama.cpp's hsum_float_8: ((f4+f0) + (f6+f2)) + ((f5+f1) + (f7+f3))."""
        b = self.b
        f = b.load(acc)
        e = [b.extract_element(f, ir.Constant(ir.IntType(32), i)) for i in range(8)]
        rr = [b.fadd(e[4 + i], e[i]) for i in range(4)]
        return b.fadd(b.fadd(rr[0], rr[2]), b.fadd(rr[1], rr[3]))

    def lsum_at(self, lsum_p: ir.Value, blk: ir.Value) -> ir.Value:
        ptr = self.b.gep(lsum_p, [self.b.mul(blk, self.const(8))])
        return self.b.load(self.b.bitcast(ptr, _V8I32.as_pointer()), align=4)

    def block_offsets(self, goff_p: ir.Value, blk: ir.Value) -> list:
        g0 = self.b.mul(blk, self.const(2))
        return [self.b.load(self.b.gep(goff_p, [self.b.add(g0, self.const(h))])) for h in range(2)]

    def blocks_per_flag(self, flag: ir.Value, n_blocks: ir.Value, body) -> None:  # noqa: ANN001
        """`body(block, vnni)` for every block, with vnni = the runtime `flag` on a VNNI host (the
        branch is taken once per call, outside the loop) and always False elsewhere."""
        if not VNNI:
            with cgutils.for_range(self.b, n_blocks) as loop:
                body(loop.index, False)
            return
        with self.b.if_else(flag) as (on, off):
            for block, vnni in ((on, True), (off, False)):
                with block, cgutils.for_range(self.b, n_blocks) as loop:
                    body(loop.index, vnni)


@intrinsic
def q8k_rows4(typingctx, vnni, flat, o0, o1, o2, o3, goffs, x8, lsum, da, w0, w1, w2, w3,  # noqa: ANN001, ANN201
              wstep, n_blocks, ahead):  # noqa: ANN001
    """A whole q8_k row quad against one token in registers, exactly llama.cpp's AVX2 TQ2_0 dot.
    For every 256-value block b: 8 int32 lanes per row (lane l = bytes 4l..4l+3 of both 32-byte
    groups, all planes) minus lsum[8b:8b+8] (llama.cpp's bsums, paired), converted to float32 and
    fused-multiply-added with d = w_r[b·wstep]·da[b] into 8 float lanes; then hsum_float_8. Rows
    start at byte offsets o0..o3 of `flat`; block b's two groups sit at goffs[2b] and goffs[2b+1]
    inside a row; the bytes `ahead` further in each row are prefetched. With `vnni` (and a VNNI host)
    each lane's byte products are summed by `vpdpbusd` instead of `vpmaddubsw` + `vpmaddwd`: the same
    exact lanes in fewer instructions. Returns the 4 row results."""
    sig = types.UniTuple(types.float32, 4)(vnni, flat, o0, o1, o2, o3, goffs, x8, lsum, da, w0, w1, w2, w3,
                                           wstep, n_blocks, ahead)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        q = _Q8kIR(builder)

        def data(i: int) -> ir.Value:
            return context.make_array(signature.args[i])(context, builder, args[i]).data

        codes, goff_p, x_p, lsum_p, da_p = data(1), data(6), data(7), data(8), data(9)
        w_p = [data(10 + r) for r in range(4)]
        wstep, n_blocks, ahead = args[14:17]
        rows = [builder.gep(codes, [a]) for a in args[2:6]]
        accs = [q.new_acc() for _ in range(4)]

        def block(blk: ir.Value, vnni: bool) -> None:
            offs = q.block_offsets(goff_p, blk)
            xb = builder.mul(blk, q.const(256))
            xs = [q.load32(builder.gep(x_p, [builder.add(xb, q.const(32 * j))])) for j in range(8)]
            ls = q.lsum_at(lsum_p, blk)
            da = builder.load(builder.gep(da_p, [blk]))
            for r in range(4):
                # rows `ahead` bytes further: DRAM latency is the limit once the arithmetic is this short
                q.prefetch(builder.gep(rows[r], [builder.add(offs[0], ahead)]))
                w_rb = builder.load(builder.gep(w_p[r], [builder.mul(blk, wstep)]))
                lanes = q.lane_sums(q.planes(rows[r], offs), xs, vnni)
                q.accumulate(accs[r], lanes, ls, builder.fmul(w_rb, da))

        q.blocks_per_flag(args[0], n_blocks, block)
        return context.make_tuple(builder, signature.return_type, [q.hsum(a) for a in accs])

    return sig, codegen


def _q8k_row_codegen(nt: int):  # noqa: ANN202
    """Codegen of one weight row's q8_k dot with `nt` consecutive tokens (prefill).
    Arguments: vnni, flat, o, goffs, x8 (2-D), lsum32 (2-D), act_scales (2-D), t0, w, wstep, n_blocks,
    ahead.

    The row's code groups are unpacked into 8 plane vectors once per block; every activation vector
    is then used exactly once, so LLVM folds its load into the `vpdpbusd`/`vpmaddubsw`. The whole
    block lives in about 8 + 2·nt registers: nothing spills to the stack. (A row quad sharing
    activation registers across four rows and four tokens needs more than the 32 vector registers
    and spilled about 190 vectors per block; the spill stores then aliased the activation loads at
    some stack offsets, which made that kernel's speed depend on the caller's stack depth.)"""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        q = _Q8kIR(builder)
        i8p = _I8.as_pointer()

        def array(i: int):  # noqa: ANN202
            return context.make_array(signature.args[i])(context, builder, args[i])

        def row_ptr(i: int, t: ir.Value, elem: ir.Type) -> ir.Value:
            """Pointer to row `t` of the 2-D argument i (any row stride)."""
            a = array(i)
            stride0 = cgutils.unpack_tuple(builder, a.strides, 2)[0]
            return builder.bitcast(builder.gep(builder.bitcast(a.data, i8p), [builder.mul(t, stride0)]),
                                   elem.as_pointer())

        codes, goff_p, w_p = array(1).data, array(3).data, array(8).data
        t0, wstep, n_blocks, ahead = args[7], args[9], args[10], args[11]
        row = builder.gep(codes, [args[2]])
        toks = [builder.add(t0, q.const(t)) for t in range(nt)]
        x_p = [row_ptr(4, t, _I8) for t in toks]
        ls_p = [row_ptr(5, t, ir.IntType(32)) for t in toks]
        da_p = [row_ptr(6, t, q.f32) for t in toks]
        accs = [q.new_acc() for _ in range(nt)]

        def block(blk: ir.Value, vnni: bool) -> None:
            offs = q.block_offsets(goff_p, blk)
            q.prefetch(builder.gep(row, [builder.add(offs[0], ahead)]))
            planes = q.planes(row, offs)
            w_b = builder.load(builder.gep(w_p, [builder.mul(blk, wstep)]))
            xb = builder.mul(blk, q.const(256))
            for t in range(nt):
                xs = [q.load32(builder.gep(x_p[t], [builder.add(xb, q.const(32 * j))])) for j in range(8)]
                d = builder.fmul(w_b, builder.load(builder.gep(da_p[t], [blk])))
                q.accumulate(accs[t], q.lane_sums(planes, xs, vnni), q.lsum_at(ls_p[t], blk), d)

        q.blocks_per_flag(args[0], n_blocks, block)
        return context.make_tuple(builder, signature.return_type, [q.hsum(a) for a in accs])

    return codegen


ROW_TOKENS = 6  # tokens per row call in prefill: measured best of 2..8 (8 planes + 2·6 vectors live)


def _row_tokens(nt: int):  # noqa: ANN202
    def typer(typingctx, vnni, flat, o, goffs, x8, lsum32, act_scales, t0, w, wstep, n_blocks,  # noqa: ANN001, ANN202
              ahead):  # noqa: ANN001
        sig = types.UniTuple(types.float32, nt)(vnni, flat, o, goffs, x8, lsum32, act_scales, t0, w, wstep,
                                                n_blocks, ahead)
        return sig, _q8k_row_codegen(nt)

    typer.__name__ = typer.__qualname__ = f"q8k_row{nt}"
    return intrinsic(typer)


# One weight row's q8_k dot (codes at byte offset o of `flat`, block scales `w`) with tokens t0, t0+1, ...
# of x8 / lsum32 / act_scales (2-D, one row per token): ROW_TOKENS or 2 results, the same bits as
# `q8k_rows4`, with `vpdpbusd` when `vnni` (on a VNNI host).
q8k_row6 = _row_tokens(ROW_TOKENS)
q8k_row2 = _row_tokens(2)
