"""Fused CPU kernels for the two message-passing branches of the hybrid block (softglass.model).

Why: on a CPU the plain PyG block spends most of its time moving [edges x hidden] tensors
(gathers x[src], their backward scatters, elementwise products), not computing. These kernels
visit every edge once, per destination atom, and keep nothing per edge in memory.

What they compute (identical to softglass.model.HybridBlock's reference path):
- physics message  out_i = sum_{j in N(i)} x_j * w(r_ij), with w(r) = MLP(phi(r)) fc(r) looked up
  by linear interpolation in a table W[k] = w(r_k) on a uniform grid (the model builds W from the
  filter MLP with autograd, so the filter parameters still learn through the table);
- neighbour attention  out_i = sum_j alpha_ij v_j,  alpha_ij = softmax_j(q_i.k_j fc(r_ij)/sqrt(d)),
  computed flash-attention style: the forward keeps only log-sum-exp per atom and head.

Both backward passes rely on the graph being symmetric (edge j->i present with the same distance
as i->j: softglass.graphs.periodic_edges builds it so), which lets every gradient be written as a gather
over the destination's own CSR row: no atomics, no per-edge buffers, one OpenMP loop over atoms.
The gradient of the filter table is a sum over edges into table rows; it is summed per table row
over the edges sorted by bin, so no two threads add into one number.
CSRGraph puts the edges in destination order (CSR) when they are not, and checks that every atom
has as many in- as out-edges (a cheap necessary condition of symmetry).

Deterministic: every number is summed by one thread in an order fixed by the graph, so the same
inputs give the same bits for any thread count, OpenMP schedule or machine load (train.py's runs
are reproducible through these kernels; tests/test_kernels.py checks 1 to 4 threads).

The C source is built once with the system C compiler (gcc -O3 -march=native -fopenmp) into
KERNEL_CACHE_DIR, keyed by a hash of source, flags and CPU; it is loaded with ctypes. Where no
compiler is found `available()` is False and train.py uses the reference PyG path.
Float32 and float64 versions are compiled (float64 for torch.autograd.gradcheck).
"""
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading

import torch

KERNEL_CACHE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                ".kernel_cache")     # the repository root, git-ignored
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno"]

