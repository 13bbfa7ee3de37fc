//! The fused AVX2 engine against the readable reference code (`nn` + `optim`), on networks whose
//! sizes exercise every edge case of the kernels' tiles, for every activation, update rule,
//! dropout and max-norm; the engine's results independent of its thread count, bit for bit;
//! its 512-bit kernels bit-identical to its 256-bit ones; and its first-layer products that
//! skip blocks of zero pixels bit-identical to the dense ones. Inputs are shaped like images
//! (runs of ink among zeros), so every test here also goes through the skipping.

mod common;

use common::{assert_close, max_rel_diff, skip};
use mnist_mlp::kernels::{Backend, Engine, StepParams};
use mnist_mlp::nn::{Activation, Init, Mlp, Workspace};
use mnist_mlp::optim::{L2Mode, Method, Optimizer};
use mnist_mlp::rng::Rng;

/// Agreement of two f32 computations of the same math, relative to the values' scale.
const TOL: f64 = 2e-5;
/// Agreement of the batch losses the two paths return, relative to their scale.
const TOL_LOSS: f64 = 1e-4;

fn setup(sizes: &[usize], act: Activation, batch: usize, seed: u64) -> (Mlp<f32>, Vec<f32>, Vec<u8>) {
    let mut rng = Rng::new(seed, 0);
    let mut mlp = Mlp::<f32>::new(sizes, act);
    mlp.init(Init::Xavier, &mut rng);
    for layer in mlp.layers.clone() {
        for b in &mut mlp.params[layer.b_range()] {
            *b = rng.uniform(-0.3, 0.3) as f32;
        }
    }
    let x = (0..batch).flat_map(|_| image_like(&mut rng, sizes[0])).collect();
    let labels = (0..batch)
        .map(|_| rng.below(*sizes.last().unwrap() as u64) as u8)
        .collect();
    (mlp, x, labels)
}

/// A row of `n` inputs shaped like an image's pixels, so that the kernels' skipping of zero
/// blocks is exercised: zeros, some of them −0, outside one random run of "ink", and inside it
/// values in [0, 1) of which a third are zero.
fn image_like(rng: &mut Rng, n: usize) -> Vec<f32> {
    let start = rng.below(n as u64) as usize;
    let end = (start + 1 + rng.below(n as u64 / 2 + 1) as usize).min(n);
    (0..n)
        .map(|p| {
            let ink = (start..end).contains(&p) && rng.next_f64() > 0.33;
            match (ink, rng.below(8)) {
                (true, _) => rng.next_f64() as f32,
                (false, 0) => -0.0,
                (false, _) => 0.0,
            }
        })
        .collect()
}

/// What a training run uses besides the network: the update rule, dropout (input, hidden)
/// and the max-norm bound.
#[derive(Clone, Copy)]
struct Variant {
    opt: Optimizer,
    dropout: (f64, f64),
    max_norm: Option<f64>,
    /// `--loss-reduction sum`: the summed batch gradient (loss scale 1), with a learning rate
    /// divided by the batch size, so that steps are of the usual size (twice plain SGD's, so
    /// that the variant differs from it by more than rounding).
    sum: bool,
}

const SGD: Variant = Variant {
    opt: Optimizer {
        method: Method::Sgd,
        momentum: 0.9,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        l2: 0.005,
        l2_mode: L2Mode::PerSample,
    },
    dropout: (0.0, 0.0),
    max_norm: None,
    sum: false,
};

/// Every update rule with plain SGD's other settings (plain SGD first), then dropout alone,
/// max-norm alone, Adam with dropout and max-norm together, L2 per batch, L2 per batch with the
/// summed loss, and Adam with the summed loss.
fn variants() -> Vec<Variant> {
    let mut variants: Vec<Variant> = [Method::Sgd, Method::Nesterov, Method::Adam, Method::AdamW]
        .into_iter()
        .map(|method| Variant {
            opt: Optimizer { method, ..SGD.opt },
            ..SGD
        })
        .collect();
    variants.push(Variant {
        dropout: (0.2, 0.5),
        ..SGD
    });
    variants.push(Variant {
        max_norm: Some(0.5),
        ..SGD
    });
    variants.push(Variant {
        opt: Optimizer {
            method: Method::Adam,
            ..SGD.opt
        },
        dropout: (0.1, 0.3),
        max_norm: Some(0.5),
        sum: false,
    });
    let per_batch = Optimizer {
        l2_mode: L2Mode::PerBatch,
        ..SGD.opt
    };
    variants.push(Variant {
        opt: per_batch,
        ..SGD
    });
    variants.push(Variant {
        opt: per_batch,
        sum: true,
        ..SGD
    });
    // Not with L2 per batch: there the L2 term is N² times smaller against the summed data
    // gradient than with the defaults, so Adam's first steps (nearly sign(g)) follow the
    // rounding of gradients near zero, and the two paths differ by 3e-4.
    variants.push(Variant {
        opt: Optimizer {
            method: Method::Adam,
            ..SGD.opt
        },
        sum: true,
        ..SGD
    });
    variants
}

