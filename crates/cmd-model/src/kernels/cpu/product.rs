//! The CPU kernels' matrix products: the `gemm` crate's on native builds (AVX-512 or AVX2
//! micro-kernels, chosen at run time), and [`tiled`] on wasm32.
//!
//! gemm's simd128 micro-kernel sums a 12 x 4 tile: 12 accumulators, 3 left-hand vectors and a
//! broadcast, all 16 of the vector registers V8 allocates on x86-64, which it then spills.
//! Measured in Chromium 156 on this project's 2-core CPU, gemm's products ran at 25-27 GFLOP/s
//! while a 4 x 8 tile (8 accumulators, 2 right-hand vectors, a broadcast) ran at 44, and its
//! products were two thirds of the browser's CPU time. [`tiled`] is a product around that
//! tile; natively it is only built for its tests, which compare it with gemm.

#[cfg(any(target_arch = "wasm32", test))]
use lanes::{V, load, mul_add, splat, store};

/// A matrix operand read through strides: element `(r, c)` at `ptr + r rs + c cs`.
#[derive(Clone, Copy)]
pub(super) struct Operand {
    pub(super) ptr: *const f32,
    pub(super) rs: isize,
    pub(super) cs: isize,
}

/// A product's output: row `i` starts at `ptr + i rs`, its columns contiguous. With
/// `accumulate` the product is added to what is there, else it replaces it.
#[derive(Clone, Copy)]
pub(super) struct Output {
    pub(super) ptr: *mut f32,
    pub(super) rs: usize,
    pub(super) accumulate: bool,
}

/// `out[i, j] = (out[i, j] if accumulating, else 0) + scale Σ_p lhs[i, p] rhs[p, j]` for the
/// `m x n` output over depth `k`, split between `threads` threads of the pool (1: on the
/// calling thread).
///
/// # Safety
/// Every element the operands' strides address for `i < m`, `j < n` and `p < k` must be
/// readable, and every output element writable; the output must alias neither operand.
pub(super) unsafe fn product(
    [m, n, k]: [usize; 3],
    out: Output,
    lhs: Operand,
    rhs: Operand,
    scale: f32,
    threads: usize,
) {
    #[cfg(not(target_arch = "wasm32"))]
    // SAFETY: the caller's contract is gemm's, with the output's columns contiguous.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.ptr,
            1,
            out.rs as isize,
            out.accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism(threads),
        );
    }
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the caller's contract is `tiled`'s.
    unsafe {
        tiled([m, n, k], out, lhs, rhs, scale, threads);
    }
}

/// gemm's parallelism for `threads` threads of the pool.
#[cfg(not(target_arch = "wasm32"))]
fn parallelism(threads: usize) -> gemm::Parallelism {
    if threads > 1 {
        return gemm::Parallelism::Rayon(threads);
    }
    gemm::Parallelism::None
}

/// Rows of a tile: each a broadcast left-hand value.
#[cfg(any(target_arch = "wasm32", test))]
const MR: usize = 4;

/// Columns of a tile: two vectors of four lanes.
#[cfg(any(target_arch = "wasm32", test))]
const NR: usize = 8;