# One body, instantiated for float (suffix _f32) and double (_f64).
_TEMPLATE = r"""
/* physics message: out[i] = sum_e x[col[e]] * lerp(W[bin[e]], W[bin[e]+1], frac[e]) */
void phys_forward_SFX(long n, long H, const long *rowptr, const long *col, const int *bin,
                      const REAL *frac, const REAL *W, const REAL *x, REAL *out, int nt) {
    #pragma omp parallel for schedule(dynamic, 32) num_threads(nt)
    for (long i = 0; i < n; i++) {
        REAL *o = out + i * H;
        for (long h = 0; h < H; h++) o[h] = 0;
        for (long e = rowptr[i]; e < rowptr[i + 1]; e++) {
            const REAL *xj = x + col[e] * H, *w0 = W + (long)bin[e] * H, *w1 = w0 + H;
            const REAL t = frac[e];
            #pragma omp simd
            for (long h = 0; h < H; h++) o[h] += xj[h] * (w0[h] + t * (w1[h] - w0[h]));
        }
    }
}

/* d loss / d W, the same bits for any thread count and schedule: the edges come sorted by
   table bin (`bin_ptr`, then CSR order within a bin; `row`, `col`, `frac` in that order), so
   G0[k] = sum_{bin(e)=k} (1-t) x_j g_i and G1[k] = sum_{bin(e)=k} t x_j g_i are each summed by
   one thread in that fixed order, and gW[k] = G0[k] + G1[k-1] (the edge's two table points).
   G0 is written into gW, G1 into the scratch table `g1`. */
void phys_table_grad_SFX(long H, long T, const long *bin_ptr, const long *row, const long *col,
                         const REAL *frac, const REAL *x, const REAL *g, REAL *gW, REAL *g1,
                         int nt) {
    #pragma omp parallel for schedule(dynamic, 16) num_threads(nt)
    for (long k = 0; k < T; k++) {
        REAL *a0 = gW + k * H, *a1 = g1 + k * H;
        for (long h = 0; h < H; h++) a0[h] = a1[h] = 0;
        for (long e = bin_ptr[k]; e < bin_ptr[k + 1]; e++) {
            const REAL *xj = x + col[e] * H, *gi = g + row[e] * H;
            const REAL t = frac[e];
            #pragma omp simd
            for (long h = 0; h < H; h++) {
                const REAL p = xj[h] * gi[h];
                a0[h] += p - t * p;
                a1[h] += t * p;
            }
        }
    }
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (long k = 1; k < T; k++) {
        REAL *a = gW + k * H;
        const REAL *b = g1 + (k - 1) * H;
        #pragma omp simd
        for (long h = 0; h < H; h++) a[h] += b[h];
    }
}

static inline REAL dot_SFX(const REAL *a, const REAL *b, long d) {
    REAL s = 0;
    #pragma omp simd reduction(+:s)
    for (long c = 0; c < d; c++) s += a[c] * b[c];
    return s;
}

/* neighbour attention, qkv rows = [q | k | v], each heads*d wide.
   out[i,h] = sum_e softmax_e(l_e) v[col[e],h], l_e = q_i.k_j * scale[e]; lse[i,h] kept. */
void attn_forward_SFX(long n, long heads, long d, long maxdeg, const long *rowptr,
                      const long *col, const REAL *scale, const REAL *qkv, REAL *out, REAL *lse,
                      int nt) {
    const long H = heads * d, S = 3 * H;
    #pragma omp parallel num_threads(nt)
    {
        REAL *l = (REAL *)malloc((size_t)(maxdeg > 0 ? maxdeg : 1) * sizeof(REAL));
        #pragma omp for schedule(dynamic, 32)
        for (long i = 0; i < n; i++) {
            const long e0 = rowptr[i], deg = rowptr[i + 1] - e0;
            for (long h = 0; h < heads; h++) {
                const REAL *qi = qkv + i * S + h * d;
                REAL *o = out + i * H + h * d;
                REAL m = -INFINITY, s = 0;
                for (long c = 0; c < d; c++) o[c] = 0;
                for (long a = 0; a < deg; a++) {
                    const long e = e0 + a;
                    l[a] = dot_SFX(qi, qkv + col[e] * S + H + h * d, d) * scale[e];
                    if (l[a] > m) m = l[a];
                }
                for (long a = 0; a < deg; a++) {
                    const REAL p = EXP(l[a] - m);
                    const REAL *vj = qkv + col[e0 + a] * S + 2 * H + h * d;
                    s += p;
                    #pragma omp simd
                    for (long c = 0; c < d; c++) o[c] += p * vj[c];
                }
                if (deg > 0) {
                    for (long c = 0; c < d; c++) o[c] /= s;
                    lse[i * heads + h] = m + LOG(s);
                } else {
                    lse[i * heads + h] = 0;
                }
            }
        }
        free(l);
    }
}

/* backward of attn_forward given g = d loss / d out. Every edge r<->c is visited from row r
   twice: as c->r (r's softmax: grad of q_r) and, by symmetry, as r->c (c's softmax: grads of
   k_r and v_r). D[i,h] = g_i . out_i (flash attention's softmax-backward term). */
void attn_backward_SFX(long n, long heads, long d, const long *rowptr, const long *col,
                       const REAL *scale, const REAL *qkv, const REAL *out, const REAL *lse,
                       const REAL *g, REAL *gqkv, int nt) {
    const long H = heads * d, S = 3 * H;
    REAL *D = (REAL *)malloc((size_t)(n * heads > 0 ? n * heads : 1) * sizeof(REAL));
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (long i = 0; i < n; i++)
        for (long h = 0; h < heads; h++)
            D[i * heads + h] = dot_SFX(g + i * H + h * d, out + i * H + h * d, d);
    #pragma omp parallel for schedule(dynamic, 32) num_threads(nt)
    for (long r = 0; r < n; r++) {
        REAL *gq = gqkv + r * S, *gk = gq + H, *gv = gq + 2 * H;
        for (long c = 0; c < S; c++) gq[c] = 0;
        for (long e = rowptr[r]; e < rowptr[r + 1]; e++) {
            const long j = col[e];
            const REAL f = scale[e];
            for (long h = 0; h < heads; h++) {
                const long o = h * d;
                const REAL *qr = qkv + r * S + o, *kr = qr + H, *vr = qr + 2 * H;
                const REAL *qj = qkv + j * S + o, *kj = qj + H, *vj = qj + 2 * H;
                const REAL *gr = g + r * H + o, *gj = g + j * H + o;
                /* edge j -> r, in r's softmax */
                const REAL a = EXP(dot_SFX(qr, kj, d) * f - lse[r * heads + h]);
                const REAL dl = a * (dot_SFX(gr, vj, d) - D[r * heads + h]) * f;
                /* edge r -> j, in j's softmax */
                const REAL b = EXP(dot_SFX(qj, kr, d) * f - lse[j * heads + h]);
                const REAL dm = b * (dot_SFX(gj, vr, d) - D[j * heads + h]) * f;
                #pragma omp simd
                for (long c = 0; c < d; c++) {
                    gq[o + c] += dl * kj[c];
                    gk[o + c] += dm * qj[c];
                    gv[o + c] += b * gj[c];
                }
            }
        }
    }
    free(D);
}
"""

