//! The training step and the forward pass as the machine runs them: the same equations as
//! `nn::Mlp::forward`, `nn::Mlp::backward` and `optim::Optimizer::step` (plus dropout and the
//! max-norm constraint), split across threads and, on CPUs with AVX2 and FMA, computed by the
//! fused kernels of `avx2` (the matrix products in 512-bit registers by `avx512` where the CPU
//! has AVX-512, with the same bits):
//!
//! - forward: `z = a Wᵀ`, then `a' = f(z + b)` in one pass over each output row;
//! - backward: `d_a = d_z W` with `⊙ f'(a)` applied as the result is stored;
//! - update: `d_w = d_zᵀ a` is reduced in registers and consumed at once by the update rule,
//!   so weight gradients never reach memory; max-norm follows on the rows just updated, while
//!   they are still in cache;
//! - dropout: `ã = a ⊙ m` right after each row of `a` is formed, and `⊙ m` right after `d_a`;
//! - the first layer: its input mapped once per step by blocks of 8 pixels, so that its forward
//!   product and weight gradient leave out the blocks of zeros (products that would add ±0 to
//!   sums starting at +0: the same bits).
//!
//! On other CPUs, and for f64, the engine runs the readable code in `nn` and `optim` itself.
//! `tests/engine.rs` checks that both paths agree.

use super::pool::{Pool, split};
use crate::nn::{Activation, Mlp, Workspace, loss};
use crate::optim::{Optimizer, max_norm};

/// How the matrix products are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// AVX2 + FMA kernels with fused element-wise work.
    Avx2,
    /// The same, with the matrix-product kernels (the step's three and the evaluation's sparse
    /// one) in 512-bit registers (`avx512`): the same results, bit for bit, in half the
    /// instructions.
    Avx512,
    /// The readable `nn`/`optim` code, with `matrixmultiply` for the products.
    Reference,
}

impl Backend {
    /// The fastest backend this CPU supports.
    pub fn detect() -> Backend {
        #[cfg(target_arch = "x86_64")]
        if super::avx512::available() {
            return Backend::Avx512;
        } else if super::avx2::available() {
            return Backend::Avx2;
        }
        Backend::Reference
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Avx2 => "avx2-fma",
            Backend::Avx512 => "avx512-fma",
            Backend::Reference => "reference",
        }
    }

    /// Whether this backend runs the fused kernels (`avx2`, and `avx512` for the products).
    pub fn fused(self) -> bool {
        self != Backend::Reference
    }

    /// Whether this CPU can run this backend.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return match self {
            Backend::Avx2 => super::avx2::available(),
            Backend::Avx512 => super::avx512::available(),
            Backend::Reference => true,
        };
        #[cfg(not(target_arch = "x86_64"))]
        return self == Backend::Reference;
    }
}

pub struct Engine {
    /// Private, so that safe code cannot point an engine at kernels its CPU lacks
    /// ([`Engine::new`] checks); read it with [`Engine::backend`].
    backend: Backend,
    pool: Pool,
    /// Whether the first layer's products skip blocks of zero inputs (the same bits either
    /// way; on by default, off only to measure what it saves).
    skip_zeros: bool,
    /// The fused kernels' own buffers, kept between steps.
    scratch: std::sync::Mutex<Scratch>,
}

/// Buffers of the fused kernels, grown to the largest batch and layer they have met. One
/// step's forward pass leaves its map of zero blocks here for its backward pass.
#[derive(Default)]
struct Scratch {
    /// (O, B + 16): a layer's `d_z` transposed, for the weight-gradient kernel at large
    /// batches.
    d_t: Vec<f32>,
    /// (B, widest input) in column panels: each layer's input packed for the weight-gradient
    /// kernel.
    packed: Vec<f32>,
    /// Which blocks of the first layer's input are not zero, so that its products skip the
    /// rest (`avx2::nonzero_blocks`).
    nonzero: Vec<u64>,
}

/// What the forward pass can prepare once per model for many evaluations: the first layer's
/// Wᵀ, (I, O), in panels of `avx2::PANEL` columns, for the product that skips zero pixels
/// (`avx2::matmul_sparse_rows`). It is a copy: it goes stale when the model's parameters
/// change, so prepare again after training.
pub struct Prepared {
    /// (fan_in, fan_out) of the first layer it was made from.
    shape: (usize, usize),
    /// Panel q holds columns `q·PANEL…` of Wᵀ as a contiguous (I, PANEL) block, the last one
    /// padded with zeros.
    first_t: Vec<f32>,
}

/// The first layer's products skip zero blocks when at most this share of its input's blocks
/// of 8 holds a non-zero. MNIST's images mark 40% of them, and a step takes 18% less time;
/// Fashion-MNIST's mark 72%, and skipping gained nothing (±1%, `DATASET=fashion-mnist AB=skip
/// cargo run --release --example kernel_ab`: four blocks in five kept by a tile of four
/// images, five in six of the update's); dense inputs mark all and would lose 4%.
const SKIP_MAX_SHARE: f64 = 0.6;

