// Fused CPU kernels for one time step of the recurrent loops (models/fused_kernels.py loads them).
//
// The equations are those of models/lstm_update.py (the eager path, which stays the reference
// and the fallback): per example b and gate y in (i, f, g, o),
//
//   a = LN(y) * scale + shift           (without layer norm: y * scale + shift)
//   s = sigmoid(a)                       g's row of scale/shift is doubled: tanh(x) = 2 sigmoid(2x) - 1
//   c = s_f * c_prev + s_i * (2 s_g - 1) * m
//   h = s_o * (2 sigmoid(2 c_hat) - 1),  2 c_hat = LN(c) * cell_scale + cell_shift   (without: 2c)
//
// and the backward of the same. Eager, a step is ~20 operations forward and ~13 backward, each
// a pass over (B, 4, H) or (B, H) memory; here it is one pass per example over data that stays
// in the L1 cache. Everything is single-threaded: at these sizes (B·4H ~ 32k values) torch's own
// elementwise ops do not split across threads either.
//
// Saved buffers (k, e, f, ...) are the same as the eager path's, so either backward can read
// either forward's buffers.

#include <torch/extension.h>

#include <ATen/Dispatch.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <optional>
#include <vector>

namespace {

template <typename T>
using Vec = at::vec::Vectorized<T>;

// Calls f(j, n) over [0, size) in vector-sized chunks; the last chunk may be partial (n lanes:
// loadu/store with a count read and write only those).
template <typename T, typename F>
inline void chunks(int64_t size, const F& f) {
  constexpr int64_t V = Vec<T>::size();
  for (int64_t j = 0; j < size; j += V) f(j, std::min(V, size - j));
}

template <typename T>
inline Vec<T> load(const T* p, int64_t n) {
  return Vec<T>::loadu(p, n);
}

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {
  return Vec<T>(T(1)) / (Vec<T>(T(1)) + x.neg().exp());
}

template <typename T>
inline T sum(const Vec<T>& v) {
  return at::vec::vec_reduce_all<T>([](Vec<T>& a, Vec<T>& b) { return a + b; }, v);
}

// Lanes n.. of v set to zero (a partial chunk's padding must not enter a sum).
template <typename T>
inline Vec<T> first(const Vec<T>& v, int64_t n) {
  return n == Vec<T>::size() ? v : Vec<T>::set(Vec<T>(T(0)), v, n);
}

// Mean and 1/sqrt(var + eps) of x[0:size], two passes (as exact as torch's layer norm).
template <typename T>
inline void moments(const T* x, int64_t size, T eps, T& mean, T& rstd) {
  Vec<T> acc(T(0));
  chunks<T>(size, [&](int64_t j, int64_t n) { acc = acc + load(x + j, n); });
  mean = sum(acc) / T(size);
  const Vec<T> m(mean);
  acc = Vec<T>(T(0));
  chunks<T>(size, [&](int64_t j, int64_t n) {
    const Vec<T> d = first(load(x + j, n) - m, n);
    acc = acc + d * d;
  });
  rstd = T(1) / std::sqrt(sum(acc) / T(size) + eps);
}

template <typename T>
const T* ptr_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

template <typename T>
T* mut_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

template <typename T>
void update_forward_impl(
    const at::Tensor& y, const at::Tensor& c_prev, const std::optional<at::Tensor>& mask, const at::Tensor& scale,
    const at::Tensor& shift, const std::optional<at::Tensor>& cell_scale, const std::optional<at::Tensor>& cell_shift,
    double eps_, const std::optional<at::Tensor>& y_hat_out, const std::optional<at::Tensor>& mean_out,
    const std::optional<at::Tensor>& rstd_out, const at::Tensor& k_out, const at::Tensor& e_out,
    const at::Tensor& f_out, const at::Tensor& c_out, const std::optional<at::Tensor>& cell_mean_out,
    const std::optional<at::Tensor>& cell_rstd_out, const at::Tensor& h_out) {
  const int64_t batch = y.size(0), H = y.size(2);
  const bool layer_norm = y_hat_out.has_value();
  const T eps = T(eps_);
  const T *Y = y.data_ptr<T>(), *C = c_prev.data_ptr<T>(), *M = ptr_or_null<T>(mask);
  const T *SC = scale.data_ptr<T>(), *SH = shift.data_ptr<T>();
  const T *CS = ptr_or_null<T>(cell_scale), *CB = ptr_or_null<T>(cell_shift);
  T *YH = mut_or_null<T>(y_hat_out), *MEAN = mut_or_null<T>(mean_out), *RSTD = mut_or_null<T>(rstd_out);
  T *K = k_out.data_ptr<T>(), *E = e_out.data_ptr<T>(), *F = f_out.data_ptr<T>(), *CO = c_out.data_ptr<T>();
  T *CMEAN = mut_or_null<T>(cell_mean_out), *CRSTD = mut_or_null<T>(cell_rstd_out), *HO = h_out.data_ptr<T>();
  std::vector<T> s(4 * H);  // the four gates' sigmoids of one example
  const Vec<T> one(T(1)), two(T(2));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t g = 0; g < 4; ++g) {
      const T* row = Y + (b * 4 + g) * H;
      const T *sc = SC + g * H, *sh = SH + g * H;
      T* sg = s.data() + g * H;
      if (layer_norm) {
        T mean, rstd;
        moments(row, H, eps, mean, rstd);
        MEAN[b * 4 + g] = mean;
        RSTD[b * 4 + g] = rstd;
        T* yh = YH + (b * 4 + g) * H;
        const Vec<T> m(mean), r(rstd);
        chunks<T>(H, [&](int64_t j, int64_t n) {
          const Vec<T> v = (load(row + j, n) - m) * r;
          v.store(yh + j, n);
          sigmoid(v * load(sc + j, n) + load(sh + j, n)).store(sg + j, n);
        });
      } else {
        chunks<T>(H, [&](int64_t j, int64_t n) {
          sigmoid(load(row + j, n) * load(sc + j, n) + load(sh + j, n)).store(sg + j, n);
        });
      }
    }
    const T *si = s.data(), *sf = si + H, *sgg = si + 2 * H, *so = si + 3 * H;
    const T *cp = C + b * H, *mb = M ? M + b * H : nullptr;
    T* co = CO + b * H;
    chunks<T>(H, [&](int64_t j, int64_t n) {
      Vec<T> g = load(sgg + j, n) * two - one;
      if (mb) g = g * load(mb + j, n);
      (load(sf + j, n) * load(cp + j, n) + load(si + j, n) * g).store(co + j, n);
    });
    T cmean = 0, crstd = 1;
    if (layer_norm) {
      moments(co, H, eps, cmean, crstd);
      CMEAN[b] = cmean;
      CRSTD[b] = crstd;
    }
    const Vec<T> cm(cmean), cr(crstd);
    T *kb = K + b * 4 * H, *hb = HO + b * H, *eb = E + b * H, *fb = F + b * H;
    chunks<T>(H, [&](int64_t j, int64_t n) {
      const Vec<T> i = load(si + j, n), f = load(sf + j, n), sgv = load(sgg + j, n), o = load(so + j, n);
      const Vec<T> c = load(co + j, n);
      const Vec<T> c2 = layer_norm ? (c - cm) * cr * load(CS + j, n) + load(CB + j, n) : c * two;
      const Vec<T> tanh_c = sigmoid(c2) * two - one;
      const Vec<T> h = o * tanh_c;
      h.store(hb + j, n);
      Vec<T> g = sgv * two - one, i_m = i;
      if (mb) {
        const Vec<T> m = load(mb + j, n);
        g = g * m;
        i_m = i * m;
      }
      // ∂c/∂a_i, ∂c/∂a_f, ∂c/∂a_g (through σ(2a_g): the factor 2), ∂h/∂a_o
      (g * i * (one - i)).store(kb + j, n);
      (load(cp + j, n) * f * (one - f)).store(kb + H + j, n);
      (i_m * two * sgv * (one - sgv)).store(kb + 2 * H + j, n);
      (tanh_c * o * (one - o)).store(kb + 3 * H + j, n);
      (o - h * tanh_c).store(eb + j, n);  // σ(o)(1 − tanh²ĉ)
      f.store(fb + j, n);
    });
  }
}