_HEADER = r"""#include <math.h>
#include <stdlib.h>

/* counting sort of the CSR edges by table bin, stable (CSR order within a bin), serial: bin_ptr
   [T + 1] as a CSR over bins, and each sorted edge's destination row, source col and fraction
   (float64). */
void sort_by_bin(long n, long T, const long *rowptr, const long *col, const int *bin,
                 const double *frac, long *bin_ptr, long *row_s, long *col_s, double *frac_s) {
    for (long k = 0; k <= T; k++) bin_ptr[k] = 0;
    for (long e = 0; e < rowptr[n]; e++) bin_ptr[bin[e] + 1]++;
    for (long k = 0; k < T; k++) bin_ptr[k + 1] += bin_ptr[k];
    long *next = (long *)malloc((size_t)(T > 0 ? T : 1) * sizeof(long));
    for (long k = 0; k < T; k++) next[k] = bin_ptr[k];
    for (long i = 0; i < n; i++)
        for (long e = rowptr[i]; e < rowptr[i + 1]; e++) {
            const long s = next[bin[e]]++;
            row_s[s] = i;
            col_s[s] = col[e];
            frac_s[s] = frac[e];
        }
    free(next);
}
"""


def _source():
    parts = [_HEADER]
    for real, sfx, exp, log in (("float", "f32", "expf", "logf"), ("double", "f64", "exp", "log")):
        parts.append(_TEMPLATE.replace("REAL", real).replace("SFX", sfx)
                     .replace("EXP(", exp + "(").replace("LOG(", log + "("))
    return "".join(parts)


def _cpu_tag():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + platform.processor() + flags


_LIB, _ERROR, _LOCK = None, None, threading.Lock()