/// Products smaller than this many multiply-adds run on one thread ([`Engine::par_sized`]).
const SHARED_MACS: usize = 256 * 1024;

/// How many parts a product of `macs` multiply-adds is split into on `threads` threads: one below
/// [`SHARED_MACS`], else one per [`SHARED_MACS`], at least two, at most `threads`.
fn parts_for(macs: usize, threads: usize) -> usize {
    if macs < SHARED_MACS || threads == 1 {
        1
    } else {
        (macs / SHARED_MACS).clamp(2, threads)
    }
}

/// Batches from this size on have each layer's input packed in column panels for the
/// weight-gradient kernel. Smaller batches read it as stored: their inputs are still in each
/// core's cache from the forward pass, whereas panels written by the other core would have to
/// cross between cores again, and on this machine's slower placements that costs more than
/// packing saves.
const PACK_MIN_BATCH: usize = 128;

/// Columns per panel of [`Prepared`]'s Wᵀ: the sparse kernel's tile width.
const PREPARED_PANEL: usize = 16;
#[cfg(target_arch = "x86_64")]
const _: () = assert!(PREPARED_PANEL == super::avx2::PANEL);

/// One step's hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct StepParams {
    pub lr: f64,
    /// The number of this update, from 1 (Adam's bias correction needs it).
    pub t: usize,
    pub opt: Optimizer,
    /// Factor turning the summed batch gradient into the one used (1/N for a mean loss).
    pub loss_scale: f64,
    /// The max-norm bound c, if any.
    pub max_norm: Option<f64>,
}

/// What every layer's backward pass and update share in one fused step.
#[cfg(target_arch = "x86_64")]
struct Backward<'a> {
    products: super::avx512::Products,
    batch: usize,
    /// The hidden layers' activation, whose derivative the input gradient applies.
    act: super::avx2::Act,
    up: &'a super::avx2::Update,
    adam: bool,
    max_norm: Option<f64>,
    params: Shared<f32>,
    first_moment: Shared<f32>,
    /// Null unless the rule keeps a second moment.
    second_moment: Shared<f32>,
    /// Whether each layer's input is packed in column panels (from [`PACK_MIN_BATCH`] on),
    /// and where.
    packing: bool,
    packed: Shared<f32>,
}

#[cfg(target_arch = "x86_64")]
impl Backward<'_> {
    /// Pack columns `cols` of a layer's input (`batch` rows of `i`, at `input`) into their
    /// panels, when packing.
    fn pack(&self, i: usize, input: usize, cols: std::ops::Range<usize>) {
        if self.packing {
            // SAFETY: every caller passes a thread its own range of columns, split at multiples
            // of the panel width; the input is read-only here.
            unsafe { super::avx2::pack_panels(self.batch, i, input as *const f32, cols, self.packed.ptr()) }
        }
    }
}

/// Raw pointers that may be shared by the threads of one parallel region: every thread writes
/// only its own disjoint part (rows or columns) of the buffers behind them.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: see the type's comment; disjointness is established at every use.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// Through a method, so closures capture the `Sync` wrapper and not the raw pointer.
    fn ptr(&self) -> *mut T {
        self.0
    }
}

#[cfg(target_arch = "x86_64")]
fn act_code(a: Activation) -> super::avx2::Act {
    use super::avx2::Act;
    match a {
        Activation::Sigmoid => Act::Sigmoid,
        Activation::Relu => Act::Relu,
        Activation::Tanh => Act::Tanh,
    }
}