template <typename T>
void update_backward_impl(
    const at::Tensor& dh, const at::Tensor& dc, const std::optional<at::Tensor>& y_hat,
    const std::optional<at::Tensor>& rstd, const at::Tensor& k, const at::Tensor& e, const at::Tensor& f,
    const at::Tensor& c, const std::optional<at::Tensor>& cell_mean, const std::optional<at::Tensor>& cell_rstd,
    const at::Tensor& scale, const std::optional<at::Tensor>& cell_weight, const at::Tensor& dy_out,
    const at::Tensor& dc_out, const std::optional<at::Tensor>& d_scale, const std::optional<at::Tensor>& d_shift,
    const std::optional<at::Tensor>& d_cell_weight, const std::optional<at::Tensor>& d_cell_bias) {
  const int64_t batch = dh.size(0), H = dh.size(1), dy_stride = dy_out.stride(0);
  const bool layer_norm = y_hat.has_value();
  const T *DH = dh.data_ptr<T>(), *DC = dc.data_ptr<T>(), *YH = ptr_or_null<T>(y_hat), *R = ptr_or_null<T>(rstd);
  const T *K = k.data_ptr<T>(), *E = e.data_ptr<T>(), *F = f.data_ptr<T>(), *C = c.data_ptr<T>();
  const T *CM = ptr_or_null<T>(cell_mean), *CR = ptr_or_null<T>(cell_rstd);
  const T *SC = scale.data_ptr<T>(), *CW = ptr_or_null<T>(cell_weight);
  T *DY = dy_out.data_ptr<T>(), *DCO = dc_out.data_ptr<T>();
  T *GS = mut_or_null<T>(d_scale), *GB = mut_or_null<T>(d_shift);
  T *GCW = mut_or_null<T>(d_cell_weight), *GCB = mut_or_null<T>(d_cell_bias);
  std::vector<T> dct(H), grad(H);  // ∂L/∂c_t in all; one gate's ∂L/∂ŷ
  const T inv_h = T(1) / T(H);
  for (int64_t b = 0; b < batch; ++b) {
    const T *dhb = DH + b * H, *dcb = DC + b * H, *eb = E + b * H, *cb = C + b * H;
    if (layer_norm) {
      // the cell LN's backward: x̂ = (c − μ)/σ, ∂L/∂x̂ = ∂L/∂ĉ · γ_c
      const Vec<T> cm(CM[b]), cr(CR[b]);
      Vec<T> acc_g(T(0)), acc_gx(T(0));
      chunks<T>(H, [&](int64_t j, int64_t n) {
        const Vec<T> d_cell = load(dhb + j, n) * load(eb + j, n);
        const Vec<T> x_hat = first((load(cb + j, n) - cm) * cr, n);
        (load(GCW + j, n) + d_cell * x_hat).store(GCW + j, n);
        (load(GCB + j, n) + d_cell).store(GCB + j, n);
        const Vec<T> gx = d_cell * load(CW + j, n);
        gx.store(grad.data() + j, n);
        acc_g = acc_g + gx;
        acc_gx = acc_gx + gx * x_hat;
      });
      const Vec<T> mean_g(sum(acc_g) * inv_h), mean_gx(sum(acc_gx) * inv_h);
      chunks<T>(H, [&](int64_t j, int64_t n) {
        const Vec<T> x_hat = (load(cb + j, n) - cm) * cr;
        const Vec<T> d_c = cr * (load(grad.data() + j, n) - mean_g - x_hat * mean_gx);
        (load(dcb + j, n) + d_c).store(dct.data() + j, n);
      });
    } else {
      chunks<T>(H, [&](int64_t j, int64_t n) {
        (load(dcb + j, n) + load(dhb + j, n) * load(eb + j, n)).store(dct.data() + j, n);
      });
    }
    const T *kb = K + b * 4 * H, *fb = F + b * H;
    chunks<T>(H, [&](int64_t j, int64_t n) {
      (load(dct.data() + j, n) * load(fb + j, n)).store(DCO + b * H + j, n);
    });
    for (int64_t g = 0; g < 4; ++g) {
      const T* upstream = g == 3 ? dhb : dct.data();  // o feeds h; i, f, g feed c
      const T *kg = kb + g * H, *sc = SC + g * H;
      T* dy = DY + b * dy_stride + g * H;
      if (!layer_norm) {
        chunks<T>(H, [&](int64_t j, int64_t n) {
          (load(upstream + j, n) * load(kg + j, n) * load(sc + j, n)).store(dy + j, n);
        });
        continue;
      }
      const T* yh = YH + (b * 4 + g) * H;
      T *gs = GS + g * H, *gb = GB + g * H;
      Vec<T> acc_g(T(0)), acc_gy(T(0));
      chunks<T>(H, [&](int64_t j, int64_t n) {
        const Vec<T> da = load(upstream + j, n) * load(kg + j, n);  // ∂L/∂a
        const Vec<T> y_hat_j = load(yh + j, n);
        (load(gs + j, n) + da * y_hat_j).store(gs + j, n);
        (load(gb + j, n) + da).store(gb + j, n);
        const Vec<T> gy = first(da * load(sc + j, n), n);  // ∂L/∂ŷ
        gy.store(grad.data() + j, n);
        acc_g = acc_g + gy;
        acc_gy = acc_gy + gy * y_hat_j;
      });
      const Vec<T> r(R[b * 4 + g]), mean_g(sum(acc_g) * inv_h), mean_gy(sum(acc_gy) * inv_h);
      chunks<T>(H, [&](int64_t j, int64_t n) {
        (r * (load(grad.data() + j, n) - mean_g - load(yh + j, n) * mean_gy)).store(dy + j, n);
      });
    }
  }
}