def _build():
    """Compile (once per source/flags/CPU) and load the shared library; atomic rename so a
    concurrent or interrupted build never leaves a half-written library behind."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler (gcc or cc) on PATH")
    src = _source()
    key = hashlib.sha256((src + " ".join(CFLAGS) + cc + _cpu_tag()).encode()).hexdigest()[:16]
    os.makedirs(KERNEL_CACHE_DIR, exist_ok=True)
    lib_path = os.path.join(KERNEL_CACHE_DIR, f"message_kernels_{key}.so")
    if not os.path.exists(lib_path):
        with tempfile.TemporaryDirectory(dir=KERNEL_CACHE_DIR) as tmp:
            c_path, so_path = os.path.join(tmp, "k.c"), os.path.join(tmp, "k.so")
            with open(c_path, "w") as f:
                f.write(src)
            proc = subprocess.run([cc, *CFLAGS, c_path, "-o", so_path, "-lm"],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{cc} failed:\n{proc.stderr[-2000:]}")
            os.replace(so_path, lib_path)
    lib = ctypes.CDLL(lib_path)
    lib.sort_by_bin.restype = None
    for fn in ("phys_forward", "phys_table_grad", "attn_forward", "attn_backward"):
        for sfx in ("f32", "f64"):
            getattr(lib, f"{fn}_{sfx}").restype = None
    return lib


def library():
    """The loaded kernels, or None (with the reason in `build_error()`)."""
    global _LIB, _ERROR
    with _LOCK:
        if _LIB is None and _ERROR is None:
            try:
                _LIB = _build()
            except Exception as err:        # any failure means: use the reference path
                _ERROR = f"{type(err).__name__}: {err}"
    return _LIB


def available():
    return library() is not None


def build_error():
    library()
    return _ERROR


# ================================ argument marshalling ==========================================
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}


def _kernel_dtype(t):
    """float64 stays float64 (gradcheck); everything else (bfloat16/float16 autocast) runs float32."""
    return t if t.dtype in _DTYPES else t.float()


def _p(t):
    return ctypes.c_void_p(t.data_ptr())


def _kernel(name, dtype):
    return getattr(library(), f"{name}_{_DTYPES[dtype]}")


def _nt():
    return ctypes.c_int(torch.get_num_threads())


class CSRGraph:
    """A symmetric graph in destination-major (CSR) order, with what the kernels need per edge:
    source atom, interpolation bin and fraction in the filter table, attention scale fc/sqrt(d).
    Everything here depends on distances only, so it is the same for every rotated copy."""

    def __init__(self, edge_index, edge_dist, n, r_min, r_max, table_points, fc, head_dim):
        src, dst = edge_index
        if dst.numel() and bool((dst[1:] < dst[:-1]).any()):       # not in CSR order: sort
            order = torch.argsort(dst, stable=True)
            src, dst, edge_dist, fc = src[order], dst[order], edge_dist[order], fc[order]
        in_degree = torch.bincount(dst, minlength=n)
        if not torch.equal(in_degree, torch.bincount(src, minlength=n)):
            raise ValueError("the fused kernels need a symmetric graph (i->j for every j->i)")
        if dst.numel() and (float(edge_dist.min()) < r_min or float(edge_dist.max()) > r_max):
            raise ValueError(f"edge distances [{float(edge_dist.min()):.3f}, "
                             f"{float(edge_dist.max()):.3f}] outside the filter table "
                             f"[{r_min}, {r_max}]")
        self.n, self.table_points = int(n), int(table_points)
        self.rowptr = torch.zeros(n + 1, dtype=torch.long)
        self.rowptr[1:] = torch.cumsum(in_degree, 0)
        self.col = src.contiguous().long()
        self.maxdeg = int((self.rowptr[1:] - self.rowptr[:-1]).max()) if n else 0
        t = (edge_dist.double() - r_min) / (r_max - r_min) * (table_points - 1)
        self.bin = t.floor().clamp(0, table_points - 2).to(torch.int32)
        self._frac64 = (t - self.bin.double())
        self._scale64 = fc.double() / head_dim ** 0.5
        self._cast = {}
        self._by_bin = None

    def by_bin(self, dtype):
        """The edges sorted by table bin (stable: CSR order within a bin) for the table gradient:
        (bin_ptr[T + 1], destination, source, fraction), made once per graph. Summing each table
        row over its bin's edges in this order makes the gradient independent of the threads."""
        if self._by_bin is None:
            n_edges = self.col.numel()
            bin_ptr = torch.empty(self.table_points + 1, dtype=torch.long)
            row, col = torch.empty(n_edges, dtype=torch.long), torch.empty_like(self.col)
            frac = torch.empty(n_edges, dtype=torch.float64)
            library().sort_by_bin(ctypes.c_long(self.n), ctypes.c_long(self.table_points),
                                  _p(self.rowptr), _p(self.col), _p(self.bin),
                                  _p(self._frac64), _p(bin_ptr), _p(row), _p(col), _p(frac))
            self._by_bin = (bin_ptr, row, col, frac)
        bin_ptr, row, col, frac64 = self._by_bin
        return bin_ptr, row, col, self._get("frac_by_bin", frac64, dtype)

    def frac(self, dtype):
        return self._get("frac", self._frac64, dtype)

    def scale(self, dtype):
        return self._get("scale", self._scale64, dtype)

    def _get(self, name, value, dtype):
        if (name, dtype) not in self._cast:
            self._cast[(name, dtype)] = value.to(dtype).contiguous()
        return self._cast[(name, dtype)]