/// Panics unless `mlp` and `ws` have the shapes the kernels rely on for a pass over `batch`
/// samples: the layers laid out as [`Mlp::new`] lays them out, over exactly `mlp.params`, and
/// every buffer of `ws` that the kernels reach through raw pointers as long as `mlp.sizes`
/// and `ws.capacity` say. `Mlp` and `Workspace` have public fields, so safe code can break
/// these; the kernels then must not read or write out of bounds.
fn assert_shapes(mlp: &Mlp<f32>, ws: &Workspace<f32>, batch: usize) {
    let sizes = &mlp.sizes;
    assert!(
        sizes.len() >= 2 && mlp.layers.len() == sizes.len() - 1,
        "the network has {} layers for {} layer sizes",
        mlp.layers.len(),
        sizes.len()
    );
    let mut offset = 0;
    for (l, layer) in mlp.layers.iter().enumerate() {
        let (i, o) = (sizes[l], sizes[l + 1]);
        assert!(
            (layer.fan_in, layer.fan_out, layer.w, layer.b) == (i, o, offset, offset + i * o),
            "layer {l} is {layer:?}; layer sizes {sizes:?} lay it out as {i}→{o} from parameter {offset}"
        );
        offset += i * o + o;
    }
    assert_eq!(
        mlp.params.len(),
        offset,
        "the network has {} parameters; layer sizes {sizes:?} need {offset}",
        mlp.params.len()
    );
    let cap = ws.capacity;
    assert!(batch <= cap, "batch {batch} exceeds workspace capacity {cap}");
    assert_eq!(
        ws.acts.len(),
        sizes.len(),
        "workspace activations for another depth"
    );
    for (l, &width) in sizes.iter().enumerate() {
        assert_eq!(
            ws.acts[l].len(),
            cap * width,
            "workspace activations {l}: {} values, layer sizes {sizes:?} and capacity {cap} need {}",
            ws.acts[l].len(),
            cap * width
        );
    }
    let widest = sizes[1..].iter().copied().max().unwrap_or(0);
    assert!(
        ws.d_z.len() >= cap * widest && ws.d_a.len() >= cap * widest,
        "workspace gradient buffers shorter than capacity × widest layer"
    );
    let n_layers = mlp.layers.len();
    assert!(
        ws.drop_p.len() == n_layers && ws.masks.len() == n_layers && ws.dropped.len() == n_layers,
        "workspace dropout buffers for another depth"
    );
    for l in 0..n_layers {
        if ws.drops(l) {
            let n = cap * sizes[l];
            assert!(
                ws.masks[l].len() == n && ws.dropped[l].len() == n,
                "workspace dropout buffers of layer {l}: {} and {} values, {n} needed",
                ws.masks[l].len(),
                ws.dropped[l].len()
            );
        }
    }
}

impl Engine {
    pub fn new(threads: usize, backend: Backend) -> Engine {
        assert!(
            backend.available(),
            "this CPU cannot run the {} kernels",
            backend.name()
        );
        // The reference backend parallelises inside `matrixmultiply`; idle pool workers would
        // only spin against it.
        let threads = if backend == Backend::Reference { 1 } else { threads };
        Engine {
            backend,
            pool: Pool::new(threads),
            skip_zeros: true,
            scratch: Default::default(),
        }
    }

    /// The kernels' buffers. A panic in an earlier step leaves nothing in them that matters:
    /// every use writes what it reads.
    fn scratch(&self) -> std::sync::MutexGuard<'_, Scratch> {
        self.scratch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The kernels this engine runs.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the first layer's products are to skip zero blocks this step, given the map
    /// `nz` of its input (`batch` rows of `width`): when on, and when at most
    /// [`SKIP_MAX_SHARE`] of the blocks hold a non-zero.
    #[cfg(target_arch = "x86_64")]
    fn worth_skipping(&self, nz: &[u64], batch: usize, width: usize) -> bool {
        self.skip_zeros && super::avx2::nz_share(nz, batch, width) <= SKIP_MAX_SHARE
    }