/// [`product`] in 4 x 8 tiles. Each tile is summed in registers over the whole depth, then
/// scaled and stored. The left-hand matrix is packed 4 rows at a time (`[k, 4]`). The
/// right-hand one is read in place where its rows are contiguous (the convolutions' and linear
/// layers' products), as panels of 8 columns `rs` apart; the rest (a last partial panel, or a
/// transposed operand such as attention's keys) is packed once into `[k, 8]` panels, zero past
/// `n`. With `threads > 1` (threaded wasm builds) the blocks of rows are split between the
/// pool's threads.
///
/// # Safety
/// As for [`product`].
#[cfg(any(target_arch = "wasm32", test))]
pub(super) unsafe fn tiled(
    [m, n, k]: [usize; 3],
    out: Output,
    lhs: Operand,
    rhs: Operand,
    scale: f32,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: the outputs keep their values, or become zero.
        if !out.accumulate {
            for i in 0..m {
                // SAFETY: row `i < m` has `n` writable outputs (the contract).
                unsafe { std::ptr::write_bytes(out.ptr.add(i * out.rs), 0, n) };
            }
        }
        return;
    }
    // Panels read in place, then the packed ones.
    let direct = if rhs.cs == 1 { n / NR } else { 0 };
    let panels = n.div_ceil(NR);
    let mut packed = vec![0.0f32; (panels - direct) * k * NR];
    for (index, values) in packed.chunks_exact_mut(k * NR).enumerate() {
        let panel = direct + index;
        let columns = NR.min(n - panel * NR);
        for (p, values) in values.chunks_exact_mut(NR).enumerate() {
            for (jj, value) in values[..columns].iter_mut().enumerate() {
                let j = panel * NR + jj;
                // SAFETY: `p < k` and `j < n` address an element of `rhs` (the contract).
                *value = unsafe { *rhs.ptr.offset(p as isize * rhs.rs + j as isize * rhs.cs) };
            }
        }
    }
    let blocks = m.div_ceil(MR);
    let tiles = Tiles {
        dims: [m, n, k],
        out,
        lhs,
        rhs,
        direct,
        packed: &packed,
        scale,
    };
    #[cfg(threads)]
    if threads > 1 && blocks > 1 {
        let parts = threads.min(blocks);
        rayon::scope(|s| {
            for part in 0..parts {
                let tiles = &tiles;
                // SAFETY: the parts' blocks of rows are disjoint.
                s.spawn(move |_| unsafe {
                    tiles.rows(blocks * part / parts..blocks * (part + 1) / parts)
                });
            }
        });
        return;
    }
    let _ = threads;
    // SAFETY: the caller's contract.
    unsafe { tiles.rows(0..blocks) }
}

/// What the threads of [`tiled`] share: the product's operands and output, and the packed
/// right-hand panels.
#[cfg(any(target_arch = "wasm32", test))]
struct Tiles<'a> {
    dims: [usize; 3],
    out: Output,
    lhs: Operand,
    /// Read in place for the first `direct` panels (its columns then contiguous).
    rhs: Operand,
    direct: usize,
    /// The other right-hand panels, `[k, 8]` each.
    packed: &'a [f32],
    scale: f32,
}

// SAFETY: the threads of `tiled` only read the operands and write disjoint blocks of output
// rows (`Tiles::rows`), all alive until `tiled` returns.
#[cfg(any(target_arch = "wasm32", test))]
unsafe impl Sync for Tiles<'_> {}

