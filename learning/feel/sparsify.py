"""Error-compensated top-k sparsification, the inner loop of every A-DSGD device (TSP 2020, Algorithm 2):

    g_ec  = g + Delta                    error compensation
    g_sp  = sp_k(g_ec)                   the k entries of largest magnitude (exactly k, or all nonzeros if fewer)
    Delta' = g_ec - g_sp                 the new error accumulator
    payload = [g_sp ; 1]                 what the device projects (the unit entry carries the power scale)

for every row (device) of float32[M, d] updates. Ties at the k-th magnitude keep the first tied entries in index order,
so every row keeps exactly min(k, nonzeros) entries.

Two implementations of the same rule, tested equal bit for bit (tests/learning/test_feel_sparsify.py):

* :func:`_top_k_payload_numpy`: the k-th magnitude of each row from one linear-time partition (numpy introselect),
  then masks over [M, d] (several full passes plus one [M, d] copy for the partition).
* a numba kernel used when numba is installed (a dependency in pyproject.toml; a whole A-DSGD round at M = 10,000
  costs 0.65 CPU s with it and 3.3 s with the numpy path, docs/feel-scale.md): one pass over
  each row while it is in cache. The k-th magnitude is found by a radix select on the IEEE bit patterns of |g_ec|
  (non-negative floats order like their bit patterns as integers): a 2,048-bucket histogram of the top 11 bits, then
  10 + 10 bits over the few candidates left in the chosen bucket. Measured on [10,000 x 7,850] float32 rows, one
  core: about 0.15 s against 0.5 s for the numpy partition alone, and 0.8 s for a quickselect (branch mispredictions
  of the partition step dominate it). Written here because no library selects per row inside a fused pass; numba
  is the maintained way to compile such a loop (DESIGN.md).
"""

from __future__ import annotations

import numpy as np
import torch

try:  # optional accelerator: the numpy path gives the same results
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None