    /// This engine with the first layer's skipping of zero blocks on or off. The results are
    /// the same bits either way (`avx2::nonzero_blocks` says why); only the time differs, which
    /// is what turning it off is for (`examples/kernel_ab.rs`).
    pub fn skipping_zeros(mut self, on: bool) -> Engine {
        self.skip_zeros = on;
        self
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Run `f(t, threads)` on each of the engine's threads (for work outside the step that
    /// parallelises the same way, such as preparing a batch).
    pub fn parallel(&self, f: impl Fn(usize, usize) + Sync) {
        self.pool.run(&f);
    }

    /// Fill the rows of `out` (`width` values each) on the engine's threads: `f(t, j, row)` for
    /// row j on thread t, each thread taking a contiguous run of rows. For the work around a
    /// step that is done row by row, such as preparing a batch, so that no thread waits while
    /// one does it alone.
    pub fn fill_rows(&self, out: &mut [f32], width: usize, f: impl Fn(usize, usize, &mut [f32]) + Sync) {
        assert!(width > 0 && out.len().is_multiple_of(width));
        let rows = out.len() / width;
        let dst = Shared(out.as_mut_ptr());
        self.pool.run(&|t, n| {
            for j in split(rows, n, t, 1) {
                // SAFETY: thread t writes only its rows j of `out`, which holds `rows` rows.
                let row = unsafe { std::slice::from_raw_parts_mut(dst.ptr().add(j * width), width) };
                f(t, j, row);
            }
        });
    }

    /// A parallel region of AVX2 kernels: `f(t, threads)` on every thread, with denormals
    /// flushed to zero while it runs.
    #[cfg(target_arch = "x86_64")]
    fn par(&self, f: impl Fn(usize, usize) + Sync) {
        self.pool
            .run(&|t, n| super::avx2::with_flushed_denormals(|| f(t, n)));
    }

    /// [`Engine::par`] for work of `macs` multiply-adds, in as many parts as it has
    /// [`SHARED_MACS`] (at least two once it is shared, at most one per thread): below that,
    /// `f(0, 1)` on this thread alone. The results are the same (every output element is reduced
    /// the same way whatever the split); what is saved is waking threads and moving operands
    /// between cores for products too small to gain from them (the last layers of the seed
    /// network at batch 64, or a 100→10 product on a 16-core machine).
    #[cfg(target_arch = "x86_64")]
    fn par_sized(&self, macs: usize, f: impl Fn(usize, usize) + Sync) {
        let parts = parts_for(macs, self.threads());
        if parts == 1 {
            super::avx2::with_flushed_denormals(|| f(0, 1));
        } else {
            self.pool
                .run_parts(parts, &|t, n| super::avx2::with_flushed_denormals(|| f(t, n)));
        }
    }

    /// Draw the dropout masks for the first `batch` samples, as [`Workspace::draw_masks`] does
    /// (the same bits), with the rows spread over the threads.
    pub fn draw_masks(&self, ws: &mut Workspace<f32>, key: u64, batch: usize) {
        let capacity = ws.capacity;
        let layers: Vec<(usize, usize, f64, Shared<f32>)> = ws
            .masks
            .iter_mut()
            .zip(&ws.drop_p)
            .enumerate()
            .filter(|(_, (_, p))| **p > 0.0)
            .map(|(l, (mask, &p))| {
                let width = mask.len() / capacity;
                (l, width, p, Shared(mask[..batch * width].as_mut_ptr()))
            })
            .collect();
        if layers.is_empty() {
            return;
        }
        self.pool.run(&|t, n| {
            for &(l, width, p, mask) in &layers {
                for r in split(batch, n, t, 1) {
                    // SAFETY: thread t writes only rows `split(batch, n, t)` of each mask.
                    let row = unsafe { std::slice::from_raw_parts_mut(mask.ptr().add(r * width), width) };
                    crate::nn::dropout::draw_row(p, key, l, r, row);
                }
            }
        });
    }

    /// Forward pass over the first `batch` rows of `ws.acts[0]`; afterwards the output buffer
    /// holds the logits, exactly as [`Mlp::forward`].
    pub fn forward(&self, mlp: &Mlp<f32>, ws: &mut Workspace<f32>, batch: usize) {
        self.forward_prepared(mlp, ws, batch, None)
    }

    /// Prepare `mlp` for [`Engine::forward_prepared`] (None where there is nothing to gain:
    /// the reference backend). Worth it when the same parameters classify many images.
    pub fn prepare(&self, mlp: &Mlp<f32>) -> Option<Prepared> {
        let layer = &mlp.layers[0];
        // Pixel indices are kept as u16.
        if !self.backend.fused() || layer.fan_in > 1 << 16 {
            return None;
        }
        const PANEL: usize = PREPARED_PANEL;
        let (i, o) = (layer.fan_in, layer.fan_out);
        let w = &mlp.params[layer.w_range()];
        let panels = o.div_ceil(PANEL);
        let mut first_t = vec![0.0f32; panels * i * PANEL];
        let out = Shared(first_t.as_mut_ptr());
        self.pool.run(&|t, n| {
            for q in split(panels, n, t, 1) {
                // SAFETY: thread t writes only its panels q of `first_t`.
                let panel =
                    unsafe { std::slice::from_raw_parts_mut(out.ptr().add(q * i * PANEL), i * PANEL) };
                for c in q * PANEL..((q + 1) * PANEL).min(o) {
                    for (p, &v) in w[c * i..(c + 1) * i].iter().enumerate() {
                        panel[p * PANEL + c % PANEL] = v;
                    }
                }
            }
        });
        Some(Prepared {
            shape: (i, o),
            first_t,
        })
    }

    /// [`Engine::forward`] with a model prepared by [`Engine::prepare`]: the first layer's
    /// product then skips the pixels that are zero in every image of a block of six, which for
    /// MNIST is about half of them. The sums run in another order, so logits can differ from
    /// [`Engine::forward`]'s in the last bits.
    pub fn forward_prepared(
        &self,
        mlp: &Mlp<f32>,
        ws: &mut Workspace<f32>,
        batch: usize,
        prepared: Option<&Prepared>,
    ) {
        assert_shapes(mlp, ws, batch);
        match self.backend {
            Backend::Reference => mlp.forward(ws, batch),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 | Backend::Avx512 => self.forward_avx2(mlp, ws, batch, prepared),
            #[cfg(not(target_arch = "x86_64"))]
            Backend::Avx2 | Backend::Avx512 => unreachable!(),
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn forward_avx2(
        &self,
        mlp: &Mlp<f32>,
        ws: &mut Workspace<f32>,
        batch: usize,
        prepared: Option<&Prepared>,
    ) {
        use super::avx2;
        let products = super::avx512::Products::new(self.backend == Backend::Avx512);
        assert!(batch <= ws.capacity);
        if ws.drops(0) {
            self.drop_input(ws, mlp.sizes[0], batch);
        }
        // The first layer's input (pixels, mostly zero) is mapped for its products to skip
        // zero blocks (the same bits); a prepared model's sparse product needs no map.
        let mut scratch = self.scratch();
        if prepared.is_none() && self.skip_zeros {
            let x = ws.layer_input(0, batch).as_ptr();
            // SAFETY: x holds `batch` rows of sizes[0] floats.
            unsafe { avx2::nonzero_blocks(batch, mlp.sizes[0], x, mlp.sizes[0], &mut scratch.nonzero) };
        }
        let skip = prepared.is_none() && self.worth_skipping(&scratch.nonzero, batch, mlp.sizes[0]);
        for l in 0..mlp.layers.len() {
            // The first layer of a prepared model skips zero pixels.
            let sparse = prepared.filter(|_| l == 0);
            let nz = (l == 0 && skip).then_some(&scratch.nonzero[..]);
            self.forward_layer_avx2(mlp, ws, l, batch, products, nz, sparse);
        }
    }

    /// Inverted dropout on the input pixels: ã = x ⊙ m, each thread its rows.
    fn drop_input(&self, ws: &mut Workspace<f32>, width: usize, batch: usize) {
        let (x, m) = (ws.acts[0].as_ptr() as usize, ws.masks[0].as_ptr() as usize);
        let dropped = Shared(ws.dropped[0].as_mut_ptr());
        self.par(|t, n| {
            let rows = split(batch, n, t, 1);
            let (start, len) = (rows.start * width, rows.len() * width);
            // SAFETY: thread t writes only its rows of ã; x and m are read-only here.
            unsafe {
                let x = std::slice::from_raw_parts((x as *const f32).add(start), len);
                let m = std::slice::from_raw_parts((m as *const f32).add(start), len);
                let d = std::slice::from_raw_parts_mut(dropped.ptr().add(start), len);
                crate::nn::dropout::forward(x, m, d);
            }
        });
    }

    /// Layer `l`'s forward pass, `Linear::forward` and the activation fused: z = a Wᵀ + b, then
    /// f(z) (the identity on the last layer) and the next layer's dropout, as each row is
    /// stored. `nz`: the map of zero blocks of the input, for the product to skip; `sparse`: it
    /// runs on a prepared model's Wᵀ over each block of rows' non-zero pixels.
    #[allow(clippy::too_many_arguments)]
    fn forward_layer_avx2(
        &self,
        mlp: &Mlp<f32>,
        ws: &mut Workspace<f32>,
        l: usize,
        batch: usize,
        products: super::avx512::Products,
        nz: Option<&[u64]>,
        sparse: Option<&Prepared>,
    ) {
        use super::avx2;
        let layer = &mlp.layers[l];
        let (i, o) = (layer.fan_in, layer.fan_out);
        let last = mlp.layers.len() - 1;
        let a = ws.layer_input(l, batch).as_ptr() as usize;
        // With dropout on this layer's output: its mask, and where ã goes.
        let drop_next = (l < last && ws.drops(l + 1)).then(|| {
            (
                ws.masks[l + 1][..batch * o].as_ptr() as usize,
                Shared(ws.dropped[l + 1][..batch * o].as_mut_ptr()),
            )
        });
        let z = Shared(ws.acts[l + 1][..batch * o].as_mut_ptr());
        if let Some(p) = sparse {
            assert_eq!(p.shape, (i, o), "prepared for a first layer of another shape");
            assert_eq!(p.first_t.len(), o.div_ceil(PREPARED_PANEL) * i * PREPARED_PANEL);
        }
        let w = &mlp.params[layer.w_range()];
        let b = &mlp.params[layer.b_range()];
        let act = if l < last {
            act_code(mlp.activation)
        } else {
            avx2::Act::Identity
        };
        self.par_sized(batch * i * o, |t, n| {
            // Dense: each thread its columns of every row. Sparse: each thread its rows, in
            // blocks of six that share one list of non-zero pixels, which it finds itself.
            let (rows, cols) = match sparse {
                Some(_) => (split(batch, n, t, avx2::NN_MR), 0..o),
                None => (0..batch, split(o, n, t, 8)),
            };
            if rows.is_empty() || cols.is_empty() {
                return;
            }
            // SAFETY: thread t writes only rows `rows` × columns `cols` of z and of ã;
            // reads stay inside a, w, b, the prepared Wᵀ and the mask.
            unsafe {
                let a = a as *const f32;
                match sparse {
                    Some(p) => {
                        let (mut idx, mut starts) = (Vec::new(), Vec::new());
                        let a = a.add(rows.start * i);
                        avx2::nonzero_columns(rows.len(), i, a, i, avx2::NN_MR, &mut idx, &mut starts);
                        let out = z.ptr().add(rows.start * o);
                        (products.matmul_sparse_rows)(
                            rows.len(),
                            i,
                            a,
                            i,
                            p.first_t.as_ptr(),
                            o,
                            out,
                            o,
                            &idx,
                            &starts,
                        );
                    }
                    None => (products.matmul_nt)(batch, i, a, i, w.as_ptr(), i, cols.clone(), z.ptr(), o, nz),
                }
                for r in rows {
                    let row = r * o + cols.start;
                    avx2::bias_act_row(z.ptr().add(row), b.as_ptr().add(cols.start), cols.len(), act);
                    if let Some((mask, dropped)) = &drop_next {
                        let m = (*mask as *const f32).add(row);
                        for c in 0..cols.len() {
                            *dropped.ptr().add(row + c) = *z.ptr().add(row + c) * *m.add(c);
                        }
                    }
                }
            }
        });
    }

    /// One training step on the batch already in `ws.acts[0]` with `labels` (and dropout masks
    /// already drawn, if any): forward, loss, backward, update. Returns the loss summed over the
    /// batch. `first_moment` and `second_moment` are the optimizer's state (SGD's velocity or
    /// Adam's m, and Adam's s; `second_moment` is empty except for Adam and AdamW).
    ///
    /// `grads` is only used by the reference backend; the fused backend never forms gradients.
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &self,
        mlp: &mut Mlp<f32>,
        first_moment: &mut [f32],
        second_moment: &mut [f32],
        grads: &mut [f32],
        ws: &mut Workspace<f32>,
        labels: &[u8],
        p: StepParams,
    ) -> f64 {
        let batch = labels.len();
        let n = mlp.params.len();
        // The fused update writes the optimizer state through raw pointers at the parameters'
        // offsets; `assert_shapes` (through forward) checks the parameters themselves.
        assert_eq!(
            first_moment.len(),
            n,
            "first moment: {} values for {n} parameters",
            first_moment.len()
        );
        let adam = p.opt.method.has_second_moment();
        let second_len = if adam { n } else { 0 };
        assert_eq!(
            second_moment.len(),
            second_len,
            "second moment: {} values, {} needs {second_len}",
            second_moment.len(),
            p.opt.method
        );
        if self.backend == Backend::Reference {
            assert_eq!(grads.len(), n, "grads: {} values for {n} parameters", grads.len());
        }
        self.forward(mlp, ws, batch);
        let k = mlp.classes();
        let out = ws.acts.last_mut().expect("layers");
        let loss = loss::softmax_cross_entropy(&mut out[..batch * k], labels, k);
        if !loss.is_finite() {
            return loss;
        }
        match self.backend {
            Backend::Reference => {
                mlp.backward(ws, labels, p.loss_scale as f32, grads);
                let (params, layers) = (&mut mlp.params, &mlp.layers);
                p.opt.step(
                    p.lr,
                    p.t,
                    batch,
                    layers,
                    params,
                    grads,
                    first_moment,
                    second_moment,
                );
                if let Some(c) = p.max_norm {
                    max_norm::apply(layers, params, c as f32);
                }
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 | Backend::Avx512 => {
                self.backward_update_avx2(mlp, first_moment, second_moment, ws, labels, p)
            }
            #[cfg(not(target_arch = "x86_64"))]
            Backend::Avx2 | Backend::Avx512 => unreachable!(),
        }
        loss
    }

    #[cfg(target_arch = "x86_64")]
    fn backward_update_avx2(
        &self,
        mlp: &mut Mlp<f32>,
        first_moment: &mut [f32],
        second_moment: &mut [f32],
        ws: &mut Workspace<f32>,
        labels: &[u8],
        p: StepParams,
    ) {
        use super::avx2;
        let batch = labels.len();
        let k = mlp.classes();
        let n_layers = mlp.layers.len();
        {
            let y_hat = &ws.acts[n_layers][..batch * k];
            loss::backward(y_hat, labels, k, p.loss_scale as f32, &mut ws.d_z[..batch * k]);
        }
        let up: avx2::Update = p.opt.update(p.lr, p.t, batch);
        let adam = p.opt.method.has_second_moment();
        // The layer input packed in column panels for the weight-gradient kernel.
        let packing = batch >= PACK_MIN_BATCH;
        let widest_input = mlp.sizes[..n_layers].iter().max().copied().unwrap_or(0);
        let packed_len = batch * widest_input.next_multiple_of(avx2::PANEL);
        let mut scratch = self.scratch();
        // The forward pass just mapped the first layer's input (the same batch, the same input).
        let Scratch { d_t, packed, nonzero } = &mut *scratch;
        if packing && packed.len() < packed_len {
            packed.resize(packed_len, 0.0);
        }
        let bw = Backward {
            products: super::avx512::Products::new(self.backend == Backend::Avx512),
            batch,
            act: act_code(mlp.activation),
            up: &up,
            adam,
            max_norm: p.max_norm,
            params: Shared(mlp.params.as_mut_ptr()),
            first_moment: Shared(first_moment.as_mut_ptr()),
            second_moment: Shared(if adam {
                second_moment.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            }),
            packing,
            packed: Shared(packed.as_mut_ptr()),
        };
        let skip = self.worth_skipping(nonzero, batch, mlp.sizes[0]);
        for l in (0..n_layers).rev() {
            let layer = mlp.layers[l].clone();
            let i = layer.fan_in;
            // What the layer read (ã^l with dropout), for d_w.
            let input = ws.layer_input(l, batch).as_ptr() as usize;
            if l == 0 && packing {
                self.par(|t, n| bw.pack(i, input, split(i, n, t, avx2::PANEL)));
            }
            if l > 0 {
                self.input_gradient_avx2(&bw, ws, l, &layer, input);
            }
            let nz = (l == 0 && skip).then_some(&nonzero[..]);
            self.weight_update_avx2(&bw, ws, d_t, &layer, input, nz);
            if l > 0 {
                std::mem::swap(&mut ws.d_z, &mut ws.d_a);
            }
        }
    }

    /// `Linear::backward`'s input gradient, fused with the activation's derivative:
    /// d_a = d_z W ⊙ f'(a) (⊙ m with dropout), before W changes; each thread its columns, which
    /// it also packs for the weight gradient.
    #[cfg(target_arch = "x86_64")]
    fn input_gradient_avx2(
        &self,
        bw: &Backward,
        ws: &mut Workspace<f32>,
        l: usize,
        layer: &crate::nn::Linear,
        input: usize,
    ) {
        use super::avx2;
        let (i, o, batch) = (layer.fan_in, layer.fan_out, bw.batch);
        let a = ws.acts[l][..batch * i].as_ptr() as usize;
        let mask = ws.drops(l).then(|| ws.masks[l][..batch * i].as_ptr() as usize);
        let d_z = ws.d_z[..batch * o].as_ptr() as usize;
        let d_a = Shared(ws.d_a[..batch * i].as_mut_ptr());
        self.par_sized(batch * i * o, |t, n| {
            let cols = split(i, n, t, 8 * avx2::NN_NV);
            if cols.is_empty() {
                return;
            }
            bw.pack(i, input, cols.clone());
            // SAFETY: thread t writes columns `cols` of d_a only; W is not written in this
            // region.
            unsafe {
                let w = bw.params.ptr().add(layer.w) as *const f32;
                (bw.products.matmul_nn_dact)(
                    batch,
                    o,
                    d_z as *const f32,
                    o,
                    w,
                    i,
                    a as *const f32,
                    d_a.ptr(),
                    i,
                    cols.clone(),
                    bw.act,
                );
                if let Some(mask) = mask {
                    apply_dropout_mask(d_a.ptr(), mask as *const f32, batch, i, cols);
                }
            }
        });
    }

    /// `Linear::backward`'s weight and bias gradients, d_w = d_zᵀ a and d_b = Σ d_z, consumed
    /// at once by the update rule (and max-norm); each thread its rows of W and b.
    #[cfg(target_arch = "x86_64")]
    fn weight_update_avx2(
        &self,
        bw: &Backward,
        ws: &Workspace<f32>,
        d_t: &mut Vec<f32>,
        layer: &crate::nn::Linear,
        input: usize,
        nz: Option<&[u64]>,
    ) {
        use super::avx2;
        let (i, o, batch) = (layer.fan_in, layer.fan_out, bw.batch);
        let d_z = ws.d_z[..batch * o].as_ptr() as usize;
        // Each thread first packs its rows of d_z transposed, (O, B): the kernel then reads six
        // contiguous streams instead of a stride of O floats (the d_w kernel ran 15–25% faster
        // at batch 256 and 1024, `examples/kernel_breakdown.rs`; the same sums in the same
        // order, so the same bits). The packed rows are a few floats longer than the batch, so
        // that the six rows a tile reads are not a multiple of 4 KB apart, which made the L1
        // cache alias them and cost more than packing saved.
        let ld_t = batch + 16;
        if d_t.len() < ld_t * o {
            d_t.resize(ld_t * o, 0.0);
        }
        let d_t = Shared(d_t.as_mut_ptr());
        let (w, b) = (layer.w, layer.b);
        self.par_sized(batch * i * o, |t, n| {
            let rows = split(o, n, t, avx2::TN_MR);
            if rows.is_empty() {
                return;
            }
            // SAFETY: thread t writes rows `rows` of d_t only; d_z is read-only here.
            unsafe { transpose_rows(d_z as *const f32, batch, o, d_t.ptr(), ld_t, rows.clone()) };
            // SAFETY: thread t reads and writes rows `rows` of W, b and their moments only;
            // d_z and the input are read-only here.
            unsafe {
                let sec = bw.second_moment.ptr();
                let sec_w = if bw.adam { sec.add(w) } else { sec };
                (bw.products.weight_grad_update)(
                    batch,
                    i,
                    d_t.ptr() as *const f32,
                    1,
                    ld_t,
                    if bw.packing {
                        bw.packed.ptr()
                    } else {
                        input as *mut f32
                    },
                    if bw.packing {
                        avx2::PanelLayout::packed(batch)
                    } else {
                        avx2::PanelLayout::rows(i)
                    },
                    bw.params.ptr().add(w),
                    bw.first_moment.ptr().add(w),
                    sec_w,
                    rows.clone(),
                    bw.up,
                    nz,
                );
                if let Some(c) = bw.max_norm {
                    let w = std::slice::from_raw_parts_mut(
                        bw.params.ptr().add(w + rows.start * i),
                        rows.len() * i,
                    );
                    max_norm::rows(w, i, c as f32);
                }
                let sec_b = bw.adam.then(|| sec.add(b));
                let (pb, vb) = (bw.params.ptr().add(b), bw.first_moment.ptr().add(b));
                bias_grad_update(d_z as *const f32, batch, o, rows, pb, vb, sec_b, bw.up);
            }
        });
    }
}

/// With dropout, `d_a ⊙= m` on columns `cols` of the (B, I) delta: the units dropped in the
/// forward pass pass no gradient back.
///
/// # Safety
/// `d_a` and `mask` hold `batch × i` floats, and no other thread touches columns `cols`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn apply_dropout_mask(
    d_a: *mut f32,
    mask: *const f32,
    batch: usize,
    i: usize,
    cols: std::ops::Range<usize>,
) {
    for r in 0..batch {
        for c in cols.clone() {
            // SAFETY: r < batch and c < i, within both buffers (the caller's contract).
            unsafe { *d_a.add(r * i + c) *= *mask.add(r * i + c) };
        }
    }
}

/// Rows `rows` of d_zᵀ, (O, B), into `d_t` with row stride `ld_t`, eight samples at a time, so
/// that each row of d_t is written eight contiguous floats at a time while the eight rows of
/// d_z stay in L1.
///
/// # Safety
/// `d_z` holds `batch × o` floats, `d_t` at least `o × ld_t` with `ld_t ≥ batch`, and no other
/// thread writes rows `rows` of `d_t`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose_rows(
    d_z: *const f32,
    batch: usize,
    o: usize,
    d_t: *mut f32,
    ld_t: usize,
    rows: std::ops::Range<usize>,
) {
    for b0 in (0..batch).step_by(8) {
        let b1 = (b0 + 8).min(batch);
        for r in rows.clone() {
            for b in b0..b1 {
                // SAFETY: r < o and b < batch ≤ ld_t (the caller's contract).
                unsafe { *d_t.add(r * ld_t + b) = *d_z.add(b * o + r) };
            }
        }
    }
}

/// d_b = Σ_s d_z[s, r] for the biases of rows `rows`, summed over s in order for each r,
/// reading rows of d_z (a column at a time would stride O floats per sample), then the update
/// rule on each bias (no L2: `up.apply(…, false)`).
///
/// # Safety
/// `d_z` holds `batch × o` floats; `bias`, `first` and `second` (Adam's, or None) point at the
/// layer's `o` biases and their optimizer state, and no other thread touches rows `rows`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn bias_grad_update(
    d_z: *const f32,
    batch: usize,
    o: usize,
    rows: std::ops::Range<usize>,
    bias: *mut f32,
    first: *mut f32,
    second: Option<*mut f32>,
    up: &super::avx2::Update,
) {
    let mut unused = 0.0f32;
    const CHUNK: usize = 64;
    for r0 in rows.clone().step_by(CHUNK) {
        let width = (rows.end - r0).min(CHUNK);
        let mut d_b = [0.0f32; CHUNK];
        for s in 0..batch {
            // SAFETY: s < batch and r0 + width ≤ o (the caller's contract).
            let row = unsafe { std::slice::from_raw_parts(d_z.add(s * o + r0), width) };
            for (acc, &x) in d_b.iter_mut().zip(row) {
                *acc += x;
            }
        }
        for (k, &g) in d_b[..width].iter().enumerate() {
            let j = r0 + k;
            // SAFETY: j < o, within the layer's biases and their state (the caller's contract).
            unsafe {
                let s = match second {
                    Some(sec) => &mut *sec.add(j),
                    None => &mut unused,
                };
                up.apply(&mut *bias.add(j), g, &mut *first.add(j), s, false);
            }
        }
    }
}