// Rows of the batch that the two HyperLSTM kernels below handle together: each vector of w_dz
// loaded serves kRows examples (fewer loads per FMA, independent accumulators).
constexpr int kRows = 4;

// d rows b..b+R-1 of one kind-gate: row r = z_r · w (+ b0), z_r = z[r·z_stride : +nz].
template <typename T, int R>
inline void d_rows(const T* z, int64_t z_stride, const T* w, const T* b0, T* out, int64_t nz, int64_t H) {
  chunks<T>(H, [&](int64_t j, int64_t n) {
    Vec<T> acc[R];
    for (int r = 0; r < R; ++r) acc[r] = b0 ? load(b0 + j, n) : Vec<T>(T(0));
    for (int64_t i = 0; i < nz; ++i) {
      const Vec<T> wi = load(w + i * H + j, n);
      for (int r = 0; r < R; ++r) acc[r] = at::vec::fmadd(Vec<T>(z[r * z_stride + i]), wi, acc[r]);
    }
    for (int r = 0; r < R; ++r) acc[r].store(out + r * H + j, n);
  });
}

// For rows r < R with ∂L/∂d rows dd[r] (length H, zero-padded): ∂L/∂z_r = w · dd[r] into
// dz[r·z_stride : +nz], and ∂L/∂w += Σ_r z_r ⊗ dd[r].
template <typename T, int R>
inline void d_rows_backward(
    const T* dd, const T* z, int64_t z_stride, const T* w, T* dw, T* dz, int64_t nz, int64_t H) {
  for (int64_t i = 0; i < nz; ++i) {
    const T* wi = w + i * H;
    T* dwi = dw + i * H;
    Vec<T> acc[R], zi[R];
    for (int r = 0; r < R; ++r) {
      acc[r] = Vec<T>(T(0));
      zi[r] = Vec<T>(z[r * z_stride + i]);
    }
    chunks<T>(H, [&](int64_t j, int64_t n) {
      const Vec<T> wv = load(wi + j, n);
      Vec<T> dwv = load(dwi + j, n);
      for (int r = 0; r < R; ++r) {
        const Vec<T> ddr = load(dd + r * H + j, n);
        acc[r] = at::vec::fmadd(ddr, wv, acc[r]);
        dwv = at::vec::fmadd(zi[r], ddr, dwv);
      }
      dwv.store(dwi + j, n);
    });
    for (int r = 0; r < R; ++r) dz[r * z_stride + i] = sum(acc[r]);
  }
}