/// Run `steps` training steps; returns (losses, final parameters).
fn train(
    engine: &Engine,
    sizes: &[usize],
    act: Activation,
    batch: usize,
    steps: usize,
) -> (Vec<f64>, Vec<f32>) {
    train_variant(engine, sizes, act, batch, steps, SGD)
}

fn train_variant(
    engine: &Engine,
    sizes: &[usize],
    act: Activation,
    batch: usize,
    steps: usize,
    v: Variant,
) -> (Vec<f64>, Vec<f32>) {
    let (mut mlp, _, _) = setup(sizes, act, batch, 1);
    let n = mlp.params.len();
    let mut velocity = vec![0.0; n];
    let mut second = vec![0.0; if v.opt.method.has_second_moment() { n } else { 0 }];
    let mut grads = vec![0.0; n];
    let mut ws = Workspace::with_dropout(sizes, batch, v.dropout.0, v.dropout.1);
    let lr = if v.opt.method.has_second_moment() {
        0.002
    } else if v.sum {
        0.1 / batch as f64
    } else {
        0.05
    };
    let mut losses = Vec::new();
    for s in 0..steps {
        let (_, x, labels) = setup(sizes, act, batch, 100 + s as u64);
        ws.input_mut(batch).copy_from_slice(&x);
        ws.draw_masks(7 + s as u64, batch);
        let p = StepParams {
            lr,
            t: s + 1,
            opt: v.opt,
            loss_scale: if v.sum { 1.0 } else { 1.0 / batch as f64 },
            max_norm: v.max_norm,
        };
        losses.push(engine.train_step(
            &mut mlp,
            &mut velocity,
            &mut second,
            &mut grads,
            &mut ws,
            &labels,
            p,
        ));
    }
    (losses, mlp.params)
}

/// The fused engine (2 threads) and the reference one, or `None` (with a note) on CPUs without
/// AVX2/FMA, where the fused engine is never used.
fn fused_and_reference() -> Option<(Engine, Engine)> {
    if !Backend::Avx2.available() {
        skip(
            "this CPU has no AVX2/FMA, so the fused engine is never used here",
            true,
        );
        return None;
    }
    Some((Engine::new(2, Backend::Avx2), Engine::new(1, Backend::Reference)))
}

/// Tile edges everywhere; MNIST's input; a minimal network; and layers large enough that every
/// product of a batch of 64 or more is shared between threads (the engine runs small ones on
/// one thread).
const SHAPES: [&[usize]; 4] = [
    &[37, 29, 13, 10],
    &[784, 50, 25, 10],
    &[9, 3, 10],
    &[300, 200, 150, 20],
];
const ACTIVATIONS: [Activation; 3] = [Activation::Sigmoid, Activation::Relu, Activation::Tanh];

#[test]
fn the_fused_forward_pass_matches_the_reference() {
    let Some((fast, reference)) = fused_and_reference() else {
        return;
    };
    for sizes in SHAPES {
        for act in ACTIVATIONS {
            for batch in [1, 7, 64] {
                let (mlp, x, _) = setup(sizes, act, batch, 3);
                let mut outs = Vec::new();
                for engine in [&fast, &reference] {
                    let mut ws = Workspace::new(sizes, batch);
                    ws.input_mut(batch).copy_from_slice(&x);
                    engine.forward(&mlp, &mut ws, batch);
                    outs.push(ws.output(batch).to_vec());
                }
                let what = format!("{sizes:?} {act} batch {batch}: logits");
                assert_close(&what, &outs[0], &outs[1], TOL);
            }
        }
    }
}

/// The forward pass of a prepared model skips pixels that are zero in a whole block of rows; on
/// inputs that are mostly exact zeros (like MNIST's) it must give the dense pass's logits.
#[test]
fn the_forward_pass_that_skips_zero_pixels_matches_the_dense_one() {
    let Some((fast, _)) = fused_and_reference() else {
        return;
    };
    for sizes in SHAPES {
        for batch in [1, 5, 7, 64, 100] {
            let (mlp, mut x, _) = setup(sizes, Activation::Relu, batch, 11);
            // 80% of the pixels exactly zero, and one whole column zero in every row.
            let mut rng = Rng::new(12, 0);
            for v in x.iter_mut() {
                if rng.next_f64() < 0.8 {
                    *v = 0.0;
                }
            }
            for row in x.chunks_exact_mut(sizes[0]) {
                row[0] = 0.0;
            }
            let prepared = fast.prepare(&mlp).expect("the AVX2 engine prepares");
            let mut outs = Vec::new();
            for p in [None, Some(&prepared)] {
                let mut ws = Workspace::new(sizes, batch);
                ws.input_mut(batch).copy_from_slice(&x);
                fast.forward_prepared(&mlp, &mut ws, batch, p);
                outs.push(ws.output(batch).to_vec());
            }
            assert_close(
                &format!("{sizes:?} batch {batch}: logits"),
                &outs[0],
                &outs[1],
                TOL,
            );
        }
    }
}