#[cfg(any(target_arch = "wasm32", test))]
impl Tiles<'_> {
    /// Computes the output rows of `blocks` (blocks of [`MR`] rows).
    ///
    /// # Safety
    /// As for [`product`]; no other thread writes these rows.
    unsafe fn rows(&self, blocks: std::ops::Range<usize>) {
        let [m, n, k] = self.dims;
        let lhs = self.lhs;
        let mut a = vec![0.0f32; k * MR];
        for block in blocks {
            let first = block * MR;
            let rows = MR.min(m - first);
            for (p, a) in a.chunks_exact_mut(MR).enumerate() {
                for (ii, a) in a.iter_mut().enumerate() {
                    *a = if ii < rows {
                        let at = (first + ii) as isize * lhs.rs + p as isize * lhs.cs;
                        // SAFETY: row `first + ii < m`, depth `p < k`: an element of `lhs`.
                        unsafe { *lhs.ptr.offset(at) }
                    } else {
                        0.0
                    };
                }
            }
            for panel in 0..n.div_ceil(NR) {
                let (b, b_rs) = self.panel(panel);
                // SAFETY: `a` holds `[k, MR]` values and the panel `k` rows of 8 from `b`,
                // `b_rs` apart.
                let sums = unsafe { tile(a.as_ptr(), b, b_rs, k) };
                let columns = NR.min(n - panel * NR);
                for (ii, sums) in sums.iter().enumerate().take(rows) {
                    // SAFETY: row `first + ii < m`, columns from `panel NR`, `columns` of them
                    // (`< n`): output elements (the contract).
                    unsafe {
                        let at = self.out.ptr.add((first + ii) * self.out.rs + panel * NR);
                        self.put(at, sums, columns);
                    }
                }
            }
        }
    }

    /// Where right-hand panel `panel` starts, and its rows' stride.
    fn panel(&self, panel: usize) -> (*const f32, usize) {
        if panel < self.direct {
            return (self.rhs.ptr.wrapping_add(panel * NR), self.rhs.rs as usize);
        }
        let k = self.dims[2];
        (self.packed[(panel - self.direct) * k * NR..].as_ptr(), NR)
    }

    /// Stores one row of a tile, `scale sums` (plus what is there when accumulating), into its
    /// first `columns` outputs from `at`.
    ///
    /// # Safety
    /// `at` must address `columns` writable values.
    #[inline(always)]
    unsafe fn put(&self, at: *mut f32, sums: &[V; 2], columns: usize) {
        let scale = splat(self.scale);
        if columns == NR {
            for (h, sum) in sums.iter().enumerate() {
                // SAFETY: 8 writable values from `at` (the contract).
                unsafe {
                    let at = at.add(4 * h);
                    let base = if self.out.accumulate {
                        load(at)
                    } else {
                        splat(0.0)
                    };
                    store(at, mul_add(*sum, scale, base));
                }
            }
            return;
        }
        let mut row = [0.0f32; NR];
        for (h, sum) in sums.iter().enumerate() {
            // SAFETY: `row` holds 8 values.
            unsafe {
                store(
                    row.as_mut_ptr().add(4 * h),
                    mul_add(*sum, scale, splat(0.0)),
                )
            };
        }
        for (j, v) in row[..columns].iter().enumerate() {
            // SAFETY: `j < columns` (the contract).
            unsafe {
                let at = at.add(j);
                *at = if self.out.accumulate { *at + v } else { *v };
            }
        }
    }
}

/// One 4 x 8 tile, `Σ_p a[p] ⊗ b[p]` over the packed `a` (`[k, 4]`) and `b` (`k` rows of 8,
/// `b_rs` apart): 8 accumulators, 2 right-hand vectors and a broadcast in registers.
///
/// # Safety
/// `a` must address `4 k` values and `b` `k` rows of 8.
#[cfg(any(target_arch = "wasm32", test))]
#[inline(always)]
unsafe fn tile(a: *const f32, b: *const f32, b_rs: usize, k: usize) -> [[V; 2]; MR] {
    let mut acc = [[splat(0.0); 2]; MR];
    for p in 0..k {
        // SAFETY: `p < k` (the contract).
        let (b0, b1, a) = unsafe {
            let b = b.add(p * b_rs);
            (load(b), load(b.add(4)), a.add(p * MR))
        };
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `i < 4` values from `a`.
            let ai = splat(unsafe { *a.add(i) });
            acc[0] = mul_add(ai, b0, acc[0]);
            acc[1] = mul_add(ai, b1, acc[1]);
        }
    }
    acc
}

/// Four `f32` lanes: WebAssembly's 128-bit SIMD, or plain arrays where it is absent (native
/// builds, for the tests). Multiply and add stay two roundings either way.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod lanes {
    use core::arch::wasm32::{f32x4_add, f32x4_mul, f32x4_splat, v128, v128_load, v128_store};

    pub(super) type V = v128;

    #[inline(always)]
    pub(super) fn splat(x: f32) -> V {
        f32x4_splat(x)
    }

    /// # Safety
    /// `p` must address 4 readable values.
    #[inline(always)]
    pub(super) unsafe fn load(p: *const f32) -> V {
        // SAFETY: the contract; v128 loads need no alignment.
        unsafe { v128_load(p as *const v128) }
    }

    /// # Safety
    /// `p` must address 4 writable values.
    #[inline(always)]
    pub(super) unsafe fn store(p: *mut f32, v: V) {
        // SAFETY: the contract; v128 stores need no alignment.
        unsafe { v128_store(p as *mut v128, v) }
    }

    /// `a b + c`.
    #[inline(always)]
    pub(super) fn mul_add(a: V, b: V, c: V) -> V {
        f32x4_add(f32x4_mul(a, b), c)
    }
}