// HyperLSTM, one step. z (B, 12·N_z) holds z_h, z_x, z_b of the gates i, f, g, o; w_dz (12, N_z, H)
// the matching W_hz, W_xz, W_bz (transposed); kind-gate k = kind·4 + gate. Writes
//   d[k, b] = z[b, k] · w_dz[k] (+ b_0[gate] for the bias kind)        (12, B, H), saved for the backward
//   y[b, g] = d_b + d_h ⊙ (W_h h) + d_x ⊙ (W_x x)                        (B, 4, H)
// The contractions over N_z (16) are too small for a matmul library to run well batched
// (torch.bmm ran them at half the machine's speed); here each row of d is N_z vector FMAs
// with w_dz[k] in the L1 cache.
template <typename T>
void hyper_gates_impl(
    const at::Tensor& z, const at::Tensor& w_dz, const at::Tensor& bias, const at::Tensor& wh, const at::Tensor& xw,
    const at::Tensor& d_out, const at::Tensor& y_out) {
  const int64_t batch = y_out.size(0), H = y_out.size(2), nz = w_dz.size(1), kind = 4 * batch * H;
  const int64_t wh_stride = wh.stride(0);
  const T *Z = z.data_ptr<T>(), *W = w_dz.data_ptr<T>(), *B0 = bias.data_ptr<T>();
  const T *WH = wh.data_ptr<T>(), *XW = xw.data_ptr<T>();
  T *D = d_out.data_ptr<T>(), *Y = y_out.data_ptr<T>();
  for (int64_t k = 0; k < 12; ++k) {
    const T* wk = W + k * nz * H;
    const T* b0 = k >= 8 ? B0 + (k - 8) * H : nullptr;
    int64_t b = 0;
    for (; b + kRows <= batch; b += kRows) d_rows<T, kRows>(Z + b * 12 * nz + k * nz, 12 * nz, wk, b0, D + (k * batch + b) * H, nz, H);
    for (; b < batch; ++b) d_rows<T, 1>(Z + b * 12 * nz + k * nz, 12 * nz, wk, b0, D + (k * batch + b) * H, nz, H);
  }
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t g = 0; g < 4; ++g) {
      const T *dh = D + (g * batch + b) * H, *dx = dh + kind, *db = dx + kind;
      const T *w = WH + b * wh_stride + g * H, *x = XW + (b * 4 + g) * H;
      T* y = Y + (b * 4 + g) * H;
      chunks<T>(H, [&](int64_t j, int64_t n) {
        (load(db + j, n) + load(dh + j, n) * load(w + j, n) + load(dx + j, n) * load(x + j, n)).store(y + j, n);
      });
    }
  }
}