#[test]
fn fused_training_steps_match_the_reference_update_rule() {
    let Some((fast, reference)) = fused_and_reference() else {
        return;
    };
    for sizes in SHAPES {
        for act in ACTIVATIONS {
            // 130: large enough for the weight-gradient kernel's packed inputs.
            for batch in [5, 64, 130] {
                let (lf, pf) = train(&fast, sizes, act, batch, 4);
                let (lr, pr) = train(&reference, sizes, act, batch, 4);
                let what = format!("{sizes:?} {act} batch {batch}");
                assert_close(&format!("{what}: parameters"), &pf, &pr, TOL);
                assert_close(&format!("{what}: losses"), &lf, &lr, TOL_LOSS);
            }
        }
    }
}

#[test]
fn every_update_rule_dropout_and_max_norm_match_the_reference_when_fused() {
    let Some((fast, reference)) = fused_and_reference() else {
        return;
    };
    for (k, v) in variants().into_iter().enumerate() {
        // Adam and AdamW divide by √ŝ, which magnifies the rounding of gradients near zero: on
        // the widest shape it reached 2.3e-5, and 2.5e-5 on [784, 50, 25, 10] (tanh, AdamW), so
        // they get a looser bound.
        let tol = if v.opt.method.has_second_moment() {
            2.0 * TOL
        } else {
            TOL
        };
        // 13: rows as stored; 130: the weight-gradient kernel's packed inputs. Not the widest
        // shape: it adds no kernel path that [784, 50, 25, 10] does not take at batch 130.
        for batch in [13, 130] {
            for sizes in &SHAPES[..3] {
                for act in ACTIVATIONS {
                    let (lf, pf) = train_variant(&fast, sizes, act, batch, 4, v);
                    let (lr, pr) = train_variant(&reference, sizes, act, batch, 4, v);
                    let what = format!("variant {k}, {sizes:?} {act} batch {batch}");
                    assert_close(&format!("{what}: parameters"), &pf, &pr, tol);
                    assert_close(&format!("{what}: losses"), &lf, &lr, TOL_LOSS);
                    // The variant must have changed something: compare with plain SGD.
                    if k > 0 {
                        let (_, plain) = train_variant(&reference, sizes, act, batch, 4, SGD);
                        let d = max_rel_diff(&what, &plain, &pr);
                        assert!(d > 1e-4, "{what}: the variant made no difference ({d:e})");
                    }
                }
            }
        }
    }
}

#[test]
fn the_512_bit_kernels_give_the_256_bit_kernels_bits() {
    if !Backend::Avx512.available() {
        skip(
            "this CPU has no AVX-512F/DQ, so the 512-bit kernels are never used here",
            false,
        );
        return;
    }
    let variants = variants();
    // Batches below and above the size from which the layer inputs are packed in panels; every
    // shape has widths that leave partial tiles of both kernels.
    for threads in [1, 2] {
        let (wide, narrow) = (
            Engine::new(threads, Backend::Avx512),
            Engine::new(threads, Backend::Avx2),
        );
        for (k, &v) in variants.iter().enumerate() {
            for sizes in SHAPES {
                for batch in [5, 64, 130] {
                    let act = ACTIVATIONS[(k + batch) % 3];
                    let (lw, pw) = train_variant(&wide, sizes, act, batch, 3, v);
                    let (ln, pn) = train_variant(&narrow, sizes, act, batch, 3, v);
                    let same =
                        pw.len() == pn.len() && pw.iter().zip(&pn).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "variant {k}, {sizes:?} {act} batch {batch}, {threads} threads: other bits"
                    );
                    assert_eq!(lw, ln, "variant {k}, {sizes:?} batch {batch}: losses");
                }
            }
        }
        // The evaluation's forward pass (which also takes the first layer's sparse path).
        let (mlp, x, _) = setup(SHAPES[3], Activation::Relu, 37, 3);
        let logits = |engine: &Engine, prepared: bool| {
            let mut ws = Workspace::new(SHAPES[3], 37);
            ws.input_mut(37).copy_from_slice(&x);
            let p = if prepared { engine.prepare(&mlp) } else { None };
            engine.forward_prepared(&mlp, &mut ws, 37, p.as_ref());
            ws.output(37).iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        for prepared in [false, true] {
            assert_eq!(
                logits(&wide, prepared),
                logits(&narrow, prepared),
                "forward, prepared: {prepared}"
            );
        }
    }
}

#[test]
fn masks_drawn_on_the_engines_threads_are_the_serial_ones() {
    let sizes = [30, 20, 10];
    let mut serial = Workspace::<f32>::with_dropout(&sizes, 9, 0.3, 0.5);
    serial.draw_masks(42, 9);
    for threads in [1, 2, 3] {
        let mut ws = Workspace::<f32>::with_dropout(&sizes, 9, 0.3, 0.5);
        Engine::new(threads, Backend::detect()).draw_masks(&mut ws, 42, 9);
        assert_eq!(ws.masks, serial.masks, "{threads} threads");
    }
    let dropped = serial.masks.iter().flatten().filter(|&&m| m == 0.0).count();
    assert!(dropped > 30, "{dropped} units dropped");
}