#[cfg(all(test, not(all(target_arch = "wasm32", target_feature = "simd128"))))]
mod lanes {
    pub(super) type V = [f32; 4];

    pub(super) fn splat(x: f32) -> V {
        [x; 4]
    }

    /// # Safety
    /// `p` must address 4 readable values.
    pub(super) unsafe fn load(p: *const f32) -> V {
        // SAFETY: the contract.
        unsafe { std::ptr::read_unaligned(p as *const V) }
    }

    /// # Safety
    /// `p` must address 4 writable values.
    pub(super) unsafe fn store(p: *mut f32, v: V) {
        // SAFETY: the contract.
        unsafe { std::ptr::write_unaligned(p as *mut V, v) }
    }

    /// `a b + c`, lane by lane.
    pub(super) fn mul_add(a: V, b: V, c: V) -> V {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values that differ from each other, so a transposed or shifted read shows.
    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104729) % 1009) as f32 - 504.0) / 256.0)
            .collect()
    }

    /// `tiled` against gemm on one product; the operands' layouts are given by
    /// `transposed_lhs` / `transposed_rhs` (column-major instead of row-major) and the output's
    /// rows are `pad` values longer than `n`.
    fn check(
        [m, n, k]: [usize; 3],
        transposed: [bool; 2],
        pad: usize,
        accumulate: bool,
        scale: f32,
        threads: usize,
    ) {
        let lhs_values = values(m * k, 1);
        let rhs_values = values(k * n, 2);
        let operand = |values: &[f32], rows: usize, cols: usize, transposed: bool| Operand {
            ptr: values.as_ptr(),
            rs: if transposed { 1 } else { cols as isize },
            cs: if transposed { rows as isize } else { 1 },
        };
        let lhs = operand(&lhs_values, m, k, transposed[0]);
        let rhs = operand(&rhs_values, k, n, transposed[1]);
        let row = n + pad;
        let start = values(m * row, 3);
        let (mut ours, mut theirs) = (start.clone(), start);
        // SAFETY: the operands are `[m, k]` and `[k, n]` in the layouts given; the outputs
        // `[m, row]`.
        unsafe {
            let dims = [m, n, k];
            let output = |values: &mut Vec<f32>| Output {
                ptr: values.as_mut_ptr(),
                rs: row,
                accumulate,
            };
            tiled(dims, output(&mut ours), lhs, rhs, scale, threads);
            product(dims, output(&mut theirs), lhs, rhs, scale, 1);
        }
        for (at, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            let tolerance = 1e-5 * (1.0 + b.abs()) * (k as f32).max(1.0);
            assert!(
                (a - b).abs() <= tolerance,
                "m {m} n {n} k {k} {transposed:?} pad {pad} accumulate {accumulate}: \
                 element {at}: {a} against gemm's {b}"
            );
        }
    }

    #[test]
    fn tiled_products_equal_gemms() {
        // Whole tiles, partial rows and columns, one row or column, no depth.
        let shapes = [
            [4, 8, 16],
            [8, 16, 3],
            [1, 1, 1],
            [3, 5, 7],
            [5, 9, 2],
            [13, 17, 33],
            [1, 40, 20],
            [37, 1, 9],
            [6, 7, 0],
        ];
        for dims in shapes {
            for transposed in [[false, false], [true, false], [false, true], [true, true]] {
                for (accumulate, scale) in [(false, 1.0), (true, 1.0), (false, 0.125)] {
                    check(dims, transposed, 3, accumulate, scale, 1);
                }
            }
        }
    }

    #[test]
    #[cfg(threads)]
    fn tiled_products_split_between_threads_equal_gemms() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            for dims in [[29, 19, 11], [4, 8, 5], [2, 3, 4]] {
                check(dims, [false, true], 0, true, 1.0, 3);
                check(dims, [false, false], 1, false, 0.5, 2);
            }
        });
    }
}