// Its backward from ∂L/∂y (B, 4, H): ∂L/∂d = ∂L/∂y ⊙ (W_h h, W_x x, 1) per kind, which is never
// stored: for each row it gives at once
//   ∂L/∂z[b, k]   = w_dz[k] · ∂L/∂d[k, b]        (written, (B, 12·N_z))
//   ∂L/∂w_dz[k]  += z[b, k] ⊗ ∂L/∂d[k, b]       (summed in place)
// and, for the h and x kinds, ∂L/∂(W_h h) = ∂L/∂y ⊙ d_h and ∂L/∂(W_x x) = ∂L/∂y ⊙ d_x (written), for
// the bias kind ∂L/∂b_0 += ∂L/∂y (summed in place, (4, H)).
template <typename T>
void hyper_gates_backward_impl(
    const at::Tensor& dy, const at::Tensor& z, const at::Tensor& w_dz, const at::Tensor& d, const at::Tensor& wh,
    const at::Tensor& xw, const at::Tensor& d_wh_out, const at::Tensor& d_xw_out, const at::Tensor& d_z_out,
    const at::Tensor& d_w_dz, const at::Tensor& d_bias) {
  const int64_t batch = dy.size(0), H = dy.size(2), nz = w_dz.size(1);
  const int64_t wh_stride = wh.stride(0), d_wh_stride = d_wh_out.stride(0);
  const T *DY = dy.data_ptr<T>(), *Z = z.data_ptr<T>(), *W = w_dz.data_ptr<T>(), *D = d.data_ptr<T>();
  const T *WH = wh.data_ptr<T>(), *XW = xw.data_ptr<T>();
  T *DWH = d_wh_out.data_ptr<T>(), *DXW = d_xw_out.data_ptr<T>(), *DZ = d_z_out.data_ptr<T>();
  T *DW = d_w_dz.data_ptr<T>(), *DB = d_bias.data_ptr<T>();
  std::vector<T> dd(kRows * H);  // ∂L/∂d of kRows rows
  for (int64_t k = 0; k < 12; ++k) {
    const int64_t kind = k / 4, g = k % 4;
    for (int64_t b0 = 0; b0 < batch; b0 += kRows) {
      const int64_t rows = std::min<int64_t>(kRows, batch - b0);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t b = b0 + r;
        const T *dyr = DY + (b * 4 + g) * H, *dk = D + (k * batch + b) * H;
        const T* factor = kind == 0 ? WH + b * wh_stride + g * H : kind == 1 ? XW + (b * 4 + g) * H : nullptr;
        T* scaled = kind == 0 ? DWH + b * d_wh_stride + g * H : kind == 1 ? DXW + (b * 4 + g) * H : DB + g * H;
        T* ddr = dd.data() + r * H;
        chunks<T>(H, [&](int64_t j, int64_t n) {
          const Vec<T> grad = load(dyr + j, n);
          (factor ? grad * load(factor + j, n) : grad).store(ddr + j, n);
          // into W_h h or W_x x through d_h or d_x; for the bias kind the sum for b_0
          (kind == 2 ? load(scaled + j, n) + grad : grad * load(dk + j, n)).store(scaled + j, n);
        });
      }
      const T* zk = Z + b0 * 12 * nz + k * nz;
      T* dz = DZ + b0 * 12 * nz + k * nz;
      const T* wk = W + k * nz * H;
      T* dwk = DW + k * nz * H;
      if (rows == kRows) {
        d_rows_backward<T, kRows>(dd.data(), zk, 12 * nz, wk, dwk, dz, nz, H);
      } else {
        for (int64_t r = 0; r < rows; ++r)
          d_rows_backward<T, 1>(dd.data() + r * H, zk + r * 12 * nz, 12 * nz, wk, dwk, dz + r * 12 * nz, nz, H);
      }
    }
  }
}

}  // namespace