#[test]
fn the_engine_gives_the_same_bits_with_one_two_or_three_threads() {
    let backend = Backend::detect();
    for (sizes, batch) in [(&[784, 50, 25, 10][..], 64), (&[300, 200, 150, 20][..], 130)] {
        let runs: Vec<Vec<f32>> = [1, 2, 3]
            .iter()
            .map(|&t| train(&Engine::new(t, backend), sizes, Activation::Relu, batch, 3).1)
            .collect();
        assert!(
            runs[0] == runs[1] && runs[1] == runs[2],
            "{sizes:?} batch {batch}: parameters depend on the thread count"
        );
    }
}

#[test]
fn images_converted_row_by_row_on_the_engine_threads_match_split_gather() {
    use mnist_mlp::data::Split;
    use mnist_mlp::data::idx::Images;
    let mut rng = Rng::new(11, 0);
    let (count, ppi) = (23, 13);
    let split = Split {
        images: Images {
            count,
            rows: 1,
            cols: ppi,
            pixels: (0..count * ppi).map(|_| rng.below(256) as u8).collect(),
        },
        labels: (0..count).map(|_| rng.below(10) as u8).collect(),
    };
    // Repeats and any order, as a shuffled batch draws them; more rows than threads, and fewer.
    let idx: Vec<u32> = [22, 0, 5, 5, 17, 3, 9].to_vec();
    let mut expected = vec![0f32; idx.len() * ppi];
    let mut labels = Vec::new();
    split.gather(&idx, &mut expected, &mut labels);
    for threads in [1, 2, 3, 8] {
        let engine = Engine::new(threads, Backend::detect());
        let mut out = vec![f32::NAN; idx.len() * ppi];
        engine.fill_rows(&mut out, ppi, |_, j, row| {
            split.image_to_unit(idx[j] as usize, row)
        });
        assert_eq!(
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{threads} threads"
        );
    }
}

/// The map of non-zero blocks marks exactly the blocks of 8 columns (and the last, shorter
/// one) that hold something other than ±0, NaN included.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_map_of_nonzero_blocks_marks_exactly_the_blocks_with_a_nonzero() {
    use mnist_mlp::kernels::avx2::{nonzero_blocks, nonzero_rows, nz_words};
    if !Backend::Avx2.available() {
        skip(
            "this CPU has no AVX2/FMA, so the fused kernels are never used here",
            true,
        );
        return;
    }
    let mut rng = Rng::new(21, 0);
    for k in [1, 8, 9, 37, 512, 520, 784] {
        let m = 11;
        let mut x: Vec<f32> = (0..m).flat_map(|_| image_like(&mut rng, k)).collect();
        // A NaN, and a whole row of −0.
        x[k / 2] = f32::NAN;
        x[3 * k..4 * k].fill(-0.0);
        let mut map = vec![u64::MAX; 3];
        unsafe { nonzero_blocks(m, k, x.as_ptr(), k, &mut map) };
        let words = nz_words(k);
        assert_eq!(map.len(), m * words);
        let mut marked = 0;
        for r in 0..m {
            for q in 0..k.div_ceil(8) {
                let block = &x[r * k + 8 * q..r * k + (8 * q + 8).min(k)];
                let expected = block.iter().any(|&v| v != 0.0 || v.is_nan());
                let bit = map[r * words + q / 64] >> (q % 64) & 1 == 1;
                assert_eq!(bit, expected, "k {k}, row {r}, block {q}");
                marked += bit as usize;
            }
            // No bit past the last block.
            let q = k.div_ceil(8);
            if q % 64 != 0 {
                assert_eq!(map[r * words + q / 64] >> (q % 64), 0, "k {k}, row {r}");
            }
        }
        assert!(
            marked > 0 && (k < 16 || marked < m * k.div_ceil(8)),
            "k {k}: {marked} marked"
        );
        // The rows of each group of 16 columns that hold a non-zero there.
        let (mut idx, mut starts) = (Vec::new(), Vec::new());
        nonzero_rows(&map, m, k, 16, &mut idx, &mut starts);
        assert_eq!(starts.len(), k.div_ceil(16) + 1);
        for g in 0..k.div_ceil(16) {
            let expected: Vec<u32> = (0..m as u32)
                .filter(|&r| {
                    let cols = 16 * g..(16 * g + 16).min(k);
                    x[r as usize * k..][cols].iter().any(|&v| v != 0.0 || v.is_nan())
                })
                .collect();
            assert_eq!(idx[starts[g]..starts[g + 1]], expected[..], "k {k}, group {g}");
        }
    }
}

