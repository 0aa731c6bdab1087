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

// HyperLSTM: y = d_b + d_h ⊙ (W_h h) + d_x ⊙ (W_x x), d (12, B, H) gate-major by kind (h, x, b).
template <typename T>
void hyper_gates_impl(const at::Tensor& d, const at::Tensor& wh, const at::Tensor& xw, const at::Tensor& y_out) {
  const int64_t batch = y_out.size(0), H = y_out.size(2), wh_stride = wh.stride(0), kind = 4 * batch * H;
  const T *D = d.data_ptr<T>(), *WH = wh.data_ptr<T>(), *XW = xw.data_ptr<T>();
  T* Y = y_out.data_ptr<T>();
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

// Its backward from ∂L/∂y (B, 4, H): into W_h h and W_x x (through d_h, d_x), into d (12, B, H),
// and the bias b_0's gradient summed in place (4, H).
template <typename T>
void hyper_gates_backward_impl(
    const at::Tensor& dy, const at::Tensor& d, const at::Tensor& wh, const at::Tensor& xw, const at::Tensor& d_wh_out,
    const at::Tensor& d_xw_out, const at::Tensor& dd_out, const at::Tensor& d_bias) {
  const int64_t batch = dy.size(0), H = dy.size(2), kind = 4 * batch * H;
  const int64_t wh_stride = wh.stride(0), d_wh_stride = d_wh_out.stride(0);
  const T *DY = dy.data_ptr<T>(), *D = d.data_ptr<T>(), *WH = wh.data_ptr<T>(), *XW = xw.data_ptr<T>();
  T *DWH = d_wh_out.data_ptr<T>(), *DXW = d_xw_out.data_ptr<T>(), *DD = dd_out.data_ptr<T>(), *DB = d_bias.data_ptr<T>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t g = 0; g < 4; ++g) {
      const int64_t row = (b * 4 + g) * H, d_row = (g * batch + b) * H;
      const T *dyr = DY + row, *dh = D + d_row, *dx = dh + kind, *w = WH + b * wh_stride + g * H, *x = XW + row;
      T *ddh = DD + d_row, *ddx = ddh + kind, *ddb = ddx + kind, *bias = DB + g * H;
      T *dw = DWH + b * d_wh_stride + g * H, *dxw = DXW + row;
      chunks<T>(H, [&](int64_t j, int64_t n) {
        const Vec<T> grad = load(dyr + j, n);
        (grad * load(dh + j, n)).store(dw + j, n);
        (grad * load(dx + j, n)).store(dxw + j, n);
        (grad * load(w + j, n)).store(ddh + j, n);
        (grad * load(x + j, n)).store(ddx + j, n);
        grad.store(ddb + j, n);
        (load(bias + j, n) + grad).store(bias + j, n);
      });
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

void hyper_gates(const at::Tensor& d, const at::Tensor& wh, const at::Tensor& xw, const at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "hyper_gates", [&] { hyper_gates_impl<scalar_t>(d, wh, xw, y); });
}

void hyper_gates_backward(
    const at::Tensor& dy, const at::Tensor& d, const at::Tensor& wh, const at::Tensor& xw, const at::Tensor& d_wh,
    const at::Tensor& d_xw, const at::Tensor& dd, const at::Tensor& d_bias) {
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "hyper_gates_backward", [&] {
    hyper_gates_backward_impl<scalar_t>(dy, d, wh, xw, d_wh, d_xw, dd, d_bias);
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("update_forward", &update_forward);
  m.def("update_backward", &update_backward);
  m.def("hyper_gates", &hyper_gates);
  m.def("hyper_gates_backward", &hyper_gates_backward);
}