void update_forward(
    const at::Tensor& y, const at::Tensor& c_prev, const std::optional<at::Tensor>& mask, const at::Tensor& scale,
    const at::Tensor& shift, const std::optional<at::Tensor>& cell_scale, const std::optional<at::Tensor>& cell_shift,
    double eps, const std::optional<at::Tensor>& y_hat, const std::optional<at::Tensor>& mean,
    const std::optional<at::Tensor>& rstd, const at::Tensor& k, const at::Tensor& e, const at::Tensor& f,
    const at::Tensor& c, const std::optional<at::Tensor>& cell_mean, const std::optional<at::Tensor>& cell_rstd,
    const at::Tensor& h) {
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "update_forward", [&] {
    update_forward_impl<scalar_t>(
        y, c_prev, mask, scale, shift, cell_scale, cell_shift, eps, y_hat, mean, rstd, k, e, f, c, cell_mean, cell_rstd, h);
  });
}

void update_backward(
    const at::Tensor& dh, const at::Tensor& dc, const std::optional<at::Tensor>& y_hat,
    const std::optional<at::Tensor>& rstd, const at::Tensor& k, const at::Tensor& e, const at::Tensor& f,
    const at::Tensor& c, const std::optional<at::Tensor>& cell_mean, const std::optional<at::Tensor>& cell_rstd,
    const at::Tensor& scale, const std::optional<at::Tensor>& cell_weight, const at::Tensor& dy, const at::Tensor& dc_prev,
    const std::optional<at::Tensor>& d_scale, const std::optional<at::Tensor>& d_shift,
    const std::optional<at::Tensor>& d_cell_weight, const std::optional<at::Tensor>& d_cell_bias) {
  AT_DISPATCH_FLOATING_TYPES(dh.scalar_type(), "update_backward", [&] {
    update_backward_impl<scalar_t>(
        dh, dc, y_hat, rstd, k, e, f, c, cell_mean, cell_rstd, scale, cell_weight, dy, dc_prev, d_scale, d_shift,
        d_cell_weight, d_cell_bias);
  });
}

void hyper_gates(
    const at::Tensor& z, const at::Tensor& w_dz, const at::Tensor& bias, const at::Tensor& wh, const at::Tensor& xw,
    const at::Tensor& d, const at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "hyper_gates", [&] { hyper_gates_impl<scalar_t>(z, w_dz, bias, wh, xw, d, y); });
}

void hyper_gates_backward(
    const at::Tensor& dy, const at::Tensor& z, const at::Tensor& w_dz, const at::Tensor& d, const at::Tensor& wh,
    const at::Tensor& xw, const at::Tensor& d_wh, const at::Tensor& d_xw, const at::Tensor& d_z, const at::Tensor& d_w_dz,
    const at::Tensor& d_bias) {
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "hyper_gates_backward", [&] {
    hyper_gates_backward_impl<scalar_t>(dy, z, w_dz, d, wh, xw, d_wh, d_xw, d_z, d_w_dz, d_bias);
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("update_forward", &update_forward);
  m.def("update_backward", &update_backward);
  m.def("hyper_gates", &hyper_gates);
  m.def("hyper_gates_backward", &hyper_gates_backward);
}