/// The forward and weight-gradient kernels, given the map, skip the blocks of zeros, and every
/// output keeps its bits: both widths, every update rule, both layouts of the input, tile edges
/// in both dimensions.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_kernels_that_skip_zero_blocks_keep_every_bit() {
    use mnist_mlp::kernels::avx2::{self, PanelLayout, nonzero_blocks};
    use mnist_mlp::kernels::avx512::Products;
    if !Backend::Avx2.available() {
        skip(
            "this CPU has no AVX2/FMA, so the fused kernels are never used here",
            true,
        );
        return;
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut rng = Rng::new(22, 0);
    for wide in [false, true] {
        if wide && !Backend::Avx512.available() {
            skip(
                "this CPU has no AVX-512F/DQ: the 512-bit kernels are not checked",
                false,
            );
            continue;
        }
        let products = Products::new(wide);
        for (i, o) in [(37, 29), (784, 50), (9, 3), (100, 13)] {
            for batch in [1, 5, 64, 130] {
                let a: Vec<f32> = (0..batch).flat_map(|_| image_like(&mut rng, i)).collect();
                let mut map = Vec::new();
                unsafe { nonzero_blocks(batch, i, a.as_ptr(), i, &mut map) };
                let w: Vec<f32> = (0..o * i).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
                let mut outs = Vec::new();
                for nz in [None, Some(&map[..])] {
                    let mut z = vec![f32::NAN; batch * o];
                    unsafe {
                        (products.matmul_nt)(
                            batch,
                            i,
                            a.as_ptr(),
                            i,
                            w.as_ptr(),
                            i,
                            0..o,
                            z.as_mut_ptr(),
                            o,
                            nz,
                        )
                    };
                    outs.push(bits(&z));
                }
                assert_eq!(outs[0], outs[1], "forward, wide {wide}, {i}→{o}, batch {batch}");

                let d: Vec<f32> = (0..batch * o).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
                let mut packed = vec![0f32; batch * i.next_multiple_of(avx2::PANEL)];
                unsafe { avx2::pack_panels(batch, i, a.as_ptr(), 0..i, packed.as_mut_ptr()) };
                for v in variants().into_iter().take(4) {
                    let adam = v.opt.method.has_second_moment();
                    let up = v.opt.update(0.01, 3, batch);
                    for packed_input in [false, true] {
                        let (input, layout) = if packed_input {
                            (packed.as_ptr(), PanelLayout::packed(batch))
                        } else {
                            (a.as_ptr(), PanelLayout::rows(i))
                        };
                        let mut states = Vec::new();
                        for nz in [None, Some(&map[..])] {
                            let mut w = w.clone();
                            let mut vel: Vec<f32> = (0..o * i).map(|k| (k % 7) as f32 * 0.01).collect();
                            let mut sec: Vec<f32> = if adam {
                                vel.iter().map(|x| x * x).collect()
                            } else {
                                vec![]
                            };
                            unsafe {
                                (products.weight_grad_update)(
                                    batch,
                                    i,
                                    d.as_ptr(),
                                    o,
                                    1,
                                    input,
                                    layout,
                                    w.as_mut_ptr(),
                                    vel.as_mut_ptr(),
                                    if adam {
                                        sec.as_mut_ptr()
                                    } else {
                                        std::ptr::null_mut()
                                    },
                                    1..o,
                                    &up,
                                    nz,
                                )
                            };
                            states.push((bits(&w), bits(&vel), bits(&sec)));
                        }
                        assert!(
                            states[0] == states[1],
                            "update {:?}, wide {wide}, {i}→{o}, batch {batch}, packed {packed_input}",
                            v.opt.method
                        );
                    }
                }
            }
        }
    }
}

/// The engines this CPU can run with the fused kernels: AVX2, and AVX-512 where present (with
/// a note where not).
fn fused_engines(threads: usize) -> Vec<Engine> {
    let mut engines = Vec::new();
    for backend in [Backend::Avx2, Backend::Avx512] {
        if backend.available() {
            engines.push(Engine::new(threads, backend));
        } else {
            let why = format!("this CPU cannot run the {} kernels", backend.name());
            skip(&why, backend == Backend::Avx2);
        }
    }
    engines
}

/// Which values are NaN, and the others with NaN replaced by 0 (NaN's payload and sign may
/// differ between two computations that both propagate it).
fn split_nan(v: &[f32]) -> (Vec<bool>, Vec<f32>) {
    (
        v.iter().map(|x| x.is_nan()).collect(),
        v.iter().map(|&x| if x.is_nan() { 0.0 } else { x }).collect(),
    )
}

/// A NaN in the input gives NaN logits in its row wherever the reference gives them: through
/// sigmoid and tanh (whose fused exponential once clamped NaN to a constant, so that
/// sigmoid(NaN) came out ≈ 1) and through ReLU, which maps NaN to 0 in both (`z > 0` is false).
/// Both kernel widths; the other rows keep their values.
#[test]
fn a_nan_input_propagates_through_the_fused_activations_as_in_the_reference() {
    let Some((_, reference)) = fused_and_reference() else {
        return;
    };
    let sizes = &[37, 29, 13, 10];
    let batch = 7;
    for fast in fused_engines(2) {
        for act in ACTIVATIONS {
            let (mlp, mut x, _) = setup(sizes, act, batch, 5);
            x[2 * sizes[0] + 5] = f32::NAN;
            let mut outs = Vec::new();
            for engine in [&fast, &reference] {
                let mut ws = Workspace::new(sizes, batch);
                ws.input_mut(batch).copy_from_slice(&x);
                engine.forward(&mlp, &mut ws, batch);
                outs.push(split_nan(ws.output(batch)));
            }
            let what = format!("{} {act}", fast.backend().name());
            assert_eq!(outs[0].0, outs[1].0, "{what}: NaN logits (fused, reference)");
            let nan_rows = outs[1].0.chunks(10).filter(|r| r.iter().all(|&n| n)).count();
            let expected = if act == Activation::Relu { 0 } else { 1 };
            assert_eq!(nan_rows, expected, "{what}: rows of NaN logits");
            assert_close(&format!("{what}: logits"), &outs[0].1, &outs[1].1, TOL);
        }
    }
}