def _top_k_payload_numpy(v: torch.Tensor, k: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """[sp_k(v_m), 1] for every row of v float32[M, d] -> float32[M, d + 1] (numpy partition; see module docstring),
    written to ``out`` when given."""
    m, d = v.shape
    out = torch.empty(m, d + 1, dtype=v.dtype) if out is None else out
    out[:, d] = 1.0
    body = out[:, :d]
    if k >= d:
        body.copy_(v)
        return out
    mag = v.abs()
    mag_np = mag.numpy().copy()
    mag_np.partition(d - k, axis=1)  # in place: no second copy
    thr = torch.from_numpy(mag_np[:, d - k].copy())
    del mag_np
    keep = mag >= thr[:, None]
    torch.where(keep, v, torch.zeros((), dtype=v.dtype), out=body)
    # ties at a nonzero threshold kept more than k: keep the first of them (a zero threshold means the row has
    # fewer than k nonzeros, all kept, and its "ties" are zeros)
    over = torch.nonzero((torch.count_nonzero(keep, dim=1) > k) & (thr > 0)).flatten()
    if over.numel():
        mo, to = mag[over], thr[over, None]
        tied = (mo == to)
        need = k - (mo > to).sum(1, keepdim=True)
        keep = (mo > to) | (tied & (tied.cumsum(1) <= need))
        body[over] = torch.where(keep, v[over], torch.zeros((), dtype=v.dtype))
    return out


if numba is not None:
    _jit = numba.njit(cache=True, nogil=True, boundscheck=False)

    @_jit
    def _kth_largest_bits(bits, k, hist, cand):  # pragma: no cover - compiled (tested through its callers)
        """Bit pattern of the k-th largest (1-based) of ``bits`` int32[n] (non-negative floats' patterns) and how many
        of the entries equal to it belong to the top k. ``hist`` int64[8192] and ``cand`` int32[n] are scratch."""
        n = bits.shape[0]
        hist[:] = 0
        # four interleaved histograms: neighbouring entries often share a bucket, and one histogram would serialise
        # on that counter's store and reload
        n4 = n - n % 4
        for j in range(0, n4, 4):
            hist[bits[j] >> 20] += 1
            hist[2048 + (bits[j + 1] >> 20)] += 1
            hist[4096 + (bits[j + 2] >> 20)] += 1
            hist[6144 + (bits[j + 3] >> 20)] += 1
        for j in range(n4, n):
            hist[bits[j] >> 20] += 1
        for i in range(2048):
            hist[i] += hist[2048 + i] + hist[4096 + i] + hist[6144 + i]
        above = 0
        b = 2047
        while above + hist[b] < k:
            above += hist[b]
            b -= 1
        rank = k - above                       # rank of the target inside bucket b (1 = its largest)
        nc = 0
        for j in range(n):
            cand[nc] = bits[j]
            nc += (bits[j] >> 20) == b
        prefix = b
        for shift in (10, 0):                  # the next 10 bits, then the last 10
            hist[:1024] = 0
            for i in range(nc):
                hist[(cand[i] >> shift) & 1023] += 1
            above = 0
            b = 1023
            while above + hist[b] < rank:
                above += hist[b]
                b -= 1
            rank -= above
            prefix = (prefix << 10) | b
            if shift:
                kept = 0
                for i in range(nc):
                    cand[kept] = cand[i]
                    kept += (cand[i] >> 10) == prefix
                nc = kept
        return prefix, rank

    # reassociation only (no fast-math on comparisons or NaN): lets the squared-norm sum vectorise
    @numba.njit(cache=True, nogil=True, boundscheck=False, fastmath={"reassoc"})
    def _ef_top_k_kernel(g, err, has_err, out_err, out_bits, payload, k, sq_norm):  # pragma: no cover - compiled
        """Rows of g (+ err when has_err) -> payload [sp_k; 1], out_err = g_ec - sp_k, sq_norm = ||sp_k||^2.
        ``out_bits`` is out_err viewed as int32 (the same memory)."""
        m_rows, d = g.shape
        hist = np.zeros(8192, np.int64)
        cand = np.empty(d, np.int32)
        absbits = np.empty(d, np.int32)
        for m in range(m_rows):
            if has_err:
                for j in range(d):
                    out_err[m, j] = g[m, j] + err[m, j]
            else:
                for j in range(d):
                    out_err[m, j] = g[m, j]
            for j in range(d):
                absbits[j] = out_bits[m, j] & 0x7FFFFFFF
            if k >= d:
                tb, ties = -1, 0               # keep everything
            else:
                tb, ties = _kth_largest_bits(absbits, k, hist, cand)
                if tb == 0:                    # fewer than k nonzeros: keep all (the "ties" are zeros)
                    tb, ties = -1, 0
            acc = 0.0
            if absbits.max() < 0x7F800000:     # all finite: branch-free (kept entries are a random part of the row)
                for j in range(d):
                    v = out_err[m, j]
                    kv = v * np.float32(absbits[j] > tb)
                    payload[m, j] = kv
                    out_err[m, j] = v - kv
                    acc += kv * kv
            else:                              # inf or NaN: v * 0 would be NaN, so select entry by entry
                for j in range(d):
                    v = out_err[m, j]
                    keep = absbits[j] > tb
                    payload[m, j] = v if keep else np.float32(0.0)
                    out_err[m, j] = np.float32(0.0) if keep else v
                    acc += (v * v) if keep else np.float32(0.0)
            j = 0
            while ties > 0:                    # tied at the threshold: the first ``ties`` of them
                if absbits[j] == tb:
                    v = out_err[m, j]
                    payload[m, j] = v
                    out_err[m, j] = 0.0
                    acc += v * v
                    ties -= 1
                j += 1
            payload[m, d] = 1.0
            sq_norm[m] = acc


def accelerated() -> bool:
    """True when the numba kernel is available (else the numpy path runs)."""
    return numba is not None


def _usable(t: torch.Tensor, shape: tuple[int, ...]) -> bool:
    return t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous() and tuple(t.shape) == shape


def error_feedback_top_k(update: torch.Tensor, error: torch.Tensor | None, k: int,
                         out_error: torch.Tensor | None = None, out_payload: torch.Tensor | None = None,
                         use_kernel: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Error-compensated top-k of every row (module docstring).

    update: float32[M, d] (g_m); error: float32[M, d] (Delta_m) or None (no error compensation); k >= 1;
    out_error, out_payload: optional float32[M, d] and float32[M, d + 1] buffers for the new error accumulators and
    the payload (reused across rounds by callers that keep neither; out_error must not alias ``update`` or ``error``);
    use_kernel: None = the numba kernel when installed, False = the numpy path, True = the kernel (RuntimeError when
    numba is missing).
    Returns (payload float32[M, d + 1] = [sp_k(g_ec) ; 1], new error float32[M, d] = g_ec - sp_k(g_ec),
    squared norms float32[M] of sp_k(g_ec)).
    """
    if update.dim() != 2:
        raise ValueError(f"update has shape {tuple(update.shape)}; expected [M, d]")
    m, d = update.shape
    if error is not None and tuple(error.shape) != (m, d):
        raise ValueError(f"error has shape {tuple(error.shape)}; expected {(m, d)} like the update")
    if k < 1:
        raise ValueError(f"k = {k}: expected >= 1")
    if out_error is not None and (tuple(out_error.shape) != (m, d) or out_error.dtype != torch.float32):
        raise ValueError(f"out_error is {out_error.dtype} {tuple(out_error.shape)}; expected float32 {(m, d)}")
    if use_kernel and numba is None:
        raise RuntimeError("use_kernel=True but numba is not installed (pip install numba)")
    kernel = (numba is not None) if use_kernel is None else bool(use_kernel)
    if out_error is not None and (out_error is update or out_error is error):
        raise ValueError("out_error must be a separate buffer (it aliases the update or the error)")
    if kernel:
        update = update.detach()
        error = error.detach() if error is not None else None
        g = update if _usable(update, (m, d)) else update.to(torch.float32).contiguous()
        e = (error if _usable(error, (m, d)) else error.to(torch.float32).contiguous()) if error is not None else g
        out = out_error if out_error is not None and out_error.is_contiguous() else torch.empty(m, d)
        payload = out_payload if out_payload is not None and _usable(out_payload, (m, d + 1)) else torch.empty(m, d + 1)
        sq = torch.empty(m, dtype=torch.float64)
        out_np = out.numpy()
        _ef_top_k_kernel(g.numpy(), e.numpy(), error is not None, out_np, out_np.view(np.int32), payload.numpy(),
                         int(k), sq.numpy())
        if out_error is not None and out is not out_error:
            out_error.copy_(out)
            out = out_error
        return payload, out, sq.to(torch.float32)
    if error is None:
        ec = update
    else:  # g_ec straight into the new error's buffer, which then becomes g_ec - sp_k in place
        ec = torch.add(update, error, out=out_error) if out_error is not None else update + error
    payload = _top_k_payload_numpy(ec, int(k), out_payload if out_payload is not None
                                   and tuple(out_payload.shape) == (m, d + 1) else None)
    sparse = payload[:, :d]
    if ec is update:
        new_error = torch.sub(ec, sparse, out=out_error) if out_error is not None else ec - sparse
    else:
        new_error = ec.sub_(sparse)
    return payload, new_error, torch.linalg.vector_norm(sparse, dim=1).square()


def top_k_payload(v: torch.Tensor, k: int) -> torch.Tensor:
    """[sp_k(v_m), 1] for every row of v float32[M, d]: float32[M, d + 1], the A-DSGD payload (the sparse update and
    the scale's unit entry) in one buffer, so ``out[:, :d]`` is sp_k(v) without another copy. Exactly min(k,
    nonzeros) entries per row; ties at the threshold keep the first tied entries."""
    if numba is None:
        return _top_k_payload_numpy(v, k)
    return error_feedback_top_k(v, None, k)[0]