def physics_message_raw(x, table, g):
    out = torch.empty_like(x)
    _kernel("phys_forward", x.dtype)(
        ctypes.c_long(g.n), ctypes.c_long(x.shape[1]), _p(g.rowptr), _p(g.col), _p(g.bin),
        _p(g.frac(x.dtype)), _p(table), _p(x), _p(out), _nt())
    return out


class PhysicsMessage(torch.autograd.Function):
    """out_i = sum_j x_j * lerp(table, r_ij): differentiable in x and in the table."""

    @staticmethod
    def forward(ctx, x, table, g):
        x = _kernel_dtype(x).contiguous()
        table = table.to(x.dtype).contiguous()
        ctx.g = g
        ctx.save_for_backward(x, table)
        return physics_message_raw(x, table, g)

    @staticmethod
    def backward(ctx, grad):
        x, table = ctx.saved_tensors
        g = ctx.g
        grad = grad.contiguous().to(x.dtype)
        gx = gt = None
        if ctx.needs_input_grad[0]:
            gx = physics_message_raw(grad, table, g)       # w_ij = w_ji: the same kernel
        if ctx.needs_input_grad[1]:
            gt, scratch = torch.empty_like(table), torch.empty_like(table)
            bin_ptr, row, col, frac = g.by_bin(x.dtype)
            _kernel("phys_table_grad", x.dtype)(
                ctypes.c_long(x.shape[1]), ctypes.c_long(table.shape[0]), _p(bin_ptr), _p(row),
                _p(col), _p(frac), _p(x), _p(grad), _p(gt), _p(scratch), _nt())
        return gx, gt, None


class NeighbourAttention(torch.autograd.Function):
    """out_i = sum_j softmax_j(q_i.k_j fc_ij/sqrt(d)) v_j from qkv = [q | k | v] rows."""

    @staticmethod
    def forward(ctx, qkv, g, heads):
        qkv = _kernel_dtype(qkv).contiguous()
        n, width = qkv.shape
        hidden = width // 3
        out = qkv.new_empty(n, hidden)
        lse = qkv.new_empty(n, heads)
        _kernel("attn_forward", qkv.dtype)(
            ctypes.c_long(n), ctypes.c_long(heads), ctypes.c_long(hidden // heads),
            ctypes.c_long(g.maxdeg), _p(g.rowptr), _p(g.col), _p(g.scale(qkv.dtype)), _p(qkv),
            _p(out), _p(lse), _nt())
        ctx.g, ctx.heads = g, heads
        ctx.save_for_backward(qkv, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        qkv, out, lse = ctx.saved_tensors
        g, heads = ctx.g, ctx.heads
        n, width = qkv.shape
        gqkv = torch.empty_like(qkv)
        _kernel("attn_backward", qkv.dtype)(
            ctypes.c_long(n), ctypes.c_long(heads), ctypes.c_long(width // 3 // heads),
            _p(g.rowptr), _p(g.col), _p(g.scale(qkv.dtype)), _p(qkv), _p(out), _p(lse),
            _p(grad.contiguous().to(qkv.dtype)), _p(gqkv), _nt())
        return gqkv, None, None