/// A NaN weight makes the training step's loss NaN on the fused path as on the reference path
/// (sigmoid and tanh), so that training stops there, for both kernel widths. A weight of the
/// second layer: the first layer's products skip blocks of zero pixels, and with them a NaN
/// weight that meets only zeros (`NaN · 0` is never formed); the trainer's check of the
/// parameters catches that one (`tests/resume.rs`).
#[test]
fn a_nan_weight_makes_the_fused_steps_loss_nan_as_in_the_reference() {
    let Some((_, reference)) = fused_and_reference() else {
        return;
    };
    let sizes = &[37, 29, 13, 10];
    let batch = 5;
    let engines: Vec<Engine> = fused_engines(2).into_iter().chain([reference]).collect();
    for engine in &engines {
        for act in [Activation::Sigmoid, Activation::Tanh] {
            let (mut mlp, x, labels) = setup(sizes, act, batch, 6);
            mlp.params[mlp.layers[1].w + 3] = f32::NAN;
            let n = mlp.params.len();
            let (mut velocity, mut grads) = (vec![0.0; n], vec![0.0; n]);
            let mut ws = Workspace::new(sizes, batch);
            ws.input_mut(batch).copy_from_slice(&x);
            let p = StepParams {
                lr: 0.1,
                t: 1,
                opt: SGD.opt,
                loss_scale: 1.0 / batch as f64,
                max_norm: None,
            };
            let loss = engine.train_step(&mut mlp, &mut velocity, &mut [], &mut grads, &mut ws, &labels, p);
            assert!(loss.is_nan(), "{} {act}: loss {loss}", engine.backend().name());
        }
    }
}

/// One SGD step of `engine` on a 37-29-13-10 network and a batch of 5, after `spoil` has had
/// its way with the buffers: the safe entry points must refuse wrong sizes with a panic, never
/// read or write past a buffer.
fn step_with(spoil: impl FnOnce(&mut Mlp<f32>, &mut Vec<f32>, &mut Vec<f32>, &mut Workspace<f32>)) {
    let sizes = &[37, 29, 13, 10];
    let batch = 5;
    let (mut mlp, x, labels) = setup(sizes, Activation::Relu, batch, 8);
    let n = mlp.params.len();
    let (mut velocity, mut second) = (vec![0.0; n], Vec::new());
    let mut ws = Workspace::new(sizes, batch);
    ws.input_mut(batch).copy_from_slice(&x);
    spoil(&mut mlp, &mut velocity, &mut second, &mut ws);
    let p = StepParams {
        lr: 0.1,
        t: 1,
        opt: SGD.opt,
        loss_scale: 1.0 / batch as f64,
        max_norm: None,
    };
    let engine = Engine::new(1, Backend::detect());
    engine.train_step(
        &mut mlp,
        &mut velocity,
        &mut second,
        &mut vec![0.0; n],
        &mut ws,
        &labels,
        p,
    );
}

#[test]
#[should_panic(expected = "first moment: 1631 values for 1632 parameters")]
fn a_step_with_a_short_first_moment_panics() {
    step_with(|_, v, _, _| {
        v.pop();
    });
}

#[test]
#[should_panic(expected = "second moment: 3 values, sgd needs 0")]
fn a_step_with_a_second_moment_sgd_does_not_keep_panics() {
    step_with(|_, _, s, _| s.extend([0.0; 3]));
}

#[test]
#[should_panic(expected = "the network has 1631 parameters; layer sizes [37, 29, 13, 10] need 1632")]
fn a_step_with_a_short_parameter_vector_panics() {
    step_with(|mlp, v, _, _| {
        mlp.params.pop();
        v.pop();
    });
}

#[test]
#[should_panic(expected = "layer 2 is Linear")]
fn a_step_with_a_layer_moved_past_the_parameters_panics() {
    step_with(|mlp, _, _, _| mlp.layers[2].b += 100);
}

#[test]
#[should_panic(expected = "workspace activations 1: 130 values")]
fn a_step_with_a_workspace_for_other_sizes_panics() {
    step_with(|_, _, _, ws| {
        let x = ws.acts[0].clone();
        *ws = Workspace::new(&[37, 26, 13, 10], 5);
        ws.acts[0] = x;
    });
}

#[test]
#[should_panic(expected = "batch 5 exceeds workspace capacity 4")]
fn a_step_with_a_batch_beyond_the_workspace_panics() {
    step_with(|_, _, _, ws| ws.capacity = 4);
}

#[test]
#[should_panic(expected = "workspace dropout buffers of layer 1")]
fn a_step_with_a_dropout_probability_but_no_mask_panics() {
    step_with(|_, _, _, ws| ws.drop_p[1] = 0.5);
}

/// The fused f32 step's gradients against central differences of the f64 loss: one SGD step
/// with μ = 0, λ = 0 and α = 1 moves each parameter by −∂E/∂θ, so `θ_before − θ_after` is the
/// gradient the kernels formed (weights in the update's epilogue, biases after it). Every
/// activation, with and without dropout (the same masks in f64), below and above the batch
/// from which layer inputs are packed (128), on both kernel widths.
#[test]
fn the_fused_steps_gradients_match_f64_finite_differences() {
    use mnist_mlp::nn::gradcheck::check;
    let Some(_) = fused_and_reference() else {
        return;
    };
    // The gradient read back from an f32 update carries the rounding of θ − g (|θ| ≤ 0.5:
    // 3e-8) and of an f32 backward pass: at most 2.9e-5 relative (absolute below |g| = 1e-3)
    // over these cases; dropping f′ or a term of a sum gives errors of order 1.
    const TOL_F32_GRAD: f64 = 1e-4;
    let sizes = &[37, 29, 13, 10];
    let engines = fused_engines(1);
    for act in ACTIVATIONS {
        for batch in [6, 130] {
            for dropout in [(0.0, 0.0), (0.2, 0.5)] {
                let (mlp, x, labels) = setup(sizes, act, batch, 31);
                let key = 77;
                // The f64 loss of the same network, input and masks.
                let mut ws64 = Workspace::<f64>::with_dropout(sizes, batch, dropout.0, dropout.1);
                ws64.draw_masks(key, batch);
                for (d, &v) in ws64.input_mut(batch).iter_mut().zip(&x) {
                    *d = v as f64;
                }
                let mut mlp64 = Mlp::<f64>::new(sizes, act);
                let theta: Vec<f64> = mlp.params.iter().map(|&v| v as f64).collect();
                let loss = |p: &[f64]| {
                    mlp64.params.copy_from_slice(p);
                    let mut ws = ws64.clone();
                    mlp64.forward_loss(&mut ws, &labels) / batch as f64
                };
                let mut fd_loss = loss;
                for engine in &engines {
                    let mut m = mlp.clone();
                    let n = m.params.len();
                    let mut ws = Workspace::with_dropout(sizes, batch, dropout.0, dropout.1);
                    ws.input_mut(batch).copy_from_slice(&x);
                    ws.draw_masks(key, batch);
                    let opt = Optimizer {
                        momentum: 0.0,
                        l2: 0.0,
                        ..SGD.opt
                    };
                    let p = StepParams {
                        lr: 1.0,
                        t: 1,
                        opt,
                        loss_scale: 1.0 / batch as f64,
                        max_norm: None,
                    };
                    let (mut velocity, mut grads) = (vec![0.0; n], vec![0.0; n]);
                    engine.train_step(&mut m, &mut velocity, &mut [], &mut grads, &mut ws, &labels, p);
                    let fused: Vec<f64> = mlp
                        .params
                        .iter()
                        .zip(&m.params)
                        .map(|(&before, &after)| before as f64 - after as f64)
                        .collect();
                    let name = format!(
                        "{} {act} batch {batch} dropout {dropout:?}: fused gradient",
                        engine.backend().name()
                    );
                    let r = check(&name, &theta, &mut fd_loss, &fused);
                    // Not `r`'s Display, which judges by the f64 checks' tolerance.
                    let line = format!(
                        "{name}: {} entries, max rel err {:.2e}, max abs err {:.2e} (worst #{}; tolerance {TOL_F32_GRAD:e})",
                        r.entries, r.max_rel_error, r.max_abs_error, r.worst
                    );
                    println!("{line}");
                    assert!(r.max_rel_error <= TOL_F32_GRAD, "{line}");
                }
            }
        }
    }
}

/// Each update rule and each `f'` is one generic function (`optim::Update::rule`,
/// `nn::Activation::df_lanes`) run on one value by the reference step and on 8 or 16 lanes by
/// the fused kernels. This pins how each kind of lane rounds: scalar lanes as the plain
/// expressions (every product rounded, Adam's `((1 − β₂) g) g`), vector lanes with every
/// `a·b ± c` fused and Adam's `(1 − β₂)(g g)`, and 16 lanes exactly as 8. A rule or primitive
/// regrouped on one side only fails here.
#[test]
fn the_rules_round_as_documented_on_scalar_and_vector_lanes() {
    use std::arch::x86_64::*;
    if !Backend::Avx2.available() {
        skip("this CPU has no AVX2/FMA, so no vector lanes run here", true);
        return;
    }
    let wide = Backend::Avx512.available();
    if !wide {
        skip(
            "this CPU has no AVX-512, so 16 lanes are not compared with 8",
            false,
        );
    }
    let mut rng = Rng::new(11, 0);
    let mut draw =
        |scale: f32| -> [f32; 16] { std::array::from_fn(|_| rng.uniform(-0.5, 0.5) as f32 * scale) };
    let fma = f32::mul_add;
    for method in [Method::Sgd, Method::Nesterov, Method::Adam, Method::AdamW] {
        let opt = Optimizer {
            method,
            ..Optimizer::sgd(0.9, 0.005, L2Mode::PerSample)
        };
        let up = opt.update::<f32>(0.037, 3, 64);
        for _ in 0..50 {
            let (w, d, v) = (draw(2.0), draw(0.3), draw(0.1));
            let s = draw(0.02).map(f32::abs);
            // Scalar lanes: the plain expressions.
            for i in 0..16 {
                let [nw, nv, ns] = unsafe { up.rule(w[i], d[i], v[i], s[i], true) };
                let g = d[i] + up.l2 * w[i];
                let want = match method {
                    Method::Sgd => {
                        let v = up.momentum * v[i] - up.lr * g;
                        [w[i] + v, v, s[i]]
                    }
                    Method::Nesterov => {
                        let v = up.momentum * v[i] - up.lr * g;
                        [w[i] + (up.momentum * v - up.lr * g), v, s[i]]
                    }
                    Method::Adam | Method::AdamW => {
                        let m = up.beta1 * v[i] + (1.0 - up.beta1) * g;
                        let s = up.beta2 * s[i] + (1.0 - up.beta2) * g * g;
                        let step = up.lr * (m * up.c1) / ((s * up.c2).sqrt() + up.eps);
                        [w[i] - up.decay * w[i] - step, m, s]
                    }
                };
                assert_eq!(
                    [nw, nv, ns].map(f32::to_bits),
                    want.map(f32::to_bits),
                    "{method:?} scalar"
                );
            }
            // 8 lanes: fused, and c·(g·g).
            let [nw, nv, ns] = unsafe {
                let l = |x: &[f32]| _mm256_loadu_ps(x.as_ptr());
                up.rule::<__m256>(l(&w), l(&d), l(&v), l(&s), true)
            };
            for i in 0..8 {
                let g = fma(up.l2, w[i], d[i]);
                let want = match method {
                    Method::Sgd => {
                        let v = fma(up.momentum, v[i], -(up.lr * g));
                        [w[i] + v, v, s[i]]
                    }
                    Method::Nesterov => {
                        let ag = up.lr * g;
                        let v = fma(up.momentum, v[i], -ag);
                        [w[i] + fma(up.momentum, v, -ag), v, s[i]]
                    }
                    Method::Adam | Method::AdamW => {
                        let m = fma(up.beta1, v[i], (1.0 - up.beta1) * g);
                        let s = fma(up.beta2, s[i], (1.0 - up.beta2) * (g * g));
                        let step = up.lr * (m * up.c1) / ((s * up.c2).sqrt() + up.eps);
                        [fma(-up.decay, w[i], w[i]) - step, m, s]
                    }
                };
                let got = [lanes_of(nw)[i], lanes_of(nv)[i], lanes_of(ns)[i]];
                assert_eq!(
                    got.map(f32::to_bits),
                    want.map(f32::to_bits),
                    "{method:?} lane {i} of 8"
                );
            }
            // 16 lanes: the same bits as 8.
            if wide {
                let [ww, wv, ws] = unsafe {
                    let l = |x: &[f32]| _mm512_loadu_ps(x.as_ptr());
                    up.rule::<__m512>(l(&w), l(&d), l(&v), l(&s), true)
                };
                let lanes16 = |x: __m512| -> [f32; 16] { unsafe { std::mem::transmute(x) } };
                let [ww, wv, ws] = [lanes16(ww), lanes16(wv), lanes16(ws)];
                for half in 0..2 {
                    let h =
                        |a: &[f32; 16]| -> [u32; 8] { std::array::from_fn(|i| a[8 * half + i].to_bits()) };
                    let [n8w, n8v, n8s] = unsafe {
                        let l = |x: &[f32]| _mm256_loadu_ps(x[8 * half..].as_ptr());
                        up.rule::<__m256>(l(&w), l(&d), l(&v), l(&s), true)
                    };
                    let b = |x: __m256| lanes_of(x).map(f32::to_bits);
                    assert_eq!(
                        [h(&ww), h(&wv), h(&ws)],
                        [b(n8w), b(n8v), b(n8s)],
                        "{method:?} 16 lanes"
                    );
                }
            }
        }
    }
    // f' from the cached output: a(1 − a), 1 − a² (fused on vectors), and the step of ReLU.
    for _ in 0..50 {
        let a = draw(2.5);
        let v = unsafe { _mm256_loadu_ps(a.as_ptr()) };
        for act in ACTIVATIONS {
            let got = lanes_of(unsafe { act.df_lanes(v) });
            for i in 0..8 {
                let want = match act {
                    Activation::Sigmoid => a[i] * (1.0 - a[i]),
                    Activation::Relu => f32::from(u8::from(a[i] > 0.0)),
                    Activation::Tanh => fma(-a[i], a[i], 1.0),
                };
                assert_eq!(got[i].to_bits(), want.to_bits(), "{act} lane {i}");
                assert_eq!(
                    act.df(a[i]),
                    match act {
                        Activation::Tanh => 1.0 - a[i] * a[i],
                        _ => want,
                    },
                    "{act} scalar"
                );
            }
        }
    }
}

fn lanes_of(x: std::arch::x86_64::__m256) -> [f32; 8] {
    // SAFETY: a __m256 is eight f32s.
    unsafe { std::mem::transmute(x) }
}
